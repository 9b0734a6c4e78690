//! `agora simulate`: run a protocol in the simulator from a handful of options and summarise it.
//!
//! Unless the options say otherwise the network is ideal: fixed latency, no jitter, no loss,
//! unlimited bandwidth and zero processing cost, so results can be checked against the papers.

use std::collections::BTreeMap;
use std::fmt;

use std::sync::Arc;

use agora_consensus::{
    Application, BlockView, ChainView, InMemoryMempool, LanedMempool, Mempool, Protocol, TxLog,
};
use agora_crypto::{Digest, PublicKeyBytes};
use agora_engines::{Engine, EngineConfig, WithEngine, with_engine};
use agora_netsim::{
    Behaviour, ClientHook, Fault, FaultKind, Jitter, LatencySummary, SimConfig, SimError,
    SimReport, Simulation, Targets, TraceEvent, TraceMode, Violation, Workload, adversary,
};
use agora_pbft::PbftConfig;
use agora_streamlet::{LeaderRule, StreamletConfig};
use agora_types::{Committee, Epoch, NodeId, Round, SecretKey};
use serde::Serialize;

use crate::agents;
use crate::fairness::{Fairness, FairnessInputs, MarketStudy, StudyRecord, Watch};
use crate::frontrun::FrontrunMempool;
use crate::render::{self, ChainPicture};
use agora_market::priority::{LANES, Lanes, Priority};
use agora_market::{ExecutionOrder, MarketApp, MarketCounters, MarketGenesis};

const MS: f64 = 1_000_000.0;

pub use agora_engines::ProtocolChoice;

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

fn ns(name: &'static str, ms: f64) -> Result<u64, SimulateError> {
    if !ms.is_finite() || ms < 0.0 || ms * MS > u64::MAX as f64 / 4.0 {
        return Err(SimulateError::field(
            name,
            format!("must be a non-negative number of milliseconds, got {ms}"),
        ));
    }
    Ok((ms * MS).round() as u64)
}

/// Finalization latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Messages and bytes of one kind.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KindCount {
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
}

/// All traffic.
#[derive(Debug, Clone, Serialize)]
pub struct MessageSummary {
    /// Messages sent (each recipient counts once).
    pub total: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// By message kind.
    pub by_kind: BTreeMap<String, KindCount>,
}

/// One node at the end.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    /// Which.
    pub node: u16,
    /// Not Byzantine.
    pub honest: bool,
    /// Last finalized height.
    pub finalized_height: u64,
    /// Digest of its finalized log.
    pub log_digest: Digest,
}

/// One block of the agreed log, with times as the first honest node saw them.
#[derive(Debug, Clone, Serialize)]
pub struct BlockSummary {
    /// Height.
    pub height: u64,
    /// Epoch (or view).
    pub round: u64,
    /// Proposer.
    pub proposer: u16,
    /// Digest.
    pub digest: Digest,
    /// Transactions.
    pub txs: u64,
    /// When it was proposed, in simulated ms.
    pub proposed_at_ms: f64,
    /// When it was notarized, in simulated ms.
    pub notarized_at_ms: Option<f64>,
    /// When it was finalized, in simulated ms.
    pub finalized_at_ms: f64,
}

/// The result of `agora simulate`, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationSummary {
    /// Protocol name.
    pub protocol: &'static str,
    /// Committee size.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// No invariant broken.
    pub safety_ok: bool,
    /// What was broken, one sentence each.
    pub violations: Vec<String>,
    /// Transactions accepted by a replica that was up and honest when it received them.
    pub txs_submitted: u64,
    /// Distinct transactions finalized.
    pub txs_finalized: u64,
    /// Finalized transactions per simulated second.
    pub tps_sim: f64,
    /// Submission → finalization at the replica it was submitted to.
    pub latency_ms: LatencyMs,
    /// Traffic.
    pub messages: MessageSummary,
    /// Per node.
    pub nodes_detail: Vec<NodeSummary>,
    /// The agreed finalized log.
    pub finalized_blocks: Vec<BlockSummary>,
    /// PBFT: the highest view any honest replica reached (view changes that took place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_changes: Option<u64>,
    /// PBFT: client-side finality (submission → f+1 matching replies), over all replicas' clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_client_ms: Option<LatencyMs>,
    /// Market workload: every honest replica at the final height has the same state digest (and
    /// the checker compared every height on the way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_digest_agree: Option<bool>,
    /// Market workload: trades executed (at the first honest replica).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trades: Option<u64>,
    /// Market workload: order actions that reached the book (at the first honest replica).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_applied: Option<u64>,
    /// Market workload: times the market makers re-quoted after seeing a fill or a price move in
    /// their replica's finalized book.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market_maker_requotes: Option<u64>,
    /// Market workload: front-running, slippage, lane latencies and block space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairness: Option<Fairness>,
}

/// A finished run: the summary, the full simulator report, and the block tree of the first honest
/// node for pictures.
pub struct SimulationRun {
    /// What `--json` prints.
    pub summary: SimulationSummary,
    /// Everything the simulator measured.
    pub report: SimReport,
    /// The node whose view is kept.
    pub view_node: NodeId,
    /// Its block tree.
    pub views: Vec<BlockView>,
    /// Every simulator event, when the trace was recorded.
    pub trace: Option<Vec<TraceEvent>>,
    /// Settings that are valid but cannot make progress on this network (for example
    /// Streamlet with Δ below the one-way latency), for the caller to show.
    pub warnings: Vec<String>,
    options: SimulateOptions,
    leader_rule: LeaderRule,
}

impl SimulationRun {
    /// The leader of a round under this run's schedule.
    pub fn leader_of(&self, round: Round) -> NodeId {
        match self.options.protocol {
            ProtocolChoice::Streamlet => {
                self.leader_rule.leader(self.options.nodes as u16, Epoch(round.0))
            }
            ProtocolChoice::Pbft => {
                agora_pbft::primary(agora_types::View(round.0), self.options.nodes)
            }
        }
    }

    /// The trace as JSON lines, when it was recorded.
    pub fn trace_jsonl(&self) -> Option<Vec<u8>> {
        self.trace.as_ref().map(|events| {
            let mut out = Vec::new();
            for e in events {
                serde_json::to_writer(&mut out, e).expect("trace events serialize");
                out.push(b'\n');
            }
            out
        })
    }

    /// The message sequence chart of one instance (a PBFT sequence number), when the trace was
    /// recorded and the instance has messages.
    pub fn sequence_chart(&self, instance: u64) -> Option<String> {
        let events = self.trace.as_ref()?;
        let title = format!(
            "{} · n = {} · seed {} · sequence number {instance}",
            self.options.protocol.name(),
            self.options.nodes,
            self.options.seed
        );
        render::sequence_chart(events, self.options.nodes, instance, &title)
    }

    /// Builds the picture of the kept view and hands it to `draw`.
    fn with_picture<T>(&self, draw: impl FnOnce(&ChainPicture<'_>) -> T) -> T {
        let crashes: Vec<String> = self
            .options
            .crash_leader_of_epoch
            .iter()
            .map(|e| format!("leader of epoch {e} down"))
            .collect();
        let title = format!(
            "{} · n = {} · seed {} · view of node {}{}",
            self.options.protocol.name(),
            self.options.nodes,
            self.options.seed,
            self.view_node,
            if crashes.is_empty() { String::new() } else { format!(" · {}", crashes.join(", ")) }
        );
        let leader = |r: Round| self.leader_of(r);
        draw(&ChainPicture {
            title,
            blocks: &self.views,
            nodes: self.options.nodes,
            leader_of: &leader,
            last_round: self.views.iter().map(|v| v.round.0).max().unwrap_or(0),
            round_name: self.options.protocol.round_name(),
        })
    }

    /// The block tree as SVG.
    pub fn svg(&self) -> String {
        self.with_picture(render::svg)
    }

    /// The block tree as Graphviz DOT.
    pub fn dot(&self) -> String {
        self.with_picture(render::dot)
    }
}

impl SimulateOptions {
    /// The simulator configuration these options describe.
    pub fn sim_config(&self) -> Result<SimConfig, SimulateError> {
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
        for (node, at_ms) in &self.crashes {
            c.faults.push(Fault {
                at_ns: ns("crashes", *at_ms)?,
                node: *node,
                kind: FaultKind::Crash,
            });
        }
        let streamlet = self.streamlet_config(delta);
        for &e in &self.crash_leader_of_epoch {
            if e == 0 {
                return Err(SimulateError::field("crash_leader_of_epoch", "counts epochs from 1"));
            }
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
        if self.checkpoint_interval == 0 {
            return Err(SimulateError::field("checkpoint_interval", "must be positive"));
        }
        if ns("view_timeout_ms", self.view_timeout_ms)? == 0 {
            return Err(SimulateError::field("view_timeout_ms", "must be positive"));
        }
        c.trace = if self.record_trace { TraceMode::Record } else { TraceMode::Digest };
        Ok(c)
    }

    fn streamlet_config(&self, delta_ns: u64) -> StreamletConfig {
        let mut s = StreamletConfig::new(delta_ns.max(1));
        s.leader = match self.leader {
            LeaderChoice::Hashed => LeaderRule::Hashed { seed: self.seed },
            LeaderChoice::RoundRobin => LeaderRule::RoundRobin,
        };
        s.echo = self.echo;
        s.batch.txs_max = self.batch_max;
        s
    }

    fn pbft_config(&self) -> Result<PbftConfig, SimulateError> {
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

/// What a protocol adds to the common summary.
#[derive(Debug, Default)]
struct Extras {
    view_changes: Option<u64>,
    client_latencies_ns: Option<Vec<u64>>,
}

/// Runs the simulation the options describe.
pub fn run(options: &SimulateOptions) -> Result<SimulationRun, SimulateError> {
    let config = options.sim_config()?;
    let streamlet = options.streamlet_config(ns("delta_ms", options.delta_ms)?);
    let engine = match options.protocol {
        ProtocolChoice::Streamlet => EngineConfig::Streamlet(streamlet),
        ProtocolChoice::Pbft => EngineConfig::Pbft(options.pbft_config()?),
    };
    let clients = Clients::new(options, &config);
    let warnings = engine.warnings(config.network.latency_ns);
    let run = SimulateRun { options, config, leader_rule: streamlet.leader, clients: &clients };
    let mut run = with_engine(engine, run)??;
    run.warnings = warnings;
    Ok(run)
}

/// One simulation, waiting for its engine.
struct SimulateRun<'a> {
    options: &'a SimulateOptions,
    config: SimConfig,
    leader_rule: LeaderRule,
    clients: &'a Clients,
}

impl WithEngine for SimulateRun<'_> {
    type Output = Result<SimulationRun, SimulateError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy,
    ) -> Self::Output {
        let Self { options, config, leader_rule, clients } = self;
        let adversary = options.equivocator.then(|| adversary(Behaviour::Equivocate));
        simulate_workload(options, config, leader_rule, clients, engine, adversary, |honest| {
            Extras {
                view_changes: honest.iter().filter_map(|e| e.view_number()).max(),
                // Only engines that reply to clients have them.
                client_latencies_ns: honest.iter().try_fold(Vec::new(), |mut all, e| {
                    all.extend_from_slice(e.client_latencies_ns()?);
                    Some(all)
                }),
            }
        })
    }
}

/// What the study of one replica's market fills in: its counters and its record.
type Observed = (Arc<MarketCounters>, Arc<std::sync::Mutex<StudyRecord>>);

/// The client side of a run: nothing extra for the random workload; for the market, the agents'
/// orders, the genesis every replica starts from, and what each replica's study observed (one
/// entry per replica, filled in as the replicas are built).
struct Clients {
    market: Option<(MarketGenesis, Vec<agents::Submission>, std::cell::RefCell<Vec<Observed>>)>,
    makers: std::cell::RefCell<Option<agents::MarketMakers>>,
    requotes: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The front-runner's account key.
    frontrunner_key: Option<SecretKey>,
    ordering: ExecutionOrder,
}

impl Clients {
    fn new(options: &SimulateOptions, config: &SimConfig) -> Self {
        if options.workload != WorkloadChoice::Market {
            return Self {
                market: None,
                makers: std::cell::RefCell::new(None),
                requotes: None,
                frontrunner_key: None,
                ordering: options.ordering,
            };
        }
        let drain = 8 * (options.delta_ms * MS) as u64;
        let traders = 8;
        let agents_config = agents::AgentsConfig {
            traders,
            market_makers: 2,
            liquidators: 1,
            trader_rate: (options.tx_rate / traders as f64).max(0.1),
            quote_every_ns: 250_000_000,
            end_ns: config.duration_ns.saturating_sub(drain),
            large_orders: options.large_orders,
            frontrunner: options.frontrunner.is_some(),
        };
        let (genesis, orders, makers) =
            agents::generate(&agents_config, options.seed, options.nodes);
        let frontrunner_key =
            options.frontrunner.map(|_| agents::frontrunner_key(&agents_config, options.seed));
        let requotes = Some(makers.requotes());
        Self {
            market: Some((genesis, orders, std::cell::RefCell::new(Vec::new()))),
            makers: std::cell::RefCell::new(Some(makers)),
            requotes,
            frontrunner_key,
            ordering: options.ordering,
        }
    }

    /// Replica `node`'s market, observed by a fairness study whose findings land in the
    /// market's third field.
    fn market_app(
        &self,
        genesis: &MarketGenesis,
        observed: &std::cell::RefCell<Vec<Observed>>,
        node: NodeId,
    ) -> MarketApp {
        // The front-runner's holdings are what its profit is measured from.
        let frontrunner = self.frontrunner_key.as_ref().and_then(|key| {
            let key = PublicKeyBytes::from(key.public_key());
            genesis.accounts.iter().find(|a| a.key == key).map(|a| a.account)
        });
        let follow = frontrunner.map(|a| (a, vec!["USD".to_owned(), "ETH".to_owned()]));
        let watch = Watch { min_qty: agents::LARGE_ORDER_LOTS, max_orders: 100_000 };
        let study = MarketStudy::new(watch, follow.into_iter().collect());
        let mut observed = observed.borrow_mut();
        debug_assert_eq!(observed.len(), node.index(), "replicas are built in order");
        observed.push((study.counters(), study.record()));
        MarketApp::new(genesis).with_order(self.ordering).with_observer(Box::new(study))
    }
}

/// Runs one protocol on the options' workload: a transaction log per replica for random
/// transactions, the observed market (and its market makers) for the market.
fn simulate_workload<P: Protocol + ChainView>(
    options: &SimulateOptions,
    config: SimConfig,
    leader_rule: LeaderRule,
    clients: &Clients,
    engine: impl FnMut(NodeId, &Committee, &SecretKey) -> P,
    adversary: Option<Box<dyn agora_netsim::Adversary<P::Message>>>,
    extras: impl FnOnce(&[&P]) -> Extras,
) -> Result<SimulationRun, SimulateError> {
    match &clients.market {
        None => {
            let apps = |_| TxLog::new(true);
            simulate(options, config, leader_rule, clients, engine, apps, None, adversary, extras)
        }
        Some((genesis, _, observed)) => {
            let apps = |node| clients.market_app(genesis, observed, node);
            let makers = clients.makers.borrow_mut().take();
            let hook = makers.map(|m| Box::new(m) as Box<dyn ClientHook<MarketApp>>);
            simulate(options, config, leader_rule, clients, engine, apps, hook, adversary, extras)
        }
    }
}

#[allow(clippy::too_many_arguments)] // one private call site per workload
fn simulate<P: Protocol + ChainView, A: Application>(
    options: &SimulateOptions,
    config: SimConfig,
    leader_rule: LeaderRule,
    clients: &Clients,
    engine: impl FnMut(NodeId, &Committee, &SecretKey) -> P,
    apps: impl FnMut(NodeId) -> A,
    hook: Option<Box<dyn ClientHook<A>>>,
    adversary: Option<Box<dyn agora_netsim::Adversary<P::Message>>>,
    extras: impl FnOnce(&[&P]) -> Extras,
) -> Result<SimulationRun, SimulateError> {
    let record = config.trace == TraceMode::Record;
    let limits = config.mempool;
    let mut sim = Simulation::with_apps(config, engine, apps)?;
    if let Some(adversary) = adversary {
        sim.set_adversary(NodeId(0), adversary);
    }
    let mut attacks = None;
    if let Some((genesis, orders, _)) = &clients.market {
        let priority = options.priority.clone().unwrap_or_default();
        for node in (0..options.nodes).map(|i| NodeId(i as u16)) {
            let mut mempool: Box<dyn Mempool> = match &options.priority {
                Some(p) => {
                    Box::new(LanedMempool::new(limits, p.policy(genesis), p.classifier(genesis)))
                }
                None => Box::new(InMemoryMempool::new(limits)),
            };
            if let (Some(f), Some(key)) = (options.frontrunner, &clients.frontrunner_key)
                && f == node
            {
                let fr = FrontrunMempool::new(mempool, key.clone(), agents::LARGE_ORDER_LOTS);
                attacks = Some(fr.attacks());
                sim.declare_byzantine_client(PublicKeyBytes::from(key.public_key()));
                mempool = Box::new(fr);
            }
            sim.set_mempool(node, mempool);
        }
        let lanes = Lanes::new(&priority, genesis);
        sim.set_latency_classes(
            LANES.iter().map(|l| (*l).to_owned()).collect(),
            Box::new(move |tx| lanes.lane(tx)),
        );
        for order in orders {
            sim.submit_at(order.at_ns, order.node, order.tx.clone());
        }
    }
    if let Some(hook) = hook {
        sim.set_client_hook(hook);
    }
    let report = sim.run();
    // Report from the furthest honest replica: a crashed one is honest but stopped early.
    let view_node = report
        .nodes_detail
        .iter()
        .filter(|d| d.honest)
        .max_by_key(|d| (d.finalized_height, std::cmp::Reverse(d.node)))
        .map_or(NodeId(0), |d| d.node);
    let views = sim.engine(view_node).block_views();
    let trace = record.then(|| sim.trace().events().to_vec());
    let honest: Vec<&P> = sim.honest_nodes().into_iter().map(|n| sim.engine(n)).collect();
    let extras = extras(&honest);
    let mut summary = summarise(options, &report, &views);
    summary.view_changes = extras.view_changes;
    if let Some((_, _, observed)) = &clients.market {
        let top = report
            .nodes_detail
            .iter()
            .filter(|d| d.honest)
            .map(|d| d.finalized_height)
            .max()
            .unwrap_or(0);
        let mut digests = report
            .nodes_detail
            .iter()
            .filter(|d| d.honest && d.finalized_height == top)
            .map(|d| d.state_digest);
        let first = digests.next();
        summary.state_digest_agree =
            Some(first.is_some() && digests.all(|d| Some(d) == first) && report.safety_ok);
        let observed = observed.borrow();
        let (c, record) = &observed[view_node.index()];
        summary.trades = Some(c.trades.load(std::sync::atomic::Ordering::Relaxed));
        summary.orders_applied = Some(c.orders_applied.load(std::sync::atomic::Ordering::Relaxed));
        summary.market_maker_requotes =
            clients.requotes.as_ref().map(|r| r.load(std::sync::atomic::Ordering::Relaxed));
        if let Some((genesis, _, _)) = &clients.market {
            let inputs = FairnessInputs {
                ordering: clients.ordering,
                genesis,
                frontrunner: options
                    .frontrunner
                    .zip(clients.frontrunner_key.as_ref())
                    .map(|(node, key)| (node.0, PublicKeyBytes::from(key.public_key()))),
                attacks: attacks.map_or(0, |a| a.load(std::sync::atomic::Ordering::Relaxed)),
                priority: options.priority.is_some(),
                lanes: &report.latency_by_class,
            };
            let record = record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            summary.fairness = Some(Fairness::measure(&record, &inputs));
        }
    }
    summary.latency_client_ms = extras.client_latencies_ns.map(|mut l| {
        let s = LatencySummary::of(&mut l);
        LatencyMs { p50: ms(s.p50_ns), p99: ms(s.p99_ns), max: ms(s.max_ns) }
    });
    Ok(SimulationRun {
        summary,
        report,
        view_node,
        views,
        trace,
        warnings: Vec::new(),
        options: options.clone(),
        leader_rule,
    })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / MS
}

fn summarise(options: &SimulateOptions, r: &SimReport, views: &[BlockView]) -> SimulationSummary {
    let notarized: BTreeMap<Digest, u64> =
        views.iter().filter_map(|v| v.notarized_at_ns.map(|t| (v.digest, t))).collect();
    SimulationSummary {
        protocol: options.protocol.name(),
        nodes: r.nodes,
        seed: r.seed,
        safety_ok: r.safety_ok,
        violations: r.violations.iter().map(|v| Describe(v).to_string()).collect(),
        txs_submitted: r.submissions.accepted,
        txs_finalized: r.txs_finalized,
        tps_sim: r.tps_sim,
        latency_ms: LatencyMs {
            p50: ms(r.latency.p50_ns),
            p99: ms(r.latency.p99_ns),
            max: ms(r.latency.max_ns),
        },
        messages: MessageSummary {
            total: r.messages.messages,
            bytes: r.messages.bytes,
            by_kind: r
                .by_kind
                .iter()
                .map(|(k, t)| ((*k).to_owned(), KindCount { messages: t.messages, bytes: t.bytes }))
                .collect(),
        },
        nodes_detail: r
            .nodes_detail
            .iter()
            .map(|d| NodeSummary {
                node: d.node.0,
                honest: d.honest,
                finalized_height: d.finalized_height,
                log_digest: d.log_digest,
            })
            .collect(),
        view_changes: None,
        latency_client_ms: None,
        state_digest_agree: None,
        trades: None,
        orders_applied: None,
        market_maker_requotes: None,
        fairness: None,
        finalized_blocks: r
            .finalized_blocks
            .iter()
            .map(|b| BlockSummary {
                height: b.height,
                round: b.round,
                proposer: b.proposer.0,
                digest: b.digest,
                txs: b.txs,
                proposed_at_ms: ms(b.proposed_at_ns),
                notarized_at_ms: notarized.get(&b.digest).map(|t| ms(*t)),
                finalized_at_ms: ms(b.finalized_at_ns),
            })
            .collect(),
    }
}

/// One sentence for a violation.
pub(crate) struct Describe<'a>(pub(crate) &'a Violation);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |t: &u64| ms(*t);
        match self.0 {
            Violation::Conflict { t_ns, height, first, second, .. } => write!(
                f,
                "at {:.3} ms node {} finalized {} at height {height}, but node {} had finalized {}",
                at(t_ns),
                second.0,
                second.1.short(),
                first.0,
                first.1.short()
            ),
            Violation::Gap { t_ns, node, expected, got } => {
                write!(
                    f,
                    "at {:.3} ms node {node} finalized height {got}, expected {expected}",
                    at(t_ns)
                )
            }
            Violation::Unsubmitted { t_ns, tx, height } => {
                write!(
                    f,
                    "at {:.3} ms transaction {} finalized at height {height} was never submitted",
                    at(t_ns),
                    tx.short()
                )
            }
            Violation::Duplicate { t_ns, tx, first_height, again_height } => write!(
                f,
                "at {:.3} ms transaction {} finalized again at height {again_height} (first at {first_height})",
                at(t_ns),
                tx.short()
            ),
            Violation::StateDivergence { t_ns, height, first, second } => write!(
                f,
                "at {:.3} ms after height {height} node {} has state {} but node {} has {}",
                at(t_ns),
                second.0,
                second.1.short(),
                first.0,
                first.1.short()
            ),
            Violation::NotFinalized { tx, submitted_ns, deadline_ns } => write!(
                f,
                "transaction {} submitted at {:.3} ms was not final by {:.3} ms",
                tx.short(),
                at(submitted_ns),
                at(deadline_ns)
            ),
        }
    }
}

impl fmt::Display for SimulationSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} · {} nodes · seed {}", self.protocol, self.nodes, self.seed)?;
        writeln!(f, "  safety          {}", if self.safety_ok { "ok" } else { "VIOLATED" })?;
        for v in &self.violations {
            writeln!(f, "    - {v}")?;
        }
        writeln!(
            f,
            "  transactions    {} submitted, {} finalized",
            self.txs_submitted, self.txs_finalized
        )?;
        writeln!(f, "  throughput      {:.1} tx/s (simulated)", self.tps_sim)?;
        writeln!(
            f,
            "  finality        p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency_ms.p50, self.latency_ms.p99, self.latency_ms.max
        )?;
        if let Some(c) = &self.latency_client_ms {
            writeln!(
                f,
                "  client finality p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (f+1 replies)",
                c.p50, c.p99, c.max
            )?;
        }
        writeln!(f, "  blocks          {} finalized", self.finalized_blocks.len())?;
        if let (Some(agree), Some(trades), Some(orders)) =
            (self.state_digest_agree, self.trades, self.orders_applied)
        {
            writeln!(
                f,
                "  market          {orders} orders applied, {trades} trades, state digests {}",
                if agree { "agree" } else { "DIFFER" }
            )?;
            if let Some(r) = self.market_maker_requotes {
                writeln!(
                    f,
                    "                  market makers re-quoted {r} times after fills or price moves"
                )?;
            }
        }
        if let Some(x) = &self.fairness {
            writeln!(
                f,
                "  fairness        execution order {}, {}",
                x.ordering,
                if x.priority { "priority lanes" } else { "one first-come lane" }
            )?;
            if let Some(node) = x.frontrunner {
                writeln!(
                    f,
                    "                  front-runner node {node}: {} sandwiches, profit {:.0} (quote units, marked to the final mid)",
                    x.frontrunner_attacks, x.frontrunner_profit
                )?;
            }
            writeln!(
                f,
                "                  large orders: {} filled, slippage {:.1} bps against the mid before their block",
                x.victims, x.victim_slippage_bps
            )?;
            let lanes: Vec<String> = x
                .lane_latency_ms
                .iter()
                .map(|(lane, l)| format!("{lane} {:.0}/{:.0}", l.p50, l.p99))
                .collect();
            writeln!(f, "                  lane latency p50/p99 ms: {}", lanes.join(", "))?;
            let shares: Vec<String> =
                x.block_share.iter().map(|(k, v)| format!("{k} {:.1}%", 100.0 * v)).collect();
            writeln!(f, "                  block share: {}", shares.join(", "))?;
        }
        if let Some(v) = self.view_changes {
            writeln!(f, "  view changes    {v} (final view {v})")?;
        }
        writeln!(f, "  messages        {} ({} bytes)", self.messages.total, self.messages.bytes)?;
        for (kind, c) in &self.messages.by_kind {
            writeln!(f, "    {kind:<14} {:>8} msgs {:>12} bytes", c.messages, c.bytes)?;
        }
        writeln!(f, "  nodes")?;
        for n in &self.nodes_detail {
            writeln!(
                f,
                "    n{:<3} {:<9} height {:>4}  log {}",
                n.node,
                if n.honest { "honest" } else { "byzantine" },
                n.finalized_height,
                n.log_digest.short()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_out_of_range_is_named_by_its_field_not_by_a_flag() {
        let o = SimulateOptions { delta_ms: 0.0, ..SimulateOptions::default() };
        let e = o.sim_config().unwrap_err();
        assert!(matches!(e, SimulateError::Field { field: "delta_ms", .. }), "{e}");
        assert_eq!(e.to_string(), "delta_ms must be positive");
    }

    #[test]
    fn defaults_run_safely_and_finalize_everything() {
        let run =
            run(&SimulateOptions { duration_ms: 1_000.0, ..SimulateOptions::default() }).unwrap();
        let s = &run.summary;
        assert!(s.safety_ok);
        assert!(s.txs_submitted > 0);
        assert_eq!(s.txs_submitted, s.txs_finalized);
        let b = &s.finalized_blocks[0];
        // Ideal network, δ = 10 ms, Δ = 50 ms: epoch 1 notarized at 20 ms, final at 120 ms.
        assert_eq!((b.round, b.notarized_at_ms, b.finalized_at_ms), (1, Some(20.0), 120.0));
        assert!(run.svg().contains("<svg") && run.dot().contains("digraph"));
    }

    #[test]
    fn crashing_the_leader_of_an_epoch_leaves_a_gap() {
        let options = SimulateOptions {
            crash_leader_of_epoch: vec![5],
            duration_ms: 1_500.0,
            ..SimulateOptions::default()
        };
        let run = run(&options).unwrap();
        assert!(run.summary.safety_ok);
        assert!(run.summary.finalized_blocks.iter().all(|b| b.round != 5));
        assert!(run.summary.finalized_blocks.iter().any(|b| b.round == 6));
        assert!(run.svg().contains("no block"));
    }

    #[test]
    fn pbft_runs_with_the_paper_timings_and_charts() {
        let options = SimulateOptions {
            protocol: ProtocolChoice::Pbft,
            duration_ms: 800.0,
            record_trace: true,
            ..SimulateOptions::default()
        };
        let run = run(&options).unwrap();
        let s = &run.summary;
        assert!(s.safety_ok);
        assert_eq!(s.txs_submitted, s.txs_finalized);
        assert_eq!(s.view_changes, Some(0));
        // δ = 10 ms: prepared 2δ and committed 3δ after the pre-prepare; clients 4δ after it.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        for b in &s.finalized_blocks {
            assert!(close(b.notarized_at_ms.unwrap() - b.proposed_at_ms, 20.0), "{b:?}");
            assert!(close(b.finalized_at_ms - b.proposed_at_ms, 30.0), "{b:?}");
        }
        let chart = run.sequence_chart(1).unwrap();
        assert!(chart.contains("executed #1") && chart.contains("pre-prepare"));
        assert!(run.sequence_chart(10_000).is_none());
    }

    #[test]
    fn pbft_replaces_a_crashed_primary() {
        let options = SimulateOptions {
            protocol: ProtocolChoice::Pbft,
            duration_ms: 2_000.0,
            view_timeout_ms: 200.0,
            crash_primary_of_view: vec![0],
            ..SimulateOptions::default()
        };
        let s = run(&options).unwrap().summary;
        assert!(s.safety_ok, "{:?}", s.violations);
        assert_eq!(s.view_changes, Some(1));
        assert!(s.finalized_blocks.iter().any(|b| b.round == 1));
        assert!(s.latency_client_ms.is_some());
    }

    #[test]
    fn the_market_summary_comes_from_a_replica_that_did_not_crash() {
        let options = SimulateOptions {
            protocol: ProtocolChoice::Pbft,
            workload: WorkloadChoice::Market,
            duration_ms: 3_000.0,
            tx_rate: 200.0,
            view_timeout_ms: 200.0,
            crash_primary_of_view: vec![0],
            ..SimulateOptions::default()
        };
        let s = run(&options).unwrap().summary;
        assert!(s.safety_ok, "{:?}", s.violations);
        // Replica 0 stops at 750 ms; what it applied is a fraction of what became final.
        assert_eq!(s.orders_applied, Some(s.txs_finalized));
        assert_eq!(s.state_digest_agree, Some(true));
    }

    #[test]
    fn a_market_over_each_protocol_ends_with_agreeing_state_digests() {
        for protocol in [ProtocolChoice::Streamlet, ProtocolChoice::Pbft] {
            let options = SimulateOptions {
                protocol,
                workload: WorkloadChoice::Market,
                duration_ms: 3_000.0,
                tx_rate: 200.0,
                ..SimulateOptions::default()
            };
            let s = run(&options).unwrap().summary;
            assert!(s.safety_ok, "{protocol:?}: {:?}", s.violations);
            assert_eq!(s.state_digest_agree, Some(true), "{protocol:?}");
            assert!(s.trades.unwrap() > 20, "{protocol:?}: {:?} trades", s.trades);
            assert!(s.orders_applied.unwrap() > 300, "{protocol:?}: {:?} orders", s.orders_applied);
            assert!(
                s.market_maker_requotes.unwrap() > 5,
                "{protocol:?}: makers never reacted to fills"
            );
            assert_eq!(s.txs_submitted, s.txs_finalized, "{protocol:?}");
        }
    }

    #[test]
    fn bad_options_are_errors() {
        for bad in [
            SimulateOptions { latency_ms: -1.0, ..SimulateOptions::default() },
            SimulateOptions { delta_ms: 0.0, ..SimulateOptions::default() },
            SimulateOptions { tx_rate: f64::NAN, ..SimulateOptions::default() },
            SimulateOptions { batch_max: 0, ..SimulateOptions::default() },
            SimulateOptions { bandwidth_mbps: Some(0.0), ..SimulateOptions::default() },
            SimulateOptions { nodes: 0, ..SimulateOptions::default() },
            SimulateOptions { crashes: vec![(NodeId(9), 10.0)], ..SimulateOptions::default() },
            SimulateOptions { crash_leader_of_epoch: vec![0], ..SimulateOptions::default() },
            SimulateOptions { checkpoint_interval: 0, ..SimulateOptions::default() },
            SimulateOptions { view_timeout_ms: 0.0, ..SimulateOptions::default() },
        ] {
            assert!(run(&bad).is_err(), "{bad:?}");
        }
    }
}
