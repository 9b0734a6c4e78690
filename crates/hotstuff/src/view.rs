//! The pacemaker: views, proposing, the view timer with its backoff, timeouts and timeout
//! certificates (the paper's §4.3 and Algorithm 5, with Jolteon's timeout certificates for
//! moving views without a QC; the crate docs say why).

use agora_consensus::Ctx;
use agora_types::{Batch, Block, Height, NodeId, Round, Vote};

use crate::persist::{CHECKPOINT_AFTER_RECORDS, Record};
use crate::{
    Entered, HotStuff, HotStuffDrop, HotStuffMessage, HotStuffTimer, Proposal, Timeout,
    TimeoutCertificate, qc_view, timeout_statement,
};

impl HotStuff {
    /// The timer of the current view: the base, grown once views have passed without a QC
    /// ([`crate::HotStuffConfig::timeout_ns`]).
    pub(crate) fn current_timeout_ns(&self) -> u64 {
        self.config.timeout_ns(self.view.saturating_sub(self.high_qc_view() + 1))
    }

    /// Enters `view` (only forwards), through `entered` (a QC or a timeout certificate of the
    /// view before): arms its timer and lets its leader propose.
    pub(crate) fn enter_view(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        view: u64,
        entered: Option<Entered>,
    ) {
        if view <= self.view {
            return;
        }
        ctx.cancel_timer(HotStuffTimer::View(self.view));
        self.view = view;
        self.entered_ns = ctx.now_ns();
        if entered.is_some() {
            self.entered = entered;
        }
        self.own_timeout = None;
        self.timeouts = self.timeouts.split_off(&view);
        self.tc_high = self.tc_high.split_off(&(view - 1));
        self.first_proposal = self.first_proposal.split_off(&view);
        ctx.set_timer(HotStuffTimer::View(view), self.current_timeout_ns());
        if self.records_since_checkpoint >= CHECKPOINT_AFTER_RECORDS {
            self.checkpoint(ctx);
        }
        self.reforward(ctx);
    }

    /// What may have become possible after anything this node learned: the leader proposes,
    /// the node votes for its view's proposal, a waiting commit applies.
    pub(crate) fn progress(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.view == 0 {
            return;
        }
        self.propose(ctx, false);
        self.try_vote(ctx);
        if let Some((target, chain)) = self.pending_commit.take()
            && self.tree.contains(&target)
        {
            self.commit(ctx, target, chain);
        } else if let Some(pending) = self.pending_commit.take() {
            self.pending_commit = Some(pending);
        }
    }

    /// The paper's `onPropose`: the leader of the current view proposes, once, a block
    /// extending the block of its `qc_high`, carrying that QC, and the timeout certificate of
    /// the view before when that is how it got here. With nothing pending it waits
    /// [`crate::HotStuffConfig::empty_block_after_ns`] into the view (`empty` says the wait is
    /// over).
    pub(crate) fn propose(&mut self, ctx: &mut Ctx<'_, Self>, empty: bool) {
        let v = self.view;
        if self.leader_of(v) != self.me || self.last_proposed >= v {
            return;
        }
        let high = qc_view(self.high_qc.as_ref());
        let tc = self.last_tc.as_ref().filter(|tc| tc.view + 1 == v).cloned();
        if high + 1 != v && tc.is_none() {
            // Neither a QC nor a timeout certificate of the view before: not this view yet.
            return;
        }
        let parent_digest = self
            .high_qc
            .as_ref()
            .map_or_else(|| Block::genesis().digest(), |qc| qc.statement().value);
        let Some(parent) = self.tree.get(&parent_digest).map(|e| e.block.clone()) else {
            return;
        };
        let in_chain = self.ids_on_unfinalized_chain(&parent_digest);
        let txs = ctx.mempool().select(&self.config.batch, &|id| in_chain.contains(id));
        let due = self.entered_ns.saturating_add(self.config.empty_block_after_ns);
        if txs.is_empty() && !empty && ctx.now_ns() < due {
            ctx.set_timer(HotStuffTimer::ProposeEmpty(v), due - ctx.now_ns());
            return;
        }
        let batch = Batch::new(txs).expect("batch limits are within the type's limits");
        let height = Height(parent.height().0 + 1);
        let block = Block::new(parent_digest, Round(v), height, self.me, ctx.now_ns(), batch);
        let signature = self.key.sign(&agora_crypto::domain::PROPOSAL, block.digest().as_bytes());
        let proposal = Proposal { block, signature, justify: self.high_qc.clone(), tc };
        self.stats.proposals += 1;
        self.last_proposed = v;
        self.persist(ctx, &Record::Proposed(proposal.clone()));
        ctx.broadcast(HotStuffMessage::Propose(proposal.clone()));
        self.on_proposal(ctx, self.me, proposal);
    }

    /// The view's timer fired. The first time, the node gives up on the view: it signs a
    /// timeout carrying its `qc_high` and sends it to everyone. Every time, it sends again
    /// its timeout, its vote of the view and the certificate that brought it here (any may
    /// have been lost before GST), asks a peer for what it misses, and runs the timer again.
    pub(crate) fn on_view_timer(&mut self, ctx: &mut Ctx<'_, Self>) {
        let v = self.view;
        self.stats.timer_firings += 1;
        match self.own_timeout_here() {
            None => self.time_out(ctx),
            Some(t) => ctx.broadcast(HotStuffMessage::Timeout(t)),
        }
        if let Some(vote) = self.own_vote.filter(|vote| vote.statement.round.0 == v) {
            let next = self.leader_of(v + 1);
            if next != self.me {
                ctx.send(next, HotStuffMessage::Vote(vote));
            }
        }
        match self.entered.clone() {
            Some(Entered::Qc(qc)) => ctx.broadcast(HotStuffMessage::Certificate(qc)),
            Some(Entered::Tc(tc)) => ctx.broadcast(HotStuffMessage::TimeoutCertificate(tc)),
            None => {}
        }
        let high_missing =
            self.high_qc.as_ref().is_some_and(|qc| !self.tree.contains(&qc.statement().value));
        if high_missing || !self.orphans.is_empty() || self.pending_commit.is_some() {
            let peer = self.peer_for(v);
            self.ask_for_sync(ctx, peer);
        }
        if self.view == v {
            ctx.set_timer(HotStuffTimer::View(v), self.current_timeout_ns());
        }
    }

    /// This node's timeout of the view it is in, if it gave up on it (a restored node may
    /// hold one of an earlier view, which is no longer its business).
    fn own_timeout_here(&self) -> Option<Timeout> {
        self.own_timeout.clone().filter(|t| t.vote.statement.round.0 == self.view)
    }

    /// Gives up on the current view: never votes in it again (a timeout is durable before it
    /// leaves, like a vote), and tells everyone, with the highest QC it holds.
    fn time_out(&mut self, ctx: &mut Ctx<'_, Self>) {
        let v = self.view;
        if self.own_timeout_here().is_some() {
            return;
        }
        self.last_voted = self.last_voted.max(v);
        let vote = Vote::sign(timeout_statement(v, self.high_qc_view()), self.me, &self.key);
        let timeout = Timeout { vote, high_qc: self.high_qc.clone() };
        self.own_timeout = Some(timeout.clone());
        self.stats.timeouts_cast += 1;
        self.persist(ctx, &Record::TimedOut(timeout.clone()));
        ctx.broadcast(HotStuffMessage::Timeout(timeout.clone()));
        self.add_timeout(ctx, timeout);
    }

    /// A timeout from another node: its QC is learned (it may be news), then it is counted.
    pub(crate) fn on_timeout_message(&mut self, ctx: &mut Ctx<'_, Self>, t: Timeout) {
        let s = t.vote.statement;
        if s.phase != agora_types::Phase::Timeout
            || s.round.0 == 0
            || s.value != agora_crypto::Digest::ZERO
            || s.height.0 != qc_view(t.high_qc.as_ref())
            || s.height.0 >= s.round.0
        {
            return self.drop_message(HotStuffDrop::BadTimeout);
        }
        let w = s.round.0;
        if w < self.view {
            self.stats.late += 1;
            return;
        }
        if w > self.view.saturating_add(self.config.future_views_max) {
            return self.drop_message(HotStuffDrop::FarFutureView);
        }
        if self.timeouts.get(&w).is_some_and(|ts| ts.contains_key(&t.vote.voter)) {
            return;
        }
        if t.vote.verify_with(&self.committee, ctx.checker()).is_err() {
            return self.drop_message(HotStuffDrop::BadTimeout);
        }
        if !self.learn_qc(ctx, t.high_qc.as_ref()) {
            return self.drop_message(HotStuffDrop::BadTimeout);
        }
        if w >= self.view {
            self.add_timeout(ctx, t);
        }
    }

    /// Counts a verified timeout. f + 1 of the current view (so at least one honest node gave
    /// up) make this node give up too, so that views stay in step; a quorum makes a timeout
    /// certificate.
    fn add_timeout(&mut self, ctx: &mut Ctx<'_, Self>, t: Timeout) {
        let w = t.vote.statement.round.0;
        let of_view = self.timeouts.entry(w).or_default();
        of_view.insert(t.vote.voter, t);
        let count = of_view.len();
        let f_plus_one = self.committee.n() - self.quorum + 1;
        if w == self.view && count >= f_plus_one && self.own_timeout_here().is_none() {
            self.time_out(ctx);
        }
        if self.tc_high.contains_key(&w) {
            return;
        }
        let Some(of_view) = self.timeouts.get(&w).filter(|ts| ts.len() >= self.quorum) else {
            return;
        };
        let high_qc = of_view
            .values()
            .max_by_key(|t| t.vote.statement.height)
            .and_then(|t| t.high_qc.clone());
        let timeouts = of_view
            .values()
            .map(|t| (t.vote.voter, t.vote.statement.height.0, t.vote.signature))
            .collect();
        self.stats.tcs_formed += 1;
        self.accept_tc(ctx, TimeoutCertificate { view: w, timeouts, high_qc });
    }

    /// A timeout certificate from another node (forwarded, or in a proposal): verified whole,
    /// however far ahead it is (it proves its view), then acted on.
    pub(crate) fn on_tc(&mut self, ctx: &mut Ctx<'_, Self>, tc: TimeoutCertificate) {
        if self.tc_high.contains_key(&tc.view) {
            return;
        }
        // Older than the view just before this node's: nothing a vote here needs.
        if tc.view + 1 < self.view {
            self.stats.late += 1;
            return;
        }
        if !self.verify_tc(ctx, &tc) {
            return self.drop_message(HotStuffDrop::BadTimeoutCertificate);
        }
        self.accept_tc(ctx, tc);
    }

    fn verify_tc(&mut self, ctx: &mut Ctx<'_, Self>, tc: &TimeoutCertificate) -> bool {
        let count = tc.timeouts.len();
        if tc.view == 0 || count < self.quorum || count > usize::from(self.n) {
            return false;
        }
        let ordered = tc.timeouts.windows(2).all(|w| w[0].0 < w[1].0);
        let high = tc.high_qc_view();
        if !ordered || high >= tc.view || qc_view(tc.high_qc.as_ref()) != high {
            return false;
        }
        for entry in &tc.timeouts {
            if tc.vote_of(entry).verify_with(&self.committee, ctx.checker()).is_err() {
                return false;
            }
        }
        self.learn_qc(ctx, tc.high_qc.as_ref())
    }

    /// A timeout certificate of view w (verified, or formed here): what the next view's votes
    /// must reach, and the move to w + 1.
    fn accept_tc(&mut self, ctx: &mut Ctx<'_, Self>, tc: TimeoutCertificate) {
        self.tc_high.insert(tc.view, tc.high_qc_view());
        if self.last_tc.as_ref().is_none_or(|last| last.view < tc.view) {
            self.last_tc = Some(tc.clone());
        }
        let next = tc.view + 1;
        self.enter_view(ctx, next, Some(Entered::Tc(tc)));
    }

    /// The peer asked at the timer of `view`: each other member in turn.
    pub(crate) fn peer_for(&self, view: u64) -> NodeId {
        let others = u64::from(self.n.saturating_sub(1)).max(1);
        let offset = 1 + view % others;
        NodeId(((u64::from(self.me.0) + offset) % u64::from(self.n.max(1))) as u16)
    }
}
