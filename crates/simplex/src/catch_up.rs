//! Beyond the paper, for a system that runs: forwarding submissions to the next leaders,
//! asking peers for what a node missed, skipping iterations no known notarization covers, and
//! bounding blocks that wait for a parent.

use std::collections::BTreeSet;

use agora_consensus::Ctx;
use agora_types::NodeId;

use crate::{Simplex, SimplexDrop, SimplexMessage, skip_statement};

impl Simplex {
    /// Drops (and counts) the proposals waiting for a parent that are at or below finality.
    pub(crate) fn prune_orphans(&mut self) {
        let horizon = self.chain.finalized_iteration();
        let before = self.orphan_count;
        for waiting in self.orphans.values_mut() {
            waiting.retain(|p| p.block.round().0 > horizon);
        }
        self.orphans.retain(|_, w| !w.is_empty());
        self.orphan_count = self.orphans.values().map(Vec::len).sum();
        self.orphan_bytes =
            self.orphans.values().flatten().map(|p| p.block.batch().encoded().len()).sum();
        if self.orphan_count < before {
            *self.stats.dropped.entry(SimplexDrop::OrphanBelowFinality.as_str()).or_default() +=
                (before - self.orphan_count) as u64;
        }
    }

    /// At its timer, a node that sees no notarized blockchain up to its iteration votes to
    /// skip each earlier iteration that no notarization it knows covers (at most
    /// `late_skips_max`), or sends its skip again. Messages lost before GST can leave no live
    /// node holding a notarization the chain needs; honest nodes skipping it together give
    /// one. Safe for the reason the crate docs give: never for an iteration this node sent
    /// finalize for. Returns whether something was uncovered.
    pub(crate) fn late_skips(&mut self, ctx: &mut Ctx<'_, Self>) -> bool {
        let h = self.iteration;
        if self.chain.parent_for(h).is_some() {
            return false;
        }
        let missing = self.chain.uncovered_before(h, self.config.late_skips_max);
        for &j in &missing {
            let own = self.own_votes.get(&j).copied().unwrap_or_default();
            if own.finalize.is_some() {
                continue;
            }
            match own.skip {
                Some(skip) => ctx.broadcast(SimplexMessage::Vote(skip)),
                None => {
                    self.stats.late_skips_cast += 1;
                    self.cast(ctx, skip_statement(j));
                }
            }
        }
        !missing.is_empty()
    }

    /// Asks `peer` for what it holds above this node's finalized height, at most once per
    /// timeout.
    pub(crate) fn ask_for_sync(&mut self, ctx: &mut Ctx<'_, Self>, peer: NodeId) {
        let now = ctx.now_ns();
        if peer == self.me || now < self.next_sync_ns {
            return;
        }
        self.next_sync_ns = now.saturating_add(self.config.timeout_ns());
        self.stats.syncs_sent += 1;
        ctx.send(peer, SimplexMessage::Sync { finalized: self.chain.finalized_tip().height() });
    }

    /// A restarted node asks every peer once.
    pub(crate) fn ask_everyone(&mut self, ctx: &mut Ctx<'_, Self>) {
        let finalized = self.chain.finalized_tip().height();
        for peer in (0..self.n).map(NodeId).filter(|p| *p != self.me) {
            self.stats.syncs_sent += 1;
            ctx.send(peer, SimplexMessage::Sync { finalized });
        }
        self.next_sync_ns = ctx.now_ns().saturating_add(self.config.timeout_ns());
    }

    /// The peer asked at the timer of `iteration`: each other member in turn.
    pub(crate) fn peer_for(&self, iteration: u64) -> NodeId {
        let others = u64::from(self.n.saturating_sub(1)).max(1);
        let offset = 1 + iteration % others;
        NodeId(((u64::from(self.me.0) + offset) % u64::from(self.n.max(1))) as u16)
    }

    /// On entering an iteration: pending transactions not on the chain being extended, and not
    /// forwarded for `reforward_after_iterations`, go to the next leader again (a forward may
    /// have been lost, or its leader may have crashed).
    pub(crate) fn reforward(&mut self, ctx: &mut Ctx<'_, Self>) {
        // What waits to be forwarded goes first, so it is not counted as a backlog.
        self.flush_forwards(ctx);
        let next_leader = self.leader_of(self.iteration + 1);
        if next_leader == self.me || ctx.mempool().is_empty() {
            return;
        }
        let tip = self
            .chain
            .parent_for(self.iteration)
            .map_or_else(|| self.chain.finalized_tip().digest(), |b| b.digest());
        let in_chain = self.ids_on_unfinalized_chain(&tip);
        let (now, after) = (self.iteration, self.config.reforward_after_iterations);
        let forwarding = &self.forwarding;
        let txs = ctx.mempool().select(&self.config.batch, &|id| {
            in_chain.contains(id) || forwarding.recently(id, now, after)
        });
        if !txs.is_empty() {
            self.forwarding.note(&txs, now);
            ctx.send(next_leader, SimplexMessage::Forward(txs));
        }
    }

    /// Sends the transactions submitted here since the last flush to the next two leaders.
    pub(crate) fn flush_forwards(&mut self, ctx: &mut Ctx<'_, Self>) {
        let txs = self.forwarding.take(self.iteration);
        if txs.is_empty() {
            return;
        }
        let leaders: BTreeSet<NodeId> =
            (1..=2).map(|k| self.leader_of(self.iteration + k)).filter(|l| *l != self.me).collect();
        for leader in leaders {
            ctx.send(leader, SimplexMessage::Forward(txs.clone()));
        }
    }
}
