//! Why a message, a submission or a proposal was refused.

/// Why this engine refused something it received: a message, a submission, or a proposal's
/// content. Each is counted in the engine's stats under [`PbftDrop::as_str`], a stable name that
/// reports and tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PbftDrop {
    /// Bad checkpoint.
    BadCheckpoint,
    /// Bad checkpoint certificate.
    BadCheckpointCertificate,
    /// Bad pre-prepare signature.
    BadPrePrepareSignature,
    /// Bad prepare certificate.
    BadPrepareCertificate,
    /// Bad view-change signature.
    BadViewChangeSignature,
    /// Bad vote.
    BadVote,
    /// Batch over the limits.
    BatchOverTheLimits,
    /// Batch repeats a transaction.
    BatchRepeatsTransaction,
    /// Checkpoint certificate for something else.
    CheckpointCertificateMismatch,
    /// Stable checkpoint differs from the executed log.
    CheckpointDiffersFromLog,
    /// Checkpoint too far ahead.
    CheckpointTooFarAhead,
    /// Checkpoint without proof.
    CheckpointWithoutProof,
    /// Conflicting pre-prepare.
    ConflictingPrePrepare,
    /// Early pre-prepare given way to a nearer view.
    EarlyPrePrepareEvicted,
    /// Empty fetch.
    EmptyFetch,
    /// Fetched blocks do not match the checkpoint.
    FetchMismatch,
    /// A pre-prepare for a sequence number this replica executed without holding its slot.
    PrePrepareExecuted,
    /// A fetched block's commit certificate is not a quorum of COMMITs for it.
    FetchedCommitInvalid,
    /// Mempool full.
    MempoolFull,
    /// New view with a duplicate or foreign view change.
    NewViewBadViewChanges,
    /// New view without the block of a prepared request.
    NewViewMissingBlock,
    /// New view's O is not what V says.
    NewViewOMismatch,
    /// New view for an old view.
    NewViewOld,
    /// New view too far ahead.
    NewViewTooFar,
    /// New view with too few view changes.
    NewViewTooFewViewChanges,
    /// Not a checkpoint.
    NotACheckpoint,
    /// Not a pre-prepare statement.
    NotAPrePrepare,
    /// Pre-prepare block does not match its digest or sequence number.
    PrePrepareBlockMismatch,
    /// Pre-prepare for a far view or from another replica.
    PrePrepareFarOrForeign,
    /// Pre-prepare not from the view's primary.
    PrePrepareNotFromPrimary,
    /// Pre-prepare not for the current view.
    PrePrepareOtherView,
    /// Pre-prepare outside the watermarks.
    PrePrepareOutsideWatermarks,
    /// Pre-prepare to the primary.
    PrePrepareToPrimary,
    /// The primary's prepare counted in a prepared proof.
    PrimaryPrepareInProof,
    /// Prepared proof block does not match its digest.
    ProofBlockMismatch,
    /// Prepared proof from a view not before the new one.
    ProofFromLaterView,
    /// Prepared proof without its block.
    ProofWithoutBlock,
    /// Prepared proof without the view's pre-prepare.
    ProofWithoutPrePrepare,
    /// Prepared proofs out of order or outside the window.
    ProofsOutOfOrder,
    /// Reply outside the window.
    ReplyOutsideWindow,
    /// Too many early pre-prepares.
    TooManyEarlyPrePrepares,
    /// View change for an old or far view.
    ViewChangeOldOrFar,
    /// Vote limit.
    VoteLimit,
    /// Vote for another view.
    VoteOtherView,
    /// Vote outside the watermarks.
    VoteOutsideWatermarks,
    /// Vote of the wrong phase.
    VoteWrongPhase,
}

impl PbftDrop {
    /// The stable name this reason is counted under.
    pub fn as_str(self) -> &'static str {
        match self {
            PbftDrop::BadCheckpoint => "bad checkpoint",
            PbftDrop::BadCheckpointCertificate => "bad checkpoint certificate",
            PbftDrop::BadPrePrepareSignature => "bad pre-prepare signature",
            PbftDrop::BadPrepareCertificate => "bad prepare certificate",
            PbftDrop::BadViewChangeSignature => "bad view-change signature",
            PbftDrop::BadVote => "bad vote",
            PbftDrop::BatchOverTheLimits => "batch over the limits",
            PbftDrop::BatchRepeatsTransaction => "batch repeats a transaction",
            PbftDrop::CheckpointCertificateMismatch => "checkpoint certificate for something else",
            PbftDrop::CheckpointDiffersFromLog => "stable checkpoint differs from the executed log",
            PbftDrop::CheckpointTooFarAhead => "checkpoint too far ahead",
            PbftDrop::CheckpointWithoutProof => "checkpoint without proof",
            PbftDrop::ConflictingPrePrepare => "conflicting pre-prepare",
            PbftDrop::EarlyPrePrepareEvicted => "early pre-prepare given way to a nearer view",
            PbftDrop::EmptyFetch => "empty fetch",
            PbftDrop::FetchMismatch => "fetched blocks do not match the checkpoint",
            PbftDrop::PrePrepareExecuted => "pre-prepare for an executed sequence number",
            PbftDrop::FetchedCommitInvalid => "fetched block with an invalid commit certificate",
            PbftDrop::MempoolFull => "mempool full",
            PbftDrop::NewViewBadViewChanges => "new view with a duplicate or foreign view change",
            PbftDrop::NewViewMissingBlock => "new view without the block of a prepared request",
            PbftDrop::NewViewOMismatch => "new view's O is not what V says",
            PbftDrop::NewViewOld => "new view for an old view",
            PbftDrop::NewViewTooFar => "new view too far ahead",
            PbftDrop::NewViewTooFewViewChanges => "new view with too few view changes",
            PbftDrop::NotACheckpoint => "not a checkpoint",
            PbftDrop::NotAPrePrepare => "not a pre-prepare statement",
            PbftDrop::PrePrepareBlockMismatch => {
                "pre-prepare block does not match its digest or sequence number"
            }
            PbftDrop::PrePrepareFarOrForeign => {
                "pre-prepare for a far view or from another replica"
            }
            PbftDrop::PrePrepareNotFromPrimary => "pre-prepare not from the view's primary",
            PbftDrop::PrePrepareOtherView => "pre-prepare not for the current view",
            PbftDrop::PrePrepareOutsideWatermarks => "pre-prepare outside the watermarks",
            PbftDrop::PrePrepareToPrimary => "pre-prepare to the primary",
            PbftDrop::PrimaryPrepareInProof => "the primary's prepare counted in a prepared proof",
            PbftDrop::ProofBlockMismatch => "prepared proof block does not match its digest",
            PbftDrop::ProofFromLaterView => "prepared proof from a view not before the new one",
            PbftDrop::ProofWithoutBlock => "prepared proof without its block",
            PbftDrop::ProofWithoutPrePrepare => "prepared proof without the view's pre-prepare",
            PbftDrop::ProofsOutOfOrder => "prepared proofs out of order or outside the window",
            PbftDrop::ReplyOutsideWindow => "reply outside the window",
            PbftDrop::TooManyEarlyPrePrepares => "too many early pre-prepares",
            PbftDrop::ViewChangeOldOrFar => "view change for an old or far view",
            PbftDrop::VoteLimit => "vote limit",
            PbftDrop::VoteOtherView => "vote for another view",
            PbftDrop::VoteOutsideWatermarks => "vote outside the watermarks",
            PbftDrop::VoteWrongPhase => "vote of the wrong phase",
        }
    }
}

impl std::fmt::Display for PbftDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
