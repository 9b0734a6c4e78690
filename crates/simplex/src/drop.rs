//! Why a message, a submission or a proposal was refused.

/// Why this engine refused something it received: a message, a submission, or a proposal's
/// content. Each is counted in the engine's stats under [`SimplexDrop::as_str`], a stable name
/// that reports and tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimplexDrop {
    /// A certificate with a signature that does not verify, or of a non-member.
    BadCertificate,
    /// Bad proposal signature.
    BadProposalSignature,
    /// Bad vote.
    BadVote,
    /// Batch over the limits.
    BatchOverTheLimits,
    /// A certificate with more signatures than the committee has members, or fewer than a
    /// quorum.
    CertificateSize,
    /// Far-future iteration.
    FarFutureIteration,
    /// Height is not parent + 1.
    HeightNotParentPlusOne,
    /// Iteration not after the parent's.
    IterationNotAfterParent,
    /// Mempool full.
    MempoolFull,
    /// Not a Simplex vote (a phase Simplex does not use, iteration 0, or a skip naming a
    /// block).
    NotASimplexVote,
    /// Orphan below finality.
    OrphanBelowFinality,
    /// Orphan limit.
    OrphanLimit,
    /// Proposer is not the iteration's leader.
    ProposerNotLeader,
    /// Repeats a transaction.
    RepeatsTransaction,
    /// Skip limit: the node holds `skips_max` skip notarizations above finality.
    SkipLimit,
    /// Stale vote.
    StaleVote,
    /// Sync asked too soon.
    SyncAskedTooSoon,
    /// Too many proposals in the iteration.
    TooManyProposals,
    /// Unknown parent.
    UnknownParent,
    /// Vote limit.
    VoteLimit,
}

impl SimplexDrop {
    /// The stable name this reason is counted under.
    pub fn as_str(self) -> &'static str {
        match self {
            SimplexDrop::BadCertificate => "bad certificate",
            SimplexDrop::BadProposalSignature => "bad proposal signature",
            SimplexDrop::BadVote => "bad vote",
            SimplexDrop::BatchOverTheLimits => "batch over the limits",
            SimplexDrop::CertificateSize => "certificate size",
            SimplexDrop::FarFutureIteration => "far-future iteration",
            SimplexDrop::HeightNotParentPlusOne => "height is not parent + 1",
            SimplexDrop::IterationNotAfterParent => "iteration not after the parent's",
            SimplexDrop::MempoolFull => "mempool full",
            SimplexDrop::NotASimplexVote => "not a Simplex vote",
            SimplexDrop::OrphanBelowFinality => "orphan below finality",
            SimplexDrop::OrphanLimit => "orphan limit",
            SimplexDrop::ProposerNotLeader => "proposer is not the iteration's leader",
            SimplexDrop::RepeatsTransaction => "repeats a transaction",
            SimplexDrop::SkipLimit => "skip limit",
            SimplexDrop::StaleVote => "stale vote",
            SimplexDrop::SyncAskedTooSoon => "sync asked too soon",
            SimplexDrop::TooManyProposals => "too many proposals in the iteration",
            SimplexDrop::UnknownParent => "unknown parent",
            SimplexDrop::VoteLimit => "vote limit",
        }
    }
}

impl std::fmt::Display for SimplexDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
