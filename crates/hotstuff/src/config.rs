//! A node's settings: Δ and the view timeouts it gives, the commit rule, the leader schedule,
//! and every bound.

pub use agora_consensus::LeaderRule;
use agora_consensus::{BatchLimits, ConfigError, DURATION_MAX_NS};

/// Which commit rule, with the voting and locking rules it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainRule {
    /// The paper's chained HotStuff: lock on the two-chain, commit on a three-chain of
    /// consecutive views, vote by the safe-node rule.
    Three,
    /// Jolteon / HotStuff-2: lock on the one-chain (the highest QC), commit on a two-chain of
    /// consecutive views; after a view change a node votes only for a block whose QC is at
    /// least as high as every QC the timeout certificate's signers reported.
    Two,
}

impl ChainRule {
    /// The number of consecutive certified views that commit: 3 or 2.
    pub fn length(self) -> u8 {
        match self {
            ChainRule::Three => 3,
            ChainRule::Two => 2,
        }
    }

    /// The rule of `length` 3 or 2; `None` for anything else.
    pub fn of_length(length: u8) -> Option<Self> {
        match length {
            3 => Some(ChainRule::Three),
            2 => Some(ChainRule::Two),
            _ => None,
        }
    }
}

/// Settings of a HotStuff node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotStuffConfig {
    /// Δ: the assumed bound on message delay after GST. A view's timer starts at 3Δ and the
    /// empty block's wait ([`HotStuffConfig::base_timeout_ns`]), and grows while views pass
    /// without a QC ([`HotStuffConfig::timeout_ns`]). A healthy view ends as soon as the next
    /// leader's proposal carries its QC: HotStuff runs at the speed of the network.
    pub delta_ns: u64,
    /// The commit rule.
    pub chain: ChainRule,
    /// Leader schedule.
    pub leader: LeaderRule,
    /// Bounds of a proposed batch (and of a forward).
    pub batch: BatchLimits,
    /// A leader with no pending transaction waits this long into its view before it proposes
    /// an empty block (it proposes at once as soon as one arrives). 0 is the paper's rule, a
    /// proposal at once: on a fast network that is a stream of empty blocks. The runtime and
    /// the node use Δ. The view timer waits this much longer, and it is at most one day.
    pub empty_block_after_ns: u64,
    /// The view timer grows by half at most this many times (3 by default: about 3.4 times
    /// the base, near Aptos's cap of 1.2⁶). A large cap costs liveness: in the swarm, timers
    /// grown 25-fold before GST kept the views of a silent leader seconds long after it, and
    /// transactions missed their bound (seeds 813900154, 813910647).
    pub backoff_steps_max: u32,
    /// Proposals held while their parent is unknown, at most.
    pub orphans_max: usize,
    /// Encoded bytes of the proposals held while their parent is unknown, at most.
    pub orphan_bytes_max: usize,
    /// Validly signed proposals taken per view, at most. An honest leader sends one. A
    /// proposal whose block this node holds a QC for is taken beyond the quota.
    pub proposals_per_view_max: usize,
    /// Messages for views more than this ahead of the current one are dropped (a QC or a
    /// timeout certificate that verifies is taken however far ahead: it proves the view).
    pub future_views_max: u64,
    /// Votes held by the vote keeper, at most.
    pub votes_max: usize,
    /// Finalized blocks kept for [`ChainView`](agora_consensus::ChainView), at most.
    pub history_max: usize,
    /// Finalized transaction ids remembered to refuse proposals that repeat them.
    pub finalized_memory: usize,
    /// Submitted transactions wait to be forwarded to the next leaders until this many have
    /// gathered, or until the node next handles a message or timer.
    pub forward_batch_max: usize,
    /// A pending transaction is forwarded again only once this many views have passed since
    /// it was last forwarded (by this node or to it).
    pub reforward_after_views: u64,
    /// Finalized blocks kept, each with its proposer's signature and its QC, to send a node
    /// that fell behind (it asks with [`HotStuffMessage::Sync`](crate::HotStuffMessage)).
    pub sync_blocks_max: usize,
    /// Certified blocks above the finalized tip whose block has not arrived, held at most.
    pub early_qcs_max: usize,
    /// A deliberately broken rule, for proving that tests catch it. It exists only with the
    /// `weaken` cargo feature, which the swarm (agora-lab) enables and a node never does.
    #[cfg(feature = "weaken")]
    pub weaken: Option<HotStuffWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth. They are switched on through `HotStuffConfig::weaken`, which exists only
/// with the `weaken` cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotStuffWeakening {
    /// QCs (and timeout certificates) with one vote fewer than ⌈2n/3⌉.
    QuorumOneSmaller,
    /// Vote without the safe-node (lock) check: any proposal of the view gets the vote.
    VoteWithoutLock,
    /// Commit on two chains, but lock and vote by the three-chain rules (a lock on the
    /// two-chain, the safe-node rule, no timeout-certificate check).
    TwoChainCommitThreeChainLock,
    /// Send a vote before its journal record, so that the vote can leave and the record be
    /// lost in a crash.
    VoteBeforeDurable,
}

impl HotStuffConfig {
    /// Three-chain HotStuff with the given Δ, hashed leaders (seed 0) and default bounds.
    pub fn new(delta_ns: u64) -> Self {
        Self {
            delta_ns,
            chain: ChainRule::Three,
            leader: LeaderRule::Hashed { seed: 0 },
            batch: BatchLimits::default(),
            empty_block_after_ns: 0,
            backoff_steps_max: 3,
            orphans_max: 1_024,
            orphan_bytes_max: 32 << 20,
            proposals_per_view_max: 2,
            future_views_max: 1_024,
            votes_max: 1 << 20,
            history_max: 100_000,
            finalized_memory: 1_000_000,
            forward_batch_max: 256,
            reforward_after_views: 8,
            sync_blocks_max: 64,
            early_qcs_max: 1_024,
            #[cfg(feature = "weaken")]
            weaken: None,
        }
    }

    /// The same with the commit rule `chain`.
    pub fn with_chain(mut self, chain: ChainRule) -> Self {
        self.chain = chain;
        self
    }

    /// The first timer of a view, 3Δ plus the empty block's wait: after GST, the next
    /// leader's proposal reaches a replica at most that long after the replica entered the
    /// view (the proposal it voted on took up to Δ to reach the others, their votes up to Δ to
    /// reach the next leader, who may wait for transactions, and its proposal up to Δ back).
    pub fn base_timeout_ns(&self) -> u64 {
        self.delta_ns.saturating_mul(3).saturating_add(self.empty_block_after_ns)
    }

    /// The timer of a view entered `stalled` views after the last one with a QC (0 on a
    /// healthy chain). A crashed leader costs two views (its own, and the one before, whose
    /// votes went to it), and with rotating leaders a second crashed one is often near, so the
    /// first three stalled views keep the base timer; each further one grows it by half, at
    /// most `backoff_steps_max` times. Aptos grows its round timeout by 1.2 per round past
    /// three without progress, at most six times.
    pub fn timeout_ns(&self, stalled: u64) -> u64 {
        let steps = stalled.saturating_sub(2).min(u64::from(self.backoff_steps_max));
        let mut t = self.base_timeout_ns();
        for _ in 0..steps {
            t = t.saturating_add(t / 2);
        }
        t
    }

    /// Checks the values the engine relies on: Δ positive and at most [`DURATION_MAX_NS`],
    /// room for at least one transaction per block and one proposal per view, and the empty
    /// block's wait at most a day. [`HotStuff::new`](crate::HotStuff::new) calls it.
    ///
    /// ```
    /// use agora_hotstuff::{HotStuff, HotStuffConfig};
    /// use agora_types::{Committee, NodeId};
    ///
    /// let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    /// let err = HotStuff::new(HotStuffConfig::new(0), committee, NodeId(0), keys[0].clone());
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
            self.proposals_per_view_max >= 1,
            "proposals_per_view_max",
            self.proposals_per_view_max,
            "at least 1",
        )?;
        ConfigError::check(
            self.backoff_steps_max <= 32,
            "backoff_steps_max",
            self.backoff_steps_max,
            "at most 32",
        )?;
        ConfigError::check(
            self.empty_block_after_ns <= DURATION_MAX_NS,
            "empty_block_after_ns",
            self.empty_block_after_ns,
            "at most one day",
        )
    }

    /// Whether the mutant `w` is switched on; always false without the `weaken` feature.
    pub(crate) fn weakened(&self, w: HotStuffWeakening) -> bool {
        #[cfg(feature = "weaken")]
        return self.weaken == Some(w);
        #[cfg(not(feature = "weaken"))]
        {
            let _ = w;
            false
        }
    }
}
