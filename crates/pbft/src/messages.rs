//! PBFT's messages, their signatures and their validity checks.

use agora_consensus::Message;
use agora_crypto::{Digest, SecretKey, Signature, SignatureCheck, domain};
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, SeqNo, Statement, Transaction,
    View, Vote,
};
use serde::{Deserialize, Serialize};

/// The primary of `view` in a committee of `n`: replica `v mod n`.
pub fn primary(view: View, n: usize) -> NodeId {
    NodeId((view.0 % n as u64) as u16)
}

/// The statement a PBFT vote signs: `phase` for `(view, seq, digest)`.
pub fn statement(phase: Phase, view: View, seq: SeqNo, digest: Digest) -> Statement {
    Statement { phase, round: Round(view.0), height: Height(seq.0), value: digest }
}

/// PRE-PREPARE(v, n, d) with the block whose digest is d. The primary's signed statement is a
/// [`Vote`] of phase [`Phase::PrePrepare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    /// The primary's signed `(v, n, d)`.
    pub vote: Vote,
    /// The block; its digest is `d`.
    pub block: Block,
}

impl PrePrepare {
    /// The view.
    pub fn view(&self) -> View {
        View(self.vote.statement.round.0)
    }

    /// The sequence number.
    pub fn seq(&self) -> SeqNo {
        SeqNo(self.vote.statement.height.0)
    }

    /// The digest.
    pub fn digest(&self) -> Digest {
        self.vote.statement.value
    }

    /// Checks the primary's signature, that the signer is the view's primary, and that the block
    /// is the one signed for, at that sequence number.
    pub fn check(
        &self,
        committee: &Committee,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), &'static str> {
        let s = &self.vote.statement;
        if s.phase != Phase::PrePrepare {
            return Err("not a pre-prepare statement");
        }
        if self.vote.voter != primary(self.view(), committee.n()) {
            return Err("pre-prepare not from the view's primary");
        }
        if self.block.digest() != s.value || self.block.height().0 != s.height.0 {
            return Err("pre-prepare block does not match its digest or sequence number");
        }
        self.vote.verify_with(committee, checker).map_err(|_| "bad pre-prepare signature")
    }
}

/// Proof that a replica prepared `(v, n, d)`: the pre-prepare (with its block) and 2f prepares from
/// distinct backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedProof {
    /// The pre-prepare.
    pub pre_prepare: PrePrepare,
    /// Prepares from backups (never the primary) for the same `(v, n, d)`.
    pub prepares: Certificate,
}

impl PreparedProof {
    /// Checks the pre-prepare and that the prepares are a quorum of backups for the same statement.
    pub fn check(
        &self,
        committee: &Committee,
        prepares_needed: usize,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), &'static str> {
        self.pre_prepare.check(committee, checker)?;
        let pp = &self.pre_prepare;
        let expected = statement(Phase::Prepare, pp.view(), pp.seq(), pp.digest());
        if self.prepares.signers().any(|s| s == pp.vote.voter) {
            return Err("the primary's prepare counted in a prepared proof");
        }
        self.prepares
            .verify_for(committee, prepares_needed, &expected)
            .map_err(|_| "bad prepare certificate")
    }
}

/// A stable checkpoint: sequence number, the executed-log digest there, and 2f+1 signed
/// CHECKPOINT votes (none for the initial checkpoint, sequence 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointProof {
    /// Last sequence number covered.
    pub seq: SeqNo,
    /// Digest of the executed log up to `seq`.
    pub digest: Digest,
    /// The quorum's signatures (`None` for sequence 0).
    pub certificate: Option<Certificate>,
}

impl CheckpointProof {
    /// The initial checkpoint, before anything was executed.
    pub fn genesis(digest: Digest) -> Self {
        Self { seq: SeqNo(0), digest, certificate: None }
    }

    /// Checks the certificate (or that this is the genesis checkpoint).
    pub fn check(
        &self,
        committee: &Committee,
        quorum: usize,
        genesis: Digest,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), &'static str> {
        match &self.certificate {
            None if self.seq == SeqNo(0) && self.digest == genesis => Ok(()),
            None => Err("checkpoint without proof"),
            Some(cert) => {
                let expected = checkpoint_statement(self.seq, self.digest);
                cert.verify_with(committee, quorum, checker)
                    .map_err(|_| "bad checkpoint certificate")
                    .and_then(|()| {
                        if *cert.statement() == expected {
                            Ok(())
                        } else {
                            Err("checkpoint certificate for something else")
                        }
                    })
            }
        }
    }
}

/// The statement of a CHECKPOINT vote (view-independent).
pub fn checkpoint_statement(seq: SeqNo, digest: Digest) -> Statement {
    Statement { phase: Phase::Checkpoint, round: Round(0), height: Height(seq.0), value: digest }
}

/// VIEW-CHANGE(v+1, n, C, P, i), signed by replica i.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view being moved to.
    pub new_view: View,
    /// The sender's last stable checkpoint, with its proof.
    pub checkpoint: CheckpointProof,
    /// A prepared proof for every sequence number above the checkpoint that the sender prepared
    /// (the highest view's, per sequence number).
    pub prepared: Vec<PreparedProof>,
    /// The sender.
    pub replica: NodeId,
    /// Its signature over everything above.
    pub signature: Signature,
}

/// The bytes a view change signs: its canonical encoding without the signature. Not bounded by
/// the message limit (a view change with large batches may exceed it; it is then refused on the
/// wire, never a panic here).
fn view_change_bytes(
    new_view: View,
    checkpoint: &CheckpointProof,
    prepared: &[PreparedProof],
    replica: NodeId,
) -> Vec<u8> {
    postcard::to_stdvec(&(new_view, checkpoint, prepared, replica)).unwrap_or_default()
}

impl ViewChange {
    /// Builds and signs a view change.
    pub fn new(
        new_view: View,
        checkpoint: CheckpointProof,
        prepared: Vec<PreparedProof>,
        replica: NodeId,
        key: &SecretKey,
    ) -> Self {
        let signature = key
            .sign(&domain::MESSAGE, &view_change_bytes(new_view, &checkpoint, &prepared, replica));
        Self { new_view, checkpoint, prepared, replica, signature }
    }

    /// Checks the signature, the checkpoint proof and every prepared proof (each above the
    /// checkpoint, within the log window, from a view before the new one).
    pub fn check(
        &self,
        committee: &Committee,
        genesis: Digest,
        window: u64,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), &'static str> {
        let bytes =
            view_change_bytes(self.new_view, &self.checkpoint, &self.prepared, self.replica);
        committee
            .verify_with(checker, self.replica, &domain::MESSAGE, &bytes, &self.signature)
            .map_err(|_| "bad view-change signature")?;
        let quorum = committee.byzantine_quorum();
        self.checkpoint.check(committee, quorum, genesis, checker)?;
        let mut last = self.checkpoint.seq;
        for p in &self.prepared {
            let seq = p.pre_prepare.seq();
            if seq <= last || seq.0 > self.checkpoint.seq.0 + window {
                return Err("prepared proofs out of order or outside the window");
            }
            if p.pre_prepare.view() >= self.new_view {
                return Err("prepared proof from a view not before the new one");
            }
            p.check(committee, quorum - 1, checker)?;
            last = seq;
        }
        Ok(())
    }
}

/// NEW-VIEW(v+1, V, O), signed by the new primary: the 2f+1 view changes it used and the
/// pre-prepares it re-issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    /// The new view.
    pub view: View,
    /// The view changes (V).
    pub view_changes: Vec<ViewChange>,
    /// The pre-prepares (O), one per sequence number from the highest checkpoint in V to the
    /// highest prepared sequence number in V.
    pub pre_prepares: Vec<PrePrepare>,
}

/// What a backup must find in O, recomputed from V: the highest checkpoint, and for each sequence
/// number above it up to the highest prepared one, the block of the highest-view prepared proof,
/// or a null (empty) block made deterministically for the gap.
pub fn compute_o(
    view: View,
    view_changes: &[ViewChange],
    n: usize,
) -> (CheckpointProof, Vec<Block>) {
    let checkpoint = view_changes
        .iter()
        .map(|vc| &vc.checkpoint)
        .max_by_key(|c| c.seq)
        .cloned()
        .expect("a new view has view changes");
    let max_s = view_changes
        .iter()
        .flat_map(|vc| vc.prepared.iter().map(|p| p.pre_prepare.seq()))
        .max()
        .unwrap_or(checkpoint.seq)
        .max(checkpoint.seq);
    let blocks = (checkpoint.seq.0 + 1..=max_s.0)
        .map(|s| {
            let best = view_changes
                .iter()
                .flat_map(|vc| vc.prepared.iter())
                .filter(|p| p.pre_prepare.seq().0 == s)
                .max_by_key(|p| (p.pre_prepare.view(), p.pre_prepare.digest()));
            match best {
                Some(p) => p.pre_prepare.block.clone(),
                None => null_block(view, SeqNo(s), n),
            }
        })
        .collect();
    (checkpoint, blocks)
}

/// The null request for a gap at `seq` in `view`: empty, and the same at every replica.
pub fn null_block(view: View, seq: SeqNo, n: usize) -> Block {
    Block::new(
        Digest::ZERO,
        Round(view.0),
        Height(seq.0),
        primary(view, n),
        0,
        agora_types::Batch::empty(),
    )
}

/// A client's REPLY for an executed sequence number, sent by each replica to the replica the
/// client used (here: to all, each replica standing in for its own clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The executed sequence number.
    pub seq: SeqNo,
    /// The executed block's digest (the "result" clients compare).
    pub digest: Digest,
}

/// PBFT's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PbftMessage {
    /// Client requests on their way to the primary.
    Forward(Vec<Transaction>),
    /// PRE-PREPARE.
    PrePrepare(PrePrepare),
    /// PREPARE.
    Prepare(Vote),
    /// COMMIT.
    Commit(Vote),
    /// REPLY to clients.
    Reply(Reply),
    /// CHECKPOINT.
    Checkpoint(Vote),
    /// VIEW-CHANGE.
    ViewChange(Box<ViewChange>),
    /// NEW-VIEW.
    NewView(Box<NewView>),
    /// Asks for executed blocks `from..=to` (state transfer).
    Fetch {
        /// First sequence number wanted.
        from: SeqNo,
        /// Last sequence number wanted.
        to: SeqNo,
    },
    /// Executed blocks, in sequence order, answering a fetch.
    Blocks(Vec<Block>),
}

impl Message for PbftMessage {
    fn transactions(&self) -> &[Transaction] {
        match self {
            PbftMessage::PrePrepare(pp) => pp.block.batch().transactions(),
            PbftMessage::Forward(txs) => txs,
            _ => &[],
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PbftMessage::Forward(_) => "forward",
            PbftMessage::PrePrepare(_) => "pre-prepare",
            PbftMessage::Prepare(_) => "prepare",
            PbftMessage::Commit(_) => "commit",
            PbftMessage::Reply(_) => "reply",
            PbftMessage::Checkpoint(_) => "checkpoint",
            PbftMessage::ViewChange(_) => "view-change",
            PbftMessage::NewView(_) => "new-view",
            PbftMessage::Fetch { .. } => "fetch",
            PbftMessage::Blocks(_) => "blocks",
        }
    }

    fn instance(&self) -> Option<u64> {
        match self {
            PbftMessage::PrePrepare(p) => Some(p.seq().0),
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) => Some(v.statement.height.0),
            PbftMessage::Reply(r) => Some(r.seq.0),
            // View-change traffic is labelled with the view it moves to.
            PbftMessage::ViewChange(vc) => Some(vc.new_view.0),
            PbftMessage::NewView(nv) => Some(nv.view.0),
            _ => None,
        }
    }
}
