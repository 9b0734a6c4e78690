//! Votes (the paper's §3, "Vote"): a node votes for the first proposal of the iteration's
//! leader that extends a notarized blockchain, a quorum of votes notarizes a block or a dummy
//! block, and a quorum of finalize votes finalizes.

use std::collections::VecDeque;

use agora_consensus::{Ctx, VoteOutcome};
use agora_crypto::{Digest, domain};
use agora_types::{Block, Certificate, NodeId, Phase, Statement, Vote};
use rustc_hash::FxHashSet;

use crate::persist::SimplexRecord;
use crate::{Proposal, Simplex, SimplexDrop, SimplexMessage, SimplexWeakening, block_statement};

impl Simplex {
    /// Refuses (and counts) what belongs to an iteration too far ahead to hold, or at or below
    /// the finalized tip.
    pub(crate) fn iteration_acceptable(&mut self, iteration: u64) -> bool {
        if iteration > self.iteration.saturating_add(self.config.future_iterations_max) {
            self.drop_message(SimplexDrop::FarFutureIteration);
            return false;
        }
        if iteration <= self.chain.finalized_iteration() {
            // The votes a quorum did not need arrive after it: late, not bad.
            self.stats.late += 1;
            return false;
        }
        true
    }

    /// §3 "Vote": a signed proposal from the iteration's leader, adopted at once if its parent
    /// is known and held (bounded) until it is otherwise.
    pub(crate) fn on_proposal(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        proposal: Proposal,
    ) {
        let block = &proposal.block;
        let h = block.round().0;
        let digest = block.digest();
        if h == 0 || block.proposer() != self.leader_of(h) {
            return self.drop_message(SimplexDrop::ProposerNotLeader);
        }
        // A block this node holds a notarization for is taken however far ahead it is: it
        // is what a node left behind needs.
        let notarized = self.keeper.is_certified(&block_statement(Phase::Vote, block));
        if !notarized && !self.iteration_acceptable(h) {
            return;
        }
        if h <= self.chain.finalized_iteration() {
            self.stats.late += 1;
            return;
        }
        if self.proposals.contains_key(&digest)
            || self
                .orphans
                .get(&block.parent())
                .is_some_and(|w| w.iter().any(|p| p.block.digest() == digest))
        {
            return;
        }
        // Before the signature: the iteration's quota is spent only by validly signed
        // proposals, so a flood of extra ones costs no verification. A block this node holds a
        // notarization for is taken whatever the quota: a faulty leader must not keep it out.
        if self.proposals_taken.get(&h).copied().unwrap_or(0)
            >= self.config.proposals_per_iteration_max
            && !notarized
        {
            return self.drop_message(SimplexDrop::TooManyProposals);
        }
        let signed = self.committee.verify_with(
            ctx.checker(),
            block.proposer(),
            &domain::PROPOSAL,
            digest.as_bytes(),
            &proposal.signature,
        );
        if signed.is_err() {
            return self.drop_message(SimplexDrop::BadProposalSignature);
        }
        if !self.config.batch.admits(block.batch()) {
            return self.drop_message(SimplexDrop::BatchOverTheLimits);
        }
        *self.proposals_taken.entry(h).or_default() += 1;
        self.first_proposal.entry(h).or_insert(digest);
        if !self.chain.contains(&block.parent()) {
            let bytes = block.batch().encoded().len();
            if self.orphan_count >= self.config.orphans_max
                || self.orphan_bytes + bytes > self.config.orphan_bytes_max
            {
                return self.drop_message(SimplexDrop::OrphanLimit);
            }
            self.orphan_count += 1;
            self.orphan_bytes += bytes;
            self.orphans.entry(block.parent()).or_default().push(proposal);
            // Its parent was proposed, and perhaps notarized, while this node was away.
            if from != self.me {
                self.ask_for_sync(ctx, from);
            }
            return;
        }
        self.adopt(ctx, proposal);
    }

    /// A proposal whose parent is known: check it, add it to the chain, and adopt any orphans
    /// waiting for it.
    pub(crate) fn adopt(&mut self, ctx: &mut Ctx<'_, Self>, proposal: Proposal) {
        let mut queue = VecDeque::from([proposal]);
        while let Some(proposal) = queue.pop_front() {
            let block = proposal.block.clone();
            let digest = block.digest();
            if let Err(reason) = self.check_block(&block) {
                self.drop_message(reason);
                continue;
            }
            if block.proposer() != self.me {
                // A leader's own proposal was persisted before it was broadcast.
                self.persist(ctx, &SimplexRecord::Adopted(proposal.clone()));
            }
            self.proposals.insert(digest, proposal);
            self.chain.insert(block.clone());
            self.chain
                .set_votes(&digest, self.keeper.signers(&block_statement(Phase::Vote, &block)));
            if let Some(waiting) = self.orphans.remove(&digest) {
                self.orphan_count -= waiting.len();
                self.orphan_bytes -=
                    waiting.iter().map(|p| p.block.batch().encoded().len()).sum::<usize>();
                queue.extend(waiting);
            }
        }
    }

    /// Validity of a block's content, whoever proposed it.
    pub(crate) fn check_block(&self, block: &Block) -> Result<(), SimplexDrop> {
        let parent = &self.chain.get(&block.parent()).ok_or(SimplexDrop::UnknownParent)?.block;
        if block.height().0 != parent.height().0 + 1 {
            return Err(SimplexDrop::HeightNotParentPlusOne);
        }
        if block.round() <= parent.round() {
            return Err(SimplexDrop::IterationNotAfterParent);
        }
        if !self.config.batch.admits(block.batch()) {
            return Err(SimplexDrop::BatchOverTheLimits);
        }
        let on_chain = self.ids_on_unfinalized_chain(&block.parent());
        let mut in_block = FxHashSet::default();
        for tx in block.batch().transactions() {
            let id = tx.id();
            if !in_block.insert(id) || on_chain.contains(&id) || self.finalized_txs.contains(&id) {
                return Err(SimplexDrop::RepeatsTransaction);
            }
        }
        Ok(())
    }

    /// §3 "Vote": a node in iteration h votes, once, for the first proposal of h's leader,
    /// when the block extends a notarized blockchain of length h − 1 (which may become true
    /// after the proposal arrived, when a notarization does).
    pub(crate) fn try_vote(&mut self, ctx: &mut Ctx<'_, Self>) {
        let h = self.iteration;
        if self.own_votes.get(&h).is_some_and(|v| v.block.is_some()) {
            return;
        }
        let Some(digest) = self.first_proposal.get(&h).copied() else { return };
        let Some(entry) = self.chain.get(&digest) else { return };
        let block = entry.block.clone();
        let extends = self.chain.extends_notarized_chain(&block.parent(), h)
            || self.config.weakened(SimplexWeakening::VoteUnnotarizedChain);
        if !extends {
            return;
        }
        self.stats.votes_cast += 1;
        self.cast(ctx, block_statement(Phase::Vote, &block));
    }

    /// Signs a vote of this node, remembers it, makes it durable and sends it: the driver syncs
    /// the record before the broadcast leaves.
    pub(crate) fn cast(&mut self, ctx: &mut Ctx<'_, Self>, statement: Statement) {
        let vote = Vote::sign(statement, self.me, &self.key);
        let own = self.own_votes.entry(statement.round.0).or_default();
        match statement.phase {
            Phase::Skip => own.skip = Some(vote),
            Phase::Finalize => own.finalize = Some(vote),
            _ => own.block = Some(vote),
        }
        if self.config.weakened(SimplexWeakening::VoteBeforeDurable) {
            ctx.broadcast(SimplexMessage::Vote(vote));
            self.persist(ctx, &SimplexRecord::Voted(vote));
        } else {
            self.persist(ctx, &SimplexRecord::Voted(vote));
            ctx.broadcast(SimplexMessage::Vote(vote));
        }
        self.on_vote(ctx, vote);
    }

    /// Whether `statement` is one Simplex votes on: a block vote or a finalize vote naming a
    /// block, or a skip naming nothing, never of iteration 0.
    fn simplex_statement(statement: &Statement) -> bool {
        statement.round.0 > 0
            && statement.height.0 == 0
            && match statement.phase {
                Phase::Vote | Phase::Finalize => statement.value != Digest::ZERO,
                Phase::Skip => statement.value == Digest::ZERO,
                _ => false,
            }
    }

    /// A vote: counted once per member in the shared keeper; a quorum certifies.
    pub(crate) fn on_vote(&mut self, ctx: &mut Ctx<'_, Self>, vote: Vote) {
        let s = vote.statement;
        if !Self::simplex_statement(&s) {
            return self.drop_message(SimplexDrop::NotASimplexVote);
        }
        if !self.iteration_acceptable(s.round.0) {
            return;
        }
        let outcome = match self.keeper.add(&vote, &self.committee, ctx.checker()) {
            Ok(outcome) => outcome,
            Err(_) => return self.drop_message(SimplexDrop::BadVote),
        };
        self.stats.equivocations = self.keeper.equivocations();
        self.counted(ctx, &s, outcome);
    }

    fn counted(&mut self, ctx: &mut Ctx<'_, Self>, s: &Statement, outcome: VoteOutcome) {
        match outcome {
            VoteOutcome::Counted { signers } => {
                if s.phase == Phase::Vote {
                    self.chain.set_votes(&s.value, signers);
                }
            }
            VoteOutcome::Certified(certificate) => self.on_certified(ctx, certificate),
            VoteOutcome::Duplicate => {}
            VoteOutcome::Stale => self.drop_message(SimplexDrop::StaleVote),
            VoteOutcome::Full => self.drop_message(SimplexDrop::VoteLimit),
        }
    }

    /// A certificate another node forwarded: each of its votes is counted as if it had come
    /// alone (and verified only if not counted yet); one that adds nothing costs nothing.
    pub(crate) fn on_certificate(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        certificate: Certificate,
    ) {
        let s = *certificate.statement();
        if !Self::simplex_statement(&s) {
            return self.drop_message(SimplexDrop::NotASimplexVote);
        }
        if s.round.0 <= self.chain.finalized_iteration() {
            self.stats.late += 1;
            return;
        }
        if self.keeper.is_certified(&s) {
            return;
        }
        let signatures = certificate.signatures();
        if signatures.len() > usize::from(self.n) || signatures.len() < self.keeper.quorum() {
            return self.drop_message(SimplexDrop::CertificateSize);
        }
        // Far ahead of this node, a certificate is how it catches up, so it is taken, but
        // only whole: its votes are kept only if a quorum of them verifies, so no one member
        // can park votes for far iterations here.
        let far = s.round.0 > self.iteration.saturating_add(self.config.future_iterations_max);
        if far
            && certificate
                .verify_with(&self.committee, self.keeper.quorum(), ctx.checker())
                .is_err()
        {
            return self.drop_message(SimplexDrop::BadCertificate);
        }
        for (voter, signature) in signatures {
            let vote = Vote { statement: s, voter: *voter, signature: *signature };
            let outcome = if far {
                Ok(self.keeper.add_verified(&vote))
            } else {
                self.keeper.add(&vote, &self.committee, ctx.checker())
            };
            match outcome {
                Ok(outcome) => self.counted(ctx, &s, outcome),
                Err(_) => return self.drop_message(SimplexDrop::BadCertificate),
            }
        }
        self.stats.equivocations = self.keeper.equivocations();
        // A finalization of a block this node lacks: its peer has what it missed.
        if s.phase == Phase::Finalize && !self.chain.contains(&s.value) {
            self.ask_for_sync(ctx, from);
        }
    }

    /// A statement reached its quorum here, from votes or a forwarded certificate: keep it
    /// (durably), forward a notarization as the paper says, and act on it.
    pub(crate) fn on_certified(&mut self, ctx: &mut Ctx<'_, Self>, certificate: Certificate) {
        let s = *certificate.statement();
        let h = s.round.0;
        self.persist(ctx, &SimplexRecord::Certified(certificate.clone()));
        match s.phase {
            Phase::Vote => {
                ctx.broadcast(SimplexMessage::Certificate(certificate.clone()));
                self.chain.set_votes(&s.value, certificate.signatures().len());
                self.chain.notarize(s.value, h, ctx.now_ns());
                if h >= self.iteration {
                    self.leave_iteration(ctx, h, Some(s.value), certificate);
                }
            }
            Phase::Skip => {
                ctx.broadcast(SimplexMessage::Certificate(certificate.clone()));
                if !self.chain.skip(h) {
                    self.drop_message(SimplexDrop::SkipLimit);
                }
                if h >= self.iteration {
                    self.leave_iteration(ctx, h, None, certificate);
                }
            }
            _ => self.try_finalize(ctx, certificate),
        }
    }
}
