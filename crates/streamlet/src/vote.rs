//! Votes, notarization and echo (the paper's §3, "Vote", and its note on echoing): a node
//! votes for the first proposal of the epoch's leader that extends a longest notarized chain, a
//! quorum of votes notarizes, and every message seen for the first time is forwarded.

use std::collections::VecDeque;

use agora_consensus::{Ctx, VoteOutcome};
use agora_crypto::domain;
use agora_types::{Block, Epoch, NodeId, Phase, Vote};
use rustc_hash::FxHashSet;

use crate::persist::StreamletRecord;
use crate::{
    IntoEpoch, Proposal, Seen, Streamlet, StreamletDrop, StreamletMessage, StreamletWeakening,
    vote_statement,
};

impl Streamlet {
    /// First sight of a message: remember it (bounded by epoch) and say whether it is new.
    pub(crate) fn first_sight(&mut self, epoch: Epoch, seen: Seen) -> bool {
        self.seen.entry(epoch).or_default().insert(seen)
    }

    /// §3, its implicit echo: forwards a message seen for the first time to every node but this
    /// one, the sender and the author.
    pub(crate) fn echo(
        &self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        author: NodeId,
        message: StreamletMessage,
    ) {
        if !self.config.echo || from == self.me {
            return;
        }
        for to in
            (0..self.n).map(NodeId).filter(|to| *to != self.me && *to != from && *to != author)
        {
            ctx.send(to, message.clone());
        }
    }

    /// Refuses (and counts) messages for epochs too far ahead to hold, or below finality.
    pub(crate) fn epoch_acceptable(&mut self, epoch: Epoch) -> bool {
        if epoch.0 > self.epoch.0.saturating_add(self.config.future_epochs_max) {
            self.drop_message(StreamletDrop::FarFutureEpoch);
            return false;
        }
        if epoch < self.tree.finalized_tip().round().into_epoch() && epoch.0 > 0 {
            self.drop_message(StreamletDrop::EpochBelowFinality);
            return false;
        }
        true
    }

    /// §3 "Vote": a signed proposal from the epoch's leader, adopted at once if its parent is
    /// known and held (bounded) until it is otherwise.
    pub(crate) fn on_proposal(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        proposal: Proposal,
    ) {
        let block = &proposal.block;
        let epoch = Epoch(block.round().0);
        let digest = block.digest();
        if epoch.0 == 0 || block.proposer() != self.leader_of(epoch) {
            return self.drop_message(StreamletDrop::ProposerNotLeader);
        }
        if !self.epoch_acceptable(epoch) {
            return;
        }
        if self.seen.get(&epoch).is_some_and(|s| s.contains(&Seen::Proposal(digest))) {
            return;
        }
        // Before the signature: the epoch's quota is spent only by validly signed proposals,
        // so checking it first lets a flood of extra ones cost no verification. A block this
        // node already holds a notarization for is taken whatever the quota: a faulty leader
        // that spent it on invalid proposals must not keep the notarized one out for good,
        // for every later block would wait for it as a parent. Two quorums share an honest
        // voter, who votes once per epoch, so at most one such block per epoch passes.
        if self.proposals_taken.get(&epoch).copied().unwrap_or(0)
            >= self.config.proposals_per_epoch_max
            && !self.keeper.is_certified(&vote_statement(block))
        {
            return self.drop_message(StreamletDrop::TooManyProposals);
        }
        let signed = self.committee.verify_with(
            ctx.checker(),
            block.proposer(),
            &domain::PROPOSAL,
            digest.as_bytes(),
            &proposal.signature,
        );
        if signed.is_err() {
            return self.drop_message(StreamletDrop::BadProposalSignature);
        }
        // Before echoing: a signed but oversized proposal must not be multiplied by n echoes.
        if let Err(reason) = self.within_limits(block) {
            return self.drop_message(reason);
        }
        *self.proposals_taken.entry(epoch).or_default() += 1;
        self.first_sight(epoch, Seen::Proposal(digest));
        self.echo(ctx, from, block.proposer(), StreamletMessage::EchoPropose(proposal.clone()));
        self.first_proposal.entry(epoch).or_insert(digest);
        if !self.tree.contains(&block.parent()) {
            let bytes = block.batch().encoded().len();
            if self.orphan_count >= self.config.orphans_max
                || self.orphan_bytes + bytes > self.config.orphan_bytes_max
            {
                return self.drop_message(StreamletDrop::OrphanLimit);
            }
            self.orphan_count += 1;
            self.orphan_bytes += bytes;
            self.orphans.entry(block.parent()).or_default().push(proposal);
            return;
        }
        self.adopt(ctx, proposal);
    }

    /// A proposal whose parent is known: check it, add it to the tree, vote if the rule allows,
    /// and adopt any orphans waiting for it.
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
                self.persist(ctx, &StreamletRecord::Adopted(proposal.clone()));
            }
            if self.adopted_count < self.config.orphans_max {
                self.adopted_count += 1;
                self.adopted.entry(Epoch(block.round().0)).or_default().push(proposal);
            }
            let finalized = self.tree.insert(block.clone(), ctx.now_ns());
            let statement = vote_statement(&block);
            self.tree.set_votes(&digest, self.keeper.signers(&statement));
            self.commit_finalized(ctx, finalized);
            self.try_vote(ctx, &block);
            if let Some(waiting) = self.orphans.remove(&digest) {
                self.orphan_count -= waiting.len();
                self.orphan_bytes -=
                    waiting.iter().map(|p| p.block.batch().encoded().len()).sum::<usize>();
                queue.extend(waiting);
            }
        }
    }

    /// The batch bounds, which need nothing but the block.
    pub(crate) fn within_limits(&self, block: &Block) -> Result<(), StreamletDrop> {
        if !self.config.batch.admits(block.batch()) {
            return Err(StreamletDrop::BatchOverTheLimits);
        }
        Ok(())
    }

    /// Validity of a block's content, whoever proposed it.
    pub(crate) fn check_block(&self, block: &Block) -> Result<(), StreamletDrop> {
        let parent = &self.tree.get(&block.parent()).ok_or(StreamletDrop::UnknownParent)?.block;
        if block.height().0 != parent.height().0 + 1 {
            return Err(StreamletDrop::HeightNotParentPlusOne);
        }
        if block.round() <= parent.round() {
            return Err(StreamletDrop::EpochNotAfterParent);
        }
        self.within_limits(block)?;
        let on_chain = self.ids_on_unfinalized_chain(&block.parent());
        let mut in_block = FxHashSet::default();
        for tx in block.batch().transactions() {
            let id = tx.id();
            if !in_block.insert(id) || on_chain.contains(&id) || self.finalized_txs.contains(&id) {
                return Err(StreamletDrop::RepeatsTransaction);
            }
        }
        Ok(())
    }

    /// §3 "Vote": the vote rule, for the block just adopted.
    pub(crate) fn try_vote(&mut self, ctx: &mut Ctx<'_, Self>, block: &Block) {
        let epoch = Epoch(block.round().0);
        let digest = block.digest();
        if epoch != self.epoch
            || self.last_voted >= epoch
            || self.first_proposal.get(&epoch) != Some(&digest)
            || !(self.tree.extends_longest(&block.parent())
                || self.config.weakened(StreamletWeakening::VoteExtendsFinalized))
        {
            return;
        }
        self.last_voted = epoch;
        self.stats.votes_cast += 1;
        let vote = Vote::sign(vote_statement(block), self.me, &self.key);
        self.own_votes.insert(epoch, vote);
        // Durable before it is sent: the driver syncs this record before the broadcast leaves.
        if self.config.weakened(StreamletWeakening::VoteBeforeDurable) {
            ctx.broadcast(StreamletMessage::Vote(vote));
            self.persist(ctx, &StreamletRecord::Voted(vote));
        } else {
            self.persist(ctx, &StreamletRecord::Voted(vote));
            ctx.broadcast(StreamletMessage::Vote(vote));
        }
        self.on_vote(ctx, self.me, vote);
    }

    /// The current epoch's first proposal may become votable when a notarization arrives after
    /// it (its parent becomes the tip of a longest notarized chain).
    pub(crate) fn try_vote_current(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.last_voted >= self.epoch {
            return;
        }
        let Some(digest) = self.first_proposal.get(&self.epoch).copied() else { return };
        if let Some(entry) = self.tree.get(&digest) {
            let block = entry.block.clone();
            self.try_vote(ctx, &block);
        }
    }

    /// §3 "Notarize": a signed vote counts once per member in the shared [`VoteKeeper`]; a quorum
    /// notarizes the block, which may finalize a chain.
    pub(crate) fn on_vote(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, vote: Vote) {
        let s = vote.statement;
        let epoch = Epoch(s.round.0);
        if s.phase != Phase::Vote || epoch.0 == 0 {
            return self.drop_message(StreamletDrop::NotAStreamletVote);
        }
        if !self.epoch_acceptable(epoch) {
            return;
        }
        if self.seen.get(&epoch).is_some_and(|seen| seen.contains(&Seen::Vote(vote.voter, s))) {
            return;
        }
        let outcome = match self.keeper.add(&vote, &self.committee, ctx.checker()) {
            Ok(outcome) => outcome,
            Err(_) => return self.drop_message(StreamletDrop::BadVote),
        };
        self.first_sight(epoch, Seen::Vote(vote.voter, s));
        self.stats.equivocations = self.keeper.equivocations();
        self.echo(ctx, from, vote.voter, StreamletMessage::EchoVote(vote));
        match outcome {
            VoteOutcome::Counted { signers } => self.tree.set_votes(&s.value, signers),
            VoteOutcome::Certified(cert) => {
                self.persist(ctx, &StreamletRecord::Notarized(cert.clone()));
                self.tree.set_votes(&s.value, cert.signers().len());
                let finalized = self.tree.notarize(s.value, ctx.now_ns());
                self.commit_finalized(ctx, finalized);
                self.try_vote_current(ctx);
            }
            VoteOutcome::Duplicate => {}
            VoteOutcome::Stale => self.drop_message(StreamletDrop::StaleVote),
            VoteOutcome::Full => self.drop_message(StreamletDrop::VoteLimit),
        }
    }
}
