//! View changes (§4.4): VIEW-CHANGE, NEW-VIEW with the re-issued pre-prepares O, and the help a
//! replica gives to one that is behind or stuck in a view change.

use std::collections::{BTreeMap, BTreeSet};

use agora_consensus::Ctx;
use agora_crypto::Digest;
use agora_types::{NodeId, Phase, SeqNo, Transaction, View, Vote};
use rustc_hash::FxHashSet;

use crate::persist::PbftRecord;
use crate::{
    NewView, Pbft, PbftDrop, PbftMessage, PbftTimer, PrePrepare, PreparedProof, Slot, Status,
    ViewChange, compute_o, genesis_log_digest, statement,
};

impl Pbft {
    /// §4.4: Starts a view change to `target`: normal work stops and VIEW-CHANGE is broadcast.
    pub(crate) fn start_view_change(&mut self, ctx: &mut Ctx<'_, Self>, target: View) {
        if target <= self.view && self.status == Status::ViewChanging {
            return;
        }
        if self.request_timer {
            ctx.cancel_timer(PbftTimer::Request(self.view));
            self.request_timer = false;
        }
        ctx.cancel_timer(PbftTimer::NewView(self.view));
        self.view = target;
        self.status = Status::ViewChanging;
        self.attempts = self.attempts.saturating_add(1);
        self.stats.view_changes += 1;
        let prepared: Vec<PreparedProof> =
            self.prepared.range(self.stable.seq + 1..).map(|(_, p)| p.clone()).collect();
        let vc = ViewChange::new(target, self.stable.clone(), prepared, self.me, &self.key);
        // §4.4: once it asked for the view it must never work in the old one again.
        self.persist(ctx, &PbftRecord::ViewChange(vc.stripped()));
        self.checkpoint_if_long();
        ctx.broadcast(PbftMessage::ViewChange(Box::new(vc.clone())));
        self.my_view_change = Some(vc.clone());
        ctx.set_timer(PbftTimer::ResendViewChange(target), self.config.view_timeout_ns);
        self.record_view_change(ctx, vc);
    }

    /// §4.4: A replica that restarts in the middle of a view change has lost the timers that drive
    /// it: without them it would wait for good for a NEW-VIEW it may have missed while it was
    /// down, holding requests no one else has. It sends its VIEW-CHANGE again (a replica already
    /// in that view answers with the NEW-VIEW), and re-arms the resend and, with a quorum of view
    /// changes, the NEW-VIEW timeout.
    pub(crate) fn resume_view_change(&mut self, ctx: &mut Ctx<'_, Self>) {
        let view = self.view;
        if let Some(vc) = self.my_view_change.as_ref().filter(|vc| vc.new_view == view) {
            ctx.broadcast(PbftMessage::ViewChange(Box::new(vc.clone())));
        }
        ctx.set_timer(PbftTimer::ResendViewChange(view), self.config.view_timeout_ns);
        if self.view_changes.get(&view).map_or(0, BTreeMap::len) >= self.quorum {
            if self.primary_of(view) == self.me && self.new_view_sent != Some(view) {
                return self.send_new_view(ctx, view);
            }
            ctx.set_timer(PbftTimer::NewView(view), self.new_view_wait());
        }
    }

    /// §4.5.2: How long to wait for a NEW-VIEW: T, doubled for each view change since the last
    /// execution, at most [`PbftConfig::new_view_doublings_max`] times.
    pub(crate) fn new_view_wait(&self) -> u64 {
        let doublings =
            u64::from(self.attempts).min(u64::from(self.config.new_view_doublings_max.min(20)));
        self.config.view_timeout_ns.saturating_mul(1u64 << doublings)
    }

    /// §4.4: A VIEW-CHANGE arrives: checked, then recorded.
    pub(crate) fn on_view_change(&mut self, ctx: &mut Ctx<'_, Self>, vc: ViewChange) {
        if vc.new_view <= self.last_normal_view
            || vc.new_view > self.view + self.config.future_views_max
        {
            return self.drop_message(PbftDrop::ViewChangeOldOrFar);
        }
        if self.view_changes.get(&vc.new_view).is_some_and(|m| m.contains_key(&vc.replica)) {
            return;
        }
        if let Err(reason) = vc.check(
            &self.committee,
            genesis_log_digest(),
            self.config.log_window,
            true,
            ctx.checker(),
        ) {
            return self.drop_message(reason);
        }
        self.record_view_change(ctx, vc);
    }

    /// §4.4: Records a view change; f+1 for higher views make this replica join the smallest
    /// (§4.5.2), and 2f+1 for its target make the new primary send NEW-VIEW or the others wait
    /// for it.
    pub(crate) fn record_view_change(&mut self, ctx: &mut Ctx<'_, Self>, vc: ViewChange) {
        let view = vc.new_view;
        self.view_changes.entry(view).or_default().insert(vc.replica, vc);
        // f+1 replicas want views above ours: join the smallest of them.
        let ours = self.view;
        let mut wanting: BTreeMap<NodeId, View> = BTreeMap::new();
        for (v, by) in self.view_changes.range(ours + 1..) {
            for replica in by.keys() {
                wanting.entry(*replica).or_insert(*v);
            }
        }
        if wanting.len() >= self.committee.one_honest() {
            let smallest = *wanting.values().min().expect("non-empty");
            self.start_view_change(ctx, smallest);
            return;
        }
        if self.status != Status::ViewChanging || view != self.view {
            return;
        }
        let count = self.view_changes.get(&view).map_or(0, BTreeMap::len);
        if count < self.quorum {
            return;
        }
        let first_quorum = count == self.quorum;
        if self.primary_of(view) == self.me && self.new_view_sent != Some(view) {
            self.send_new_view(ctx, view);
            return;
        }
        // 2f+1 view changes: wait for NEW-VIEW, with a timeout that doubles each attempt.
        if first_quorum {
            ctx.set_timer(PbftTimer::NewView(view), self.new_view_wait());
        }
    }

    /// §4.4: The new primary, with 2f+1 view changes, sends NEW-VIEW(v+1, V, O) and enters the
    /// view.
    pub(crate) fn send_new_view(&mut self, ctx: &mut Ctx<'_, Self>, view: View) {
        let view_changes: Vec<ViewChange> =
            self.view_changes[&view].values().take(self.quorum).cloned().collect();
        let (_, entries) = compute_o(view, &view_changes, self.n);
        let mut pre_prepares = Vec::with_capacity(entries.len());
        for (seq, digest, block) in entries {
            // Every view change this primary accepted carried its proofs' blocks, so each chosen
            // digest has its block; should one be missing, sending O without it is impossible.
            let Some(block) = block else {
                return self.drop_message(PbftDrop::NewViewMissingBlock);
            };
            let vote =
                Vote::sign(statement(Phase::PrePrepare, view, seq, digest), self.me, &self.key);
            pre_prepares.push(PrePrepare { vote, block });
        }
        // V travels without the proofs' blocks: O carries each needed block once.
        let view_changes = view_changes.iter().map(ViewChange::stripped).collect();
        let nv = NewView { view, view_changes, pre_prepares };
        self.new_view_sent = Some(view);
        // §4.4: one NEW-VIEW per view: what it re-issues is kept before it leaves.
        let records = self.persist_new_view(ctx, &nv);
        ctx.broadcast(PbftMessage::NewView(Box::new(nv.clone())));
        self.enter_new_view(ctx, nv, Some(records));
    }

    /// Journals the installation of `nv`'s view and O's pre-prepares; returns the records that
    /// carry them, by sequence number.
    fn persist_new_view(&mut self, ctx: &mut Ctx<'_, Self>, nv: &NewView) -> Vec<u64> {
        self.persist(ctx, &PbftRecord::NewView(nv.view));
        let records =
            nv.pre_prepares.iter().map(|pp| self.persist(ctx, &PbftRecord::Accepted(pp.clone())));
        records.collect()
    }

    /// §4.4: A NEW-VIEW arrives from whoever relays it: checked against V and O, then installed.
    pub(crate) fn on_new_view(&mut self, ctx: &mut Ctx<'_, Self>, nv: NewView) {
        if nv.view < self.view || (nv.view == self.view && self.status == Status::Normal) {
            return self.drop_message(PbftDrop::NewViewOld);
        }
        // A NEW-VIEW proves itself (2f+1 signed view changes, O signed by the view's primary and
        // recomputed here), so it is accepted from whoever relays it: replicas pass it on to
        // one that missed it.
        if nv.view > self.view + self.config.future_views_max {
            return self.drop_message(PbftDrop::NewViewTooFar);
        }
        if let Err(reason) = self.check_new_view(ctx, &nv) {
            return self.drop_message(reason);
        }
        self.enter_new_view(ctx, nv, None);
    }

    /// §4.4: V holds 2f+1 valid view changes for the view from distinct replicas, and O is what V
    /// says.
    pub(crate) fn check_new_view(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        nv: &NewView,
    ) -> Result<(), PbftDrop> {
        let mut replicas = BTreeSet::new();
        for vc in &nv.view_changes {
            if vc.new_view != nv.view || !replicas.insert(vc.replica) {
                return Err(PbftDrop::NewViewBadViewChanges);
            }
            vc.check(
                &self.committee,
                genesis_log_digest(),
                self.config.log_window,
                false,
                ctx.checker(),
            )?;
        }
        if replicas.len() < self.quorum {
            return Err(PbftDrop::NewViewTooFewViewChanges);
        }
        let (_, entries) = compute_o(nv.view, &nv.view_changes, self.n);
        if entries.len() != nv.pre_prepares.len() {
            return Err(PbftDrop::NewViewOMismatch);
        }
        for ((seq, digest, null), pp) in entries.iter().zip(&nv.pre_prepares) {
            // A null request is recomputed whole; a prepared one is bound by its digest, and
            // the pre-prepare check below ties the carried block to that digest.
            let same_null = null.as_ref().is_none_or(|block| pp.block == *block);
            if pp.view() != nv.view || pp.seq() != *seq || pp.digest() != *digest || !same_null {
                return Err(PbftDrop::NewViewOMismatch);
            }
            pp.check(&self.committee, ctx.checker())?;
        }
        Ok(())
    }

    /// §4.4: `from` sent a message of `their_view`, older than the last view we installed: it
    /// missed the NEW-VIEW that started it (lost before GST, say). Send it, at most once per view
    /// timeout per replica, also while we are changing view again. Without this a replica that
    /// missed it stays behind for good, and when it is needed for a quorum, so does everyone (swarm
    /// seed 750008750: the primary of view 2 installed it and moved on to view 3 alone, while the
    /// three others, short of a quorum, waited for NEW-VIEW(2)).
    pub(crate) fn help_lagging(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, their_view: View) {
        if from == self.me {
            return;
        }
        let Some(nv) = &self.current_new_view else { return };
        if nv.view <= their_view {
            return;
        }
        let now = ctx.now_ns();
        let due = self
            .new_view_relayed_at
            .get(&from)
            .is_none_or(|t| now.saturating_sub(*t) >= self.config.view_timeout_ns);
        if due && self.committee.contains(from) {
            self.new_view_relayed_at.insert(from, now);
            ctx.send(from, PbftMessage::NewView(Box::new(nv.clone())));
        }
    }

    /// §4.4: `from` asks for a view below the one this replica is changing to: it missed the view
    /// changes that moved us on (lost before GST), and the replicas that sent them may have
    /// crashed since, so no one will send them again. Relay the signed VIEW-CHANGEs we hold for
    /// its view and above, at most once per view timeout per replica. With them it either has a
    /// quorum for its own view (and its NEW-VIEW timer runs out) or f+1 for higher ones (and it
    /// joins). Without this, replicas split across two view changes, each too few for a
    /// quorum, wait for good (swarm seed 660004073: n = 7, two crashed, three replicas in view 1
    /// and two in view 2).
    pub(crate) fn help_view_change(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        their_view: View,
    ) {
        if their_view >= self.view || from == self.me || self.status != Status::ViewChanging {
            return;
        }
        let now = ctx.now_ns();
        let due = self
            .view_changes_relayed_at
            .get(&from)
            .is_none_or(|t| now.saturating_sub(*t) >= self.config.view_timeout_ns);
        if !due || !self.committee.contains(from) {
            return;
        }
        self.view_changes_relayed_at.insert(from, now);
        for by in self.view_changes.range(their_view..=self.view).map(|(_, by)| by) {
            for vc in by.values().filter(|vc| vc.replica != from) {
                ctx.send(from, PbftMessage::ViewChange(Box::new(vc.clone())));
            }
        }
    }

    /// §4.4: Installs the new view: O's pre-prepares enter the log and are prepared again.
    /// `journalled` holds the records of O's pre-prepares when the new primary wrote them
    /// before sending NEW-VIEW.
    pub(crate) fn enter_new_view(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        nv: NewView,
        journalled: Option<Vec<u64>>,
    ) {
        ctx.cancel_timer(PbftTimer::NewView(self.view));
        self.current_new_view = Some(nv.clone());
        self.new_view_relayed_at.clear();
        self.view_changes_relayed_at.clear();
        let (checkpoint, _) = compute_o(nv.view, &nv.view_changes, self.n);
        // Install O before anything else may propose: the status stays "view changing" until
        // the log of the new view is in place.
        self.view = nv.view;
        self.status = Status::ViewChanging;
        self.view_changes.retain(|v, _| *v > nv.view);
        // Votes of earlier views can never count again (a prepared request travels in
        // `prepared`, as a proof of its own): without this the keeper filled up over a run of
        // view changes with no stable checkpoint between them, refused every new vote, and
        // nothing prepared again (swarm seed 680013173).
        self.votes.retain(|st| st.round.0 >= nv.view.0);
        self.adopt_checkpoint(ctx, checkpoint);
        self.slots.clear();
        let is_primary = self.is_primary();
        let records = match journalled {
            Some(records) => records,
            None if is_primary => self.persist_new_view(ctx, &nv),
            None => {
                self.persist(ctx, &PbftRecord::NewView(nv.view));
                Vec::new()
            }
        };
        let mut last = self.stable.seq;
        for (index, pp) in nv.pre_prepares.into_iter().enumerate() {
            let seq = pp.seq();
            last = last.max(seq);
            if seq <= self.stable.seq {
                continue;
            }
            if is_primary {
                self.slots.insert(seq, Slot::accepted(pp, records[index]));
            } else {
                self.accept_pre_prepare(ctx, pp);
            }
        }
        self.checkpoint_if_long();
        self.next_seq = last.max(self.last_executed) + 1;
        self.status = Status::Normal;
        self.last_normal_view = nv.view;
        self.stats.new_views += 1;
        // Votes for this view that arrived early count now.
        let seqs: Vec<SeqNo> = self.slots.keys().copied().collect();
        for seq in seqs {
            self.advance(ctx, seq);
        }
        // So do pre-prepares that overtook the NEW-VIEW.
        self.replay_early_pre_prepares(ctx);
        // Requests this replica holds may have gone to the old primary only: send them on.
        if !is_primary {
            let in_o: FxHashSet<Digest> = self
                .slots
                .values()
                .flat_map(|s| {
                    s.pre_prepare.block.batch().transactions().iter().map(Transaction::id)
                })
                .collect();
            for forward in self.pending_forwards(ctx, &|id| in_o.contains(id)) {
                ctx.send(self.primary_of(nv.view), forward);
            }
        }
        self.request_timer = false;
        self.ensure_request_timer(ctx);
        self.propose(ctx);
    }
}
