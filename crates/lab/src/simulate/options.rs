//! What a simulation is asked for: the options, their checks, and the simulator and engine
//! configurations they become.

use super::*;

pub(super) const MS: f64 = 1_000_000.0;

/// What the clients submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadChoice {
    /// Opaque transactions at `tx_rate`, applied by a transaction log.
    Random,
    /// Trading agents (random traders, market makers, a liquidator) sending signed orders to
    /// the replicated exchange ([`agora_market`]).
    Market,
}

/// How leaders are chosen (for protocols with rotating leaders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderChoice {
    /// A public hash of the round.
    Hashed,
    /// Round `r` led by node `r mod n`.
    RoundRobin,
}

/// Everything `agora simulate` can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateOptions {
    /// The protocol.
    pub protocol: ProtocolChoice,
    /// Committee size.
    pub nodes: usize,
    /// Seed of the run (network randomness, keys, workload).
    pub seed: u64,
    /// Simulated duration in milliseconds.
    pub duration_ms: f64,
    /// One-way latency δ in milliseconds.
    pub latency_ms: f64,
    /// Uniform jitter added to each message, at most this many milliseconds.
    pub jitter_ms: f64,
    /// Δ in milliseconds (Streamlet epochs last 2Δ).
    pub delta_ms: f64,
    /// Uplink bandwidth per node in Mbit/s; `None` is unlimited.
    pub bandwidth_mbps: Option<f64>,
    /// Transactions per simulated second, each to a replica chosen at random. Submission stops
    /// eight Δ before the end, so that what was submitted can be finalized.
    pub tx_rate: f64,
    /// Largest batch a leader proposes.
    pub batch_max: usize,
    /// Nodes that crash at a time (in ms) and stay down.
    pub crashes: Vec<(NodeId, f64)>,
    /// Epochs whose leader is down for exactly that epoch (it neither sends nor receives from
    /// the epoch's start to its end), then carries on.
    pub crash_leader_of_epoch: Vec<u64>,
    /// Leader schedule.
    pub leader: LeaderChoice,
    /// Streamlet's echo rule.
    pub echo: bool,
    /// PBFT: a checkpoint every K sequence numbers (the log window is 4K).
    pub checkpoint_interval: u64,
    /// PBFT: the view-change timeout T, in milliseconds.
    pub view_timeout_ms: f64,
    /// PBFT: the primary of each of these views (replica v mod n) crashes a quarter of the way
    /// into the run and stays down.
    pub crash_primary_of_view: Vec<u64>,
    /// Keep the whole trace (for `--trace` and sequence charts).
    pub record_trace: bool,
    /// What the clients submit.
    pub workload: WorkloadChoice,
    /// Split the committee in two halves from the first to the second time (ms); then heal.
    pub partition_ms: Option<(f64, f64)>,
    /// Node 0 is Byzantine and equivocates: as leader or primary it sends one block to half of
    /// the nodes and another, signed too, to the rest.
    pub equivocator: bool,
    /// Market workload: the order in which replicas execute a block's transactions.
    pub ordering: ExecutionOrder,
    /// Market workload: priority lanes in every replica's mempool (`None`: one first-come
    /// lane).
    pub priority: Option<Priority>,
    /// Market workload: this node front-runs large orders whenever it leads
    /// ([`crate::frontrun`]).
    pub frontrunner: Option<NodeId>,
    /// Market workload: the fraction of traders' orders that are large market orders.
    pub large_orders: f64,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self {
            protocol: ProtocolChoice::Streamlet,
            nodes: 4,
            seed: 0,
            duration_ms: 2_000.0,
            latency_ms: 10.0,
            jitter_ms: 0.0,
            delta_ms: 50.0,
            bandwidth_mbps: None,
            tx_rate: 100.0,
            batch_max: 1_000,
            crashes: Vec::new(),
            crash_leader_of_epoch: Vec::new(),
            leader: LeaderChoice::Hashed,
            echo: true,
            checkpoint_interval: 16,
            view_timeout_ms: 500.0,
            crash_primary_of_view: Vec::new(),
            record_trace: false,
            workload: WorkloadChoice::Random,
            partition_ms: None,
            equivocator: false,
            ordering: ExecutionOrder::Proposal,
            priority: None,
            frontrunner: None,
            large_orders: 0.05,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A field of [`SimulateOptions`] is out of range: its name (as the struct spells it) and
    /// what is wrong with its value. The command line names the flag instead.
    #[error("{field} {reason}")]
    Field {
        /// The field of [`SimulateOptions`].
        field: &'static str,
        /// What is wrong, for example "must be positive".
        reason: String,
    },
    /// The simulator refused the configuration.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The engine refused its configuration.
    #[error("engine configuration: {0}")]
    Engine(#[from] agora_engines::ConfigError),
}

impl SimulateError {
    fn field(field: &'static str, reason: impl Into<String>) -> Self {
        SimulateError::Field { field, reason: reason.into() }
    }
}

pub(super) fn ns(name: &'static str, ms: f64) -> Result<u64, SimulateError> {
    if !ms.is_finite() || ms < 0.0 || ms * MS > u64::MAX as f64 / 4.0 {
        return Err(SimulateError::field(
            name,
            format!("must be a non-negative number of milliseconds, got {ms}"),
        ));
    }
    Ok((ms * MS).round() as u64)
}

impl From<SpecError> for SimulateError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Sim(e) => SimulateError::Sim(e),
            SpecError::Engine(e) => SimulateError::Engine(e),
        }
    }
}

impl SimulateOptions {
    /// The run these options describe, checked: every field in range, and a configuration
    /// the engine accepts.
    pub fn spec(&self) -> Result<RunSpec, SimulateError> {
        let sim = self.sim_config()?;
        let engine = match self.protocol {
            ProtocolChoice::Streamlet => {
                EngineConfig::Streamlet(self.streamlet_config(ns("delta_ms", self.delta_ms)?))
            }
            ProtocolChoice::Pbft => EngineConfig::Pbft(self.pbft_config()?),
        };
        engine.validate()?;
        let market = (self.workload == WorkloadChoice::Market).then(|| MarketSpec {
            agents: self.agents(sim.duration_ns),
            ordering: self.ordering,
            lanes: self.priority.clone(),
            frontrunner: self.frontrunner,
        });
        let byzantine = match self.equivocator {
            true => vec![(NodeId(0), Behaviour::Equivocate)],
            false => Vec::new(),
        };
        Ok(RunSpec { engine, sim, byzantine, market })
    }

    /// The market's agents: eight traders sharing the transaction rate, two market makers and
    /// a liquidator, all stopping eight Δ before the end so that their orders can be final.
    fn agents(&self, duration_ns: u64) -> AgentsConfig {
        let drain = 8 * (self.delta_ms * MS) as u64;
        let traders = 8;
        AgentsConfig {
            traders,
            market_makers: 2,
            liquidators: 1,
            trader_rate: (self.tx_rate / traders as f64).max(0.1),
            quote_every_ns: 250_000_000,
            end_ns: duration_ns.saturating_sub(drain),
            large_orders: self.large_orders,
            frontrunner: self.frontrunner.is_some(),
        }
    }

    /// The simulator configuration these options describe.
    pub fn sim_config(&self) -> Result<SimConfig, SimulateError> {
        self.check_ranges()?;
        let delta = ns("delta_ms", self.delta_ms)?;
        if delta == 0 {
            return Err(SimulateError::field("delta_ms", "must be positive"));
        }
        let latency = ns("latency_ms", self.latency_ms)?;
        let mut c = SimConfig::new(self.nodes);
        c.seed = self.seed;
        c.duration_ns = ns("duration_ms", self.duration_ms)?;
        c.network.latency_ns = latency;
        let jitter = ns("jitter_ms", self.jitter_ms)?;
        if jitter > 0 {
            c.network.jitter = Jitter::Uniform { max_ns: jitter };
        }
        if let Some(mbps) = self.bandwidth_mbps {
            if !(mbps.is_finite() && mbps > 0.0) {
                return Err(SimulateError::field(
                    "bandwidth_mbps",
                    format!("must be positive, got {mbps}"),
                ));
            }
            c.network.bandwidth_bps = Some((mbps * 1e6).round().max(1.0) as u64);
        }
        let drain = 8 * delta;
        if self.tx_rate > 0.0 && c.duration_ns > drain && self.workload == WorkloadChoice::Random {
            c.workload = Some(Workload {
                rate_per_sec: self.tx_rate,
                start_ns: 0,
                end_ns: c.duration_ns - drain,
                clients: 64,
                payload_bytes: 48,
                targets: Targets::Random,
            });
        }
        self.add_faults(&mut c, delta)?;
        if self.checkpoint_interval == 0 {
            return Err(SimulateError::field("checkpoint_interval", "must be positive"));
        }
        if ns("view_timeout_ms", self.view_timeout_ms)? == 0 {
            return Err(SimulateError::field("view_timeout_ms", "must be positive"));
        }
        c.trace = if self.record_trace { TraceMode::Record } else { TraceMode::Digest };
        Ok(c)
    }

    /// The bounds of the counts and fractions, and the options only the market workload has.
    fn check_ranges(&self) -> Result<(), SimulateError> {
        if self.nodes == 0 || self.nodes > agora_types::COMMITTEE_SIZE_MAX {
            return Err(SimulateError::field(
                "nodes",
                format!(
                    "must be between 1 and {}, got {}",
                    agora_types::COMMITTEE_SIZE_MAX,
                    self.nodes
                ),
            ));
        }
        if !(self.tx_rate.is_finite() && self.tx_rate >= 0.0) {
            return Err(SimulateError::field(
                "tx_rate",
                format!("must be a non-negative number, got {}", self.tx_rate),
            ));
        }
        if self.batch_max == 0 || self.batch_max > agora_types::BATCH_TXS_MAX {
            return Err(SimulateError::field(
                "batch_max",
                format!("must be between 1 and {}", agora_types::BATCH_TXS_MAX),
            ));
        }
        let market_only = self.ordering != ExecutionOrder::Proposal
            || self.priority.is_some()
            || self.frontrunner.is_some();
        if market_only && self.workload != WorkloadChoice::Market {
            return Err(SimulateError::field(
                "workload",
                "must be market for an execution ordering, priority lanes or a front-runner",
            ));
        }
        if let Some(f) = self.frontrunner
            && f.index() >= self.nodes
        {
            return Err(SimulateError::field(
                "frontrunner",
                format!("{} is not a node of a committee of {}", f.0, self.nodes),
            ));
        }
        if !(0.0..=1.0).contains(&self.large_orders) {
            return Err(SimulateError::field(
                "large_orders",
                format!("must be a fraction from 0 to 1, got {}", self.large_orders),
            ));
        }
        Ok(())
    }

    /// The scheduled faults: crashes, a Streamlet epoch's leader down for its epoch, PBFT
    /// primaries down from a quarter of the run, and a partition into halves.
    fn add_faults(&self, c: &mut SimConfig, delta: u64) -> Result<(), SimulateError> {
        for (node, at_ms) in &self.crashes {
            c.faults.push(Fault {
                at_ns: ns("crashes", *at_ms)?,
                node: *node,
                kind: FaultKind::Crash,
            });
        }
        if !self.crash_leader_of_epoch.is_empty() && self.protocol != ProtocolChoice::Streamlet {
            return Err(SimulateError::field(
                "crash_leader_of_epoch",
                "names Streamlet epochs; for PBFT use crash_primary_of_view",
            ));
        }
        if !self.crash_primary_of_view.is_empty() && self.protocol != ProtocolChoice::Pbft {
            return Err(SimulateError::field(
                "crash_primary_of_view",
                "names PBFT views; for Streamlet use crash_leader_of_epoch",
            ));
        }
        for &e in &self.crash_leader_of_epoch {
            if e == 0 {
                return Err(SimulateError::field("crash_leader_of_epoch", "counts epochs from 1"));
            }
            let streamlet = self.streamlet_config(delta);
            let leader = streamlet.leader.leader(self.nodes as u16, Epoch(e));
            c.faults.push(Fault {
                at_ns: streamlet.epoch_start_ns(Epoch(e)),
                node: leader,
                kind: FaultKind::Crash,
            });
            c.faults.push(Fault {
                at_ns: streamlet.epoch_start_ns(Epoch(e + 1)),
                node: leader,
                kind: FaultKind::Restart,
            });
        }
        if !self.crash_primary_of_view.is_empty() {
            let at = c.duration_ns / 4;
            for v in &self.crash_primary_of_view {
                let node = agora_pbft::primary(agora_types::View(*v), self.nodes);
                c.faults.push(Fault { at_ns: at, node, kind: FaultKind::Crash });
            }
        }
        if let Some((from, to)) = self.partition_ms {
            let (start_ns, end_ns) = (ns("partition_ms", from)?, ns("partition_ms", to)?);
            if end_ns <= start_ns {
                return Err(SimulateError::field("partition_ms", "must end after it starts"));
            }
            let half: Vec<NodeId> = (0..self.nodes / 2).map(|i| NodeId(i as u16)).collect();
            c.network.partitions.push(agora_netsim::Partition {
                start_ns,
                end_ns,
                groups: vec![half],
            });
        }
        Ok(())
    }

    /// Streamlet's leader schedule, as the options choose it.
    pub(super) fn leader_rule(&self) -> LeaderRule {
        match self.leader {
            LeaderChoice::Hashed => LeaderRule::Hashed { seed: self.seed },
            LeaderChoice::RoundRobin => LeaderRule::RoundRobin,
        }
    }

    pub(super) fn streamlet_config(&self, delta_ns: u64) -> StreamletConfig {
        let mut s = StreamletConfig::new(delta_ns.max(1));
        s.leader = self.leader_rule();
        s.echo = self.echo;
        s.batch.txs_max = self.batch_max;
        s
    }

    pub(super) fn pbft_config(&self) -> Result<PbftConfig, SimulateError> {
        let mut p = PbftConfig::new(ns("view_timeout_ms", self.view_timeout_ms)?);
        p.checkpoint_interval = self.checkpoint_interval;
        p.log_window = self.checkpoint_interval.saturating_mul(4);
        p.batch.txs_max = self.batch_max;
        // A canonical block executes when its successor is final: never leave the last one
        // waiting for traffic.
        p.close_batches = self.ordering == ExecutionOrder::Canonical;
        Ok(p)
    }
}
