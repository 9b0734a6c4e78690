//! A node's settings and its leader schedule.

pub use agora_consensus::LeaderRule;
use agora_consensus::{BatchLimits, ConfigError, DURATION_MAX_NS};
use agora_types::Epoch;

/// Settings of a Streamlet node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamletConfig {
    /// Δ: the assumed bound on message delay after GST. An epoch lasts 2Δ.
    pub delta_ns: u64,
    /// Leader schedule.
    pub leader: LeaderRule,
    /// Forward every message seen for the first time to all others.
    pub echo: bool,
    /// Bounds of a proposed batch (and of a re-forward).
    pub batch: BatchLimits,
    /// Proposals held while their parent is unknown, at most.
    pub orphans_max: usize,
    /// Encoded bytes of the proposals held while their parent is unknown, at most.
    pub orphan_bytes_max: usize,
    /// Validly signed proposals taken per epoch, at most. An honest leader sends one; a second
    /// is already evidence of equivocation, and more would only fill memory. A proposal whose
    /// block this node has seen notarized is taken beyond the quota (at most one per epoch).
    pub proposals_per_epoch_max: usize,
    /// Messages for epochs more than this ahead of the current one are dropped.
    pub future_epochs_max: u64,
    /// Votes held by the vote keeper, at most.
    pub votes_max: usize,
    /// Finalized blocks kept for [`ChainView`](agora_consensus::ChainView), at most.
    pub history_max: usize,
    /// Finalized transaction ids remembered to refuse proposals that repeat them.
    pub finalized_memory: usize,
    /// Submitted transactions wait to be forwarded to the next leaders until this many have
    /// gathered, or until the node next handles a message or timer: one message carries many.
    pub forward_batch_max: usize,
    /// A pending transaction is re-forwarded only once this many epochs have passed since it
    /// was last forwarded (by this node or to it), so a backlog is not resent every epoch.
    pub reforward_after_epochs: u64,
    /// When nothing has been finalized for this many epochs, the node sends again, to all, the
    /// proposals it adopted above the finalized tip and its own votes for them (and again every
    /// this many epochs while the stall lasts). Votes or blocks lost before GST are never sent
    /// again otherwise, and nodes that disagree about the longest notarized chain stay stuck.
    pub resync_after_epochs: u64,
    /// Finalized blocks kept, each with its proposer's signature and its notarization, to send
    /// a node that fell behind the finalized tip (it asks with
    /// [`StreamletMessage::Sync`](crate::StreamletMessage::Sync)). A node further behind than
    /// this cannot catch up from its peers.
    pub sync_blocks_max: usize,
    /// A deliberately broken rule, for proving that tests catch it. It exists only with the
    /// `weaken` cargo feature, which the swarm (agora-lab) enables and a node never does.
    #[cfg(feature = "weaken")]
    pub weaken: Option<StreamletWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth. They are switched on through `StreamletConfig::weaken`, which exists only with the
/// `weaken` cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamletWeakening {
    /// Notarization with one vote fewer than ⌈2n/3⌉.
    QuorumOneSmaller,
    /// Vote for any proposal that extends the finalized chain, not only a longest notarized one.
    VoteExtendsFinalized,
    /// Send a vote before its journal record, so that the vote can leave and the record be lost
    /// in a crash.
    VoteBeforeDurable,
}

impl StreamletConfig {
    /// Streamlet with the given Δ, hashed leaders (seed 0), echo on, and default bounds.
    pub fn new(delta_ns: u64) -> Self {
        Self {
            delta_ns,
            leader: LeaderRule::Hashed { seed: 0 },
            echo: true,
            batch: BatchLimits::default(),
            orphans_max: 1_024,
            orphan_bytes_max: 32 << 20,
            proposals_per_epoch_max: 2,
            future_epochs_max: 64,
            votes_max: 1 << 20,
            history_max: 100_000,
            finalized_memory: 1_000_000,
            forward_batch_max: 256,
            reforward_after_epochs: 4,
            resync_after_epochs: 8,
            sync_blocks_max: 64,
            #[cfg(feature = "weaken")]
            weaken: None,
        }
    }

    /// Checks the values the engine relies on: Δ positive and at most
    /// [`DURATION_MAX_NS`], and room for at least one transaction per block and one proposal
    /// per epoch. [`Streamlet::new`](crate::Streamlet::new) calls it.
    ///
    /// Δ is a promise about the network: Streamlet votes only in the epoch a proposal belongs
    /// to, so with Δ below the network's one-way delay no proposal is voted for in time and
    /// nothing is ever final. That cannot be checked here; [`Self::synchrony_warning`] says so
    /// for a known delay.
    ///
    /// ```
    /// use agora_streamlet::{Streamlet, StreamletConfig};
    /// use agora_types::{Committee, NodeId};
    ///
    /// let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    /// let err = Streamlet::new(StreamletConfig::new(0), committee, NodeId(0), keys[0].clone());
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
            self.proposals_per_epoch_max >= 1,
            "proposals_per_epoch_max",
            self.proposals_per_epoch_max,
            "at least 1",
        )
    }

    /// A warning when Δ is too short for a network whose messages take up to `delay_ns` one
    /// way: a proposal sent at an epoch's start must reach every node, and their votes each
    /// other, within the epoch's 2Δ, which needs Δ at least the one-way delay. `None` when Δ
    /// covers it.
    ///
    /// ```
    /// use agora_streamlet::StreamletConfig;
    ///
    /// let config = StreamletConfig::new(5_000_000); // Δ = 5 ms
    /// assert!(config.synchrony_warning(10_000_000).unwrap().contains("finalize nothing"));
    /// assert_eq!(config.synchrony_warning(5_000_000), None);
    /// ```
    pub fn synchrony_warning(&self, delay_ns: u64) -> Option<String> {
        (self.delta_ns < delay_ns).then(|| {
            format!(
                "Δ = {} ns is below the network's one-way delay of {} ns: proposals arrive after \
                 their epoch and Streamlet will finalize nothing",
                self.delta_ns, delay_ns
            )
        })
    }

    /// Start of `epoch`: `2Δ(e − 1)`.
    pub fn epoch_start_ns(&self, epoch: Epoch) -> u64 {
        epoch.0.saturating_sub(1).saturating_mul(2 * self.delta_ns)
    }

    /// The epoch in progress at `now_ns`.
    pub fn epoch_at(&self, now_ns: u64) -> Epoch {
        Epoch(now_ns / (2 * self.delta_ns) + 1)
    }
}

impl StreamletConfig {
    /// Whether the mutant `w` is switched on; always false without the `weaken` feature.
    pub(crate) fn weakened(&self, w: StreamletWeakening) -> bool {
        #[cfg(feature = "weaken")]
        return self.weaken == Some(w);
        #[cfg(not(feature = "weaken"))]
        {
            let _ = w;
            false
        }
    }
}
