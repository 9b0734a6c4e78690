//! What a PBFT replica persists, and how a fresh engine restores from it. The paper's replicas
//! keep their message log in memory and assume most of them never lose it; a replica that
//! restarts with amnesia can break safety for everyone, so each of the facts below is
//! journalled before the message that depends on it leaves the replica.
//!
//! | record | written | the rule that needs it |
//! |---|---|---|
//! | `Accepted(pre-prepare)` | a backup's before its PREPARE (`normal.rs` `accept_pre_prepare`); the primary's before its PRE-PREPARE (`propose`) and O's before its NEW-VIEW (`view_change.rs` `send_new_view`) | §4.2: a backup accepts a pre-prepare only if it "has not accepted a pre-prepare message for view v and sequence number n containing a different digest"; a primary assigns a sequence number once per view. A replica that forgot would prepare two digests at one (v, n) |
//! | `Prepared(proof)` | before its COMMIT (`normal.rs` `advance`) | §4.4: VIEW-CHANGE carries "a set of prepared certificates"; a request committed anywhere was prepared by f+1 honest replicas, and each must name it in every view change or a new view can reassign its sequence number |
//! | `Committed(n, d, certificate)` | when the slot is committed-local (`advance`) | §4.2 execution: what the replica executed survives, so it executes it again, in order, when it starts, with the certificate that shows it final (its block store may have lost the block in the crash) |
//! | `Fetched(block, certificate)` | before a block from state transfer executes (`transfer.rs` `on_blocks`) | TOCS state transfer: the executed log, as above |
//! | `ViewChange(vc)` | before VIEW-CHANGE leaves (`view_change.rs` `start_view_change`) | §4.4: once it asks for view v+1 a backup "stops accepting messages (other than checkpoint, view-change, and new-view messages)" of view v |
//! | `NewView(v)` | when the replica installs view v, before the PREPAREs of O (`enter_new_view`), and for the primary before NEW-VIEW leaves | §4.4: the view a replica works in; a primary sends one NEW-VIEW per view |
//! | checkpoint | at each stable checkpoint (`checkpoint.rs` `make_stable`), and after `CHECKPOINT_AFTER_RECORDS` records at a view change | stands for every record before it but those holding the blocks of the log above the stable checkpoint and of the last L executed sequence numbers, which it keeps: the view and its status, this replica's VIEW-CHANGE, the stable checkpoint's proof, the executed position and log digest, and which slots, prepared proofs and commits are live |
//!
//! A checkpoint names blocks by digest instead of copying them: the journal keeps the records
//! that carried them (`Context::checkpoint_keeping`), so a block is written once however many
//! checkpoints it outlives. The blocks of the last L executed sequence numbers come back so that
//! a restarted replica refuses, and leaves out at execution, a request it executed just before
//! the crash, as every other replica does.
//!
//! A restored replica starts where its journal left it: it executes again, in order, what it
//! had committed (the driver applies a block once), sends again its PRE-PREPAREs, PREPAREs and
//! COMMITs of the current view (the paper's retransmission), and a replica restored in a view
//! change sends its VIEW-CHANGE again.

use std::collections::BTreeMap;

use agora_consensus::{Ctx, RestoreError};
use agora_crypto::Digest;
use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, Phase, SeqNo, View, codec};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::{
    CheckpointProof, Executed, Pbft, PbftMessage, PrePrepare, PreparedProof, Slot, Status,
    ViewChange,
};

/// A checkpoint is written at the next view change once this many records followed the last,
/// so that the journal stays short through a run of view changes with no stable checkpoint.
const CHECKPOINT_AFTER_RECORDS: u64 = 256;
/// Records are encoded and decoded under this limit: a pre-prepare is one message
/// (`codec::MESSAGE_BYTES_MAX`); a checkpoint names at most L slots and carries one VIEW-CHANGE
/// without its blocks. It leaves room under a journal's 16 MiB record limit for the envelope.
const RECORD_BYTES_MAX: usize = 15 << 20;

/// One record of a PBFT replica's journal; see the [module docs](self).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum PbftRecord {
    Accepted(PrePrepare),
    /// Stripped: its block is the one the slot's `Accepted` record carries.
    Prepared(PreparedProof),
    /// With the commit certificate: a block executed again after a restart is stored with it.
    Committed(SeqNo, Digest, Option<Certificate>),
    /// With the commit certificate it was taken on, if it was.
    Fetched(Block, Option<Certificate>),
    /// Stripped: its proofs' blocks are those of the `Prepared` records it was built from.
    ViewChange(ViewChange),
    NewView(View),
    Checkpoint(Box<Checkpoint>),
}

/// Everything a restored replica needs besides the blocks, as of one moment; blocks are named by
/// digest and come from the records the checkpoint keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    view: View,
    view_changing: bool,
    last_normal_view: View,
    new_view_sent: Option<View>,
    my_view_change: Option<ViewChange>,
    stable: CheckpointProof,
    last_executed: SeqNo,
    log_digest: Digest,
    next_seq: SeqNo,
    own_checkpoints: Vec<(SeqNo, Digest)>,
    /// The last L executed sequence numbers and their blocks' digests.
    executed: Vec<(SeqNo, Digest)>,
    /// Live slots: sequence number, view and digest of the pre-prepare, and committed-local.
    slots: Vec<(SeqNo, View, Digest, bool)>,
    /// Prepared proofs: sequence number, view and digest.
    prepared: Vec<(SeqNo, View, Digest)>,
}

/// What a restore gathers besides the engine's own state: every block the records carry, with
/// the position of the last record that carried it.
#[derive(Default)]
struct Restoring {
    blocks: FxHashMap<Digest, (Block, u64)>,
}

impl Pbft {
    /// Appends `record` to the journal; returns its position among the records the journal
    /// holds for this engine.
    pub(crate) fn persist(&mut self, ctx: &mut Ctx<'_, Self>, record: &PbftRecord) -> u64 {
        let bytes = codec::encode_with_limit(record, RECORD_BYTES_MAX)
            .expect("a record holds one message's worth");
        ctx.persist(bytes);
        self.records_written += 1;
        self.records_since_checkpoint += 1;
        self.records_written - 1
    }

    /// Writes the checkpoint a handler asked for (`checkpoint_due`), at its end, when the state
    /// it describes is whole.
    pub(crate) fn flush_checkpoint(&mut self, ctx: &mut Ctx<'_, Self>) {
        if std::mem::take(&mut self.checkpoint_due) {
            self.checkpoint(ctx);
        }
    }

    /// Writes a checkpoint that keeps the records still needed for their blocks.
    fn checkpoint(&mut self, ctx: &mut Ctx<'_, Self>) {
        let record = PbftRecord::Checkpoint(Box::new(self.checkpoint_now()));
        let bytes = codec::encode_with_limit(&record, RECORD_BYTES_MAX)
            .expect("a checkpoint names at most L slots");
        let keep = self.records_written - self.oldest_needed_record();
        ctx.checkpoint_keeping(bytes, keep);
        self.records_written += 1;
        self.records_since_checkpoint = 0;
    }

    /// A checkpoint at a view change, once enough records have gathered since the last.
    pub(crate) fn checkpoint_if_long(&mut self) {
        if self.records_since_checkpoint >= CHECKPOINT_AFTER_RECORDS {
            self.checkpoint_due = true;
        }
    }

    /// The first record a checkpoint written now must keep: the oldest that carries a block of
    /// a live slot, a prepared proof or the executed tail.
    fn oldest_needed_record(&self) -> u64 {
        let slots = self.slots.values().map(|s| s.record);
        let prepared = self.prepared_records.values().copied();
        let executed = self.executed_tail().map(|(_, e)| e.record);
        slots.chain(prepared).chain(executed).min().unwrap_or(self.records_written)
    }

    /// The executed blocks whose transactions a restarted replica must remember: the last L.
    fn executed_tail(&self) -> impl Iterator<Item = (&SeqNo, &Executed)> {
        let from = SeqNo(self.last_executed.0.saturating_sub(self.config.log_window)) + 1;
        self.executed.range(from..)
    }

    fn checkpoint_now(&self) -> Checkpoint {
        Checkpoint {
            view: self.view,
            view_changing: self.status == Status::ViewChanging,
            last_normal_view: self.last_normal_view,
            new_view_sent: self.new_view_sent,
            my_view_change: self.my_view_change.as_ref().map(ViewChange::stripped),
            stable: self.stable.clone(),
            last_executed: self.last_executed,
            log_digest: self.log_digest,
            next_seq: self.next_seq,
            own_checkpoints: self.own_checkpoints.iter().map(|(s, d)| (*s, *d)).collect(),
            executed: self.executed_tail().map(|(s, e)| (*s, e.block.digest())).collect(),
            slots: self
                .slots
                .iter()
                .map(|(s, slot)| {
                    let pp = &slot.pre_prepare;
                    (*s, pp.view(), pp.digest(), slot.committed)
                })
                .collect(),
            prepared: self.prepared.iter().map(|(s, p)| (*s, p.view(), p.digest())).collect(),
        }
    }

    /// Replays the records of a crashed replica into this fresh engine.
    pub(crate) fn restore_from(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        let mut restoring = Restoring::default();
        let mut decoded = Vec::with_capacity(records.len());
        for (index, bytes) in records.iter().enumerate() {
            let record: PbftRecord = codec::decode_with_limit(bytes, RECORD_BYTES_MAX)
                .map_err(|error| RestoreError { index, reason: error.to_string() })?;
            decoded.push(record);
        }
        // Records before the latest checkpoint are there for the blocks it names; a checkpoint
        // among them is superseded (and may name blocks pruned since), so it is passed over.
        let latest = decoded.iter().rposition(|r| matches!(r, PbftRecord::Checkpoint(_)));
        for (index, record) in decoded.into_iter().enumerate() {
            let fail = |reason: String| RestoreError { index, reason };
            let position = index as u64;
            match record {
                PbftRecord::Accepted(pp) => {
                    restoring.carry(&pp.block, position);
                    let slot = Slot::accepted(pp, position);
                    self.slots.insert(slot.pre_prepare.seq(), slot);
                }
                PbftRecord::Prepared(proof) => self.restore_prepared(&restoring, proof),
                PbftRecord::Committed(seq, digest, certificate) => {
                    if let Some(slot) = self.slots.get_mut(&seq)
                        && slot.pre_prepare.digest() == digest
                    {
                        slot.committed = true;
                        slot.commit_certificate = certificate;
                    }
                }
                PbftRecord::Fetched(block, certificate) => {
                    restoring.carry(&block, position);
                    let seq = SeqNo(block.height().0);
                    self.recovered_fetched.insert(seq, (block, position, certificate));
                }
                PbftRecord::ViewChange(vc) => {
                    self.view = vc.new_view;
                    self.status = Status::ViewChanging;
                    self.my_view_change = Some(restoring.with_blocks(vc));
                }
                PbftRecord::NewView(view) => self.restore_new_view(view),
                PbftRecord::Checkpoint(checkpoint) if Some(index) == latest => {
                    self.restore_checkpoint(&restoring, *checkpoint).map_err(fail)?;
                }
                PbftRecord::Checkpoint(_) => {}
            }
        }
        self.records_written = records.len() as u64;
        self.restored = !records.is_empty();
        if let Some(last) = self.slots.keys().next_back() {
            self.next_seq = self.next_seq.max(*last + 1);
        }
        Ok(())
    }

    fn restore_prepared(&mut self, restoring: &Restoring, mut proof: PreparedProof) {
        let Some((block, position)) = restoring.blocks.get(&proof.digest()) else { return };
        proof.block = Some(block.clone());
        let seq = proof.seq();
        self.prepared_records.insert(seq, *position);
        if let Some(slot) = self.slots.get_mut(&seq)
            && slot.pre_prepare.digest() == proof.digest()
            && slot.pre_prepare.view() == proof.view()
        {
            slot.prepared_at = Some(0);
            slot.commit_sent = true;
        }
        self.prepared.insert(seq, proof);
    }

    fn restore_new_view(&mut self, view: View) {
        self.view = view;
        self.status = Status::Normal;
        self.last_normal_view = view;
        self.slots.clear();
        if self.primary_of(view) == self.me {
            self.new_view_sent = Some(view);
        }
    }

    fn restore_checkpoint(
        &mut self,
        restoring: &Restoring,
        checkpoint: Checkpoint,
    ) -> Result<(), String> {
        self.view = checkpoint.view;
        self.status = if checkpoint.view_changing { Status::ViewChanging } else { Status::Normal };
        self.last_normal_view = checkpoint.last_normal_view;
        self.new_view_sent = checkpoint.new_view_sent;
        self.my_view_change = checkpoint.my_view_change.map(|vc| restoring.with_blocks(vc));
        self.stable = checkpoint.stable;
        self.last_executed = checkpoint.last_executed;
        self.log_digest = checkpoint.log_digest;
        self.next_seq = checkpoint.next_seq;
        self.own_checkpoints = checkpoint.own_checkpoints.into_iter().collect();
        self.recovered_fetched.retain(|s, _| *s > checkpoint.last_executed);
        let live: BTreeMap<SeqNo, (View, Digest, bool)> =
            checkpoint.slots.into_iter().map(|(s, v, d, c)| (s, (v, d, c))).collect();
        self.slots.retain(|s, slot| {
            live.get(s).is_some_and(|(v, d, _)| {
                *v == slot.pre_prepare.view() && *d == slot.pre_prepare.digest()
            })
        });
        for (seq, slot) in &mut self.slots {
            slot.committed |= live[seq].2;
        }
        let proofs: BTreeMap<SeqNo, (View, Digest)> =
            checkpoint.prepared.into_iter().map(|(s, v, d)| (s, (v, d))).collect();
        self.prepared.retain(|s, p| proofs.get(s) == Some(&(p.view(), p.digest())));
        self.prepared_records.retain(|s, _| proofs.contains_key(s));
        if self.prepared.len() != proofs.len() {
            return Err("a prepared proof the checkpoint names is not in the journal".into());
        }
        self.executed.clear();
        for (seq, digest) in checkpoint.executed {
            let Some((block, record)) = restoring.blocks.get(&digest) else {
                return Err(format!("the block executed at {} is not in the journal", seq.0));
            };
            for tx in block.batch().transactions() {
                self.executed_ids.insert(tx.id());
            }
            let executed = Executed {
                block: block.clone(),
                prepared_at: None,
                executed_at: 0,
                record: *record,
                commit: None,
            };
            self.executed.insert(seq, executed);
        }
        Ok(())
    }

    /// At the start of a restored replica: executes again, in order, what it had committed or
    /// fetched (the driver applies a block once), and sends again its part of the current view's
    /// pre-prepares, prepares and commits, which the others may still wait for.
    pub(crate) fn resume_log(&mut self, ctx: &mut Ctx<'_, Self>) {
        loop {
            let next = self.last_executed + 1;
            if let Some((block, record, certificate)) = self.recovered_fetched.remove(&next) {
                self.execute(ctx, block, None, record, certificate.as_ref());
            } else if let Some(slot) = self.slots.get(&next).filter(|s| s.committed) {
                let (block, prepared_at, record) =
                    (slot.pre_prepare.block.clone(), slot.prepared_at, slot.record);
                self.execute(ctx, block, prepared_at, record, None);
            } else {
                break;
            }
        }
        self.recovered_fetched.clear();
        if self.status != Status::Normal {
            return;
        }
        let primary = self.is_primary();
        let unexecuted: Vec<SeqNo> = self
            .slots
            .range(self.last_executed + 1..)
            .filter(|(_, s)| s.pre_prepare.view() == self.view)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in unexecuted {
            let slot = &self.slots[&seq];
            let (pp, prepared) = (slot.pre_prepare.clone(), slot.prepared_at.is_some());
            if primary {
                ctx.broadcast(PbftMessage::PrePrepare(pp.clone()));
            } else {
                self.send_vote(ctx, Phase::Prepare, &pp);
            }
            if prepared {
                self.send_vote(ctx, Phase::Commit, &pp);
            }
            self.advance(ctx, seq);
        }
    }
}

impl Restoring {
    /// `block` is carried by the record at `position`.
    fn carry(&mut self, block: &Block, position: u64) {
        self.blocks.insert(block.digest(), (block.clone(), position));
    }

    /// A stripped view change with its proofs' blocks put back, where the records hold them.
    fn with_blocks(&self, mut vc: ViewChange) -> ViewChange {
        for proof in &mut vc.prepared {
            proof.block = self.blocks.get(&proof.digest()).map(|(block, _)| block.clone());
        }
        vc
    }
}

impl Slot {
    /// A slot for an accepted pre-prepare, carried by the record at `record`.
    pub(crate) fn accepted(pre_prepare: PrePrepare, record: u64) -> Self {
        Self {
            pre_prepare,
            prepared_at: None,
            committed: false,
            commit_sent: false,
            record,
            commit_certificate: None,
        }
    }
}
