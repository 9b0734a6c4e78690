//! Why a message, a submission or a proposal was refused.

/// Why this engine refused something it received: a message, a submission, or a proposal's
/// content. Each is counted in the engine's stats under [`HotStuffDrop::as_str`], a stable
/// name that reports and tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotStuffDrop {
    /// A QC with a signature that does not verify, a non-member, or the wrong statement.
    BadCertificate,
    /// Bad proposal signature.
    BadProposalSignature,
    /// A timeout certificate that does not verify.
    BadTimeoutCertificate,
    /// A timeout whose signature, statement or QC does not verify.
    BadTimeout,
    /// Bad vote.
    BadVote,
    /// Batch over the limits.
    BatchOverTheLimits,
    /// Far-future view.
    FarFutureView,
    /// Height is not parent + 1.
    HeightNotParentPlusOne,
    /// The justify QC does not certify the block's parent at the parent's view.
    JustifyNotParent,
    /// Mempool full.
    MempoolFull,
    /// A vote of a view this node does not lead next.
    NotNextLeader,
    /// Orphan below finality.
    OrphanBelowFinality,
    /// Orphan limit.
    OrphanLimit,
    /// Proposer is not the view's leader.
    ProposerNotLeader,
    /// QCs held before their block, at the limit.
    EarlyQcLimit,
    /// Repeats a transaction.
    RepeatsTransaction,
    /// Stale vote.
    StaleVote,
    /// Sync asked too soon.
    SyncAskedTooSoon,
    /// Too many proposals in the view.
    TooManyProposals,
    /// Unknown parent.
    UnknownParent,
    /// View not after the parent's.
    ViewNotAfterParent,
    /// Vote limit.
    VoteLimit,
}

impl HotStuffDrop {
    /// The stable name this reason is counted under.
    pub fn as_str(self) -> &'static str {
        match self {
            HotStuffDrop::BadCertificate => "bad certificate",
            HotStuffDrop::BadProposalSignature => "bad proposal signature",
            HotStuffDrop::BadTimeoutCertificate => "bad timeout certificate",
            HotStuffDrop::BadTimeout => "bad timeout",
            HotStuffDrop::BadVote => "bad vote",
            HotStuffDrop::BatchOverTheLimits => "batch over the limits",
            HotStuffDrop::FarFutureView => "far-future view",
            HotStuffDrop::HeightNotParentPlusOne => "height is not parent + 1",
            HotStuffDrop::JustifyNotParent => "justify does not certify the parent",
            HotStuffDrop::MempoolFull => "mempool full",
            HotStuffDrop::NotNextLeader => "vote for a view this node does not lead next",
            HotStuffDrop::OrphanBelowFinality => "orphan below finality",
            HotStuffDrop::OrphanLimit => "orphan limit",
            HotStuffDrop::ProposerNotLeader => "proposer is not the view's leader",
            HotStuffDrop::EarlyQcLimit => "early QC limit",
            HotStuffDrop::RepeatsTransaction => "repeats a transaction",
            HotStuffDrop::StaleVote => "stale vote",
            HotStuffDrop::SyncAskedTooSoon => "sync asked too soon",
            HotStuffDrop::TooManyProposals => "too many proposals in the view",
            HotStuffDrop::UnknownParent => "unknown parent",
            HotStuffDrop::ViewNotAfterParent => "view not after the parent's",
            HotStuffDrop::VoteLimit => "vote limit",
        }
    }
}

impl std::fmt::Display for HotStuffDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
