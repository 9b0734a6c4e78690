//! What a HotStuff node journals before it speaks, and how a restarted node resumes.
//!
//! | record | written | the rule it keeps |
//! |---|---|---|
//! | `Voted(vote)` | before the vote leaves for the next leader (`vote.rs`, `try_vote`) | the paper's `vheight`: one vote per view, never in a view at or below the last |
//! | `TimedOut(timeout)` | before the timeout is broadcast (`view.rs`, `time_out`) | no vote in a view after timing out of it, which the two-chain rule's safety rests on; the same timeout sent again after a restart |
//! | `Raised { high_qc, locked }` | when `qc_high` or the lock rises (`vote.rs`, `on_qc`), before any vote that follows | the safe-node rule's lock (three-chain); the QC a timeout must report (two-chain) |
//! | `Proposed(proposal)` | a leader's own proposal, before it is broadcast (`view.rs`, `propose`) | one proposal per view from an honest leader |
//! | checkpoint | at each commit, and at a view's start once `CHECKPOINT_AFTER_RECORDS` records followed the last | stands for every record before it: the finalized tip and its QC, the view, the last voted and proposed views, the own vote and timeout, `qc_high`, the lock, and the proposals above the tip (at most `CHECKPOINT_BYTES_MAX` of them; the rest come back by sync) |
//!
//! The driver makes every record durable before any message sent after it leaves the node,
//! and before any commit after it is applied (`agora_consensus::dispatch`). A restored node
//! resumes from the checkpoint, replays what followed, runs the commit rule on its `qc_high`
//! when it starts (the driver applies a block it already holds once), and asks its peers for
//! what it missed.

use agora_consensus::{Ctx, RestoreError};
use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, Vote, codec};
use serde::{Deserialize, Serialize};

use crate::tree::Tree;
use crate::{HotStuff, Proposal, Timeout, qc_view};

/// A checkpoint is written at the next view start once this many records followed the last,
/// so that the journal stays short through a stretch with no commit.
pub(crate) const CHECKPOINT_AFTER_RECORDS: usize = 64;
/// The proposals a checkpoint carries stop at this many bytes, keeping it well under the
/// journal's record limit.
pub(crate) const CHECKPOINT_BYTES_MAX: usize = 8 << 20;
/// Records are encoded and decoded under this limit, with room left under a journal's 16 MiB
/// record limit for the driver's envelope.
const RECORD_BYTES_MAX: usize = 15 << 20;

/// One record of a HotStuff node's journal; see the [module docs](self).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Record {
    Voted(Vote),
    TimedOut(Timeout),
    Raised { high_qc: Option<Certificate>, locked: Option<Certificate> },
    Proposed(Proposal),
    Checkpoint(Box<Checkpoint>),
}

/// Everything a restored node needs, as of one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    finalized: Block,
    finalized_qc: Option<Certificate>,
    view: u64,
    last_voted: u64,
    last_proposed: u64,
    own_vote: Option<Vote>,
    own_timeout: Option<Timeout>,
    high_qc: Option<Certificate>,
    locked: Option<Certificate>,
    /// Proposals above the finalized tip, oldest first.
    proposals: Vec<Proposal>,
}

impl HotStuff {
    /// Appends `record` to the journal.
    pub(crate) fn persist(&mut self, ctx: &mut Ctx<'_, Self>, record: &Record) {
        let bytes = codec::encode_with_limit(record, RECORD_BYTES_MAX)
            .expect("a record holds one message's worth");
        self.records_since_checkpoint += 1;
        ctx.persist(bytes);
    }

    /// Writes a checkpoint: it stands for every record before it.
    pub(crate) fn checkpoint(&mut self, ctx: &mut Ctx<'_, Self>) {
        let record = Record::Checkpoint(Box::new(self.checkpoint_now()));
        let bytes = codec::encode_with_limit(&record, RECORD_BYTES_MAX)
            .expect("a checkpoint stops at CHECKPOINT_BYTES_MAX, below the limit");
        self.records_since_checkpoint = 0;
        ctx.checkpoint(bytes);
    }

    fn checkpoint_now(&self) -> Checkpoint {
        let mut live: Vec<&Proposal> = self.proposals.values().collect();
        live.sort_by_key(|p| (p.block.round(), p.block.height()));
        let mut bytes = 0;
        let mut proposals = Vec::new();
        for p in live {
            bytes += codec::encoded_len(p);
            if bytes > CHECKPOINT_BYTES_MAX {
                break;
            }
            proposals.push(p.clone());
        }
        let tip = self.tree.finalized_tip();
        Checkpoint {
            finalized: tip.clone(),
            finalized_qc: self.tree.qc_of(&tip.digest()).cloned(),
            view: self.view,
            last_voted: self.last_voted,
            last_proposed: self.last_proposed,
            own_vote: self.own_vote,
            own_timeout: self.own_timeout.clone(),
            high_qc: self.high_qc.clone(),
            locked: self.locked.clone(),
            proposals,
        }
    }

    /// Replays the records of a crashed node into this fresh engine.
    pub(crate) fn restore_from(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        for (index, bytes) in records.iter().enumerate() {
            let record: Record = codec::decode_with_limit(bytes, RECORD_BYTES_MAX)
                .map_err(|error| RestoreError { index, reason: error.to_string() })?;
            match record {
                Record::Checkpoint(c) => self.restore_checkpoint(*c),
                Record::Voted(vote) => self.restore_vote(vote),
                Record::TimedOut(timeout) => self.restore_timeout(timeout),
                Record::Raised { high_qc, locked } => self.raise(high_qc, locked),
                Record::Proposed(proposal) => {
                    self.last_proposed = self.last_proposed.max(proposal.block.round().0);
                    self.restore_block(proposal);
                }
            }
        }
        // A node is at least in the view after its highest QC; a timeout of an earlier view
        // than the one it resumes in is not sent again.
        self.view = self.view.max(self.high_qc_view() + 1).max(self.last_voted);
        if self.own_timeout.as_ref().is_some_and(|t| t.vote.statement.round.0 != self.view) {
            self.own_timeout = None;
        }
        for qc in [self.locked.clone(), self.high_qc.clone()].into_iter().flatten() {
            self.tree.certify(qc, 0);
        }
        Ok(())
    }

    fn restore_checkpoint(&mut self, c: Checkpoint) {
        self.tree = Tree::rooted(
            c.finalized,
            c.finalized_qc,
            self.config.history_max,
            self.config.early_qcs_max,
        );
        self.view = self.view.max(c.view);
        self.last_voted = self.last_voted.max(c.last_voted);
        self.last_proposed = self.last_proposed.max(c.last_proposed);
        if let Some(vote) = c.own_vote {
            self.restore_vote(vote);
        }
        if let Some(timeout) = c.own_timeout {
            self.restore_timeout(timeout);
        }
        self.raise(c.high_qc, c.locked);
        for proposal in c.proposals {
            self.restore_block(proposal);
        }
    }

    fn restore_vote(&mut self, vote: Vote) {
        let v = vote.statement.round.0;
        self.last_voted = self.last_voted.max(v);
        self.view = self.view.max(v);
        if self.own_vote.is_none_or(|own| own.statement.round.0 <= v) {
            self.own_vote = Some(vote);
        }
    }

    fn restore_timeout(&mut self, timeout: Timeout) {
        let v = timeout.vote.statement.round.0;
        self.last_voted = self.last_voted.max(v);
        if v >= self.view {
            self.view = v;
            self.own_timeout = Some(timeout);
        }
    }

    /// Raises `qc_high` and the lock to the given QCs where they are higher.
    fn raise(&mut self, high_qc: Option<Certificate>, locked: Option<Certificate>) {
        if qc_view(high_qc.as_ref()) > self.high_qc_view() {
            self.high_qc = high_qc;
        }
        if qc_view(locked.as_ref()) > self.locked_view() {
            self.locked = locked;
        }
    }

    /// A proposal back into the tree, when its parent is there (the rest come back by sync).
    fn restore_block(&mut self, proposal: Proposal) {
        let block = &proposal.block;
        if block.round().0 <= self.tree.finalized_view()
            || self.tree.contains(&block.digest())
            || !self.tree.contains(&block.parent())
        {
            return;
        }
        if let Some(justify) = proposal.justify.clone() {
            self.tree.certify(justify, 0);
        }
        self.first_proposal.entry(block.round().0).or_insert(block.digest());
        self.tree.insert(block.clone());
        self.proposals.insert(block.digest(), proposal);
    }
}
