//! Beyond the paper, for a system that runs: forwarding submissions to the next leaders,
//! re-forwarding a backlog, resending a stalled chain, and bounding blocks that wait for a parent.

use std::collections::BTreeSet;

use agora_consensus::Ctx;
use agora_crypto::Digest;
use agora_types::{Epoch, NodeId, Round, Vote};
use rustc_hash::FxHashSet;

use crate::{Streamlet, StreamletDrop, StreamletMessage, vote_statement};

impl Streamlet {
    /// Drops (and counts) the proposals waiting for a parent that are at or below finality.
    pub(crate) fn prune_orphans(&mut self) {
        let horizon = self.tree.finalized_tip().round();
        let before = self.orphan_count;
        for waiting in self.orphans.values_mut() {
            waiting.retain(|p| p.block.round() > horizon);
        }
        self.orphans.retain(|_, w| !w.is_empty());
        self.orphan_count = self.orphans.values().map(Vec::len).sum();
        self.orphan_bytes =
            self.orphans.values().flatten().map(|p| p.block.batch().encoded().len()).sum();
        if self.orphan_count < before {
            *self.stats.dropped.entry(StreamletDrop::OrphanBelowFinality.as_str()).or_default() +=
                (before - self.orphan_count) as u64;
        }
    }

    /// At mid-epoch: pending transactions not on the chain being extended go to the next leader
    /// again (a forward may have been lost, or its leader may have crashed).
    pub(crate) fn reforward(&mut self, ctx: &mut Ctx<'_, Self>) {
        // What waits to be forwarded goes first, so it is not counted as a backlog.
        self.flush_forwards(ctx);
        let next_leader = self.leader_of(Epoch(self.epoch.0 + 1));
        if next_leader == self.me || ctx.mempool().is_empty() {
            return;
        }
        let tip = self.tree.best_tip().digest();
        let in_chain = self.ids_on_unfinalized_chain(&tip);
        let (epoch, after) = (self.epoch.0, self.config.reforward_after_epochs);
        let forwarding = &self.forwarding;
        let txs = ctx.mempool().select(&self.config.batch, &|id| {
            in_chain.contains(id) || forwarding.recently(id, epoch, after)
        });
        if !txs.is_empty() {
            self.forwarding.note(&txs, epoch);
            ctx.send(next_leader, StreamletMessage::Forward(txs));
        }
    }

    /// A stall: send again, as echoes, the proposals of the chain this node extends with every
    /// vote counted for them, and its own votes above the finalized tip, which others may have
    /// lost (receivers that have them drop them at once, as any echo seen before).
    pub(crate) fn resync(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.progress_epoch = self.epoch;
        self.stats.resyncs += 1;
        // The chain this node would extend (its longest notarized one): what others need to
        // agree on the longest notarized chain. Forks that lost are not worth the bandwidth.
        let tip = self.tree.best_tip().digest();
        let chain: FxHashSet<Digest> =
            self.tree.unfinalized_ancestry(&tip).iter().map(|b| b.digest()).collect();
        for proposal in self.adopted.values().flatten() {
            if chain.contains(&proposal.block.digest()) {
                ctx.broadcast(StreamletMessage::EchoPropose(proposal.clone()));
                // Every vote counted for it, not only ours: a voter that crashed since cannot
                // send its own again, and its vote may be the one that notarized the block.
                let statement = vote_statement(&proposal.block);
                let certificate = self.keeper.certificate_of(&statement, Some(self.me));
                for (voter, signature) in certificate.signatures() {
                    let vote = Vote { statement, voter: *voter, signature: *signature };
                    ctx.broadcast(StreamletMessage::EchoVote(vote));
                }
            }
        }
        for vote in self.own_votes.values() {
            ctx.broadcast(StreamletMessage::Vote(*vote));
        }
        // A stalled node may have fallen behind the others' finalized tip, and finalized blocks
        // and their votes are never sent again unasked. Ask the proposers of the newest
        // proposals it holds, waiting for their parents or adopted, who had what came before.
        // Not only orphans: a node that holds every block of the others' chain but lost some of
        // their votes has no orphan, and waited for good (swarm seed 810105773).
        let finalized = self.tree.finalized_tip().height();
        let mut asked = BTreeSet::new();
        let held = self.orphans.values().flatten().chain(self.adopted.values().flatten());
        let newest = held.map(|p| (p.block.round(), p.block.proposer()));
        let mut newest: Vec<(Round, NodeId)> = newest.collect();
        newest.sort_unstable_by(|a, b| b.cmp(a));
        for (_, proposer) in newest {
            if proposer != self.me && asked.insert(proposer) {
                ctx.send(proposer, StreamletMessage::Sync { finalized });
            }
            if asked.len() == 2 {
                break;
            }
        }
    }

    /// Sends the transactions submitted here since the last flush to the next two leaders.
    pub(crate) fn flush_forwards(&mut self, ctx: &mut Ctx<'_, Self>) {
        let txs = self.forwarding.take(self.epoch.0);
        if txs.is_empty() {
            return;
        }
        // The next proposal's leader, and the one after in case that leader is down.
        let leaders: BTreeSet<NodeId> = (1..=2)
            .map(|k| self.leader_of(Epoch(self.epoch.0 + k)))
            .filter(|l| *l != self.me)
            .collect();
        for leader in leaders {
            ctx.send(leader, StreamletMessage::Forward(txs.clone()));
        }
    }
}
