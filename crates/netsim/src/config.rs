//! Everything a simulation run is configured with.

use agora_consensus::MempoolLimits;
use agora_store::SnapshotPolicy;
use agora_types::NodeId;

/// How long a message spends on a link, beyond its transmission time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// No jitter: every message takes exactly the base latency.
    None,
    /// Uniform extra delay in `[0, max_ns]`.
    Uniform {
        /// The largest extra delay.
        max_ns: u64,
    },
    /// A heavy tail: Pareto with shape 1.5 (finite mean, infinite variance), scaled by
    /// `scale_ns` and capped at `cap_ns`. Most messages are fast; a few are very slow.
    Pareto {
        /// Scale: the typical extra delay.
        scale_ns: u64,
        /// No extra delay exceeds this.
        cap_ns: u64,
    },
}

/// What happens to messages before the global stabilisation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeGst {
    /// Messages are held and delivered only after GST (plus their normal delay).
    Hold,
    /// Each message gets an extra delay drawn uniformly from `[0, max_ns]`.
    Delay {
        /// The largest extra delay.
        max_ns: u64,
    },
}

/// A partial-synchrony schedule: before `at_ns` the network misbehaves; from then on every
/// message between honest nodes arrives within `delta_ns`, none is lost, and partitions are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gst {
    /// The global stabilisation time.
    pub at_ns: u64,
    /// Δ: the delivery bound after GST.
    pub delta_ns: u64,
    /// Behaviour before GST.
    pub before: BeforeGst,
}

/// A network split from `start_ns` (inclusive) to `end_ns` (exclusive): a message sent in that
/// window between two nodes of different groups is dropped. Nodes not named in any group form
/// one more group together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// When the split starts.
    pub start_ns: u64,
    /// When it heals.
    pub end_ns: u64,
    /// The sides.
    pub groups: Vec<Vec<NodeId>>,
}

impl Partition {
    fn group_of(&self, node: NodeId) -> usize {
        self.groups.iter().position(|g| g.contains(&node)).unwrap_or(self.groups.len())
    }

    /// True when a message from `a` to `b` sent at `t_ns` crosses this partition.
    pub fn separates(&self, a: NodeId, b: NodeId, t_ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&t_ns) && self.group_of(a) != self.group_of(b)
    }
}

/// The network model.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// One-way latency of every link.
    pub latency_ns: u64,
    /// Extra per-message delay.
    pub jitter: Jitter,
    /// Uplink bandwidth of every node in bits per second; `None` is unlimited. A message of `B`
    /// bytes occupies its sender's uplink for `8·B / bandwidth` seconds, one message after another.
    pub bandwidth_bps: Option<u64>,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// When set, messages on a link may overtake each other: each gets an extra uniform delay in
    /// `[0, reorder_ns]` and links are no longer FIFO.
    pub reorder_ns: Option<u64>,
    /// Scheduled partitions.
    pub partitions: Vec<Partition>,
    /// Partial synchrony; `None` means the model above holds for the whole run.
    pub gst: Option<Gst>,
}

impl NetworkConfig {
    /// An ideal network: fixed latency, no jitter, loss, duplication or reordering, unlimited
    /// bandwidth.
    pub fn ideal(latency_ns: u64) -> Self {
        Self {
            latency_ns,
            jitter: Jitter::None,
            bandwidth_bps: None,
            loss: 0.0,
            duplicate: 0.0,
            reorder_ns: None,
            partitions: Vec::new(),
            gst: None,
        }
    }
}

/// Simulated CPU time: a node handles one event at a time, and handling costs this much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessingConfig {
    /// Cost of handling one message (or timer, or submission).
    pub per_event_ns: u64,
    /// Cost of one signature verification.
    pub per_verify_ns: u64,
    /// Time one journal sync takes. A pass whose engine persisted records syncs once, and its
    /// messages leave when the sync ends; a crash before then loses what was not synced.
    pub per_sync_ns: u64,
}

/// A crash or a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The node stops: it handles nothing and sends nothing; its timers are forgotten.
    Crash,
    /// The node crashes halfway through its first journal sync at or after this time: part of
    /// what it was writing is lost, and nothing its pass sent after the records leaves. A
    /// restart of the node that comes first cancels it (the crash never happened).
    CrashInSync,
    /// The node starts again with the state it had, as if it had persisted everything: the
    /// model of stable storage the paper protocols assume.
    Restart,
    /// The node starts again as a new process would: a fresh engine, restored from the
    /// records of its journal that were durable at the crash (a crash while a sync was in
    /// flight keeps a random prefix of what it was syncing). The mempool and the application
    /// survive, as the node's own stores would keep them. Needs [`Simulation::set_rebuild`].
    ///
    /// [`Simulation::set_rebuild`]: crate::Simulation::set_rebuild
    Recover,
    /// As [`FaultKind::Recover`], with the journal lost: a fresh engine that remembers nothing
    /// it voted for. The mutant that durable storage exists to prevent.
    Amnesia,
}

/// A scheduled crash or restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// When.
    pub at_ns: u64,
    /// Which node.
    pub node: NodeId,
    /// What happens.
    pub kind: FaultKind,
}

/// Where open-loop clients send their transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// A node chosen uniformly at random for each transaction.
    Random,
    /// Always these nodes, chosen uniformly among them.
    Nodes(Vec<NodeId>),
}

/// Open-loop clients: submissions at the times of a Poisson process, whatever the system does.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Transactions per simulated second.
    pub rate_per_sec: f64,
    /// First submission no earlier than this.
    pub start_ns: u64,
    /// No submission at or after this.
    pub end_ns: u64,
    /// Distinct client accounts (each signs its own transactions with increasing nonces).
    pub clients: usize,
    /// Payload size of each transaction.
    pub payload_bytes: usize,
    /// Who receives them.
    pub targets: Targets,
}

/// Whether liveness is checked, and with what bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessCheck {
    /// Every transaction accepted at time `s` by an honest node that is up at the end of the run
    /// must be final at some honest node
    /// by `max(s, GST) + bound_ns`. Only checked for deadlines that fall within the run.
    pub bound_ns: u64,
}

/// What the trace keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// Nothing (fastest).
    Off,
    /// A running digest of every event, for determinism checks.
    Digest,
    /// The digest and every event in memory (for tests, rendering and JSON-lines output).
    Record,
}

/// A whole simulation run's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Committee size.
    pub nodes: usize,
    /// Seed of the simulator's RNG and of every key.
    pub seed: u64,
    /// The run stops at this simulated time.
    pub duration_ns: u64,
    /// The network.
    pub network: NetworkConfig,
    /// Simulated CPU costs.
    pub processing: ProcessingConfig,
    /// Crashes and restarts.
    pub faults: Vec<Fault>,
    /// Generated client load, if any.
    pub workload: Option<Workload>,
    /// Mempool bounds of every node.
    pub mempool: MempoolLimits,
    /// Liveness checking, if wanted.
    pub liveness: Option<LivenessCheck>,
    /// Trace detail.
    pub trace: TraceMode,
    /// Encode every message to bytes at the sender and decode it at each receiver, exercising
    /// the codec (slower); otherwise typed messages travel and only their size is computed.
    pub encode_messages: bool,
    /// Simulated events processed at most (a guard against engines that never go quiet).
    pub events_max: u64,
    /// Twins (Bano et al., 2020): each listed member runs a second instance with the same key
    /// and identity, unmodified. Instances are numbered members first (`0..n`), then twin `j`
    /// as instance `n + j`; partitions and faults name instances, so a member and its twin can
    /// sit on different sides. A message to a member reaches every instance of it the network
    /// lets through. Twinned members are Byzantine: the checker does not check them.
    pub twins: Vec<NodeId>,
    /// Every node's block store: when its application is snapshotted and how many snapshots
    /// it keeps.
    pub snapshots: SnapshotPolicy,
    /// Blocks a node's store keeps below its tip once a snapshot lets older ones go; `None`
    /// keeps every block (so that the whole log replays from genesis).
    pub retained_blocks: Option<u64>,
}

impl SimConfig {
    /// `nodes` nodes on an ideal network with 10 ms latency, seed 0, one simulated second, no
    /// faults and no load.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 0,
            duration_ns: 1_000_000_000,
            network: NetworkConfig::ideal(10_000_000),
            processing: ProcessingConfig::default(),
            faults: Vec::new(),
            workload: None,
            mempool: MempoolLimits::default(),
            liveness: None,
            trace: TraceMode::Digest,
            encode_messages: false,
            events_max: 200_000_000,
            twins: Vec::new(),
            snapshots: SnapshotPolicy { every: 64, kept: 2 },
            retained_blocks: Some(128),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Bad committee size.
    #[error("nodes must be between 1 and 1024, got {0}")]
    Nodes(usize),
    /// A probability outside `[0, 1]`.
    #[error("{name} must be a probability in [0, 1], got {value}")]
    Probability {
        /// Which setting.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A node id that is not a member.
    #[error("{context} names node {node}, but there are only {nodes} nodes")]
    UnknownNode {
        /// Where.
        context: &'static str,
        /// The id.
        node: NodeId,
        /// Committee size.
        nodes: usize,
    },
    /// The synchronous bound after GST cannot hold with this latency.
    #[error(
        "latency {latency_ns} ns exceeds Δ = {delta_ns} ns: messages could not arrive within Δ after GST"
    )]
    DeltaTooSmall {
        /// Base latency.
        latency_ns: u64,
        /// Δ.
        delta_ns: u64,
    },
    /// A nonsensical workload.
    #[error("workload: {0}")]
    Workload(&'static str),
    /// Zero bandwidth.
    #[error("bandwidth must be positive")]
    Bandwidth,
}

impl SimConfig {
    /// Checks the configuration for values no run could honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes == 0 || self.nodes > agora_types::COMMITTEE_SIZE_MAX {
            return Err(ConfigError::Nodes(self.nodes));
        }
        let n = &self.network;
        for (name, value) in [("loss", n.loss), ("duplicate", n.duplicate)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Probability { name, value });
            }
        }
        if n.bandwidth_bps == Some(0) {
            return Err(ConfigError::Bandwidth);
        }
        if let Some(gst) = n.gst
            && n.latency_ns > gst.delta_ns
        {
            return Err(ConfigError::DeltaTooSmall {
                latency_ns: n.latency_ns,
                delta_ns: gst.delta_ns,
            });
        }
        let check_in = |context, node: NodeId, nodes: usize| {
            if node.index() < nodes {
                Ok(())
            } else {
                Err(ConfigError::UnknownNode { context, node, nodes })
            }
        };
        let check = |context, node: NodeId| check_in(context, node, self.nodes);
        let instances = self.nodes + self.twins.len();
        for (j, twin) in self.twins.iter().enumerate() {
            check("a twin", *twin)?;
            if self.twins[..j].contains(twin) {
                return Err(ConfigError::Workload("a member is twinned twice"));
            }
        }
        for p in &n.partitions {
            for node in p.groups.iter().flatten() {
                check_in("a partition", *node, instances)?;
            }
        }
        for f in &self.faults {
            check_in("a fault", f.node, instances)?;
        }
        if let Some(w) = &self.workload {
            if !(w.rate_per_sec.is_finite() && w.rate_per_sec > 0.0) {
                return Err(ConfigError::Workload("the rate must be a positive number"));
            }
            if w.clients == 0 {
                return Err(ConfigError::Workload("at least one client is needed"));
            }
            if w.payload_bytes > agora_types::TX_PAYLOAD_BYTES_MAX {
                return Err(ConfigError::Workload("payload larger than a transaction may carry"));
            }
            if let Targets::Nodes(nodes) = &w.targets {
                if nodes.is_empty() {
                    return Err(ConfigError::Workload("an empty target list"));
                }
                for node in nodes {
                    check("the workload", *node)?;
                }
            }
        }
        Ok(())
    }
}
