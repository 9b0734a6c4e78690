//! What a Simplex node journals before it speaks, and how a restarted node resumes.
//!
//! | record | written | the rule it keeps |
//! |---|---|---|
//! | `Voted(vote)` | before the vote is broadcast (`vote.rs`, `cast`): a block vote, a skip, or a finalize vote | §3 "Vote": one block vote per iteration; §3 "Next iteration": no finalize vote for an iteration skipped, and no skip for an iteration finalize was sent for, which the safety proof rests on |
//! | `Adopted(proposal)` | when a proposal joins the chain (`vote.rs`, `adopt`); a leader's own before it is broadcast (`iteration.rs`, `propose`) | the chain a node extends and votes on; a leader proposes once per iteration |
//! | `Certified(certificate)` | when a quorum forms here (`vote.rs`, `on_certified`) | which blocks and dummy blocks are notarized (the iteration the node reached), and which are final |
//! | checkpoint | at each finalization, and at an iteration's start once `CHECKPOINT_AFTER_RECORDS` records followed the last | stands for every record before it: the finalized tip and its finalization, the iteration, this node's votes above the tip, and the notarized proposals and skips above it with their certificates (at most `CHECKPOINT_BYTES_MAX` of them; the rest come back by sync) |
//!
//! The driver makes every record durable before any message sent after it leaves the node,
//! and before any commit after it is applied (`agora_consensus::dispatch`). A restored node
//! resumes from the checkpoint's finalized tip, replays what followed, and commits again on
//! start, with their proofs, the blocks the replay finalizes.

use agora_consensus::{Ctx, RestoreError};
use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, Phase, Vote, codec};
use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::{Proposal, Simplex, block_statement, skip_statement};

/// A checkpoint is written at the next iteration start once this many records followed the
/// last, so that the journal stays short through a stretch with no finalization.
pub(crate) const CHECKPOINT_AFTER_RECORDS: usize = 64;
/// The notarized proposals and skips a checkpoint carries stop at this many bytes, keeping it
/// well under the journal's record limit.
pub(crate) const CHECKPOINT_BYTES_MAX: usize = 8 << 20;
/// Records are encoded and decoded under this limit, with room left under a journal's 16 MiB
/// record limit for the driver's envelope.
const RECORD_BYTES_MAX: usize = 15 << 20;

/// One record of a Simplex node's journal; see the [module docs](self).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum SimplexRecord {
    Voted(Vote),
    Adopted(Proposal),
    Certified(Certificate),
    Checkpoint(Checkpoint),
}

/// Everything a restored node needs, as of one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    finalized: Block,
    finalization: Option<Certificate>,
    iteration: u64,
    last_proposed: u64,
    own_votes: Vec<Vote>,
    /// Notarized proposals above the finalized tip, by iteration, with their certificates.
    notarized: Vec<(Proposal, Certificate)>,
    /// Skip certificates above the finalized tip.
    skips: Vec<Certificate>,
}

impl Simplex {
    /// Appends `record` to the journal.
    pub(crate) fn persist(&mut self, ctx: &mut Ctx<'_, Self>, record: &SimplexRecord) {
        let bytes = codec::encode_with_limit(record, RECORD_BYTES_MAX)
            .expect("a record holds one message's worth");
        self.records_since_checkpoint += 1;
        ctx.persist(bytes);
    }

    /// Writes a checkpoint: it stands for every record before it.
    pub(crate) fn checkpoint(&mut self, ctx: &mut Ctx<'_, Self>) {
        let record = SimplexRecord::Checkpoint(self.checkpoint_now());
        let bytes = codec::encode_with_limit(&record, RECORD_BYTES_MAX)
            .expect("a checkpoint stops at CHECKPOINT_BYTES_MAX, below the limit");
        self.records_since_checkpoint = 0;
        ctx.checkpoint(bytes);
    }

    fn checkpoint_now(&self) -> Checkpoint {
        let mut bytes = 0;
        let mut room = |more: usize| {
            bytes += more;
            bytes <= CHECKPOINT_BYTES_MAX
        };
        let mut proposals: Vec<&Proposal> = self.proposals.values().collect();
        proposals.sort_by_key(|p| (p.block.round(), p.block.height()));
        let mut notarized = Vec::new();
        for proposal in proposals {
            let statement = block_statement(Phase::Vote, &proposal.block);
            if !self.keeper.is_certified(&statement) {
                continue;
            }
            let certificate = self.keeper.certificate_of(&statement, None);
            if !room(proposal.block.encoded_len() + codec::encoded_len(&certificate)) {
                break;
            }
            notarized.push((proposal.clone(), certificate));
        }
        let mut skips = Vec::new();
        for j in self.chain.skipped() {
            let certificate = self.keeper.certificate_of(&skip_statement(j), None);
            if !room(codec::encoded_len(&certificate)) {
                break;
            }
            skips.push(certificate);
        }
        let own_votes =
            self.own_votes.values().flat_map(|v| [v.block, v.skip, v.finalize]).flatten().collect();
        Checkpoint {
            finalized: self.chain.finalized_tip().clone(),
            finalization: self.last_finalization.clone(),
            iteration: self.iteration,
            last_proposed: self.last_proposed,
            own_votes,
            notarized,
            skips,
        }
    }

    /// Replays the records of a crashed node into this fresh engine.
    pub(crate) fn restore_from(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        for (index, bytes) in records.iter().enumerate() {
            let record: SimplexRecord = codec::decode_with_limit(bytes, RECORD_BYTES_MAX)
                .map_err(|error| RestoreError { index, reason: error.to_string() })?;
            match record {
                SimplexRecord::Checkpoint(checkpoint) => self.restore_checkpoint(checkpoint),
                SimplexRecord::Voted(vote) => self.restore_vote(vote),
                SimplexRecord::Adopted(proposal) => self.restore_adopted(proposal),
                SimplexRecord::Certified(certificate) => self.restore_certified(certificate),
            }
        }
        Ok(())
    }

    fn restore_checkpoint(&mut self, checkpoint: Checkpoint) {
        self.chain =
            Chain::rooted(checkpoint.finalized, self.config.history_max, self.config.skips_max);
        self.last_finalization = checkpoint.finalization;
        self.iteration = self.iteration.max(checkpoint.iteration);
        self.last_proposed = self.last_proposed.max(checkpoint.last_proposed);
        for vote in checkpoint.own_votes {
            self.restore_vote(vote);
        }
        for (proposal, certificate) in checkpoint.notarized {
            self.restore_adopted(proposal);
            self.restore_certified(certificate);
        }
        for certificate in checkpoint.skips {
            self.restore_certified(certificate);
        }
    }

    /// This node's own vote: it will not cast another in its slot, and its iteration is at
    /// least the vote's (past it, after a finalize vote).
    fn restore_vote(&mut self, vote: Vote) {
        let h = vote.statement.round.0;
        let own = self.own_votes.entry(h).or_default();
        match vote.statement.phase {
            Phase::Skip => own.skip = Some(vote),
            Phase::Finalize => {
                own.finalize = Some(vote);
                self.iteration = self.iteration.max(h + 1);
            }
            _ => own.block = Some(vote),
        }
        self.iteration = self.iteration.max(h);
        self.keeper.add_verified(&vote);
    }

    fn restore_adopted(&mut self, proposal: Proposal) {
        let block = proposal.block.clone();
        let h = block.round().0;
        if block.proposer() == self.me {
            self.last_proposed = self.last_proposed.max(h);
        }
        if h <= self.chain.finalized_iteration()
            || self.chain.contains(&block.digest())
            || !self.chain.contains(&block.parent())
        {
            return;
        }
        self.first_proposal.entry(h).or_insert(block.digest());
        self.proposals.insert(block.digest(), proposal);
        self.chain.insert(block);
        if let Some(finalization) = self.pending_finalization.take() {
            self.replay_finalization(finalization);
        }
    }

    fn restore_certified(&mut self, certificate: Certificate) {
        let s = *certificate.statement();
        let h = s.round.0;
        for (voter, signature) in certificate.signatures() {
            self.keeper.add_verified(&Vote { statement: s, voter: *voter, signature: *signature });
        }
        match s.phase {
            Phase::Vote => {
                self.chain.notarize(s.value, h, 0);
                self.note_reached(h, certificate);
            }
            Phase::Skip => {
                self.chain.skip(h);
                self.note_reached(h, certificate);
            }
            _ => self.replay_finalization(certificate),
        }
    }

    /// A notarization of `h` had moved this node past `h`.
    fn note_reached(&mut self, h: u64, certificate: Certificate) {
        if h + 1 >= self.iteration {
            self.iteration = h + 1;
            self.entry_certificate = Some(certificate);
        }
    }

    /// Blocks that become final again on replay are committed again when the node starts,
    /// each with its notarization and the last with the finalization: the driver may no longer
    /// hold them (final in the journal, lost from the block store in the crash) and stores
    /// what it is given.
    fn replay_finalization(&mut self, finalization: Certificate) {
        let s = *finalization.statement();
        if s.round.0 <= self.chain.finalized_iteration() {
            return;
        }
        match self.chain.finalize(s.value, 0) {
            Ok(blocks) if !blocks.is_empty() => {
                let mut proofs = self.proofs_of(&blocks);
                if let Some(last) = proofs.last_mut() {
                    last.push(finalization.clone());
                }
                let blocks = self.note_finalized(blocks, Some(finalization));
                self.recovered_commits.extend(blocks.into_iter().zip(proofs));
            }
            Ok(_) => {}
            Err(crate::chain::FinalizeError::Missing) => {
                self.pending_finalization = Some(finalization);
            }
            Err(crate::chain::FinalizeError::Conflict) => self.stats.conflicting_finality += 1,
        }
    }
}
