//! Proposals, votes and QCs (the paper's Algorithm 3): a node votes for a proposal of its view
//! that passes the safe-node rule (or, with the two-chain rule, the timeout certificate's
//! check), the next leader gathers the votes into a QC, and every QC a node learns runs the
//! paper's `update`: raise `qc_high`, move the lock, commit on a chain of consecutive views.

use std::collections::VecDeque;

use agora_consensus::{Ctx, VoteOutcome};
use agora_crypto::{Digest, domain};
use agora_types::{Block, Certificate, NodeId, Phase, Round, Vote};
use rustc_hash::FxHashSet;

use crate::persist::Record;
use crate::tree::CommitError;
use crate::{
    ChainRule, HotStuff, HotStuffDrop, HotStuffMessage, HotStuffWeakening, Proposal,
    block_statement, qc_view,
};

impl HotStuff {
    /// A proposal: from the view's leader, validly signed, with the QC of its parent (and the
    /// timeout certificate that opened its view, if it carries one). Both certificates are
    /// learned first (they may move this node to the proposal's view), then the block joins
    /// the tree, at once if its parent is known and held (bounded) until it is otherwise.
    pub(crate) fn on_proposal(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, p: Proposal) {
        let block = &p.block;
        let v = block.round().0;
        let digest = block.digest();
        if v == 0 || block.proposer() != self.leader_of(v) {
            return self.drop_message(HotStuffDrop::ProposerNotLeader);
        }
        if v <= self.tree.finalized_view() {
            self.stats.late += 1;
            return;
        }
        let justify_ok = match &p.justify {
            None => block.parent() == Block::genesis().digest(),
            Some(qc) => {
                let s = qc.statement();
                s.value == block.parent() && s.round.0 < v && s.phase == Phase::Vote
            }
        };
        if !justify_ok {
            return self.drop_message(HotStuffDrop::JustifyNotParent);
        }
        if self.proposals.contains_key(&digest)
            || self
                .orphans
                .get(&block.parent())
                .is_some_and(|w| w.iter().any(|o| o.block.digest() == digest))
        {
            return;
        }
        // Before the signature: a view's quota is spent only by validly signed proposals, so
        // a flood of extra ones costs no verification. A block this node holds a QC for is
        // taken whatever the quota: a faulty leader must not keep it out.
        let certified = self.tree.qc_of(&digest).is_some();
        if self.proposals_taken.get(&v).copied().unwrap_or(0) >= self.config.proposals_per_view_max
            && !certified
        {
            return self.drop_message(HotStuffDrop::TooManyProposals);
        }
        let signed = self.committee.verify_with(
            ctx.checker(),
            block.proposer(),
            &domain::PROPOSAL,
            digest.as_bytes(),
            &p.signature,
        );
        if signed.is_err() {
            return self.drop_message(HotStuffDrop::BadProposalSignature);
        }
        if !self.config.batch.admits(block.batch()) {
            return self.drop_message(HotStuffDrop::BatchOverTheLimits);
        }
        if !self.learn_qc(ctx, p.justify.as_ref()) {
            return self.drop_message(HotStuffDrop::BadCertificate);
        }
        if let Some(tc) = &p.tc
            && tc.view + 1 == v
        {
            self.on_tc(ctx, tc.clone());
        }
        if v > self.view.saturating_add(self.config.future_views_max) && !certified {
            return self.drop_message(HotStuffDrop::FarFutureView);
        }
        *self.proposals_taken.entry(v).or_default() += 1;
        self.first_proposal.entry(v).or_insert(digest);
        if !self.tree.contains(&block.parent()) {
            let bytes = block.batch().encoded().len();
            if self.orphan_count >= self.config.orphans_max
                || self.orphan_bytes + bytes > self.config.orphan_bytes_max
            {
                return self.drop_message(HotStuffDrop::OrphanLimit);
            }
            self.orphan_count += 1;
            self.orphan_bytes += bytes;
            self.orphans.entry(block.parent()).or_default().push(p);
            // Its parent was proposed while this node was away.
            if from != self.me {
                self.ask_for_sync(ctx, from);
            }
            return;
        }
        self.adopt(ctx, p);
    }

    /// A proposal whose parent is known: check it, add it to the tree, run the commit rule if
    /// its QC came first, and adopt any orphans waiting for it.
    pub(crate) fn adopt(&mut self, ctx: &mut Ctx<'_, Self>, proposal: Proposal) {
        let mut queue = VecDeque::from([proposal]);
        while let Some(proposal) = queue.pop_front() {
            let block = proposal.block.clone();
            let digest = block.digest();
            if let Err(reason) = self.check_block(&proposal) {
                self.drop_message(reason);
                continue;
            }
            self.proposals.insert(digest, proposal);
            self.tree.insert(block.clone());
            self.tree.set_votes(&digest, self.keeper.signers(&block_statement(&block)));
            if let Some(qc) = self.tree.qc_of(&digest).cloned() {
                self.apply_commit_rule(ctx, &qc);
            }
            if let Some(waiting) = self.orphans.remove(&digest) {
                self.orphan_count -= waiting.len();
                self.orphan_bytes -=
                    waiting.iter().map(|p| p.block.batch().encoded().len()).sum::<usize>();
                queue.extend(waiting);
            }
        }
    }

    /// Validity of a block's content, whoever proposed it.
    pub(crate) fn check_block(&self, proposal: &Proposal) -> Result<(), HotStuffDrop> {
        let block = &proposal.block;
        let parent = &self.tree.get(&block.parent()).ok_or(HotStuffDrop::UnknownParent)?.block;
        if block.height().0 != parent.height().0 + 1 {
            return Err(HotStuffDrop::HeightNotParentPlusOne);
        }
        if block.round() <= parent.round() {
            return Err(HotStuffDrop::ViewNotAfterParent);
        }
        if qc_view(proposal.justify.as_ref()) != parent.round().0 {
            return Err(HotStuffDrop::JustifyNotParent);
        }
        if !self.config.batch.admits(block.batch()) {
            return Err(HotStuffDrop::BatchOverTheLimits);
        }
        let on_chain = self.ids_on_unfinalized_chain(&block.parent());
        let mut in_block = FxHashSet::default();
        for tx in block.batch().transactions() {
            let id = tx.id();
            if !in_block.insert(id) || on_chain.contains(&id) || self.finalized_txs.contains(&id) {
                return Err(HotStuffDrop::RepeatsTransaction);
            }
        }
        Ok(())
    }

    /// The paper's `safeNode` (three-chain), or Jolteon's voting rule (two-chain), for a
    /// block of the current view whose parent is certified at `justify_view`.
    fn safe_to_vote(&self, block: &Block, justify_view: u64) -> bool {
        if self.config.weakened(HotStuffWeakening::VoteWithoutLock) {
            return true;
        }
        let three = self.config.chain == ChainRule::Three
            || self.config.weakened(HotStuffWeakening::TwoChainCommitThreeChainLock);
        if three {
            // Safety: the block extends the locked block. Liveness: its QC is newer than the
            // lock.
            let locked = self
                .locked
                .as_ref()
                .map_or_else(|| Block::genesis().digest(), |qc| qc.statement().value);
            self.tree.extends(&block.digest(), &locked) || justify_view > self.locked_view()
        } else {
            // The QC of the view just before, or a timeout certificate of that view whose
            // every signer reported a QC no higher than the block's.
            let v = block.round().0;
            justify_view + 1 == v
                || self.tc_high.get(&(v - 1)).is_some_and(|high| justify_view >= *high)
        }
    }

    /// The paper's vote: a node in view v votes, once, for the first proposal of v's leader
    /// that it holds and that is safe, and sends the vote to the leader of v + 1.
    pub(crate) fn try_vote(&mut self, ctx: &mut Ctx<'_, Self>) {
        let v = self.view;
        if self.last_voted >= v {
            return;
        }
        let Some(digest) = self.first_proposal.get(&v).copied() else { return };
        let Some(entry) = self.tree.get(&digest) else { return };
        let block = entry.block.clone();
        let Some(parent) = self.tree.get(&block.parent()) else { return };
        let justify_view = parent.block.round().0;
        if !self.safe_to_vote(&block, justify_view) {
            if self.refused_in < v {
                self.refused_in = v;
                self.stats.votes_refused += 1;
            }
            return;
        }
        let vote = Vote::sign(block_statement(&block), self.me, &self.key);
        self.last_voted = v;
        self.own_vote = Some(vote);
        self.stats.votes_cast += 1;
        if self.config.weakened(HotStuffWeakening::VoteBeforeDurable) {
            self.send_vote(ctx, vote);
            self.persist(ctx, &Record::Voted(vote));
        } else {
            self.persist(ctx, &Record::Voted(vote));
            self.send_vote(ctx, vote);
        }
    }

    /// Sends this node's `vote` to the next view's leader (itself, perhaps).
    pub(crate) fn send_vote(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote) {
        let next = self.leader_of(vote.statement.round.0 + 1);
        if next == self.me {
            self.on_vote(ctx, vote);
        } else {
            ctx.send(next, HotStuffMessage::Vote(vote));
        }
    }

    /// A vote, at the leader of the next view: counted once per member in the shared keeper;
    /// a quorum makes a QC.
    pub(crate) fn on_vote(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote) {
        let s = vote.statement;
        if s.phase != Phase::Vote || s.round.0 == 0 || s.height.0 != 0 || s.value == Digest::ZERO {
            return self.drop_message(HotStuffDrop::BadVote);
        }
        let v = s.round.0;
        if self.leader_of(v + 1) != self.me {
            return self.drop_message(HotStuffDrop::NotNextLeader);
        }
        if v <= self.tree.finalized_view() {
            self.stats.late += 1;
            return;
        }
        if v > self.view.saturating_add(self.config.future_views_max) {
            return self.drop_message(HotStuffDrop::FarFutureView);
        }
        let outcome = match self.keeper.add(&vote, &self.committee, ctx.checker()) {
            Ok(outcome) => outcome,
            Err(_) => return self.drop_message(HotStuffDrop::BadVote),
        };
        self.stats.equivocations = self.keeper.equivocations();
        match outcome {
            VoteOutcome::Counted { signers } => self.tree.set_votes(&s.value, signers),
            VoteOutcome::Certified(qc) => {
                self.stats.qcs_formed += 1;
                self.on_qc(ctx, qc);
            }
            VoteOutcome::Duplicate => {}
            VoteOutcome::Stale => self.drop_message(HotStuffDrop::StaleVote),
            VoteOutcome::Full => self.drop_message(HotStuffDrop::VoteLimit),
        }
    }

    /// A QC another node sent on its own (at its timer, or in a sync answer).
    pub(crate) fn on_forwarded_qc(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        qc: Certificate,
    ) {
        if !self.learn_qc(ctx, Some(&qc)) {
            return self.drop_message(HotStuffDrop::BadCertificate);
        }
        if !self.tree.contains(&qc.statement().value) {
            self.ask_for_sync(ctx, from);
        }
    }

    /// Takes `qc` (a proposal's justify, a timeout's, a forwarded one): true when it is
    /// genesis's, already known, at or below finality on a block this node finalized, or
    /// verifies (then it is acted on); false when it is bad.
    pub(crate) fn learn_qc(&mut self, ctx: &mut Ctx<'_, Self>, qc: Option<&Certificate>) -> bool {
        let Some(qc) = qc else { return true };
        let s = *qc.statement();
        if s.phase != Phase::Vote || s.round.0 == 0 || s.height.0 != 0 || s.value == Digest::ZERO {
            return false;
        }
        if s.round.0 <= self.tree.finalized_view() {
            self.stats.late += 1;
            return self.tree.get(&s.value).is_some_and(|e| e.finalized_at.is_some());
        }
        if self.tree.qc_of(&s.value).is_some() {
            return true;
        }
        let signatures = qc.signatures().len();
        if signatures > usize::from(self.n)
            || qc.verify_with(&self.committee, self.quorum, ctx.checker()).is_err()
        {
            return false;
        }
        self.on_qc(ctx, qc.clone());
        true
    }

    /// The paper's `update` for a verified QC above finality: keep it with its block, raise
    /// `qc_high`, run the lock and commit rules, and move to the next view.
    pub(crate) fn on_qc(&mut self, ctx: &mut Ctx<'_, Self>, qc: Certificate) {
        let v = qc.statement().round.0;
        if !self.tree.certify(qc.clone(), ctx.now_ns())
            && self.tree.qc_of(&qc.statement().value).is_none()
        {
            self.drop_message(HotStuffDrop::EarlyQcLimit);
        }
        let (high_before, locked_before) = (self.high_qc_view(), self.locked_view());
        if v > high_before {
            self.high_qc = Some(qc.clone());
        }
        self.apply_commit_rule(ctx, &qc);
        if self.high_qc_view() > high_before || self.locked_view() > locked_before {
            self.persist(
                ctx,
                &Record::Raised { high_qc: self.high_qc.clone(), locked: self.locked.clone() },
            );
        }
        if v + 1 > self.view {
            self.enter_view(ctx, v + 1, Some(crate::Entered::Qc(qc)));
        }
    }

    /// The lock and commit rules for the block `qc` certifies, once that block is here: with
    /// three chains, lock on its parent and commit its grandparent when the three views are
    /// consecutive; with two, lock on the block and commit its parent when the two are.
    pub(crate) fn apply_commit_rule(&mut self, ctx: &mut Ctx<'_, Self>, qc: &Certificate) {
        let Some(b2) = self.tree.get(&qc.statement().value).map(|e| e.block.clone()) else {
            return;
        };
        let b1 = self.tree.get(&b2.parent()).map(|e| (e.block.clone(), e.qc.clone()));
        let lock_three = self.config.chain == ChainRule::Three
            || self.config.weakened(HotStuffWeakening::TwoChainCommitThreeChainLock);
        if lock_three {
            if let Some((b1, Some(qc1))) = &b1
                && b1.round().0 > self.locked_view()
            {
                self.locked = Some(qc1.clone());
            }
        } else if b2.round().0 > self.locked_view() {
            self.locked = Some(qc.clone());
        }
        let Some((b1, qc1)) = b1 else { return };
        if b2.round().0 != b1.round().0 + 1 {
            return;
        }
        match self.config.chain {
            ChainRule::Two => self.commit(ctx, b1.digest(), vec![qc.clone()]),
            ChainRule::Three => {
                let Some(b0) = self.tree.get(&b1.parent()).map(|e| e.block.clone()) else {
                    return;
                };
                if b1.round().0 == b0.round().0 + 1 {
                    let chain = qc1.into_iter().chain([qc.clone()]).collect();
                    self.commit(ctx, b0.digest(), chain);
                }
            }
        }
    }

    /// Commits `target` and its prefix, unless a block on the way has not arrived (it waits,
    /// and the node asks for it) or it conflicts with what is final. `chain` holds the QCs
    /// after the target's own that prove it final.
    pub(crate) fn commit(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        target: Digest,
        chain: Vec<Certificate>,
    ) {
        match self.tree.commit(target, ctx.now_ns()) {
            Ok(blocks) => self.commit_final(ctx, blocks, chain),
            Err(CommitError::Missing) => {
                self.pending_commit = Some((target, chain));
                let peer = self.peer_for(self.view);
                self.ask_for_sync(ctx, peer);
            }
            Err(CommitError::Conflict) => self.stats.conflicting_finality += 1,
        }
    }

    /// Outputs newly final blocks in log order, exactly once each: every block with its QC,
    /// the last also with the QCs of the chain that made it final.
    fn commit_final(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        blocks: Vec<Block>,
        chain: Vec<Certificate>,
    ) {
        if blocks.is_empty() {
            return;
        }
        let last = blocks.len() - 1;
        let mut proofs: Vec<Vec<Certificate>> = blocks
            .iter()
            .map(|b| self.tree.qc_of(&b.digest()).cloned().into_iter().collect())
            .collect();
        proofs[last].extend(chain);
        self.note_finalized(&blocks);
        for (block, proof) in blocks.into_iter().zip(proofs) {
            ctx.commit_proven(block, proof);
        }
        // The new finalized tip stands for everything the journal held before it.
        self.checkpoint(ctx);
    }

    /// What finality changes in the node's memory: the ids it refuses again, the proofs it
    /// keeps, what it prunes.
    pub(crate) fn note_finalized(&mut self, blocks: &[Block]) {
        for block in blocks {
            for tx in block.batch().transactions() {
                self.finalized_txs.insert(tx.id());
                self.forwarding.forget(&tx.id());
            }
            self.keep_finalized_proof(block);
        }
        let horizon = self.tree.finalized_view();
        self.keeper.prune_below(Round(horizon + 1));
        self.first_proposal.retain(|v, _| *v > horizon);
        self.proposals_taken.retain(|v, _| *v > horizon);
        self.proposals.retain(|_, p| p.block.round().0 > horizon);
        if self
            .pending_commit
            .as_ref()
            .is_some_and(|(d, _)| self.tree.get(d).is_none_or(|e| e.finalized_at.is_some()))
        {
            self.pending_commit = None;
        }
        self.prune_orphans();
    }

    /// Keeps a newly finalized block's signed proposal and QC for [`Self::on_sync`].
    fn keep_finalized_proof(&mut self, block: &Block) {
        if self.config.sync_blocks_max == 0 {
            return;
        }
        let Some(proposal) = self.proposals.get(&block.digest()).cloned() else { return };
        let Some(qc) = self.tree.qc_of(&block.digest()).cloned() else { return };
        self.finalized_proofs.insert(block.height(), (proposal, qc));
        while self.finalized_proofs.len() > self.config.sync_blocks_max {
            self.finalized_proofs.pop_first();
        }
    }

    /// The transaction ids already on the unfinalized chain ending at `tip`, which a proposal
    /// extending it must not repeat.
    pub(crate) fn ids_on_unfinalized_chain(&self, tip: &Digest) -> FxHashSet<Digest> {
        self.tree
            .unfinalized_ancestry(tip)
            .into_iter()
            .flat_map(|b| b.batch().transactions().iter().map(agora_types::Transaction::id))
            .collect()
    }
}
