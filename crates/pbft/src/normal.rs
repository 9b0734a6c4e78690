//! The normal case (§4.2): the primary's PRE-PREPARE, the PREPARE and COMMIT phases, and
//! execution in sequence order.

use agora_consensus::{Ctx, VoteOutcome};
use agora_crypto::Digest;
use agora_types::{
    Batch, Block, Certificate, Height, Phase, SeqNo, Statement, Transaction, View, Vote,
};
use rustc_hash::FxHashSet;

use crate::persist::PbftRecord;
use crate::{
    CatchUp, Executed, Pbft, PbftDrop, PbftMessage, PbftTimer, PbftWeakening, PrePrepare,
    PreparedProof, Reply, Slot, Status, chain, checkpoint_statement, statement,
};

impl Pbft {
    /// §4.2: The primary assigns the next sequence numbers to batches of pending requests, as long
    /// as the window and the in-flight bound allow.
    pub(crate) fn propose(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.is_primary() || self.status != Status::Normal {
            return;
        }
        self.next_seq = self.next_seq.max(self.last_executed + 1);
        // Called on every arriving request: while the pipeline is full (the common case under
        // load) return before collecting the in-flight ids, which costs a hash insert for every
        // transaction in flight.
        let room = |me: &Self| {
            me.next_seq <= me.high_watermark()
                && me.next_seq - me.last_executed <= me.config.max_inflight
        };
        // With `close_batches`, a non-empty last block is owed an empty successor.
        let owes_successor = |me: &Self| {
            me.config.close_batches
                && me.block_at(me.next_seq - 1).is_some_and(|b| !b.batch().is_empty())
        };
        if !room(self) || (ctx.mempool().is_empty() && !owes_successor(self)) {
            return;
        }
        let mut in_flight: FxHashSet<Digest> = self
            .slots
            .range(self.last_executed + 1..)
            .flat_map(|(_, s)| {
                s.pre_prepare.block.batch().transactions().iter().map(Transaction::id)
            })
            .collect();
        while room(self) {
            let txs = ctx.mempool().select(&self.config.batch, &|id| in_flight.contains(id));
            if txs.is_empty() && !owes_successor(self) {
                return;
            }
            in_flight.extend(txs.iter().map(Transaction::id));
            let seq = self.next_seq;
            let parent = self.block_at(seq - 1).map_or(Digest::ZERO, Block::digest);
            let batch = Batch::new(txs).expect("batch limits are within the type's limits");
            let block = Block::new(
                parent,
                agora_types::Round(self.view.0),
                Height(seq.0),
                self.me,
                ctx.now_ns(),
                batch,
            );
            let vote = Vote::sign(
                statement(Phase::PrePrepare, self.view, seq, block.digest()),
                self.me,
                &self.key,
            );
            let pre_prepare = PrePrepare { vote, block };
            self.stats.pre_prepares += 1;
            let record = self.persist(ctx, &PbftRecord::Accepted(pre_prepare.clone()));
            ctx.broadcast(PbftMessage::PrePrepare(pre_prepare.clone()));
            self.slots.insert(seq, Slot::accepted(pre_prepare, record));
            self.next_seq += 1;
            self.advance(ctx, seq);
        }
    }

    /// §4.2: The block this replica has at `seq`: pre-prepared, or executed and retained.
    pub(crate) fn block_at(&self, seq: SeqNo) -> Option<&Block> {
        self.slots
            .get(&seq)
            .map(|s| &s.pre_prepare.block)
            .or_else(|| self.executed.get(&seq).map(|e| &e.block))
    }

    /// §4.2: A PRE-PREPARE arrives: accepted if valid and of the current view, held if it overtook
    /// its view's NEW-VIEW.
    pub(crate) fn on_pre_prepare(&mut self, ctx: &mut Ctx<'_, Self>, pp: PrePrepare) {
        let entered = self.status == Status::Normal && pp.view() == self.view;
        if !entered && pp.view() >= self.view {
            return self.hold_early_pre_prepare(pp);
        }
        if !entered {
            return self.drop_message(PbftDrop::PrePrepareOtherView);
        }
        let seq = pp.seq();
        if !self.in_window(seq) {
            return self.drop_message(PbftDrop::PrePrepareOutsideWatermarks);
        }
        if self.is_primary() {
            return self.drop_message(PbftDrop::PrePrepareToPrimary);
        }
        if let Some(slot) = self.slots.get(&seq)
            && slot.pre_prepare.view() == self.view
        {
            if slot.pre_prepare.digest() != pp.digest() {
                self.drop_message(PbftDrop::ConflictingPrePrepare);
            }
            return;
        }
        // Executed without its slot (fetched on a commit certificate, or by state transfer): what
        // is final at seq is known, and preparing anything there could only be preparing twice.
        if seq <= self.last_executed {
            return self.drop_message(PbftDrop::PrePrepareExecuted);
        }
        if let Err(reason) = pp.check(&self.committee, ctx.checker()) {
            return self.drop_message(reason);
        }
        if let Err(reason) = self.check_block(&pp.block, seq) {
            return self.drop_message(reason);
        }
        self.accept_pre_prepare(ctx, pp);
        self.ensure_request_timer(ctx);
    }

    /// §4.4: A pre-prepare for a view this replica has not entered (its NEW-VIEW is still on the
    /// way, or this replica is behind) is held, not dropped: with exactly a quorum of replicas up,
    /// one backup that dropped it would stall the view, since no primary sends a pre-prepare twice.
    /// Only the structure is checked here; the signature and the batch are checked when the view is
    /// installed. When full, the pre-prepares of the farthest views give way.
    pub(crate) fn hold_early_pre_prepare(&mut self, pp: PrePrepare) {
        if pp.view() > self.view + self.config.future_views_max
            || pp.vote.voter != self.primary_of(pp.view())
        {
            return self.drop_message(PbftDrop::PrePrepareFarOrForeign);
        }
        let key = (pp.view(), pp.seq());
        if self.early_pre_prepares.contains_key(&key) {
            return;
        }
        if self.early_pre_prepares.len() >= self.config.early_pre_prepares_max {
            match self.early_pre_prepares.last_key_value() {
                Some((last, _)) if *last > key => {
                    self.early_pre_prepares.pop_last();
                    self.drop_message(PbftDrop::EarlyPrePrepareEvicted);
                }
                _ => return self.drop_message(PbftDrop::TooManyEarlyPrePrepares),
            }
        }
        self.early_pre_prepares.insert(key, pp);
    }

    /// §4.4: The view is installed: check the pre-prepares held for it, forget older ones.
    pub(crate) fn replay_early_pre_prepares(&mut self, ctx: &mut Ctx<'_, Self>) {
        let later = self.early_pre_prepares.split_off(&(self.view + 1, SeqNo(0)));
        let held = std::mem::replace(&mut self.early_pre_prepares, later);
        for ((view, _), pp) in held {
            if view == self.view {
                self.on_pre_prepare(ctx, pp);
            }
        }
    }

    /// §4.2: A backup accepts a pre-prepare: it enters the log and the backup prepares it.
    pub(crate) fn accept_pre_prepare(&mut self, ctx: &mut Ctx<'_, Self>, pp: PrePrepare) {
        let seq = pp.seq();
        let record = if self.config.weakened(PbftWeakening::VoteBeforeDurable) {
            self.send_vote(ctx, Phase::Prepare, &pp);
            self.persist(ctx, &PbftRecord::Accepted(pp.clone()))
        } else {
            let record = self.persist(ctx, &PbftRecord::Accepted(pp.clone()));
            self.send_vote(ctx, Phase::Prepare, &pp);
            record
        };
        self.slots.insert(seq, Slot::accepted(pp, record));
        self.advance(ctx, seq);
    }

    /// §4.2: Signs this replica's `phase` vote for `pp`'s (v, n, d), sends it to all, and counts
    /// it.
    pub(crate) fn send_vote(&mut self, ctx: &mut Ctx<'_, Self>, phase: Phase, pp: &PrePrepare) {
        let s = statement(phase, pp.view(), pp.seq(), pp.digest());
        let vote = Vote::sign(s, self.me, &self.key);
        let message = match phase {
            Phase::Commit => PbftMessage::Commit(vote),
            _ => PbftMessage::Prepare(vote),
        };
        ctx.broadcast(message);
        self.votes.add_verified(&vote);
    }

    /// §4.2: Validity of a batch, whoever proposed it: within bounds, no transaction twice, none
    /// already executed, none in another sequence number of this view.
    pub(crate) fn check_block(&self, block: &Block, seq: SeqNo) -> Result<(), PbftDrop> {
        let batch = block.batch();
        if !self.config.batch.admits(batch) {
            return Err(PbftDrop::BatchOverTheLimits);
        }
        let others: FxHashSet<Digest> = self
            .slots
            .iter()
            .filter(|(s, slot)| {
                **s != seq && slot.pre_prepare.view() == self.view && **s > self.last_executed
            })
            .flat_map(|(_, slot)| {
                slot.pre_prepare.block.batch().transactions().iter().map(Transaction::id)
            })
            .collect();
        let mut seen = FxHashSet::default();
        for tx in batch.transactions() {
            let id = tx.id();
            if !seen.insert(id) || self.executed_ids.contains(&id) || others.contains(&id) {
                return Err(PbftDrop::BatchRepeatsTransaction);
            }
        }
        Ok(())
    }

    /// §4.2: A PREPARE or COMMIT arrives: verified, counted, and its sequence number advanced.
    pub(crate) fn on_vote(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote, phase: Phase) {
        let s = vote.statement;
        if s.phase != phase {
            return self.drop_message(PbftDrop::VoteWrongPhase);
        }
        let view = View(s.round.0);
        if view < self.view || view > self.view + self.config.future_views_max {
            return self.drop_message(PbftDrop::VoteOtherView);
        }
        if !self.in_window(SeqNo(s.height.0)) {
            return self.drop_message(PbftDrop::VoteOutsideWatermarks);
        }
        match self.votes.add(&vote, &self.committee, ctx.checker()) {
            Err(_) => return self.drop_message(PbftDrop::BadVote),
            Ok(VoteOutcome::Full) => return self.drop_message(PbftDrop::VoteLimit),
            Ok(_) => {}
        }
        if view == self.view && self.status == Status::Normal {
            self.advance(ctx, SeqNo(s.height.0));
        }
        if phase == Phase::Commit {
            self.note_committed(ctx, &s);
        }
    }

    /// §4.2: Moves one sequence number as far as its votes go: prepared, commit sent, committed,
    /// then executes what can be executed in order.
    pub(crate) fn advance(&mut self, ctx: &mut Ctx<'_, Self>, seq: SeqNo) {
        let Some(slot) = self.slots.get(&seq) else { return };
        let (view, digest) = (slot.pre_prepare.view(), slot.pre_prepare.digest());
        if view != self.view || self.status != Status::Normal {
            return;
        }
        let primary = self.primary_of(view);
        let prepare = statement(Phase::Prepare, view, seq, digest);
        let commit = statement(Phase::Commit, view, seq, digest);
        if slot.prepared_at.is_none() {
            // The pre-prepare is not a prepare, and neither is a prepare signed by the primary.
            let mut backups = self.votes.signers(&prepare)
                - usize::from(self.votes.has_signed(&prepare, primary));
            if self.config.weakened(PbftWeakening::PrePrepareCountsAsPrepare) {
                backups += 1;
            }
            if backups + 1 < self.quorum {
                return;
            }
            let proof = PreparedProof {
                pre_prepare: slot.pre_prepare.vote,
                block: Some(slot.pre_prepare.block.clone()),
                prepares: self.votes.certificate_of(&prepare, Some(primary)),
            };
            // §4.2: prepared means 2f prepares from distinct backups (a certificate holds one
            // signature per member, and the primary's is left out).
            assert!(
                proof.prepares.signers().all(|s| s != primary)
                    && (proof.prepares.signers().len() + 1 >= self.quorum
                        || self.config.is_weakened()),
                "a prepared certificate holds 2f backup prepares"
            );
            // §4.4: the proof goes into every later VIEW-CHANGE, so it is kept before the
            // COMMIT that depends on it leaves.
            self.persist(ctx, &PbftRecord::Prepared(proof.stripped()));
            self.prepared.insert(seq, proof);
            let slot = self.slots.get_mut(&seq).expect("present");
            slot.prepared_at = Some(ctx.now_ns());
            let record = slot.record;
            self.prepared_records.insert(seq, record);
        }
        let slot = self.slots.get_mut(&seq).expect("present");
        if !slot.commit_sent {
            slot.commit_sent = true;
            let pp = slot.pre_prepare.clone();
            self.send_vote(ctx, Phase::Commit, &pp);
        }
        let slot = self.slots.get_mut(&seq).expect("present");
        if !slot.committed && self.votes.signers(&commit) >= self.quorum {
            slot.committed = true;
            let certificate = self.votes.certificate_of(&commit, None);
            self.persist(ctx, &PbftRecord::Committed(seq, digest, Some(certificate)));
        }
        self.execute_ready(ctx);
    }

    /// Beyond the paper: a quorum of COMMITs for `(view, seq)` above the executed log shows the
    /// view's primary at work and this replica behind (it missed a pre-prepare or its votes, say
    /// while it was down). If executing does not close the gap by itself, it will ask the signers.
    pub(crate) fn note_committed(&mut self, ctx: &mut Ctx<'_, Self>, commit: &Statement) {
        let seq = SeqNo(commit.height.0);
        if seq <= self.last_executed + 1 || self.votes.signers(commit) < self.quorum {
            return;
        }
        if self.catch_up.as_ref().is_some_and(|c| c.to >= seq) {
            return;
        }
        let from = self.votes.certificate_of(commit, None).signers().collect();
        let first = self.catch_up.is_none();
        self.catch_up = Some(CatchUp { to: seq, from, round: 0 });
        if first {
            // Commits of a pipeline arrive out of order: give the gap below a moment to close.
            ctx.set_timer(PbftTimer::CatchUp, self.config.view_timeout_ns / 4 + 1);
        }
    }

    /// §4.2: Executes committed blocks in sequence order, with no gaps.
    pub(crate) fn execute_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        loop {
            let next = self.last_executed + 1;
            let Some(slot) = self.slots.get(&next) else { break };
            if !slot.committed || slot.pre_prepare.view() != self.view {
                break;
            }
            let (block, prepared_at, record) =
                (slot.pre_prepare.block.clone(), slot.prepared_at, slot.record);
            self.execute(ctx, block, prepared_at, record, None);
        }
    }

    /// The commit certificate of `seq` for `block` as it was pre-prepared, when its 2f + 1
    /// COMMIT votes are at hand; none for a block executed again after a restart (its votes
    /// were not journalled) or fetched by state transfer (a stable checkpoint vouches for it).
    fn commit_proof(&self, seq: SeqNo, block: &Block) -> Vec<Certificate> {
        let Some(slot) = self.slots.get(&seq) else { return Vec::new() };
        let commit = statement(Phase::Commit, slot.pre_prepare.view(), seq, block.digest());
        if self.votes.signers(&commit) < self.quorum {
            return slot.commit_certificate.iter().cloned().collect();
        }
        vec![self.votes.certificate_of(&commit, None)]
    }

    /// §4.2: Executes the next block: commit it, chain it into the log digest, reply, checkpoint.
    /// `record` is the journal record that carries the block.
    pub(crate) fn execute(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        block: Block,
        prepared_at: Option<u64>,
        record: u64,
        vouched: Option<&Certificate>,
    ) {
        let seq = self.last_executed + 1;
        // §4.2: execution is in sequence order, so the last executed number only grows, by one.
        assert_eq!(block.height().0, seq.0, "executed out of sequence order");
        self.last_executed = seq;
        self.log_digest = chain(&self.log_digest, &block.digest());
        // PBFT orders requests, not unique ones: two views can each prepare the same request at
        // different sequence numbers, and a view change then keeps both (a request committed
        // anywhere must survive). Like the paper's client timestamps, execution keeps the first:
        // the block committed to the application leaves out what was executed before. Every
        // replica executes the same log from the same start, so they all leave out the same.
        let mut repeated = Vec::new();
        for (i, tx) in block.batch().transactions().iter().enumerate() {
            let id = tx.id();
            if !self.executed_ids.insert(id) {
                repeated.push(i);
            }
        }
        // §4.2: the commit certificate is what shows the block final to anyone else; a block
        // fetched by state transfer is vouched for by the stable checkpoint it chains into.
        let mut proof = self.commit_proof(seq, &block);
        if proof.is_empty() {
            proof.extend(vouched.cloned());
        }
        let commit = proof.first().filter(|c| c.statement().phase == Phase::Commit).cloned();
        if repeated.is_empty() {
            ctx.commit_proven(block.clone(), proof);
        } else {
            self.stats.duplicates_skipped += repeated.len() as u64;
            let fresh = block.batch().transactions().iter().enumerate();
            let fresh = fresh.filter(|(i, _)| repeated.binary_search(i).is_err());
            let batch = Batch::new(fresh.map(|(_, tx)| tx.clone()).collect())
                .expect("a subset of a valid batch is valid");
            let h = block.header();
            let executed =
                Block::new(h.parent, h.round, h.height, h.proposer, h.created_at_ns, batch);
            ctx.commit_proven(executed, proof);
        }
        let digest = block.digest();
        let executed_at = ctx.now_ns();
        self.executed.insert(seq, Executed { block, prepared_at, executed_at, record, commit });
        while self.executed.len() > self.config.retained_blocks {
            self.executed.pop_first();
        }
        let reply = Reply { seq, digest };
        ctx.broadcast(PbftMessage::Reply(reply));
        self.on_reply(ctx, self.me, reply);
        if seq.0.is_multiple_of(self.config.checkpoint_interval) {
            self.own_checkpoints.insert(seq, self.log_digest);
            let vote = Vote::sign(checkpoint_statement(seq, self.log_digest), self.me, &self.key);
            ctx.broadcast(PbftMessage::Checkpoint(vote));
            self.checkpoints.add_verified(&vote);
            self.check_stable(ctx, seq, self.log_digest);
        }
        // Progress in this view: the backoff starts over, and the timer restarts for what is left.
        self.attempts = 0;
        self.restart_request_timer(ctx);
        self.propose(ctx);
    }
}
