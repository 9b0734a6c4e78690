//! A node's settings: Δ and the timeout it gives, the leader schedule, and every bound.

pub use agora_consensus::LeaderRule;
use agora_consensus::{BatchLimits, ConfigError, DURATION_MAX_NS};

/// Settings of a Simplex node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimplexConfig {
    /// Δ: the assumed bound on message delay after GST. An iteration's timer is 3Δ (the
    /// paper's), but a healthy iteration ends as soon as its block is notarized, after about
    /// two real one-way delays: Simplex runs at the speed of the network, not of Δ.
    pub delta_ns: u64,
    /// Leader schedule.
    pub leader: LeaderRule,
    /// Bounds of a proposed batch (and of a forward).
    pub batch: BatchLimits,
    /// A leader with no pending transaction waits this long into its iteration before it
    /// proposes an empty block (it proposes at once as soon as one arrives). 0 is the paper's
    /// rule, a proposal at once whatever the mempool holds: on a fast network that is a stream
    /// of empty blocks, each costing a round of signed votes, so a deployment sets it (the
    /// runtime and the node use Δ). It must stay below the 3Δ timer, or idle iterations are
    /// skipped.
    pub empty_block_after_ns: u64,
    /// Proposals held while their parent is unknown, at most.
    pub orphans_max: usize,
    /// Encoded bytes of the proposals held while their parent is unknown, at most.
    pub orphan_bytes_max: usize,
    /// Validly signed proposals taken per iteration, at most. An honest leader sends one; a
    /// second is already evidence of equivocation. A proposal whose block this node holds a
    /// notarization for is taken beyond the quota.
    pub proposals_per_iteration_max: usize,
    /// Messages for iterations more than this ahead of the current one are dropped.
    pub future_iterations_max: u64,
    /// Votes held by the vote keeper, at most.
    pub votes_max: usize,
    /// Finalized blocks kept for [`ChainView`](agora_consensus::ChainView), at most.
    pub history_max: usize,
    /// Finalized transaction ids remembered to refuse proposals that repeat them.
    pub finalized_memory: usize,
    /// Submitted transactions wait to be forwarded to the next leaders until this many have
    /// gathered, or until the node next handles a message or timer.
    pub forward_batch_max: usize,
    /// A pending transaction is forwarded again only once this many iterations have passed
    /// since it was last forwarded (by this node or to it).
    pub reforward_after_iterations: u64,
    /// Finalized blocks kept, each with its proposer's signature and its notarization, to send
    /// a node that fell behind (it asks with [`SimplexMessage::Sync`](crate::SimplexMessage)).
    pub sync_blocks_max: usize,
    /// Iterations whose dummy block a node holds a notarization for above the finalized tip, at
    /// most. A stretch without finality longer than this (thousands of timeouts) stops the
    /// node from extending the chain until it catches up from a peer.
    pub skips_max: usize,
    /// Late skip votes (for iterations behind the current one that no known notarization
    /// covers) cast at one timer firing, at most.
    pub late_skips_max: usize,
    /// A deliberately broken rule, for proving that tests catch it. It exists only with the
    /// `weaken` cargo feature, which the swarm (agora-lab) enables and a node never does.
    #[cfg(feature = "weaken")]
    pub weaken: Option<SimplexWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth. They are switched on through `SimplexConfig::weaken`, which exists only
/// with the `weaken` cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimplexWeakening {
    /// Notarizations and finalizations with one vote fewer than ⌈2n/3⌉.
    QuorumOneSmaller,
    /// Send a finalize vote for an iteration this node voted to skip.
    FinalizeAfterSkip,
    /// Vote for a proposal whose parent chain is not notarized (only its parent known).
    VoteUnnotarizedChain,
    /// Send a vote before its journal record, so that the vote can leave and the record be lost
    /// in a crash.
    VoteBeforeDurable,
}

impl SimplexConfig {
    /// Simplex with the given Δ, hashed leaders (seed 0) and default bounds.
    pub fn new(delta_ns: u64) -> Self {
        Self {
            delta_ns,
            leader: LeaderRule::Hashed { seed: 0 },
            batch: BatchLimits::default(),
            empty_block_after_ns: 0,
            orphans_max: 1_024,
            orphan_bytes_max: 32 << 20,
            proposals_per_iteration_max: 2,
            future_iterations_max: 1_024,
            votes_max: 1 << 20,
            history_max: 100_000,
            finalized_memory: 1_000_000,
            forward_batch_max: 256,
            reforward_after_iterations: 8,
            sync_blocks_max: 64,
            skips_max: 16_384,
            late_skips_max: 64,
            #[cfg(feature = "weaken")]
            weaken: None,
        }
    }

    /// The iteration timer of the paper, 3Δ: what a node waits in an iteration before it votes
    /// to skip it, and then between resending what it knows while the iteration lasts.
    pub fn timeout_ns(&self) -> u64 {
        self.delta_ns.saturating_mul(3)
    }

    /// Checks the values the engine relies on: Δ positive and at most [`DURATION_MAX_NS`],
    /// and room for at least one transaction per block and one proposal per iteration.
    /// [`Simplex::new`](crate::Simplex::new) calls it.
    ///
    /// ```
    /// use agora_simplex::{Simplex, SimplexConfig};
    /// use agora_types::{Committee, NodeId};
    ///
    /// let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    /// let err = Simplex::new(SimplexConfig::new(0), committee, NodeId(0), keys[0].clone());
    /// assert_eq!(err.unwrap_err().to_string(), "delta_ns = 0: Δ must be positive and at most one day");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            (1..=DURATION_MAX_NS).contains(&self.delta_ns),
            "delta_ns",
            self.delta_ns,
            "Δ must be positive and at most one day",
        )?;
        ConfigError::check(
            self.batch.txs_max >= 1,
            "batch.txs_max",
            self.batch.txs_max,
            "at least 1",
        )?;
        ConfigError::check(
            self.proposals_per_iteration_max >= 1,
            "proposals_per_iteration_max",
            self.proposals_per_iteration_max,
            "at least 1",
        )?;
        ConfigError::check(
            self.empty_block_after_ns < self.timeout_ns(),
            "empty_block_after_ns",
            self.empty_block_after_ns,
            "below the 3Δ timer",
        )?;
        ConfigError::check(self.skips_max >= 1, "skips_max", self.skips_max, "at least 1")
    }

    /// Whether the mutant `w` is switched on; always false without the `weaken` feature.
    pub(crate) fn weakened(&self, w: SimplexWeakening) -> bool {
        #[cfg(feature = "weaken")]
        return self.weaken == Some(w);
        #[cfg(not(feature = "weaken"))]
        {
            let _ = w;
            false
        }
    }
}
