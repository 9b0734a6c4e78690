//! Beyond the paper, for a system that runs: forwarding submissions to the next leaders,
//! asking peers for blocks a node missed and answering them, and bounding blocks that wait
//! for a parent.

use std::collections::BTreeSet;

use agora_consensus::Ctx;
use agora_types::{Height, NodeId};

use crate::{HotStuff, HotStuffDrop, HotStuffMessage, Proposal};

impl HotStuff {
    /// Drops (and counts) the proposals waiting for a parent that are at or below finality.
    pub(crate) fn prune_orphans(&mut self) {
        let horizon = self.tree.finalized_view();
        let before = self.orphan_count;
        for waiting in self.orphans.values_mut() {
            waiting.retain(|p| p.block.round().0 > horizon);
        }
        self.orphans.retain(|_, w| !w.is_empty());
        self.orphan_count = self.orphans.values().map(Vec::len).sum();
        self.orphan_bytes =
            self.orphans.values().flatten().map(|p| p.block.batch().encoded().len()).sum();
        if self.orphan_count < before {
            *self.stats.dropped.entry(HotStuffDrop::OrphanBelowFinality.as_str()).or_default() +=
                (before - self.orphan_count) as u64;
        }
    }

    /// Asks `peer` for what it holds above this node's finalized height, at most once per
    /// base timeout.
    pub(crate) fn ask_for_sync(&mut self, ctx: &mut Ctx<'_, Self>, peer: NodeId) {
        let now = ctx.now_ns();
        if peer == self.me || now < self.next_sync_ns {
            return;
        }
        self.next_sync_ns = now.saturating_add(self.config.base_timeout_ns());
        self.stats.syncs_sent += 1;
        ctx.send(peer, HotStuffMessage::Sync { finalized: self.tree.finalized_tip().height() });
    }

    /// A restarted node asks every peer once.
    pub(crate) fn ask_everyone(&mut self, ctx: &mut Ctx<'_, Self>) {
        let finalized = self.tree.finalized_tip().height();
        for peer in (0..self.n).map(NodeId).filter(|p| *p != self.me) {
            self.stats.syncs_sent += 1;
            ctx.send(peer, HotStuffMessage::Sync { finalized });
        }
        self.next_sync_ns = ctx.now_ns().saturating_add(self.config.base_timeout_ns());
    }

    /// A member asks for what this node holds above its finalized height: the finalized
    /// blocks it kept, then every block of its tree above the finalized tip, oldest first,
    /// each followed by its QC when this node holds one, and its `qc_high` last. A member is
    /// answered at most once per base timeout, so its small requests cannot become a stream
    /// of blocks.
    pub(crate) fn on_sync(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, finalized: Height) {
        if from == self.me || !self.committee.contains(from) {
            return;
        }
        let now = ctx.now_ns();
        if self
            .synced_at
            .get(&from)
            .is_some_and(|t| now < t.saturating_add(self.config.base_timeout_ns()))
        {
            return self.drop_message(HotStuffDrop::SyncAskedTooSoon);
        }
        self.synced_at.insert(from, now);
        let above = Height(finalized.0.saturating_add(1));
        for (proposal, qc) in self.finalized_proofs.range(above..).map(|(_, p)| p) {
            ctx.send(from, HotStuffMessage::Propose(proposal.clone()));
            ctx.send(from, HotStuffMessage::Certificate(qc.clone()));
        }
        let mut live: Vec<&Proposal> = self.proposals.values().collect();
        live.sort_by_key(|p| (p.block.round(), p.block.height()));
        for proposal in live {
            ctx.send(from, HotStuffMessage::Propose(proposal.clone()));
            if let Some(qc) = self.tree.qc_of(&proposal.block.digest()) {
                ctx.send(from, HotStuffMessage::Certificate(qc.clone()));
            }
        }
        if let Some(qc) = &self.high_qc {
            ctx.send(from, HotStuffMessage::Certificate(qc.clone()));
        }
    }

    /// On entering a view: pending transactions not on the chain being extended, and not
    /// forwarded for `reforward_after_views`, go to the next two other leaders again (a
    /// forward may have been lost, or its leader may have crashed). Two others, because one
    /// may be crashed every time: under round robin over four with one member down, a backlog
    /// sent to the next leader alone, or to the next two views' leaders (one of them this
    /// node), went to the crashed one every eighth view, and each send counted as a forward.
    pub(crate) fn reforward(&mut self, ctx: &mut Ctx<'_, Self>) {
        // What waits to be forwarded goes first, so it is not counted as a backlog.
        self.flush_forwards(ctx);
        let leaders = self.next_leaders();
        if leaders.is_empty() || ctx.mempool().is_empty() {
            return;
        }
        let tip = self
            .high_qc
            .as_ref()
            .map_or_else(|| self.tree.finalized_tip().digest(), |qc| qc.statement().value);
        let in_chain = self.ids_on_unfinalized_chain(&tip);
        let (now, after) = (self.view, self.config.reforward_after_views);
        let forwarding = &self.forwarding;
        let txs = ctx.mempool().select(&self.config.batch, &|id| {
            in_chain.contains(id) || forwarding.recently(id, now, after)
        });
        if !txs.is_empty() {
            self.forwarding.note(&txs, now);
            for leader in leaders {
                ctx.send(leader, HotStuffMessage::Forward(txs.clone()));
            }
        }
    }

    /// The next two leaders after this view other than this node (fewer only in a committee
    /// too small to have them).
    fn next_leaders(&self) -> BTreeSet<NodeId> {
        let mut leaders = BTreeSet::new();
        for k in 1..=u64::from(self.n) * 2 {
            let leader = self.leader_of(self.view + k);
            if leader != self.me {
                leaders.insert(leader);
            }
            if leaders.len() == 2 {
                break;
            }
        }
        leaders
    }

    /// Sends the transactions submitted here since the last flush to the next two other
    /// leaders.
    pub(crate) fn flush_forwards(&mut self, ctx: &mut Ctx<'_, Self>) {
        let txs = self.forwarding.take(self.view);
        if txs.is_empty() {
            return;
        }
        for leader in self.next_leaders() {
            ctx.send(leader, HotStuffMessage::Forward(txs.clone()));
        }
    }
}
