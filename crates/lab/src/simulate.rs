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

use crate::agents;
use crate::fairness::{Fairness, FairnessInputs, MarketStudy, StudyRecord, Watch};
use crate::frontrun::FrontrunMempool;
use crate::render::{self, ChainPicture};
use agora_market::priority::{LANES, Lanes, Priority};
use agora_market::{ExecutionOrder, MarketApp, MarketCounters, MarketGenesis};

pub use agora_engines::ProtocolChoice;

mod options;
mod summary;

pub use options::{LeaderChoice, SimulateError, SimulateOptions, WorkloadChoice};
use options::{MS, ns};
pub(crate) use summary::Describe;
pub use summary::{
    BlockSummary, KindCount, LatencyMs, MessageSummary, NodeSummary, SimulationSummary,
};
use summary::{ms, summarise};

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
}

impl SimulationRun {
    /// The leader of a round under this run's schedule.
    pub fn leader_of(&self, round: Round) -> NodeId {
        match self.options.protocol {
            ProtocolChoice::Streamlet => {
                self.options.leader_rule().leader(self.options.nodes as u16, Epoch(round.0))
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

/// What a protocol adds to the common summary.
#[derive(Debug, Default)]
struct Extras {
    view_changes: Option<u64>,
    client_latencies_ns: Option<Vec<u64>>,
}

/// Runs the simulation the options describe.
pub fn run(options: &SimulateOptions) -> Result<SimulationRun, SimulateError> {
    let config = options.sim_config()?;
    let engine = match options.protocol {
        ProtocolChoice::Streamlet => {
            EngineConfig::Streamlet(options.streamlet_config(ns("delta_ms", options.delta_ms)?))
        }
        ProtocolChoice::Pbft => EngineConfig::Pbft(options.pbft_config()?),
    };
    let clients = Clients::new(options, &config);
    let warnings = engine.warnings(config.network.latency_ns);
    let run = SimulateRun { options, config, clients: &clients };
    let mut run = with_engine(engine, run)??;
    run.warnings = warnings;
    Ok(run)
}

/// One simulation, waiting for its engine.
struct SimulateRun<'a> {
    options: &'a SimulateOptions,
    config: SimConfig,
    clients: &'a Clients,
}

impl WithEngine for SimulateRun<'_> {
    type Output = Result<SimulationRun, SimulateError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy,
    ) -> Self::Output {
        let Self { options, config, clients } = self;
        let adversary = options.equivocator.then(|| adversary(Behaviour::Equivocate));
        simulate_workload(options, config, clients, engine, adversary, |honest| {
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
    clients: &Clients,
    engine: impl FnMut(NodeId, &Committee, &SecretKey) -> P,
    adversary: Option<Box<dyn agora_netsim::Adversary<P::Message>>>,
    extras: impl FnOnce(&[&P]) -> Extras,
) -> Result<SimulationRun, SimulateError> {
    match &clients.market {
        None => {
            let apps = |_| TxLog::new(true);
            simulate(options, config, clients, engine, apps, None, adversary, extras)
        }
        Some((genesis, _, observed)) => {
            let apps = |node| clients.market_app(genesis, observed, node);
            let makers = clients.makers.borrow_mut().take();
            let hook = makers.map(|m| Box::new(m) as Box<dyn ClientHook<MarketApp>>);
            simulate(options, config, clients, engine, apps, hook, adversary, extras)
        }
    }
}

#[allow(clippy::too_many_arguments)] // one private call site per workload
fn simulate<P: Protocol + ChainView, A: Application>(
    options: &SimulateOptions,
    config: SimConfig,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_named_in_the_other_protocols_terms_is_refused() {
        let pbft = SimulateOptions {
            protocol: ProtocolChoice::Pbft,
            crash_leader_of_epoch: vec![3],
            ..SimulateOptions::default()
        };
        let e = pbft.sim_config().unwrap_err();
        assert!(matches!(e, SimulateError::Field { field: "crash_leader_of_epoch", .. }), "{e}");
        let streamlet =
            SimulateOptions { crash_primary_of_view: vec![0], ..SimulateOptions::default() };
        let e = streamlet.sim_config().unwrap_err();
        assert!(matches!(e, SimulateError::Field { field: "crash_primary_of_view", .. }), "{e}");
    }

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
