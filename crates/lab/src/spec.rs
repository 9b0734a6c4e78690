//! One description of a simulated run, whichever command asks for it, and the one function that
//! runs it.
//!
//! `agora simulate` ([`crate::simulate::SimulateOptions::spec`]), the swarm
//! ([`crate::swarm::Scenario::spec`]) and the benchmark's simulated rows (through `simulate`)
//! each say what they want as a [`RunSpec`]: the protocol and its configuration, the committee
//! and the network, the scheduled faults and the Byzantine members, the workload, the execution
//! order and the lanes. [`RunSpec::run`] builds the engines through [`agora_engines`]'s one
//! factory, the applications and mempools the workload needs, runs the simulator, and gives
//! back a [`Finished`] run that each command reduces in its own way.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_consensus::{
    Application, BlockView, Equivocation, InMemoryMempool, LanedMempool, Mempool, Protocol, TxLog,
};
use agora_crypto::PublicKeyBytes;
use agora_engines::{ConfigError, Engine, EngineConfig, WithEngine, with_engine};
use agora_market::priority::{LANES, Lanes, Priority};
use agora_market::{ExecutionOrder, MarketApp, MarketCounters, MarketGenesis};
use agora_netsim::{
    Behaviour, ClientHook, SimConfig, SimError, SimReport, Simulation, TraceEvent, TraceMode,
    adversary,
};
use agora_store::{MemBlockStore, Snapshot};
use agora_types::{Committee, NodeId, SecretKey};

use crate::agents::{self, AgentsConfig};
use crate::fairness::{Fairness, FairnessInputs, MarketStudy, StudyRecord, Watch};
use crate::frontrun::FrontrunMempool;
use crate::replay::StoredApplication;

/// Everything a simulated run is made of.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The protocol and its configuration.
    pub engine: EngineConfig,
    /// The committee (its size and the seed its keys derive from), the network, the scheduled
    /// crashes, restarts and partitions, the opaque workload, the liveness check and the trace.
    pub sim: SimConfig,
    /// Byzantine members and what each of them does.
    pub byzantine: Vec<(NodeId, Behaviour)>,
    /// The market workload; `None`: the opaque transactions of [`SimConfig::workload`], each
    /// replica applying them to a transaction log.
    pub market: Option<MarketSpec>,
    /// Hand back every honest node's block store at the end ([`Finished::stores`]).
    pub keep_stores: bool,
}

/// The market side of a run: who trades, and how every replica orders and admits their orders.
#[derive(Debug, Clone)]
pub struct MarketSpec {
    /// The agents and their order flow (drawn from the run's seed).
    pub agents: AgentsConfig,
    /// The order in which replicas execute a block's transactions.
    pub ordering: ExecutionOrder,
    /// Priority lanes in every replica's mempool; `None`: one first-come lane.
    pub lanes: Option<Priority>,
    /// This member front-runs large orders whenever it leads ([`crate::frontrun`]).
    pub frontrunner: Option<NodeId>,
}

/// A finished run: what the simulator measured, and what the engines and the market saw.
pub struct Finished {
    /// Everything the simulator measured.
    pub report: SimReport,
    /// The honest node furthest ahead (a crashed one is honest but stopped early), whose view
    /// is kept.
    pub view_node: NodeId,
    /// Its block tree.
    pub views: Vec<BlockView>,
    /// Every simulator event, when [`SimConfig::trace`] recorded them.
    pub trace: Option<Vec<TraceEvent>>,
    /// The highest view an honest replica reached, for protocols that number views.
    pub view_changes: Option<u64>,
    /// Submission-to-reply latencies of every honest replica's clients, for protocols that
    /// reply to clients.
    pub client_latencies_ns: Option<Vec<u64>>,
    /// Honest nodes that refused finalizations conflicting with their finalized log, and how
    /// many each refused.
    pub refused_conflicting_finality: Vec<(NodeId, u64)>,
    /// Double votes of honest members, each with the honest replica that saw it: a vote the
    /// member forgot it cast (a restart without its journal, a vote sent before its record was
    /// durable).
    pub honest_double_votes: Vec<(NodeId, Equivocation)>,
    /// What the market of [`Finished::view_node`] saw, for a market run.
    pub market: Option<MarketSeen>,
    /// Every honest node's block store, when [`RunSpec::keep_stores`] asked for them, with
    /// the application their blocks were applied to.
    pub stores: Option<(StoredApplication, Vec<(NodeId, MemBlockStore)>)>,
}

/// What one honest replica's market saw.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketSeen {
    /// Trades it executed.
    pub trades: u64,
    /// Orders it applied.
    pub orders_applied: u64,
    /// Times the market makers re-quoted on what they saw finalized.
    pub market_maker_requotes: u64,
    /// The fairness measures of the run.
    pub fairness: Fairness,
}

/// Why a spec could not run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The simulator refused its configuration.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The engine refused its configuration.
    #[error("engine configuration: {0}")]
    Engine(#[from] ConfigError),
}

impl RunSpec {
    /// Runs the simulation this spec describes.
    pub fn run(self) -> Result<Finished, SpecError> {
        let engine = self.engine;
        let clients = Clients::new(self.market.as_ref(), &self.sim);
        Ok(with_engine(engine, Run { spec: self, clients: &clients })??)
    }
}

/// One run, waiting for its engine.
struct Run<'a> {
    spec: RunSpec,
    clients: &'a Clients,
}

impl WithEngine for Run<'_> {
    type Output = Result<Finished, SimError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy + 'static,
    ) -> Self::Output {
        let Self { spec, clients } = self;
        match &clients.market {
            None => {
                let restore = |_: NodeId, snapshot: Option<&Snapshot>| match snapshot {
                    None => Ok(TxLog::new(true)),
                    Some(s) => TxLog::from_snapshot(&s.bytes, s.state_digest)
                        .ok_or_else(|| "not a snapshot of the log".to_owned()),
                };
                let stored = StoredApplication::TxLog { verify_signatures: true };
                simulate(spec, clients, engine, |_| TxLog::new(true), restore, None, stored)
            }
            Some(market) => {
                let apps = |node| market.app(node);
                let makers = market.makers.borrow_mut().take();
                let hook = makers.map(|m| Box::new(m) as Box<dyn ClientHook<MarketApp>>);
                let (genesis, order) = (market.genesis.clone(), market.spec.ordering);
                let stored = StoredApplication::Market { genesis: genesis.clone(), order };
                // A rebuilt replica's market is not observed: the study reads a replica that
                // never restarted (see `simulate`).
                let restore = move |_: NodeId, snapshot: Option<&Snapshot>| match snapshot {
                    None => Ok(MarketApp::new(&genesis).with_order(order)),
                    Some(s) => MarketApp::from_snapshot(&genesis, &s.bytes, s.state_digest)
                        .map_err(|error| error.to_string()),
                };
                simulate(spec, clients, engine, apps, restore, hook, stored)
            }
        }
    }
}

/// What one replica's fairness study fills in: its counters and its record.
type Observed = (Arc<MarketCounters>, Arc<std::sync::Mutex<StudyRecord>>);

/// The client side of a run: nothing extra for opaque transactions; for the market, the agents'
/// orders and the genesis every replica starts from.
struct Clients {
    market: Option<MarketClients>,
}

struct MarketClients {
    spec: MarketSpec,
    genesis: MarketGenesis,
    orders: Vec<agents::Submission>,
    makers: RefCell<Option<agents::MarketMakers>>,
    requotes: Arc<AtomicU64>,
    /// The front-runner's account key.
    frontrunner_key: Option<SecretKey>,
    /// What each replica's study observed, one entry per replica, filled in as they are built.
    observed: RefCell<Vec<Observed>>,
}

impl Clients {
    fn new(market: Option<&MarketSpec>, sim: &SimConfig) -> Self {
        let market = market.map(|spec| {
            let (genesis, orders, makers) = agents::generate(&spec.agents, sim.seed, sim.nodes);
            let frontrunner_key =
                spec.frontrunner.map(|_| agents::frontrunner_key(&spec.agents, sim.seed));
            MarketClients {
                spec: spec.clone(),
                genesis,
                orders,
                requotes: makers.requotes(),
                makers: RefCell::new(Some(makers)),
                frontrunner_key,
                observed: RefCell::new(Vec::new()),
            }
        });
        Self { market }
    }
}

impl MarketClients {
    /// Replica `node`'s market, observed by a fairness study.
    fn app(&self, node: NodeId) -> MarketApp {
        // The front-runner's holdings are what its profit is measured from.
        let frontrunner = self.frontrunner_key.as_ref().and_then(|key| {
            let key = PublicKeyBytes::from(key.public_key());
            self.genesis.accounts.iter().find(|a| a.key == key).map(|a| a.account)
        });
        let follow = frontrunner.map(|a| (a, vec!["USD".to_owned(), "ETH".to_owned()]));
        let watch = Watch { min_qty: agents::LARGE_ORDER_LOTS, max_orders: 100_000 };
        let study = MarketStudy::new(watch, follow.into_iter().collect());
        let mut observed = self.observed.borrow_mut();
        debug_assert_eq!(observed.len(), node.index(), "replicas are built in order");
        observed.push((study.counters(), study.record()));
        MarketApp::new(&self.genesis).with_order(self.spec.ordering).with_observer(Box::new(study))
    }

    /// Every replica's mempool (laned if the spec says so, the front-runner's wrapped), the
    /// lanes' latency classes, and the agents' orders. Returns the front-runner's attack count.
    fn prepare<P: Protocol, A: Application>(
        &self,
        sim: &mut Simulation<P, A>,
        limits: agora_consensus::MempoolLimits,
        nodes: usize,
    ) -> Option<Arc<AtomicU64>> {
        let mut attacks = None;
        let spec = &self.spec;
        for node in (0..nodes).map(|i| NodeId(i as u16)) {
            let mut mempool: Box<dyn Mempool> = match &spec.lanes {
                Some(p) => Box::new(LanedMempool::new(
                    limits,
                    p.policy(&self.genesis),
                    p.classifier(&self.genesis),
                )),
                None => Box::new(InMemoryMempool::new(limits)),
            };
            if let (Some(f), Some(key)) = (spec.frontrunner, &self.frontrunner_key)
                && f == node
            {
                let fr = FrontrunMempool::new(mempool, key.clone(), agents::LARGE_ORDER_LOTS);
                attacks = Some(fr.attacks());
                sim.declare_byzantine_client(PublicKeyBytes::from(key.public_key()));
                mempool = Box::new(fr);
            }
            sim.set_mempool(node, mempool);
        }
        let lanes = Lanes::new(&spec.lanes.clone().unwrap_or_default(), &self.genesis);
        sim.set_latency_classes(
            LANES.iter().map(|l| (*l).to_owned()).collect(),
            Box::new(move |tx| lanes.lane(tx)),
        );
        for order in &self.orders {
            sim.submit_at(order.at_ns, order.node, order.tx.clone());
        }
        attacks
    }

    /// What the market of `node` saw, with the run's fairness measures.
    fn seen(&self, node: NodeId, report: &SimReport, attacks: u64) -> MarketSeen {
        let observed = self.observed.borrow();
        let (counters, record) = &observed[node.index()];
        let inputs = FairnessInputs {
            ordering: self.spec.ordering,
            genesis: &self.genesis,
            frontrunner: self
                .spec
                .frontrunner
                .zip(self.frontrunner_key.as_ref())
                .map(|(node, key)| (node.0, PublicKeyBytes::from(key.public_key()))),
            attacks,
            priority: self.spec.lanes.is_some(),
            lanes: &report.latency_by_class,
        };
        let record = record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        MarketSeen {
            trades: counters.trades.load(Ordering::Relaxed),
            orders_applied: counters.orders_applied.load(Ordering::Relaxed),
            market_maker_requotes: self.requotes.load(Ordering::Relaxed),
            fairness: Fairness::measure(&record, &inputs),
        }
    }
}

/// The conflicting votes of honest members that honest replicas saw.
fn honest_double_votes<P: Engine>(honest: &[(NodeId, &P)]) -> Vec<(NodeId, Equivocation)> {
    let is_honest = |voter: NodeId| honest.iter().any(|(n, _)| *n == voter);
    honest
        .iter()
        .flat_map(|(observer, engine)| engine.equivocations().into_iter().map(|e| (*observer, e)))
        .filter(|(_, e)| is_honest(e.first.voter))
        .collect()
}

fn simulate<P: Engine, A: Application>(
    spec: RunSpec,
    clients: &Clients,
    engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy + 'static,
    apps: impl FnMut(NodeId) -> A,
    restore: impl FnMut(NodeId, Option<&Snapshot>) -> Result<A, String> + 'static,
    hook: Option<Box<dyn ClientHook<A>>>,
    application: StoredApplication,
) -> Result<Finished, SimError> {
    let RunSpec { sim: config, byzantine, keep_stores, .. } = spec;
    let record = config.trace == TraceMode::Record;
    let (limits, nodes) = (config.mempool, config.nodes);
    let mut sim = Simulation::with_apps(config, engine, apps)?;
    // A node that restarts as a new process would gets a fresh engine from the same factory.
    sim.set_rebuild(engine);
    // And its application from its block store: the newest snapshot, then the blocks after it.
    sim.set_restore_app(restore);
    for (node, behaviour) in byzantine {
        sim.set_adversary(node, adversary::<P::Message>(behaviour));
    }
    let attacks = clients.market.as_ref().and_then(|m| m.prepare(&mut sim, limits, nodes));
    if let Some(hook) = hook {
        sim.set_client_hook(hook);
    }
    let report = sim.run();
    // The replica read for the market's measures: honest, never rebuilt from its store (a
    // rebuilt market is no longer observed), the furthest ahead.
    let view_node = report
        .nodes_detail
        .iter()
        .filter(|d| d.honest)
        .max_by_key(|d| (d.app_recoveries == 0, d.finalized_height, std::cmp::Reverse(d.node)))
        .map_or(NodeId(0), |d| d.node);
    let honest: Vec<(NodeId, &P)> =
        sim.honest_nodes().into_iter().map(|n| (n, sim.engine(n))).collect();
    let market = clients
        .market
        .as_ref()
        .map(|m| m.seen(view_node, &report, attacks.map_or(0, |a| a.load(Ordering::Relaxed))));
    Ok(Finished {
        view_node,
        views: sim.engine(view_node).block_views(),
        trace: record.then(|| sim.trace().events().to_vec()),
        view_changes: honest.iter().filter_map(|(_, e)| e.view_number()).max(),
        // Only engines that reply to clients have them.
        client_latencies_ns: honest.iter().try_fold(Vec::new(), |mut all, (_, e)| {
            all.extend_from_slice(e.client_latencies_ns()?);
            Some(all)
        }),
        refused_conflicting_finality: honest
            .iter()
            .map(|(n, e)| (*n, e.refused_conflicting_finality()))
            .filter(|(_, refused)| *refused > 0)
            .collect(),
        honest_double_votes: honest_double_votes(&honest),
        market,
        stores: keep_stores.then(|| {
            let honest = sim.honest_nodes().into_iter();
            (application, honest.map(|n| (n, sim.block_store(n).clone())).collect())
        }),
        report,
    })
}
