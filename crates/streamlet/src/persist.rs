//! What a Streamlet node persists, and how a fresh engine restores from it (beyond the paper,
//! whose nodes never lose memory).
//!
//! | record | written | the rule that needs it |
//! |---|---|---|
//! | `Voted(vote)` | before the vote is broadcast (`vote.rs`, `try_vote`) | §3 "Vote": a node votes at most once per epoch. A node that forgot its vote could vote for a second block of the epoch, and two notarizations of one epoch break the quorum-intersection argument of the consistency proof |
//! | `Adopted(proposal)` | when a proposal joins the tree (`vote.rs`, `adopt`); a leader's own before it is broadcast (`epoch.rs`, `propose`) | §3 "Notarize": the notarized chain a node extends and votes on; a leader proposes once per epoch |
//! | `Notarized(certificate)` | when a quorum of votes forms (`vote.rs`, `on_vote`) | §3 "Notarize" and "Finalize": which blocks are on a notarized chain |
//! | checkpoint | at each finalization, and every `CHECKPOINT_AFTER_RECORDS` records (`commit_finalized`, `enter_epoch`) | stands for every record before it: the finalized tip, the last epoch voted and proposed in, this node's votes above the tip, and the notarized proposals above it with their certificates (at most `CHECKPOINT_BYTES_MAX` of them; older ones come back by resync) |
//!
//! The driver makes every record durable before any message sent after it leaves the node
//! (`agora_consensus::dispatch`), so a vote is never on the wire before the node would
//! remember it. A restored node resumes from the checkpoint's finalized tip: its tree is
//! rooted there, and what it finalizes again on replay it commits again on start, each block
//! with its notarization (the driver applies a block once, and stores the proof of one it had
//! lost: a commit waits for the sync of the records before it, so the journal can know a block
//! final that the block store lost in the crash).

use agora_consensus::{Ctx, RestoreError};
use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, Epoch, Vote, codec};
use serde::{Deserialize, Serialize};

use crate::tree::BlockTree;
use crate::{Proposal, Streamlet, vote_statement};

/// A checkpoint is written at the next epoch start once this many records followed the last,
/// so that the journal stays short through a stretch with no finalization.
pub(crate) const CHECKPOINT_AFTER_RECORDS: usize = 64;
/// The notarized proposals a checkpoint carries stop at this many bytes, keeping it well under
/// the journal's record limit.
pub(crate) const CHECKPOINT_BYTES_MAX: usize = 8 << 20;
/// Records are encoded and decoded under this limit: a checkpoint's proposals and their
/// certificates, with room left under a journal's 16 MiB record limit for the driver's envelope.
const RECORD_BYTES_MAX: usize = 15 << 20;

/// One record of a Streamlet node's journal; see the [module docs](self).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StreamletRecord {
    Voted(Vote),
    Adopted(Proposal),
    Notarized(Certificate),
    Checkpoint(Checkpoint),
}

/// Everything a restored node needs, as of one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    finalized: Block,
    last_voted: Epoch,
    last_proposed: Epoch,
    own_votes: Vec<Vote>,
    /// Notarized proposals above the finalized tip, parents first, with their certificates.
    notarized: Vec<(Proposal, Certificate)>,
}

impl Streamlet {
    /// Appends `record` to the journal.
    pub(crate) fn persist(&mut self, ctx: &mut Ctx<'_, Self>, record: &StreamletRecord) {
        let bytes = codec::encode_with_limit(record, RECORD_BYTES_MAX)
            .expect("a record holds one message's worth");
        self.records_since_checkpoint += 1;
        ctx.persist(bytes);
    }

    /// Writes a checkpoint: it stands for every record before it.
    pub(crate) fn checkpoint(&mut self, ctx: &mut Ctx<'_, Self>) {
        let record = StreamletRecord::Checkpoint(self.checkpoint_now());
        let bytes = codec::encode_with_limit(&record, RECORD_BYTES_MAX)
            .expect("a checkpoint's proposals stop at CHECKPOINT_BYTES_MAX, below the limit");
        self.records_since_checkpoint = 0;
        ctx.checkpoint(bytes);
    }

    fn checkpoint_now(&self) -> Checkpoint {
        let mut notarized = Vec::new();
        let mut bytes = 0;
        for proposal in self.adopted.values().flatten() {
            let statement = vote_statement(&proposal.block);
            if !self.keeper.is_certified(&statement) {
                continue;
            }
            let certificate = self.keeper.certificate_of(&statement, None);
            bytes += proposal.block.encoded_len() + codec::encoded_len(&certificate);
            if bytes > CHECKPOINT_BYTES_MAX {
                break;
            }
            notarized.push((proposal.clone(), certificate));
        }
        Checkpoint {
            finalized: self.tree.finalized_tip().clone(),
            last_voted: self.last_voted,
            last_proposed: self.last_proposed,
            own_votes: self.own_votes.values().copied().collect(),
            notarized,
        }
    }

    /// Replays the records of a crashed node into this fresh engine.
    pub(crate) fn restore_from(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        for (index, bytes) in records.iter().enumerate() {
            let record: StreamletRecord = codec::decode_with_limit(bytes, RECORD_BYTES_MAX)
                .map_err(|error| RestoreError { index, reason: error.to_string() })?;
            match record {
                StreamletRecord::Checkpoint(checkpoint) => self.restore_checkpoint(checkpoint),
                StreamletRecord::Voted(vote) => self.restore_vote(vote),
                StreamletRecord::Adopted(proposal) => self.restore_adopted(proposal),
                StreamletRecord::Notarized(certificate) => self.restore_notarized(&certificate),
            }
        }
        Ok(())
    }

    fn restore_checkpoint(&mut self, checkpoint: Checkpoint) {
        self.tree = BlockTree::rooted(checkpoint.finalized, self.config.history_max);
        self.last_voted = checkpoint.last_voted;
        self.last_proposed = checkpoint.last_proposed;
        for vote in checkpoint.own_votes {
            self.restore_vote(vote);
        }
        for (proposal, certificate) in checkpoint.notarized {
            self.restore_adopted(proposal);
            self.restore_notarized(&certificate);
        }
    }

    fn restore_vote(&mut self, vote: Vote) {
        let epoch = Epoch(vote.statement.round.0);
        self.last_voted = self.last_voted.max(epoch);
        self.own_votes.insert(epoch, vote);
        self.keeper.add_verified(&vote);
    }

    fn restore_adopted(&mut self, proposal: Proposal) {
        let block = proposal.block.clone();
        let epoch = Epoch(block.round().0);
        if block.proposer() == self.me {
            self.last_proposed = self.last_proposed.max(epoch);
        }
        if self.tree.contains(&block.digest()) || !self.tree.contains(&block.parent()) {
            return;
        }
        self.first_proposal.entry(epoch).or_insert(block.digest());
        self.adopted_count += 1;
        self.adopted.entry(epoch).or_default().push(proposal);
        let finalized = self.tree.insert(block, 0);
        self.replay_finalized(finalized);
    }

    fn restore_notarized(&mut self, certificate: &Certificate) {
        let statement = *certificate.statement();
        for (voter, signature) in certificate.signatures() {
            self.keeper.add_verified(&Vote { statement, voter: *voter, signature: *signature });
        }
        let finalized = self.tree.notarize(statement.value, 0);
        self.replay_finalized(finalized);
    }

    /// Blocks that become final again on replay are committed again when the node starts, each
    /// with its notarization.
    fn replay_finalized(
        &mut self,
        finalized: Result<Vec<Block>, crate::tree::ConflictingFinality>,
    ) {
        if let Ok(blocks) = finalized {
            // Each block's notarization, restored with it, is its proof, as at first finality:
            // the driver may no longer hold the block (it was final in the journal, and lost
            // from the block store in the crash), and stores what it is given.
            let proofs: Vec<Vec<Certificate>> = blocks
                .iter()
                .map(|b| {
                    let statement = vote_statement(b);
                    if self.keeper.is_certified(&statement) {
                        vec![self.keeper.certificate_of(&statement, None)]
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let blocks = self.note_finalized(blocks);
            self.recovered_commits.extend(blocks.into_iter().zip(proofs));
        }
    }
}
