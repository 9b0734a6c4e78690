//! PBFT's messages, their signatures and their validity checks.

use agora_consensus::{Message, Tamper};
use agora_crypto::{Digest, SecretKey, Signature, SignatureCheck, domain};
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, SeqNo, Statement, Transaction,
    View, Vote, codec,
};
use serde::{Deserialize, Serialize};

use crate::PbftDrop;

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
    ) -> Result<(), PbftDrop> {
        let s = &self.vote.statement;
        if s.phase != Phase::PrePrepare {
            return Err(PbftDrop::NotAPrePrepare);
        }
        if self.vote.voter != primary(self.view(), committee.n()) {
            return Err(PbftDrop::PrePrepareNotFromPrimary);
        }
        if self.block.digest() != s.value || self.block.height().0 != s.height.0 {
            return Err(PbftDrop::PrePrepareBlockMismatch);
        }
        self.vote.verify_with(committee, checker).map_err(|_| PbftDrop::BadPrePrepareSignature)
    }
}

/// Proof that a replica prepared `(v, n, d)`: the primary's signed pre-prepare statement, 2f
/// prepares from distinct backups, and the block itself when the proof travels in a VIEW-CHANGE
/// (the new primary needs it to re-issue the request). A NEW-VIEW forwards its view changes with
/// the blocks stripped: the blocks it needs travel once, in O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedProof {
    /// The primary's signed `(v, n, d)`.
    pub pre_prepare: Vote,
    /// The block whose digest is `d`, if carried.
    pub block: Option<Block>,
    /// Prepares from backups (never the primary) for the same `(v, n, d)`.
    pub prepares: Certificate,
}

impl PreparedProof {
    /// The view.
    pub fn view(&self) -> View {
        View(self.pre_prepare.statement.round.0)
    }

    /// The sequence number.
    pub fn seq(&self) -> SeqNo {
        SeqNo(self.pre_prepare.statement.height.0)
    }

    /// The digest.
    pub fn digest(&self) -> Digest {
        self.pre_prepare.statement.value
    }

    /// The same proof without its block.
    pub fn stripped(&self) -> Self {
        Self { pre_prepare: self.pre_prepare, block: None, prepares: self.prepares.clone() }
    }

    /// Checks the pre-prepare statement, the block if carried (or demands it), and that the
    /// prepares are a quorum of backups for the same statement.
    pub fn check(
        &self,
        committee: &Committee,
        prepares_needed: usize,
        require_block: bool,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), PbftDrop> {
        let s = &self.pre_prepare.statement;
        if s.phase != Phase::PrePrepare
            || self.pre_prepare.voter != primary(self.view(), committee.n())
        {
            return Err(PbftDrop::ProofWithoutPrePrepare);
        }
        match &self.block {
            Some(block) if block.digest() != s.value || block.height().0 != s.height.0 => {
                return Err(PbftDrop::ProofBlockMismatch);
            }
            None if require_block => return Err(PbftDrop::ProofWithoutBlock),
            _ => {}
        }
        self.pre_prepare
            .verify_with(committee, checker)
            .map_err(|_| PbftDrop::BadPrePrepareSignature)?;
        let expected = statement(Phase::Prepare, self.view(), self.seq(), self.digest());
        if self.prepares.signers().any(|s| s == self.pre_prepare.voter) {
            return Err(PbftDrop::PrimaryPrepareInProof);
        }
        self.prepares
            .verify_for(committee, prepares_needed, &expected)
            .map_err(|_| PbftDrop::BadPrepareCertificate)
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
    ) -> Result<(), PbftDrop> {
        match &self.certificate {
            None if self.seq == SeqNo(0) && self.digest == genesis => Ok(()),
            None => Err(PbftDrop::CheckpointWithoutProof),
            Some(cert) => {
                let expected = checkpoint_statement(self.seq, self.digest);
                cert.verify_with(committee, quorum, checker)
                    .map_err(|_| PbftDrop::BadCheckpointCertificate)
                    .and_then(|()| {
                        if *cert.statement() == expected {
                            Ok(())
                        } else {
                            Err(PbftDrop::CheckpointCertificateMismatch)
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

/// The bytes a view change signs: its canonical encoding without the signature, with the proofs'
/// blocks left out (a NEW-VIEW forwards view changes stripped of blocks, and their signatures
/// must still hold; each proof's block is bound by its signed digest anyway). Not bounded by the
/// message limit: an oversized message is refused on the wire, never a panic here.
fn view_change_bytes(
    new_view: View,
    checkpoint: &CheckpointProof,
    prepared: &[PreparedProof],
    replica: NodeId,
) -> Vec<u8> {
    let stripped: Vec<PreparedProof> = prepared.iter().map(PreparedProof::stripped).collect();
    codec::signing_bytes(&(new_view, checkpoint, stripped, replica))
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

    /// The same view change with its proofs' blocks stripped (as forwarded in a NEW-VIEW).
    pub fn stripped(&self) -> Self {
        Self {
            new_view: self.new_view,
            checkpoint: self.checkpoint.clone(),
            prepared: self.prepared.iter().map(PreparedProof::stripped).collect(),
            replica: self.replica,
            signature: self.signature,
        }
    }

    /// Checks the signature, the checkpoint proof and every prepared proof (each above the
    /// checkpoint, within the log window, from a view before the new one). Received directly, a
    /// view change must carry its proofs' blocks (`require_blocks`); forwarded in a NEW-VIEW, not.
    pub fn check(
        &self,
        committee: &Committee,
        genesis: Digest,
        window: u64,
        require_blocks: bool,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), PbftDrop> {
        let bytes =
            view_change_bytes(self.new_view, &self.checkpoint, &self.prepared, self.replica);
        committee
            .verify_with(checker, self.replica, &domain::MESSAGE, &bytes, &self.signature)
            .map_err(|_| PbftDrop::BadViewChangeSignature)?;
        let quorum = committee.byzantine_quorum();
        self.checkpoint.check(committee, quorum, genesis, checker)?;
        let mut last = self.checkpoint.seq;
        for p in &self.prepared {
            let seq = p.seq();
            if seq <= last || seq.0 > self.checkpoint.seq.0 + window {
                return Err(PbftDrop::ProofsOutOfOrder);
            }
            if p.view() >= self.new_view {
                return Err(PbftDrop::ProofFromLaterView);
            }
            p.check(committee, quorum - 1, require_blocks, checker)?;
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
    /// The view changes (V), their proofs' blocks stripped.
    pub view_changes: Vec<ViewChange>,
    /// The pre-prepares (O), one per sequence number from the highest checkpoint in V to the
    /// highest prepared sequence number in V.
    pub pre_prepares: Vec<PrePrepare>,
}

/// What a backup must find in O, recomputed from V: the highest checkpoint, and for each sequence
/// number above it up to the highest prepared one, the digest of the highest-view prepared proof
/// (with its block when some view change in V carries it), or a null block made deterministically
/// for the gap.
pub fn compute_o(
    view: View,
    view_changes: &[ViewChange],
    n: usize,
) -> (CheckpointProof, Vec<(SeqNo, Digest, Option<Block>)>) {
    let checkpoint = view_changes
        .iter()
        .map(|vc| &vc.checkpoint)
        .max_by_key(|c| c.seq)
        .cloned()
        .expect("a new view has view changes");
    let proofs = || view_changes.iter().flat_map(|vc| vc.prepared.iter());
    let max_s =
        proofs().map(PreparedProof::seq).max().unwrap_or(checkpoint.seq).max(checkpoint.seq);
    let entries = (checkpoint.seq.0 + 1..=max_s.0)
        .map(|s| {
            let best = proofs().filter(|p| p.seq().0 == s).max_by_key(|p| (p.view(), p.digest()));
            match best {
                Some(p) => {
                    let digest = p.digest();
                    let block =
                        proofs().filter(|q| q.digest() == digest).find_map(|q| q.block.clone());
                    (SeqNo(s), digest, block)
                }
                None => {
                    let null = null_block(view, SeqNo(s), n);
                    (SeqNo(s), null.digest(), Some(null))
                }
            }
        })
        .collect();
    (checkpoint, entries)
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
    Blocks(Vec<FetchedBlock>),
}

/// An executed block as a FETCH is answered: with the commit certificate that shows it final on
/// its own, when the sender holds one (it executed the block in the normal case, or took it with
/// its certificate). Without one the block counts only toward a stable checkpoint's log digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedBlock {
    /// The block as it was pre-prepared.
    pub block: Block,
    /// 2f + 1 COMMITs for the block's digest at its sequence number, in any view.
    pub commit: Option<Certificate>,
}

impl FetchedBlock {
    /// Checks that `commit` certifies this block at its height: a quorum of COMMITs for its
    /// digest at its sequence number. Committed in any view is committed for good (§4.4's
    /// invariant: a request committed at n has the same digest at n in every later view).
    pub fn certified(
        &self,
        committee: &Committee,
        quorum: usize,
        checker: &mut dyn SignatureCheck,
    ) -> bool {
        let Some(commit) = &self.commit else { return false };
        let s = commit.statement();
        s.phase == Phase::Commit
            && s.height == self.block.height()
            && s.value == self.block.digest()
            && commit.verify_with(committee, quorum, checker).is_ok()
    }
}

/// PRE-PREPAREs are proposals; PREPARE, COMMIT and CHECKPOINT carry the sender's own vote.
impl Tamper for PbftMessage {
    fn proposed_block(&self) -> Option<&Block> {
        match self {
            PbftMessage::PrePrepare(pp) => Some(&pp.block),
            _ => None,
        }
    }

    fn repropose(&self, block: Block, signer: NodeId, key: &SecretKey) -> Option<Self> {
        let PbftMessage::PrePrepare(pp) = self else { return None };
        let statement = statement(Phase::PrePrepare, pp.view(), pp.seq(), block.digest());
        Some(PbftMessage::PrePrepare(PrePrepare {
            vote: Vote::sign(statement, signer, key),
            block,
        }))
    }

    fn own_vote(&self) -> Option<&Vote> {
        match self {
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
                Some(v)
            }
            _ => None,
        }
    }

    fn with_vote(&self, vote: Vote) -> Option<Self> {
        match self {
            PbftMessage::Prepare(_) => Some(PbftMessage::Prepare(vote)),
            PbftMessage::Commit(_) => Some(PbftMessage::Commit(vote)),
            PbftMessage::Checkpoint(_) => Some(PbftMessage::Checkpoint(vote)),
            _ => None,
        }
    }

    fn round(&self) -> Option<Round> {
        match self {
            PbftMessage::PrePrepare(pp) => Some(pp.vote.statement.round),
            _ => self.own_vote().map(|v| v.statement.round),
        }
    }
}

/// PBFT's message kinds, by the names traces and metrics use for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PbftKind {
    /// Client requests passed on to the primary.
    Forward,
    /// PRE-PREPARE.
    PrePrepare,
    /// PREPARE.
    Prepare,
    /// COMMIT.
    Commit,
    /// REPLY.
    Reply,
    /// CHECKPOINT.
    Checkpoint,
    /// VIEW-CHANGE.
    ViewChange,
    /// NEW-VIEW.
    NewView,
    /// A state-transfer request.
    Fetch,
    /// A state-transfer answer.
    Blocks,
}

impl PbftKind {
    /// Every kind, in protocol order.
    pub const ALL: [PbftKind; 10] = [
        PbftKind::Forward,
        PbftKind::PrePrepare,
        PbftKind::Prepare,
        PbftKind::Commit,
        PbftKind::Reply,
        PbftKind::Checkpoint,
        PbftKind::ViewChange,
        PbftKind::NewView,
        PbftKind::Fetch,
        PbftKind::Blocks,
    ];

    /// The name traces and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            PbftKind::Forward => "forward",
            PbftKind::PrePrepare => "pre-prepare",
            PbftKind::Prepare => "prepare",
            PbftKind::Commit => "commit",
            PbftKind::Reply => "reply",
            PbftKind::Checkpoint => "checkpoint",
            PbftKind::ViewChange => "view-change",
            PbftKind::NewView => "new-view",
            PbftKind::Fetch => "fetch",
            PbftKind::Blocks => "blocks",
        }
    }

    /// The kind a trace names `name`, if it is one of PBFT's.
    pub fn from_name(name: &str) -> Option<PbftKind> {
        PbftKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// VIEW-CHANGE and NEW-VIEW: traffic of a view, not of a sequence number.
    pub fn is_view_change(self) -> bool {
        matches!(self, PbftKind::ViewChange | PbftKind::NewView)
    }
}

impl PbftMessage {
    /// This message's kind.
    pub fn kind_of(&self) -> PbftKind {
        match self {
            PbftMessage::Forward(_) => PbftKind::Forward,
            PbftMessage::PrePrepare(_) => PbftKind::PrePrepare,
            PbftMessage::Prepare(_) => PbftKind::Prepare,
            PbftMessage::Commit(_) => PbftKind::Commit,
            PbftMessage::Reply(_) => PbftKind::Reply,
            PbftMessage::Checkpoint(_) => PbftKind::Checkpoint,
            PbftMessage::ViewChange(_) => PbftKind::ViewChange,
            PbftMessage::NewView(_) => PbftKind::NewView,
            PbftMessage::Fetch { .. } => PbftKind::Fetch,
            PbftMessage::Blocks(_) => PbftKind::Blocks,
        }
    }
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
        self.kind_of().as_str()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis_log_digest;
    use agora_crypto::DirectCheck;
    use bytes::Bytes;

    /// Four replicas; replica 0 (primary of view 0) pre-prepared a 200-transaction block at
    /// sequence 1 and replicas 1 and 2 prepared it. Returns the committee, the keys, the block
    /// and the prepared proof.
    fn prepared_at_1() -> (Committee, Vec<SecretKey>, Block, PreparedProof) {
        let keys: Vec<SecretKey> = (0..4).map(|i| SecretKey::from_seed(3, i)).collect();
        let committee = Committee::new(keys.iter().map(|k| *k.public_key()).collect()).unwrap();
        let client = SecretKey::from_seed(4, 0);
        let txs = (0..200)
            .map(|i| Transaction::new_signed(&client, i, Bytes::from(vec![7u8; 64])).unwrap())
            .collect();
        let batch = agora_types::Batch::new(txs).unwrap();
        let block = Block::new(Digest::ZERO, Round(0), Height(1), NodeId(0), 0, batch);
        let (view, seq, digest) = (View(0), SeqNo(1), block.digest());
        let pre_prepare =
            Vote::sign(statement(Phase::PrePrepare, view, seq, digest), NodeId(0), &keys[0]);
        let prepare = statement(Phase::Prepare, view, seq, digest);
        let prepares = Certificate::new(
            prepare,
            (1..3)
                .map(|i| (NodeId(i), Vote::sign(prepare, NodeId(i), &keys[i as usize]).signature)),
        );
        let proof = PreparedProof { pre_prepare, block: Some(block.clone()), prepares };
        (committee, keys, block, proof)
    }

    #[test]
    fn a_stripped_view_change_keeps_its_signature_but_is_refused_when_received_directly() {
        let (committee, keys, _, proof) = prepared_at_1();
        let checkpoint = CheckpointProof::genesis(genesis_log_digest());
        let vc = ViewChange::new(View(1), checkpoint, vec![proof], NodeId(2), &keys[2]);
        let check = |vc: &ViewChange, require| {
            vc.check(&committee, genesis_log_digest(), 16, require, &mut DirectCheck)
                .map_err(PbftDrop::as_str)
        };
        assert_eq!(check(&vc, true), Ok(()));
        let stripped = vc.stripped();
        assert_eq!(check(&stripped, false), Ok(()));
        assert_eq!(check(&stripped, true), Err("prepared proof without its block"));
        // A block that is not the signed digest's is caught even though the signature skips it.
        let mut forged = vc.clone();
        forged.prepared[0].block = Some(null_block(View(0), SeqNo(1), 4));
        assert_eq!(check(&forged, false), Err("prepared proof block does not match its digest"));
    }

    #[test]
    fn o_names_each_prepared_digest_once_and_new_view_carries_each_block_once() {
        let (_, keys, block, proof) = prepared_at_1();
        let checkpoint = CheckpointProof::genesis(genesis_log_digest());
        let vcs: Vec<ViewChange> = (1..4)
            .map(|i| {
                ViewChange::new(
                    View(1),
                    checkpoint.clone(),
                    vec![proof.clone()],
                    NodeId(i),
                    &keys[i as usize],
                )
            })
            .collect();
        let (_, full) = compute_o(View(1), &vcs, 4);
        assert_eq!(full, vec![(SeqNo(1), block.digest(), Some(block.clone()))]);
        let stripped: Vec<ViewChange> = vcs.iter().map(ViewChange::stripped).collect();
        let (_, bare) = compute_o(View(1), &stripped, 4);
        assert_eq!(bare, vec![(SeqNo(1), block.digest(), None)]);
        let vote = Vote::sign(
            statement(Phase::PrePrepare, View(1), SeqNo(1), block.digest()),
            NodeId(1),
            &keys[1],
        );
        let nv = NewView {
            view: View(1),
            view_changes: stripped,
            pre_prepares: vec![PrePrepare { vote, block: block.clone() }],
        };
        let size = codec::encoded_len(&nv);
        let block_size = block.encoded_len();
        assert!(
            size < block_size + block_size / 2,
            "NEW-VIEW of {size} bytes for one {block_size}-byte block"
        );
    }
}
