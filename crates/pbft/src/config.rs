//! A replica's settings.

use agora_consensus::{BatchLimits, ConfigError, DURATION_MAX_NS};

/// Settings of a PBFT replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbftConfig {
    /// K: a checkpoint every K sequence numbers.
    pub checkpoint_interval: u64,
    /// L: the log window; sequence numbers in (h, h + L] are accepted. A multiple of K.
    pub log_window: u64,
    /// T: the view-change timeout (NEW-VIEW waits back off from it: T, 2T, 4T, …).
    pub view_timeout_ns: u64,
    /// At most this many doublings of the NEW-VIEW wait (T · 2^k at most): the paper's
    /// unbounded backoff, after a run of failed view changes before GST, grew past any
    /// deadline a client would wait (swarm seeds 680002041 and 680017641: seven view changes
    /// with nothing executed, then a crashed or silent primary, left a wait of 128 T). The cap
    /// must stay above the time a view change takes once the network is timely.
    pub new_view_doublings_max: u32,
    /// Batch bounds for pre-prepares.
    pub batch: BatchLimits,
    /// Sequence numbers the primary keeps in flight (pre-prepared, not executed) at most.
    pub max_inflight: u64,
    /// Executed blocks kept to serve state transfer.
    pub retained_blocks: usize,
    /// Messages for views more than this ahead are dropped.
    pub future_views_max: u64,
    /// Blocks sent in one state-transfer answer at most.
    pub fetch_blocks_max: usize,
    /// Pre-prepares held at most for views this replica has not entered yet: a primary sends
    /// NEW-VIEW and then its first PRE-PREPAREs, and the network may deliver them in the other
    /// order. Held ones are checked once the view is installed.
    pub early_pre_prepares_max: usize,
    /// Executed transaction ids remembered to refuse pre-prepares that repeat them.
    pub executed_memory: usize,
    /// Follow every non-empty batch with one more, empty when nothing is pending, so that an
    /// application that orders a block by its successor's digest (the market's canonical order)
    /// never waits for traffic to see its last block executed. Off by default.
    pub close_batches: bool,
    /// A deliberately broken rule, for proving that tests catch it. It exists only with the
    /// `weaken` cargo feature, which the swarm (agora-lab) enables and a node never does.
    #[cfg(feature = "weaken")]
    pub weaken: Option<PbftWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth. They are switched on through `PbftConfig::weaken`, which exists only with the
/// `weaken` cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbftWeakening {
    /// Every quorum (prepared, committed, checkpoint, view change) one vote smaller than
    /// ⌈(n + f + 1)/2⌉.
    QuorumOneSmaller,
    /// The primary's pre-prepare counts as one of the 2f prepares.
    PrePrepareCountsAsPrepare,
    /// A backup sends its PREPARE before journalling the pre-prepare, so that the prepare can
    /// leave and the record be lost in a crash.
    VoteBeforeDurable,
}

impl PbftConfig {
    /// K = 16, L = 64, the given T, default batches, 8 in flight, 1,024 retained blocks, 16
    /// early pre-prepares held.
    pub fn new(view_timeout_ns: u64) -> Self {
        Self {
            checkpoint_interval: 16,
            log_window: 64,
            view_timeout_ns,
            new_view_doublings_max: 3,
            batch: BatchLimits::default(),
            max_inflight: 8,
            retained_blocks: 1_024,
            future_views_max: 16,
            fetch_blocks_max: 64,
            early_pre_prepares_max: 16,
            executed_memory: 1_000_000,
            close_batches: false,
            #[cfg(feature = "weaken")]
            weaken: None,
        }
    }

    /// Checks the values the engine relies on: T positive and at most [`DURATION_MAX_NS`], a
    /// positive checkpoint interval K within the log window L (which is bounded, because the
    /// vote keeper is sized from it), and room for at least one transaction per batch and one
    /// batch in flight. [`Pbft::new`](crate::Pbft::new) calls it, so a bad value is an error
    /// when the replica is built:
    ///
    /// ```
    /// use agora_pbft::{Pbft, PbftConfig};
    /// use agora_types::{Committee, NodeId};
    ///
    /// let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    /// let mut config = PbftConfig::new(1_000_000_000);
    /// config.log_window = config.checkpoint_interval - 1;
    /// let err = Pbft::new(config, committee.clone(), NodeId(0), keys[0].clone()).unwrap_err();
    /// assert_eq!(err.field, "log_window");
    /// assert_eq!(err.to_string(), "log_window = 15: L must be at least K and at most 2^20");
    ///
    /// let outsider = Pbft::new(PbftConfig::new(1_000_000_000), committee, NodeId(4), keys[0].clone());
    /// assert_eq!(outsider.unwrap_err().field, "me");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            (1..=DURATION_MAX_NS).contains(&self.view_timeout_ns),
            "view_timeout_ns",
            self.view_timeout_ns,
            "T must be positive and at most one day",
        )?;
        ConfigError::check(
            self.checkpoint_interval >= 1,
            "checkpoint_interval",
            self.checkpoint_interval,
            "K must be positive",
        )?;
        ConfigError::check(
            (self.checkpoint_interval..=LOG_WINDOW_MAX).contains(&self.log_window),
            "log_window",
            self.log_window,
            "L must be at least K and at most 2^20",
        )?;
        ConfigError::check(
            self.batch.txs_max >= 1,
            "batch.txs_max",
            self.batch.txs_max,
            "at least 1",
        )?;
        ConfigError::check(
            self.fetch_blocks_max >= 1,
            "fetch_blocks_max",
            self.fetch_blocks_max,
            "at least 1",
        )?;
        ConfigError::check(self.max_inflight >= 1, "max_inflight", self.max_inflight, "at least 1")
    }
}

/// The largest log window L accepted.
pub const LOG_WINDOW_MAX: u64 = 1 << 20;

impl PbftConfig {
    /// Whether the mutant `w` is switched on; always false without the `weaken` feature.
    pub(crate) fn weakened(&self, w: PbftWeakening) -> bool {
        #[cfg(feature = "weaken")]
        return self.weaken == Some(w);
        #[cfg(not(feature = "weaken"))]
        {
            let _ = w;
            false
        }
    }

    /// Whether any mutant is switched on; always false without the `weaken` feature.
    pub(crate) fn is_weakened(&self) -> bool {
        #[cfg(feature = "weaken")]
        return self.weaken.is_some();
        #[cfg(not(feature = "weaken"))]
        false
    }
}
