//! What a simulation is asked for: the options, their checks, and the simulator and engine
//! configurations they become.

use super::*;

pub(super) const MS: f64 = 1_000_000.0;

/// What the clients submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadChoice {
    /// Opaque transactions at `tx_rate`, applied by a transaction log.
    Random,
    /// Trading agents (random traders, market makers, a liquidator) sending signed orders to
    /// the replicated exchange (agora-market).
    Market,
}

/// How leaders are chosen (for protocols with rotating leaders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LeaderChoice {
    /// A public hash of the round.
    Hashed,
    /// Round `r` led by node `r mod n`.
    RoundRobin,
}

/// Everything `agora simulate` can be told. The command line's options are derived from these
/// fields (`nodes` is `--nodes`, `crashes` is `--crash`, `echo` is `--no-echo`), with the
/// defaults of [`SimulateOptions::DEFAULTS`]; the few that take two values or only make
/// sense there (`partition_ms`, `record_trace`) the command line fills in itself.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimulateOptions {
    /// The protocol to run.
    #[arg(long, value_enum, default_value_t = Self::DEFAULTS.protocol)]
    pub protocol: ProtocolChoice,
    /// Number of nodes (1 to 128; see the README for the bound on a run's messages).
    #[arg(long, default_value_t = Self::DEFAULTS.nodes, allow_negative_numbers = true,
          value_parser = parse_nodes)]
    pub nodes: usize,
    /// Seed of the run: network randomness, keys, workload, hashed leaders.
    #[arg(long, default_value_t = Self::DEFAULTS.seed)]
    pub seed: u64,
    /// Simulated time to run, in milliseconds.
    #[arg(long, default_value_t = Self::DEFAULTS.duration_ms)]
    pub duration_ms: f64,
    /// One-way message latency δ, in milliseconds.
    #[arg(long, default_value_t = Self::DEFAULTS.latency_ms)]
    pub latency_ms: f64,
    /// Extra uniform delay per message, up to this many milliseconds.
    #[arg(long, default_value_t = Self::DEFAULTS.jitter_ms)]
    pub jitter_ms: f64,
    /// Δ, in milliseconds (a Streamlet epoch lasts 2Δ; a Simplex iteration's timer is 3Δ).
    #[arg(long, default_value_t = Self::DEFAULTS.delta_ms)]
    pub delta_ms: f64,
    /// Uplink bandwidth of every node, in Mbit/s (default: unlimited).
    #[arg(long)]
    pub bandwidth_mbps: Option<f64>,
    /// Transactions per simulated second, each to a replica chosen at random. Submissions stop
    /// 8Δ before the end so that the pipeline drains.
    #[arg(long, default_value_t = Self::DEFAULTS.tx_rate)]
    pub tx_rate: f64,
    /// Largest batch a leader proposes.
    #[arg(long, default_value_t = Self::DEFAULTS.batch_max)]
    pub batch_max: usize,
    /// Crash a node at a time and keep it down: NODE@MS (repeatable).
    #[arg(long = "crash", value_parser = parse_crash, value_name = "NODE@MS")]
    pub crashes: Vec<(NodeId, f64)>,
    /// Bring a node back at a time: NODE@MS (repeatable), for a node taken down with
    /// `--crash`. It comes back as a new process would: a fresh engine restored from its
    /// journal.
    #[arg(long = "restart", value_parser = parse_crash, value_name = "NODE@MS")]
    pub restarts: Vec<(NodeId, f64)>,
    /// Restarts lose the journal: the engine comes back remembering nothing it voted for (the
    /// mutant that durable storage prevents).
    #[arg(long)]
    pub amnesia: bool,
    /// How long one journal sync takes, in milliseconds: a pass that persisted records holds
    /// its messages until its sync ends, and a crash within it loses part of what it wrote.
    #[arg(long, default_value_t = Self::DEFAULTS.sync_ms, value_name = "MS")]
    pub sync_ms: f64,
    /// Streamlet: take the leader of epoch E down for exactly that epoch, then let it carry on
    /// (repeatable).
    #[arg(long, value_name = "E")]
    pub crash_leader_of_epoch: Vec<u64>,
    /// How epoch leaders are chosen.
    #[arg(long, value_enum, default_value_t = Self::DEFAULTS.leader)]
    pub leader: LeaderChoice,
    /// Streamlet's echo rule (`--no-echo` switches it off, for experiments).
    #[arg(long = "no-echo", action = clap::ArgAction::SetFalse)]
    pub echo: bool,
    /// PBFT: a checkpoint every K sequence numbers (the log window is 4K).
    #[arg(long, default_value_t = Self::DEFAULTS.checkpoint_interval, value_name = "K")]
    pub checkpoint_interval: u64,
    /// PBFT: the view-change timeout T in milliseconds (NEW-VIEW waits back off T, 2T, 4T, …).
    #[arg(long, default_value_t = Self::DEFAULTS.view_timeout_ms, value_name = "T")]
    pub view_timeout_ms: f64,
    /// PBFT: the primary of view V (replica V mod n) crashes a quarter of the way into the run
    /// and stays down (repeatable).
    #[arg(long, value_name = "V")]
    pub crash_primary_of_view: Vec<u64>,
    /// Simplex: the leader of iteration I crashes a quarter of the way into the run and stays
    /// down (repeatable); every later iteration it leads costs the 3Δ timer.
    #[arg(long, value_name = "I")]
    pub crash_leader_of_iteration: Vec<u64>,
    /// HotStuff: the commit rule, a chain of 3 consecutive certified views (the paper's) or of
    /// 2 (Jolteon, HotStuff-2).
    #[arg(long, default_value_t = Self::DEFAULTS.chain, value_name = "3|2",
          value_parser = clap::value_parser!(u8).range(2..=3))]
    pub chain: u8,
    /// HotStuff: the leader of view V crashes a quarter of the way into the run and stays down
    /// (repeatable); every later view it leads, and the view before it, time out.
    #[arg(long, value_name = "V")]
    pub crash_leader_of_view: Vec<u64>,
    /// Keep the whole trace (for `--trace` and sequence charts).
    #[arg(skip)]
    pub record_trace: bool,
    /// What clients submit: opaque transactions, or a market of trading agents (the JSON then
    /// adds state_digest_agree, trades and orders_applied).
    #[arg(long, value_enum, default_value_t = Self::DEFAULTS.workload)]
    pub workload: WorkloadChoice,
    /// Split the committee in two halves from the first to the second time (ms); then heal.
    #[arg(skip)]
    pub partition_ms: Option<(f64, f64)>,
    /// Node 0 is Byzantine and equivocates (two blocks per round, to different halves): the
    /// swarm's `equivocate` behaviour.
    #[arg(long)]
    pub equivocator: bool,
    /// Market: the order replicas execute a block in — the proposer's (`proposal`), cancels
    /// then a key fixed by the next block (`canonical`), or one uniform price per block
    /// (`batch-auction`).
    #[arg(long, default_value = "proposal", value_name = "MODE")]
    pub ordering: ExecutionOrder,
    /// Market: priority lanes in every mempool. `default` (liquidations 8:0.2, cancels 4:0.1,
    /// high-value 2:0.1, ordinary 1:0.1), or overrides LANE=WEIGHT:MIN_SHARE,… Without it, one
    /// first-come lane.
    #[arg(long, value_name = "SPEC", value_parser = Priority::parse)]
    pub priority: Option<Priority>,
    /// Market: this node is Byzantine and front-runs large orders whenever it leads (the
    /// lab's front-runner).
    #[arg(long, value_name = "NODE", value_parser = parse_node)]
    pub frontrunner: Option<NodeId>,
    /// Market: the fraction of traders' orders that are large market orders (60–120 lots).
    #[arg(long, default_value_t = Self::DEFAULTS.large_orders, value_name = "FRACTION")]
    pub large_orders: f64,
    /// Write each honest node's block store, in the on-disk format, to `DIR/node-<i>` when the
    /// run ends (every block is kept), for `agora replay`. DIR must not hold stores already.
    #[arg(long, value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
    /// Every node's block store snapshots its application every K blocks.
    #[arg(long, value_name = "K", default_value_t = Self::DEFAULTS.snapshot_every,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub snapshot_every: u64,
}

impl SimulateOptions {
    /// The defaults, which the command line's are too.
    pub const DEFAULTS: SimulateOptions = SimulateOptions {
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
        restarts: Vec::new(),
        amnesia: false,
        sync_ms: 0.0,
        crash_leader_of_epoch: Vec::new(),
        leader: LeaderChoice::Hashed,
        echo: true,
        checkpoint_interval: 16,
        view_timeout_ms: 500.0,
        crash_primary_of_view: Vec::new(),
        crash_leader_of_iteration: Vec::new(),
        chain: 3,
        crash_leader_of_view: Vec::new(),
        record_trace: false,
        workload: WorkloadChoice::Random,
        partition_ms: None,
        equivocator: false,
        ordering: ExecutionOrder::Proposal,
        priority: None,
        frontrunner: None,
        large_orders: 0.05,
        store_dir: None,
        snapshot_every: 64,
    };
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self::DEFAULTS
    }
}

/// What `agora simulate` accepts: every bound is one the simulator honours on a 2-core machine
/// in minutes and a few GiB. A value outside is refused with a one-line error naming it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulateBounds {
    /// Committee size, at most.
    pub nodes_max: usize,
    /// Simulated time, ms, at most.
    pub duration_ms_max: f64,
    /// One-way latency and jitter, ms, at most.
    pub latency_ms_max: f64,
    /// Δ, ms: from, to.
    pub delta_ms: (f64, f64),
    /// PBFT's view timeout, ms: from, to.
    pub view_timeout_ms: (f64, f64),
    /// One journal sync, ms, at most.
    pub sync_ms_max: f64,
    /// Transactions per simulated second, at most.
    pub tx_rate_max: f64,
    /// Uplink, Mbit/s: from, to.
    pub bandwidth_mbps: (f64, f64),
    /// PBFT's checkpoint interval, at most.
    pub checkpoint_interval_max: u64,
    /// Transactions in a run (rate × duration), at most.
    pub transactions_max: f64,
    /// Estimated message deliveries in a run, at most ([`SimulateOptions::estimated_messages`]).
    pub messages_max: f64,
}

impl SimulateBounds {
    /// The bounds `agora simulate` enforces.
    pub const DEFAULT: Self = Self {
        nodes_max: 128,
        duration_ms_max: 600_000.0,
        latency_ms_max: 10_000.0,
        delta_ms: (1.0, 60_000.0),
        view_timeout_ms: (1.0, 600_000.0),
        sync_ms_max: 1_000.0,
        tx_rate_max: 100_000.0,
        bandwidth_mbps: (0.001, 1_000_000.0),
        checkpoint_interval_max: 10_000,
        transactions_max: 1_000_000.0,
        messages_max: 2e7,
    };
}

impl SimulateOptions {
    /// The message deliveries a run of these options makes, estimated from above:
    /// Streamlet's epochs times a proposal and n² votes (n³ echoes and n² echoed proposals
    /// more with its echo); PBFT's blocks (at most one per transaction and one per ms) times
    /// its three all-to-all phases, plus n² per view change; Simplex's iterations (one per 2δ,
    /// δ the one-way latency) times a proposal and three all-to-all rounds (votes, forwarded
    /// notarizations, finalize votes). Measured on this machine the
    /// simulator delivers 0.1 to 1 million messages a second, so the bound of 2 × 10⁷ is minutes
    /// at most.
    pub fn estimated_messages(&self) -> f64 {
        let n = self.nodes as f64;
        let duration = self.duration_ms.max(0.0);
        match self.protocol {
            ProtocolChoice::Streamlet => {
                let epochs = duration / (2.0 * self.delta_ms.max(1e-9)) + 1.0;
                let echo = if self.echo { n * n * n + n * n } else { 0.0 };
                epochs * (n + n * n + echo)
            }
            ProtocolChoice::Pbft => {
                let transactions = self.tx_rate.max(0.0) * duration / 1e3;
                let blocks = transactions.min(duration) + 1.0;
                let view_changes = duration / self.view_timeout_ms.max(1e-9) + 1.0;
                blocks * 3.0 * n * n + view_changes * 2.0 * n * n
            }
            ProtocolChoice::Simplex => {
                let iterations = duration / (2.0 * self.latency_ms.max(1e-6)) + 1.0;
                iterations * (n + 3.0 * n * n)
            }
            ProtocolChoice::HotStuff => {
                // A proposal to all and a vote to one leader per view, and timeouts to all.
                let views = duration / (2.0 * self.latency_ms.max(1e-6)) + 1.0;
                views * 2.0 * n + (duration / (4.0 * self.delta_ms.max(1e-9)) + 1.0) * n * n
            }
        }
    }
}

/// `NODE@MS`: a node that crashes at a time (in milliseconds).
fn parse_crash(s: &str) -> Result<(NodeId, f64), String> {
    let (node, at) = s.split_once('@').ok_or_else(|| format!("expected NODE@MS, got `{s}`"))?;
    let node = parse_node(node.trim())?;
    let at_ms =
        at.trim().parse::<f64>().map_err(|_| format!("`{at}` is not a time in milliseconds"))?;
    if !at_ms.is_finite() || at_ms < 0.0 {
        return Err(format!("`{at}` is not a non-negative time in milliseconds"));
    }
    Ok((node, at_ms))
}

/// `--nodes`: a whole number within the bound, said as the bound whatever the input.
fn parse_nodes(s: &str) -> Result<usize, String> {
    let max = SimulateBounds::DEFAULT.nodes_max;
    match s.trim().parse::<i128>() {
        Ok(n) if (1..=max as i128).contains(&n) => Ok(n as usize),
        _ => Err(format!("must be a whole number from 1 to {max}")),
    }
}

fn parse_node(s: &str) -> Result<NodeId, String> {
    s.parse::<u16>().map(NodeId).map_err(|_| format!("`{s}` is not a node number"))
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
    /// The stores could not be written where `--store-dir` said.
    #[error("--store-dir: {0}")]
    Store(#[from] agora_store::StoreError),
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
            format!("must be a non-negative number of milliseconds, got {ms:?}"),
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
            ProtocolChoice::Simplex => {
                EngineConfig::Simplex(self.simplex_config(ns("delta_ms", self.delta_ms)?))
            }
            ProtocolChoice::HotStuff => {
                EngineConfig::HotStuff(self.hotstuff_config(ns("delta_ms", self.delta_ms)?)?)
            }
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
        let keep_stores = self.store_dir.is_some();
        Ok(RunSpec { engine, sim, byzantine, market, keep_stores })
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
        c.processing.per_sync_ns = ns("sync_ms", self.sync_ms)?;
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
        c.snapshots.every = self.snapshot_every.max(1);
        if self.store_dir.is_some() {
            // The written stores replay from genesis: nothing is pruned.
            c.retained_blocks = None;
        }
        Ok(c)
    }

    /// The bounds of the counts, times and fractions (see [`SimulateBounds`]), the run's
    /// estimated messages, and the options only the market workload has.
    fn check_ranges(&self) -> Result<(), SimulateError> {
        let b = SimulateBounds::DEFAULT;
        if self.nodes == 0 || self.nodes > b.nodes_max {
            return Err(SimulateError::field(
                "nodes",
                format!("must be between 1 and {}, got {}", b.nodes_max, self.nodes),
            ));
        }
        let within = |field: &'static str, value: f64, (low, high): (f64, f64)| {
            if value.is_finite() && (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(SimulateError::field(
                    field,
                    format!("must be from {low} to {high}, got {value:?}"),
                ))
            }
        };
        within("duration_ms", self.duration_ms, (0.0, b.duration_ms_max))?;
        within("latency_ms", self.latency_ms, (0.0, b.latency_ms_max))?;
        within("jitter_ms", self.jitter_ms, (0.0, b.latency_ms_max))?;
        within("delta_ms", self.delta_ms, b.delta_ms)?;
        within("view_timeout_ms", self.view_timeout_ms, b.view_timeout_ms)?;
        within("sync_ms", self.sync_ms, (0.0, b.sync_ms_max))?;
        within("tx_rate", self.tx_rate, (0.0, b.tx_rate_max))?;
        if let Some(mbps) = self.bandwidth_mbps {
            within("bandwidth_mbps", mbps, b.bandwidth_mbps)?;
        }
        if self.checkpoint_interval == 0 || self.checkpoint_interval > b.checkpoint_interval_max {
            return Err(SimulateError::field(
                "checkpoint_interval",
                format!("must be from 1 to {}", b.checkpoint_interval_max),
            ));
        }
        let transactions = self.tx_rate * self.duration_ms / 1e3;
        if transactions > b.transactions_max {
            return Err(SimulateError::field(
                "tx_rate",
                format!(
                    "times --duration-ms makes {transactions:.0} transactions, above the bound of {:.0}",
                    b.transactions_max
                ),
            ));
        }
        let messages = self.estimated_messages();
        if messages > b.messages_max {
            return Err(SimulateError::field(
                "nodes",
                format!(
                    "{} with these options means about {messages:.1e} message deliveries, above \
                     the bound of {:.0e} (minutes on this machine): use fewer nodes, a shorter \
                     run, a longer Δ or view timeout, fewer transactions, or --no-echo",
                    self.nodes, b.messages_max
                ),
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

    /// `--restart`: each restarts a node `--crash` took down, after it went down.
    fn add_restarts(&self, c: &mut SimConfig) -> Result<(), SimulateError> {
        if self.restarts.is_empty() {
            return if self.amnesia {
                Err(SimulateError::field("amnesia", "applies to restarts: add --restart NODE@MS"))
            } else {
                Ok(())
            };
        }
        for (node, at_ms) in &self.restarts {
            let at_ns = ns("restarts", *at_ms)?;
            let down = self.crashes.iter().any(|(n, crash_ms)| n == node && *crash_ms < *at_ms);
            if !down {
                return Err(SimulateError::field(
                    "restarts",
                    format!("node {node} is not down before {at_ms} ms: crash it with --crash"),
                ));
            }
            let kind = if self.amnesia { FaultKind::Amnesia } else { FaultKind::Recover };
            c.faults.push(Fault { at_ns, node: *node, kind });
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
        self.add_restarts(c)?;
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
        let leader_crashes = [
            (
                "crash_leader_of_iteration",
                &self.crash_leader_of_iteration,
                ProtocolChoice::Simplex,
                "names Simplex iterations; for Streamlet use crash_leader_of_epoch",
                "counts iterations from 1",
            ),
            (
                "crash_leader_of_view",
                &self.crash_leader_of_view,
                ProtocolChoice::HotStuff,
                "names HotStuff views; for PBFT use crash_primary_of_view",
                "counts views from 1",
            ),
        ];
        for (field, rounds, protocol, other, from_one) in leader_crashes {
            if !rounds.is_empty() && self.protocol != protocol {
                return Err(SimulateError::field(field, other));
            }
            for &i in rounds {
                if i == 0 {
                    return Err(SimulateError::field(field, from_one));
                }
                let node = self.leader_rule().leader(self.nodes as u16, Round(i));
                c.faults.push(Fault { at_ns: c.duration_ns / 4, node, kind: FaultKind::Crash });
            }
        }
        for &e in &self.crash_leader_of_epoch {
            if e == 0 {
                return Err(SimulateError::field("crash_leader_of_epoch", "counts epochs from 1"));
            }
            let streamlet = self.streamlet_config(delta);
            let leader = streamlet.leader.leader(self.nodes as u16, Round(e));
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

    /// Streamlet's and Simplex's leader schedule, as the options choose it.
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

    pub(super) fn simplex_config(&self, delta_ns: u64) -> SimplexConfig {
        let mut s = SimplexConfig::new(delta_ns.max(1));
        s.leader = self.leader_rule();
        s.batch.txs_max = self.batch_max;
        s
    }

    pub(super) fn hotstuff_config(&self, delta_ns: u64) -> Result<HotStuffConfig, SimulateError> {
        let chain = ChainRule::of_length(self.chain)
            .ok_or_else(|| SimulateError::field("chain", "is 3 or 2"))?;
        let mut h = HotStuffConfig::new(delta_ns.max(1)).with_chain(chain);
        h.leader = self.leader_rule();
        h.batch.txs_max = self.batch_max;
        Ok(h)
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
