//! Why a message, a submission or a proposal was refused.

/// Why this engine refused something it received: a message, a submission, or a proposal's
/// content. Each is counted in the engine's stats under [`StreamletDrop::as_str`], a stable name that
/// reports and tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamletDrop {
    /// Bad proposal signature.
    BadProposalSignature,
    /// Bad vote.
    BadVote,
    /// Batch over the limits.
    BatchOverTheLimits,
    /// Epoch below finality.
    EpochBelowFinality,
    /// Epoch not after the parent's.
    EpochNotAfterParent,
    /// Far-future epoch.
    FarFutureEpoch,
    /// Height is not parent + 1.
    HeightNotParentPlusOne,
    /// Mempool full.
    MempoolFull,
    /// Not a Streamlet vote.
    NotAStreamletVote,
    /// Orphan below finality.
    OrphanBelowFinality,
    /// Orphan limit.
    OrphanLimit,
    /// Proposer is not the epoch's leader.
    ProposerNotLeader,
    /// Repeats a transaction.
    RepeatsTransaction,
    /// Stale vote.
    StaleVote,
    /// Sync asked too soon.
    SyncAskedTooSoon,
    /// Too many proposals in the epoch.
    TooManyProposals,
    /// Unknown parent.
    UnknownParent,
    /// Vote limit.
    VoteLimit,
}

impl StreamletDrop {
    /// The stable name this reason is counted under.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamletDrop::BadProposalSignature => "bad proposal signature",
            StreamletDrop::BadVote => "bad vote",
            StreamletDrop::BatchOverTheLimits => "batch over the limits",
            StreamletDrop::EpochBelowFinality => "epoch below finality",
            StreamletDrop::EpochNotAfterParent => "epoch not after the parent's",
            StreamletDrop::FarFutureEpoch => "far-future epoch",
            StreamletDrop::HeightNotParentPlusOne => "height is not parent + 1",
            StreamletDrop::MempoolFull => "mempool full",
            StreamletDrop::NotAStreamletVote => "not a Streamlet vote",
            StreamletDrop::OrphanBelowFinality => "orphan below finality",
            StreamletDrop::OrphanLimit => "orphan limit",
            StreamletDrop::ProposerNotLeader => "proposer is not the epoch's leader",
            StreamletDrop::RepeatsTransaction => "repeats a transaction",
            StreamletDrop::StaleVote => "stale vote",
            StreamletDrop::SyncAskedTooSoon => "sync asked too soon",
            StreamletDrop::TooManyProposals => "too many proposals in the epoch",
            StreamletDrop::UnknownParent => "unknown parent",
            StreamletDrop::VoteLimit => "vote limit",
        }
    }
}

impl std::fmt::Display for StreamletDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
