//! A replica's settings.

use agora_consensus::BatchLimits;

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
    /// A deliberately broken rule, for proving that tests catch it. Never set outside tests.
    pub weaken: Option<PbftWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbftWeakening {
    /// Every quorum (prepared, committed, checkpoint, view change) one vote smaller than
    /// ⌈(n + f + 1)/2⌉.
    QuorumOneSmaller,
    /// The primary's pre-prepare counts as one of the 2f prepares.
    PrePrepareCountsAsPrepare,
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
            weaken: None,
        }
    }
}
