//! Protocol comparison reports: one matrix of runs (protocols × committee sizes × scenarios in
//! the simulator, plus wall-clock runs of the real-time cluster), written as `report.md` for
//! people, `report.json` for programs, and SVG plots.
//!
//! Every simulated run uses the same seeds, the same WAN-like network (latency, jitter,
//! bandwidth) and the same market workload, so protocols differ only in themselves. A theory
//! check runs each protocol on an ideal network and compares the finality time with the paper's:
//! PBFT commits 3δ after the pre-prepare, Streamlet finalizes 2Δ + 2δ after the proposal,
//! Simplex 3δ after it. A
//! fairness section measures a front-running leader under each execution order and priority
//! lanes under overload.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_engines::{Engine, EngineConfig, WithEngine, with_engine};
use agora_hotstuff::HotStuffConfig;
use agora_market::ExecutionOrder;
use agora_pbft::PbftConfig;
use agora_runtime::{ClusterConfig, Load, Storage, process_cpu_seconds, verify_rate};
use agora_simplex::SimplexConfig;
use agora_streamlet::StreamletConfig;
use agora_types::{NodeId, Transaction};
use serde::Serialize;

use crate::replay::StoredApplication;
use crate::simulate::{self, ProtocolChoice, SimulateOptions, WorkloadChoice};

mod fairness;
mod front_door;
mod recovery;
pub use fairness::{
    FairnessOutcome, FairnessPlanned, FairnessReport, FrontRunRecord, LaneRecord, ShareRecord,
    fairness_options, fairness_plan, fairness_seeds, run_fairness, summarise_fairness,
};
pub use front_door::{FrontDoorRecord, measure as measure_front_door};
pub use recovery::{RecoveryRecord, measure as measure_recovery};

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// The short matrix (n = 4 and 7, shorter runs): under two minutes on this machine.
    pub quick: bool,
    /// Include wall-clock runs of the real-time cluster.
    pub wall: bool,
    /// Seed of every simulated run.
    pub seed: u64,
    /// The short comparison `agora` runs by default: n = 4, no faults, simulated and wall clock.
    pub main: bool,
    /// Keep every wall run's replica stores in `DIR/<protocol>-<scenario>-n<n>-r<k>/node-<i>`
    /// (on disk, synced), for `agora replay`; otherwise the durable row's are temporary and
    /// the other rows keep theirs in memory.
    pub store_dir: Option<PathBuf>,
    /// The `agora` binary, to run the `net` rows (four `agora node` processes on loopback);
    /// without it there are none.
    pub node_exe: Option<PathBuf>,
}

/// The simulated network every matrix run shares.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NetworkSettings {
    /// One-way latency, ms.
    pub latency_ms: f64,
    /// Uniform jitter, ms.
    pub jitter_ms: f64,
    /// Uplink per node, Mbit/s.
    pub bandwidth_mbps: f64,
    /// Δ, ms.
    pub delta_ms: f64,
    /// Offered load, transactions per second.
    pub tx_rate: f64,
    /// Simulated duration per run, ms.
    pub duration_ms: f64,
}

/// One run of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// `streamlet` or `pbft`.
    pub protocol: &'static str,
    /// Committee size.
    pub nodes: usize,
    /// `no-faults`, `leader-crash`, `partition-heals`, `equivocator`, `theory`, or (wall clock)
    /// `80%-load`: open loop at 80% of the physical limit; `durable`: as `no-faults`, with each
    /// replica's journal on disk, synced as the engine's durability rule asks.
    pub scenario: &'static str,
    /// `sim` or `wall`.
    pub mode: &'static str,
    /// Finalized transactions per (simulated or wall) second.
    pub tps: f64,
    /// Finality latency p50, ms.
    pub latency_ms_p50: f64,
    /// Finality latency p99, ms.
    pub latency_ms_p99: f64,
    /// Wall runs: submission → applied at the replica it entered, p99, ms (differs from
    /// finality when blocks are applied on their own thread and wait in its queue).
    pub applied_latency_ms_p99: Option<f64>,
    /// Messages per finalized block.
    pub messages_per_block: f64,
    /// Bytes sent per finalized transaction.
    pub bytes_per_tx: f64,
    /// Wall runs: finalized transactions per replica-CPU-second.
    pub replica_core_tps: Option<f64>,
    /// The most this run could reach: the load actually submitted per second (sim), or all
    /// cores' k256 verifications divided by the replicas (wall), measured just before the run.
    pub limit_tps: f64,
    /// Wall runs: k256 verifications per second on one core, measured just before the run
    /// (replica-core capacity is compared with it).
    pub limit_one_core_tps: Option<f64>,
    /// Repeated wall runs (at full speed, in the matrix): each repeat's TPS as a percentage of
    /// its limit, in run order. The record's other figures are the median repeat's. Empty
    /// otherwise.
    pub percent_of_limit_runs: Vec<f64>,
    /// Wall runs: all cores' k256 verifications per second measured just before the run and
    /// just after it, for the same time; `limit_tps` is their mean divided by the replicas.
    pub limit_samples: Option<(f64, f64)>,
    /// Wall runs: verifications per CPU-second of the cluster (each finalized transaction is
    /// verified by every replica) against verifications per CPU-second of the limit loop, both
    /// from the process's own CPU accounting: a ratio that other work on the machine does not
    /// move, since it counts only this process's CPU.
    pub cpu_ratio: Option<f64>,
    /// Wall runs discarded as noisy and run again, each with why (the limit moved more than
    /// 5% across it, or it ran above its limit).
    pub discarded: Vec<String>,
    /// No invariant broken.
    pub safety_ok: bool,
    /// Every honest replica ended with the same state digest.
    pub state_digest_agree: bool,
    /// Theory runs: the paper's finality time after proposal, ms.
    pub theory_ms: Option<f64>,
    /// Theory runs: the measured mean, ms.
    pub measured_ms: Option<f64>,
}

/// The machine the report was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// k256 verifications per second on one core.
    pub verify_one_core: f64,
    /// On all cores at once.
    pub verify_all_cores: f64,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The git commit of the code measured, if known.
    pub git_commit: Option<String>,
    /// Quick or full matrix.
    pub quick: bool,
    /// The seed of every simulated run.
    pub seed: u64,
    /// The simulated network.
    pub network: NetworkSettings,
    /// Every run.
    pub runs: Vec<RunRecord>,
    /// Front-running, slippage, lanes and block space (not in the main comparison).
    pub fairness: Option<FairnessReport>,
    /// The disk's syncs per second and a replica's replay from a snapshot (with wall runs, not
    /// in the main comparison).
    pub recovery: Option<RecoveryRecord>,
    /// Orders one node's HTTP API admits per second (with wall runs, not in the main
    /// comparison).
    pub front_door: Option<FrontDoorRecord>,
}

/// One planned run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Protocol.
    pub protocol: ProtocolChoice,
    /// Committee size.
    pub nodes: usize,
    /// Scenario name.
    pub scenario: &'static str,
    /// Simulated or wall clock.
    pub wall: bool,
    /// Wall clock over the network: one `agora node` process per replica, on loopback.
    pub net: bool,
}

impl Planned {
    /// `sim`, `wall` or `net`.
    pub fn mode(&self) -> &'static str {
        match (self.wall, self.net) {
            (_, true) => "net",
            (true, false) => "wall",
            (false, false) => "sim",
        }
    }

    /// A short label for progress output.
    pub fn label(&self) -> String {
        format!("{} n={} {} {}", self.protocol.name(), self.nodes, self.scenario, self.mode())
    }
}

/// Committees above this size run [`LARGE_COMMITTEE_DURATION_MS`] of simulated time: at
/// n = 64, 8 s of PBFT is about 3 × 10⁷ message deliveries (Streamlet's echo, 1.8 × 10⁷), above
/// what `simulate` accepts in one run.
const LARGE_COMMITTEE: usize = 31;
/// Simulated time of a run above [`LARGE_COMMITTEE`] members.
const LARGE_COMMITTEE_DURATION_MS: f64 = 4_000.0;

const SCENARIOS: [&str; 4] = ["no-faults", "leader-crash", "partition-heals", "equivocator"];

/// The simulated network of the matrix.
pub fn network(quick: bool) -> NetworkSettings {
    NetworkSettings {
        latency_ms: 20.0,
        jitter_ms: 10.0,
        bandwidth_mbps: 1_000.0,
        delta_ms: 60.0,
        tx_rate: 300.0,
        duration_ms: if quick { 4_000.0 } else { 8_000.0 },
    }
}

/// The runs of the matrix, in order.
pub fn plan(options: &BenchOptions) -> Vec<Planned> {
    if options.main {
        return ProtocolChoice::ALL
            .into_iter()
            .flat_map(|protocol| {
                [false, true].into_iter().filter(|wall| !wall || options.wall).map(move |wall| {
                    Planned { protocol, nodes: 4, scenario: "no-faults", wall, net: false }
                })
            })
            .collect();
    }
    let sizes: &[usize] = if options.quick { &[4, 7] } else { &[4, 7, 16, 31, 64] };
    let mut out = Vec::new();
    for protocol in ProtocolChoice::ALL {
        out.push(Planned { protocol, nodes: 4, scenario: "theory", wall: false, net: false });
        if protocol == ProtocolChoice::HotStuff {
            out.push(Planned {
                protocol,
                nodes: 4,
                scenario: THEORY_TWO_CHAIN,
                wall: false,
                net: false,
            });
        }
        for &nodes in sizes {
            for scenario in SCENARIOS {
                out.push(Planned { protocol, nodes, scenario, wall: false, net: false });
            }
        }
        if options.wall {
            let wall_sizes: &[usize] = if options.quick { &[4] } else { &[4, 7] };
            for &nodes in wall_sizes {
                out.push(Planned {
                    protocol,
                    nodes,
                    scenario: "no-faults",
                    wall: true,
                    net: false,
                });
            }
            // Open loop at 80% of the physical limit: the latency a loaded market sees.
            out.push(Planned { protocol, nodes: 4, scenario: "80%-load", wall: true, net: false });
            // The same full-speed run with journals on disk: what durability costs.
            out.push(Planned { protocol, nodes: 4, scenario: "durable", wall: true, net: false });
            // One process per replica over TCP and Noise: what the network stack costs.
            if options.node_exe.is_some() {
                for scenario in ["no-faults", "80%-load"] {
                    out.push(Planned { protocol, nodes: 4, scenario, wall: true, net: true });
                }
            }
        }
    }
    out
}

/// Runs one planned run.
pub fn run_one(
    planned: &Planned,
    options: &BenchOptions,
    machine: &Machine,
) -> Result<RunRecord, String> {
    if planned.net {
        return run_net(planned, options, machine);
    }
    if planned.wall {
        return run_wall(planned, options, machine);
    }
    let net = network(options.quick);
    let mut o = SimulateOptions {
        protocol: planned.protocol,
        nodes: planned.nodes,
        seed: options.seed,
        duration_ms: if planned.nodes > LARGE_COMMITTEE {
            net.duration_ms.min(LARGE_COMMITTEE_DURATION_MS)
        } else {
            net.duration_ms
        },
        latency_ms: net.latency_ms,
        jitter_ms: net.jitter_ms,
        delta_ms: net.delta_ms,
        bandwidth_mbps: Some(net.bandwidth_mbps),
        tx_rate: net.tx_rate,
        workload: WorkloadChoice::Market,
        view_timeout_ms: 400.0,
        ..SimulateOptions::default()
    };
    let mut theory = None;
    match planned.scenario {
        "theory" | THEORY_TWO_CHAIN => {
            // The ideal network of the papers: fixed δ, no jitter, unlimited bandwidth.
            o.latency_ms = 10.0;
            o.jitter_ms = 0.0;
            o.delta_ms = 50.0;
            o.bandwidth_mbps = None;
            o.duration_ms = 2_000.0;
            theory = Some(match planned.protocol {
                ProtocolChoice::Pbft => 3.0 * o.latency_ms,
                ProtocolChoice::Streamlet => 2.0 * o.delta_ms + 2.0 * o.latency_ms,
                // Votes at 2δ notarize, finalize votes at 3δ finalize.
                ProtocolChoice::Simplex => 3.0 * o.latency_ms,
                // A QC every 2δ at the next leader; the third after the block's commits it
                // (the second, with two chains).
                ProtocolChoice::HotStuff if planned.scenario == THEORY_TWO_CHAIN => {
                    o.chain = 2;
                    4.0 * o.latency_ms
                }
                ProtocolChoice::HotStuff => 6.0 * o.latency_ms,
            });
        }
        "leader-crash" => match planned.protocol {
            ProtocolChoice::Streamlet => o.crash_leader_of_epoch = vec![5],
            ProtocolChoice::Pbft => o.crash_primary_of_view = vec![0],
            ProtocolChoice::Simplex => o.crash_leader_of_iteration = vec![5],
            ProtocolChoice::HotStuff => o.crash_leader_of_view = vec![5],
        },
        "partition-heals" => o.partition_ms = Some((1_000.0, 2_000.0)),
        "equivocator" => o.equivocator = true,
        _ => {}
    }
    let run = simulate::run(&o).map_err(|e| e.to_string())?;
    let s = &run.summary;
    let blocks = s.finalized_blocks.len().max(1) as f64;
    let measured = theory.map(|_| {
        let gaps: Vec<f64> =
            s.finalized_blocks.iter().map(|b| b.finalized_at_ms - b.proposed_at_ms).collect();
        gaps.iter().sum::<f64>() / gaps.len().max(1) as f64
    });
    Ok(RunRecord {
        protocol: if o.chain == 2 { "hotstuff-2" } else { planned.protocol.name() },
        nodes: planned.nodes,
        scenario: planned.scenario,
        mode: "sim",
        tps: s.tps_sim,
        latency_ms_p50: s.latency_ms.p50,
        latency_ms_p99: s.latency_ms.p99,
        applied_latency_ms_p99: None,
        messages_per_block: s.messages.total as f64 / blocks,
        bytes_per_tx: s.messages.bytes as f64 / s.txs_finalized.max(1) as f64,
        replica_core_tps: None,
        // What was offered: every submission a replica took (traders, market makers, liquidator;
        // those sent to a Byzantine replica included, since it may still forward them) per
        // simulated second.
        limit_tps: (run.report.submissions.accepted + run.report.submissions.to_byzantine) as f64
            / (o.duration_ms / 1e3),
        limit_one_core_tps: None,
        percent_of_limit_runs: Vec::new(),
        limit_samples: None,
        cpu_ratio: None,
        discarded: Vec::new(),
        safety_ok: s.safety_ok,
        state_digest_agree: s.state_digest_agree.unwrap_or(false),
        theory_ms: theory,
        measured_ms: measured,
    })
}

/// The theory check of HotStuff's two-chain rule (4δ from proposal to finality), beside the
/// three-chain one every protocol's `theory` row checks; its rows are named `hotstuff-2`.
const THEORY_TWO_CHAIN: &str = "theory-two-chain";

/// Wall runs at full speed are repeated this many times in the quick matrix, [`WALL_REPEATS_FULL`]
/// in the full one (once in the short main comparison), and the median reported: a shared
/// machine's speed varies by a few percent from run to run.
const WALL_REPEATS: usize = 3;
/// Repeats of a full-speed wall run in the full matrix.
const WALL_REPEATS_FULL: usize = 5;
/// Noisy wall runs discarded per row at most; past it, a noisy run is kept, and says so.
const NOISY_DISCARDS_MAX: usize = 4;
/// How long each limit sample, before and after a wall run, measures.
const LIMIT_SAMPLE: Duration = Duration::from_millis(400);
/// The most the two limit samples of a run may differ, as a share of their mean.
const LIMIT_DRIFT_MAX: f64 = 0.05;

/// A real-time market: the agents' orders (signed before the clock starts) as fast as the
/// cluster takes them, every replica verifying every signature and running its own exchange.
/// A run at full speed is repeated ([`WALL_REPEATS`], except in the main comparison) and the run
/// with the median share of its limit is reported, with every repeat's share beside it.
fn run_wall(
    planned: &Planned,
    options: &BenchOptions,
    machine: &Machine,
) -> Result<RunRecord, String> {
    let open_loop = planned.scenario == "80%-load";
    let (genesis, txs) = real_time_orders(planned, options, machine);
    let repeats = match (open_loop || options.main, options.quick) {
        (true, _) => 1,
        (false, true) => WALL_REPEATS,
        (false, false) => WALL_REPEATS_FULL,
    };
    let mut runs = Vec::new();
    let mut discarded = Vec::new();
    while runs.len() < repeats {
        let run = wall_once(planned, options, machine, &genesis, txs.clone(), open_loop)?;
        match noisy(&run) {
            Some(why) if discarded.len() < NOISY_DISCARDS_MAX => discarded.push(why),
            Some(why) => {
                discarded.push(format!("kept after {NOISY_DISCARDS_MAX} discards: {why}"));
                runs.push(run);
            }
            None => runs.push(run),
        }
    }
    let share = |r: &RunRecord| r.tps / r.limit_tps.max(1e-9);
    let shares: Vec<f64> = runs.iter().map(|r| 100.0 * share(r)).collect();
    // A disagreement in any repeat is the report's, not only the median's.
    let all_agree = runs.iter().all(|r| r.state_digest_agree);
    runs.sort_by(|a, b| share(a).total_cmp(&share(b)));
    let mut median = runs.swap_remove(runs.len() / 2);
    median.state_digest_agree = all_agree;
    median.discarded = discarded;
    if repeats > 1 {
        median.percent_of_limit_runs = shares;
    }
    Ok(median)
}

/// Why a wall run is too noisy to keep, if it is: its limit moved more than
/// [`LIMIT_DRIFT_MAX`] between the samples before and after it, or it ran above its limit
/// (which says more about a low limit sample than about the cluster).
fn noisy(run: &RunRecord) -> Option<String> {
    let (before, after) = run.limit_samples?;
    let mean = (before + after) / 2.0;
    let drift = (before - after).abs() / mean.max(1e-9);
    let share = run.tps / run.limit_tps.max(1e-9);
    if drift > LIMIT_DRIFT_MAX {
        Some(format!(
            "the limit moved {:.1}% across the run ({before:.0} then {after:.0} verifications/s)",
            100.0 * drift
        ))
    } else if share > 1.0 {
        Some(format!("it ran at {:.0}% of its limit", 100.0 * share))
    } else {
        None
    }
}

/// One limit sample: k256 verifications per second on one core and on all, and per
/// CPU-second of this process (from its own CPU accounting, if the platform gives it).
fn limit_sample(cores: usize) -> (f64, f64, Option<f64>) {
    let cpu_before = process_cpu_seconds();
    let (one, all) = verify_rate(cores, LIMIT_SAMPLE);
    let cpu = process_cpu_seconds().zip(cpu_before).map(|(b, a)| b - a).filter(|c| *c > 0.0);
    // Each loop ran for LIMIT_SAMPLE at its rate.
    let verifications = (one + all) * LIMIT_SAMPLE.as_secs_f64();
    (one, all, cpu.map(|c| verifications / c))
}

/// One cluster run on the market, waiting for its engine.
struct WallRun<'a> {
    config: ClusterConfig,
    genesis: &'a agora_market::MarketGenesis,
    load: Load,
}

impl WithEngine for WallRun<'_> {
    type Output = Result<agora_runtime::WallReport, agora_runtime::RuntimeError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &agora_types::Committee, &agora_types::SecretKey) -> P + Copy + 'static,
    ) -> Self::Output {
        let genesis = self.genesis;
        let app = |_| -> Box<dyn agora_consensus::Application + Send> {
            Box::new(agora_market::MarketApp::new(genesis))
        };
        agora_runtime::run(self.config, engine, app, self.load)
    }
}

/// The first `DIR/<protocol>-<scenario>-n<n>-r<k>` that does not exist yet.
fn fresh_run_dir(dir: &Path, planned: &Planned) -> PathBuf {
    let name = format!("{}-{}-n{}", planned.protocol.name(), planned.scenario, planned.nodes);
    (1..).map(|k| dir.join(format!("{name}-r{k}"))).find(|d| !d.exists()).expect("unbounded")
}

/// One wall run of `txs`: the limit measured, then the cluster run.
fn wall_once(
    planned: &Planned,
    options: &BenchOptions,
    machine: &Machine,
    genesis: &agora_market::MarketGenesis,
    txs: Vec<(NodeId, Transaction)>,
    open_loop: bool,
) -> Result<RunRecord, String> {
    let n = planned.nodes;
    // The limit just before the run and just after it, not when the report began: a shared
    // machine's speed drifts over minutes.
    let (one_before, all_before, per_cpu_before) = limit_sample(machine.cores);
    let rate = open_loop.then(|| 0.8 * all_before / n as f64);
    let load = Load { txs, rate_per_sec: rate, window: 8_000 };
    let mut config = ClusterConfig::new(n);
    config.timeout = Duration::from_secs(300);
    // Streamlet's engine would stall while its thread applies a block (votes and proposals
    // wait); PBFT batches better when execution holds its primary back, so it applies inline.
    config.apply_thread = planned.protocol != ProtocolChoice::Pbft;
    let engine = real_time_engine(planned.protocol);
    config.storage = match (&options.store_dir, planned.scenario) {
        (Some(dir), _) => Storage::Dir(fresh_run_dir(dir, planned)),
        // Journals and blocks on disk in a directory of this run's own, removed after it.
        (None, "durable") => Storage::Temporary,
        (None, _) => Storage::Memory,
    };
    let application =
        StoredApplication::Market { genesis: genesis.clone(), order: ExecutionOrder::Proposal };
    config.application = Some(application.encode().into());
    let report = with_engine(engine, WallRun { config, genesis, load });
    let report = report.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let (one_after, all_after, per_cpu_after) = limit_sample(machine.cores);
    let (one_core, all_cores) = ((one_before + one_after) / 2.0, (all_before + all_after) / 2.0);
    let per_cpu = per_cpu_before.zip(per_cpu_after).map(|(b, a)| (b + a) / 2.0);
    let blocks = report.replicas.first().map_or(1, |r| r.height.max(1)) as f64;
    Ok(RunRecord {
        protocol: planned.protocol.name(),
        nodes: n,
        scenario: planned.scenario,
        mode: "wall",
        tps: report.tps,
        latency_ms_p50: report.latency_ms_p50,
        latency_ms_p99: report.latency_ms_p99,
        applied_latency_ms_p99: Some(report.applied_latency_ms_p99),
        messages_per_block: report.messages as f64 / blocks,
        bytes_per_tx: report.bytes as f64 / report.txs_finalized.max(1) as f64,
        replica_core_tps: report.replica_core_tps,
        limit_tps: all_cores / n as f64,
        limit_one_core_tps: Some(one_core),
        percent_of_limit_runs: Vec::new(),
        limit_samples: Some((all_before, all_after)),
        cpu_ratio: report.replica_core_tps.zip(per_cpu).map(|(t, v)| t / v),
        discarded: Vec::new(),
        safety_ok: true,
        state_digest_agree: report.state_digests_agree,
        theory_ms: None,
        measured_ms: None,
    })
}

/// The engine settings of the real-time rows, wall and net alike.
fn real_time_engine(protocol: ProtocolChoice) -> EngineConfig {
    match protocol {
        ProtocolChoice::Streamlet => {
            let mut s = StreamletConfig::new(20_000_000);
            s.batch.txs_max = 2_000;
            EngineConfig::Streamlet(s)
        }
        ProtocolChoice::Pbft => {
            let mut p = PbftConfig::new(2_000_000_000);
            p.batch.txs_max = 500;
            EngineConfig::Pbft(p)
        }
        ProtocolChoice::Simplex => {
            let mut s = SimplexConfig::new(20_000_000);
            s.batch.txs_max = 2_000;
            // Proposals at network speed, but no stream of empty blocks when idle.
            s.empty_block_after_ns = s.delta_ns;
            EngineConfig::Simplex(s)
        }
        ProtocolChoice::HotStuff => {
            let mut h = HotStuffConfig::new(20_000_000);
            h.batch.txs_max = 2_000;
            // As Simplex: proposals at network speed, no stream of empty blocks when idle.
            h.empty_block_after_ns = h.delta_ns;
            EngineConfig::HotStuff(h)
        }
    }
}

/// The agents' orders of a real-time row, and their genesis.
fn real_time_orders(
    planned: &Planned,
    options: &BenchOptions,
    machine: &Machine,
) -> (agora_market::MarketGenesis, Vec<(NodeId, Transaction)>) {
    use crate::agents;
    let open_loop = planned.scenario == "80%-load";
    let count = match (open_loop, options.quick || options.main) {
        // At 80% load: open loop at 0.8 × the physical limit for about four seconds.
        (true, _) => (0.8 * machine.verify_all_cores / planned.nodes as f64 * 4.0).max(1_000.0),
        // Long enough that ramp-up and drain (a window of 8,000) are a small part of the run.
        (false, true) => 40_000.0,
        (false, false) => 60_000.0,
    };
    let traders = 32;
    let agents_config = agents::AgentsConfig {
        traders,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 1_000.0,
        quote_every_ns: 100_000_000,
        end_ns: (count / traders as f64 / 1_000.0 * 1e9) as u64,
        large_orders: 0.0,
        frontrunner: false,
    };
    let (genesis, orders, _) = agents::generate(&agents_config, options.seed, planned.nodes);
    (genesis, orders.into_iter().map(|o| (o.node, o.tx)).collect())
}

/// A `net` row: the wall row's market and engine, but each replica an `agora node` process of
/// its own (stores on disk), linked over TCP and Noise on loopback, the orders entering through
/// the nodes' HTTP APIs as `agora load` sends them. Run once, with the limit sampled before and
/// after it.
fn run_net(
    planned: &Planned,
    options: &BenchOptions,
    machine: &Machine,
) -> Result<RunRecord, String> {
    use crate::testnet::{Pace, init_with, run_orders};
    let exe = options.node_exe.as_ref().ok_or("net rows need the agora binary")?;
    let n = planned.nodes;
    let (_, txs) = real_time_orders(planned, options, machine);
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let consensus = match real_time_engine(planned.protocol) {
        EngineConfig::Streamlet(s) => agora_node::ConsensusSection {
            protocol: "streamlet".into(),
            view_timeout_ms: None,
            delta_ms: Some(s.delta_ns / 1_000_000),
            batch_txs_max: Some(s.batch.txs_max),
        },
        EngineConfig::Pbft(p) => agora_node::ConsensusSection {
            protocol: "pbft".into(),
            view_timeout_ms: Some(p.view_timeout_ns / 1_000_000),
            delta_ms: None,
            batch_txs_max: Some(p.batch.txs_max),
        },
        EngineConfig::Simplex(s) => agora_node::ConsensusSection {
            protocol: "simplex".into(),
            view_timeout_ms: None,
            delta_ms: Some(s.delta_ns / 1_000_000),
            batch_txs_max: Some(s.batch.txs_max),
        },
        EngineConfig::HotStuff(h) => agora_node::ConsensusSection {
            protocol: agora_node::hotstuff_protocol_name(h.chain).into(),
            view_timeout_ms: None,
            delta_ms: Some(h.delta_ns / 1_000_000),
            batch_txs_max: Some(h.batch.txs_max),
        },
    };
    init_with(dir.path(), n, &consensus, options.seed, 0)?;
    let (one_before, all_before, per_cpu_before) = limit_sample(machine.cores);
    let pace = match planned.scenario {
        "80%-load" => Pace::Rate(0.8 * all_before / n as f64),
        _ => Pace::Window(8_000),
    };
    let report = run_orders(dir.path(), exe, txs, pace)?;
    let (one_after, all_after, per_cpu_after) = limit_sample(machine.cores);
    let (one_core, all_cores) = ((one_before + one_after) / 2.0, (all_before + all_after) / 2.0);
    let per_cpu = per_cpu_before.zip(per_cpu_after).map(|(b, a)| (b + a) / 2.0);
    let blocks = report.heights.iter().copied().max().unwrap_or(1).max(1) as f64;
    let replica_core_tps =
        report.cpu_seconds.filter(|c| *c > 0.0).map(|c| report.txs_final as f64 / (c / n as f64));
    Ok(RunRecord {
        protocol: planned.protocol.name(),
        nodes: n,
        scenario: planned.scenario,
        mode: "net",
        tps: report.tps,
        latency_ms_p50: report.latency_ms_p50,
        latency_ms_p99: report.latency_ms_p99,
        applied_latency_ms_p99: None,
        messages_per_block: report.messages as f64 / blocks,
        bytes_per_tx: report.bytes as f64 / report.txs_final.max(1) as f64,
        replica_core_tps,
        limit_tps: all_cores / n as f64,
        limit_one_core_tps: Some(one_core),
        percent_of_limit_runs: Vec::new(),
        limit_samples: Some((all_before, all_after)),
        cpu_ratio: replica_core_tps.zip(per_cpu).map(|(t, v)| t / v),
        discarded: Vec::new(),
        safety_ok: true,
        state_digest_agree: report.state_digest_agree
            && report.txs_final + report.txs_busy == report.txs_submitted,
        theory_ms: None,
        measured_ms: None,
    })
}

/// The machine, with its signature-verification limits measured now.
pub fn machine() -> Machine {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let (one, all) = verify_rate(cores, Duration::from_millis(400));
    Machine { cpu, cores, verify_one_core: one, verify_all_cores: all }
}

/// The git commit of the working tree, if git is there to say.
pub fn git_commit() -> Option<String> {
    let out =
        std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The "% of limit" cell: the run's share, and for repeated runs every repeat's range
/// (`87% (85–88%, 3 runs)`).
fn percent_of_limit(run: &RunRecord) -> String {
    let share = format!("{:.0}%", 100.0 * run.tps / run.limit_tps.max(1e-9));
    let runs = &run.percent_of_limit_runs;
    match (runs.iter().copied().reduce(f64::min), runs.iter().copied().reduce(f64::max)) {
        (Some(low), Some(high)) if runs.len() > 1 => {
            format!("{share} ({low:.0}–{high:.0}%, {} runs)", runs.len())
        }
        _ => share,
    }
}

/// Each protocol's net row at full speed as a share of its in-process wall row (n = 4, no
/// faults) of the same report: what the network stack costs.
fn net_against_wall(r: &Report, s: &mut String) {
    let row = |protocol: &str, mode: &str| {
        r.runs.iter().find(|x| {
            x.protocol == protocol && x.mode == mode && x.nodes == 4 && x.scenario == "no-faults"
        })
    };
    let mut lines = Vec::new();
    for protocol in ProtocolChoice::ALL.map(ProtocolChoice::name) {
        if let (Some(net), Some(wall)) = (row(protocol, "net"), row(protocol, "wall")) {
            lines.push(format!(
                "- {protocol}: {:.0} TPS over the network, {:.0}% of the in-process cluster's {:.0} and {:.0}% of its own limit",
                net.tps,
                100.0 * net.tps / wall.tps.max(1e-9),
                wall.tps,
                100.0 * net.tps / net.limit_tps.max(1e-9),
            ));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(
            s,
            "\nNet rows: four `agora node` processes on loopback, linked over TCP with Noise, stores on disk, the orders entering through their HTTP APIs as `agora load` sends them (one node's orders due within 5 ms in one batch request), its client running on the same cores:\n"
        );
        for line in lines {
            let _ = writeln!(s, "{line}");
        }
    }
}

/// `report.md`: the tables a person reads.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# agora protocol comparison\n");
    let _ = writeln!(
        s,
        "Machine: {} ({} cores); k256 verifications/s: {:.0} on one core, {:.0} on all cores. Commit: {}. Seed: {}. Matrix: {}.\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.verify_one_core,
        r.machine.verify_all_cores,
        r.git_commit.as_deref().unwrap_or("unknown"),
        r.seed,
        if r.quick { "quick" } else { "full" }
    );
    let n = &r.network;
    let _ = writeln!(
        s,
        "Simulated network: latency {} ms + uniform jitter up to {} ms, uplink {} Mbit/s per node, Δ = {} ms; a market of trading agents at {} orders/s for {} simulated ms ({} ms above n = {}). Wall runs: the real-time cluster on this machine, the agents' orders (signed before the clock starts) as fast as it takes them, every replica verifying every signature and running its own exchange.\n",
        n.latency_ms,
        n.jitter_ms,
        n.bandwidth_mbps,
        n.delta_ms,
        n.tx_rate,
        n.duration_ms,
        n.duration_ms.min(LARGE_COMMITTEE_DURATION_MS),
        LARGE_COMMITTEE
    );
    let _ = writeln!(s, "## Runs\n");
    let _ = writeln!(
        s,
        "| protocol | mode | n | scenario | TPS | limit | % of limit | p50 ms | p99 ms | applied p99 ms | msgs/block | bytes/tx | replica-core TPS | safety | digests agree |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in r.runs.iter().filter(|x| x.theory_ms.is_none()) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {} | {:.1} | {:.0} | {} | {} | {} |",
            run.protocol,
            run.mode,
            run.nodes,
            run.scenario,
            run.tps,
            run.limit_tps,
            percent_of_limit(run),
            run.latency_ms_p50,
            run.latency_ms_p99,
            run.applied_latency_ms_p99.map_or("–".into(), |l| format!("{l:.1}")),
            run.messages_per_block,
            run.bytes_per_tx,
            run.replica_core_tps.map_or("–".into(), |t| {
                let core = 100.0 * t / run.limit_one_core_tps.unwrap_or(r.machine.verify_one_core);
                match run.cpu_ratio {
                    Some(cpu) => {
                        format!("{t:.0} ({core:.0}% of one core; {:.0}% per CPU-s)", 100.0 * cpu)
                    }
                    None => format!("{t:.0} ({core:.0}% of one core)"),
                }
            }),
            if run.safety_ok { "ok" } else { "VIOLATED" },
            if run.state_digest_agree { "yes" } else { "no" },
        );
    }
    net_against_wall(r, &mut s);
    let discarded: Vec<&RunRecord> = r.runs.iter().filter(|x| !x.discarded.is_empty()).collect();
    if !discarded.is_empty() {
        let _ = writeln!(s, "\nNoisy wall runs discarded and run again:\n");
        for run in discarded {
            let _ = writeln!(
                s,
                "- {} n = {} {}: {}",
                run.protocol,
                run.nodes,
                run.scenario,
                run.discarded.join("; ")
            );
        }
    }
    let theory: Vec<&RunRecord> = r.runs.iter().filter(|x| x.theory_ms.is_some()).collect();
    if !theory.is_empty() {
        let _ = writeln!(s, "\n## Theory check (ideal network: δ = 10 ms, Δ = 50 ms)\n");
        let _ = writeln!(
            s,
            "| protocol | finality after proposal, theory | measured mean | deviation |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for run in &theory {
            if let (Some(t), Some(m)) = (run.theory_ms, run.measured_ms) {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} ms | {:.2} ms | {:.2}% |",
                    run.protocol,
                    t,
                    m,
                    100.0 * (m - t).abs() / t
                );
            }
        }
    }
    if let Some(recovery) = &r.recovery {
        recovery::markdown(recovery, &mut s);
    }
    if let Some(front_door) = &r.front_door {
        front_door::markdown(front_door, &mut s);
    }
    if let Some(f) = &r.fairness {
        fairness::fairness_markdown(f, &mut s);
        let _ = writeln!(s, "\n![fairness](fairness.svg)");
    }
    let _ = writeln!(
        s,
        "\n## Plots\n\n![throughput](throughput.svg)\n\n![latency](latency.svg)\n\n![messages](messages.svg)"
    );
    s
}

/// Writes `report.md`, `report.json` and the plots into `dir`; returns the paths written.
pub fn write(report: &Report, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(report))?;
    let json = dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report).map_err(std::io::Error::other)?)?;
    let mut written = vec![md, json];
    for (name, title, y_label, value, log) in [
        (
            "throughput.svg",
            "Throughput against n (simulated, no faults)",
            "finalized tx/s",
            (|r: &RunRecord| r.tps) as fn(&RunRecord) -> f64,
            false,
        ),
        (
            "latency.svg",
            "Finality latency p99 against n (simulated, no faults)",
            "p99 latency, ms",
            |r: &RunRecord| r.latency_ms_p99,
            false,
        ),
        (
            "messages.svg",
            "Messages per finalized block against n (simulated, no faults; log scale)",
            "messages per block",
            |r: &RunRecord| r.messages_per_block,
            // n, n² and n³ protocols stay readable on one chart.
            true,
        ),
    ] {
        let path = dir.join(name);
        plot(report, &path, title, y_label, value, log)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        written.push(path);
    }
    if let Some(f) = &report.fairness {
        let path = dir.join("fairness.svg");
        fairness::plot_fairness(f, &path).map_err(|e| std::io::Error::other(e.to_string()))?;
        written.push(path);
    }
    Ok(written)
}

/// One line per protocol of `value` against n, over the simulated no-fault runs, on a
/// logarithmic y axis when `log` says so.
fn plot(
    report: &Report,
    path: &Path,
    title: &str,
    y_label: &str,
    value: fn(&RunRecord) -> f64,
    log: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    // One colour per protocol, in the order reports list them.
    let colours = [
        RGBColor(30, 136, 229),
        RGBColor(229, 57, 53),
        RGBColor(67, 160, 71),
        RGBColor(142, 36, 170),
    ];
    let series: Vec<Series<'_>> = ProtocolChoice::ALL
        .map(ProtocolChoice::name)
        .into_iter()
        .zip(colours)
        .map(|(p, colour)| {
            let points = report
                .runs
                .iter()
                .filter(|r| r.protocol == p && r.mode == "sim" && r.scenario == "no-faults")
                .map(|r| (r.nodes as f64, value(r)))
                .filter(|(_, y)| !log || *y > 0.0)
                .collect();
            (p, colour, points)
        })
        .collect();
    let ys = || series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let max_y = ys().fold(1.0, f64::max);
    let root = SVGBackend::new(path, (760, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = || series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let x_range = (xs().fold(f64::MAX, f64::min) - 1.0, xs().fold(4.0, f64::max) + 1.0);
    if log {
        let min_y = ys().fold(max_y, f64::min).max(1e-3);
        let (low, high) = (min_y / 2.0, max_y * 2.0);
        let y_of = |y: f64| (y.ln() - low.ln()) / (high.ln() - low.ln());
        let legend = emptiest_corner(&series, x_range, y_of);
        draw_lines(&root, &series, title, y_label, (low..high).log_scale(), legend)?;
    } else {
        let high = max_y * 1.15;
        let legend = emptiest_corner(&series, x_range, |y| y / high);
        draw_lines(&root, &series, title, y_label, 0.0..high, legend)?;
    }
    root.present()?;
    Ok(())
}

/// A protocol's name, its colour and its points.
type Series<'a> = (&'a str, plotters::style::RGBColor, Vec<(f64, f64)>);

/// The corner of the plot, upper right first, with the fewest points in its third of each
/// axis (`y_of` maps a value onto 0..1 of the y axis), so that the legend hides no data.
fn emptiest_corner(
    series: &[Series<'_>],
    (x_low, x_high): (f64, f64),
    y_of: impl Fn(f64) -> f64,
) -> plotters::chart::SeriesLabelPosition {
    use plotters::chart::SeriesLabelPosition as At;
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.2.iter())
        .map(|&(x, y)| ((x - x_low) / (x_high - x_low).max(1e-9), y_of(y)))
        .collect();
    let inside = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|(x, y)| {
                (if right { *x > 0.6 } else { *x < 0.4 })
                    && (if upper { *y > 0.6 } else { *y < 0.4 })
            })
            .count()
    };
    [
        (At::UpperRight, inside(true, true)),
        (At::LowerRight, inside(true, false)),
        (At::UpperLeft, inside(false, true)),
        (At::LowerLeft, inside(false, false)),
    ]
    .into_iter()
    .min_by_key(|(_, count)| *count)
    .map_or(At::UpperRight, |(at, _)| at)
}

/// Draws `series` against n on `root`, with the y axis `y` (linear or logarithmic).
fn draw_lines<Y>(
    root: &plotters::drawing::DrawingArea<
        plotters::backend::SVGBackend<'_>,
        plotters::coord::Shift,
    >,
    series: &[Series<'_>],
    title: &str,
    y_label: &str,
    y: Y,
    legend: plotters::chart::SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    use plotters::prelude::*;
    let max_x = series.iter().flat_map(|s| s.2.iter().map(|p| p.0)).fold(4.0, f64::max);
    let min_x = series.iter().flat_map(|s| s.2.iter().map(|p| p.0)).fold(max_x, f64::min);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((min_x - 1.0).max(0.0)..max_x + 1.0, y)?;
    chart
        .configure_mesh()
        .x_desc("committee size n")
        .y_desc(y_label)
        .x_labels(((max_x - min_x) as usize + 3).min(40))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;
    for (name, colour, points) in series {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 5, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(protocol: &'static str, nodes: usize, scenario: &'static str) -> RunRecord {
        RunRecord {
            protocol,
            nodes,
            scenario,
            mode: "sim",
            tps: 100.0 * nodes as f64,
            latency_ms_p50: 10.0,
            latency_ms_p99: 20.0,
            applied_latency_ms_p99: None,
            messages_per_block: 5.0 * nodes as f64,
            bytes_per_tx: 300.0,
            replica_core_tps: None,
            limit_tps: 1_000.0,
            limit_one_core_tps: None,
            percent_of_limit_runs: Vec::new(),
            limit_samples: None,
            cpu_ratio: None,
            discarded: Vec::new(),
            safety_ok: true,
            state_digest_agree: true,
            theory_ms: None,
            measured_ms: None,
        }
    }

    #[test]
    fn a_wall_run_whose_limit_moved_or_that_beat_its_limit_is_noisy() {
        let wall = |tps: f64, before: f64, after: f64| RunRecord {
            mode: "wall",
            tps,
            limit_tps: (before + after) / 2.0 / 4.0,
            limit_samples: Some((before, after)),
            ..record("pbft", 4, "no-faults")
        };
        assert_eq!(noisy(&wall(9_000.0, 40_000.0, 41_000.0)), None);
        let moved = noisy(&wall(9_000.0, 40_000.0, 44_000.0)).unwrap();
        assert!(moved.contains("moved 9.5%"), "{moved}");
        let above = noisy(&wall(10_500.0, 40_000.0, 40_000.0)).unwrap();
        assert!(above.contains("105% of its limit"), "{above}");
        let mut report = Report {
            machine: Machine {
                cpu: "test cpu".into(),
                cores: 2,
                verify_one_core: 20_000.0,
                verify_all_cores: 40_000.0,
            },
            git_commit: None,
            quick: true,
            seed: 1,
            network: network(true),
            runs: vec![wall(9_000.0, 40_000.0, 41_000.0)],
            fairness: None,
            recovery: None,
            front_door: None,
        };
        report.runs[0].discarded = vec![moved];
        assert!(markdown(&report).contains("Noisy wall runs discarded and run again"));
    }

    #[test]
    fn the_plan_covers_protocols_sizes_scenarios_and_wall_runs() {
        let quick = plan(&BenchOptions { quick: true, wall: true, seed: 1, ..Default::default() });
        // Per protocol: theory, sizes × scenarios, full speed per wall size, 80% load, durable;
        // and HotStuff's two-chain theory row.
        let protocols = ProtocolChoice::ALL.len();
        assert_eq!(quick.len(), protocols * (1 + 2 * 4 + 1 + 1 + 1) + 1);
        let full = plan(&BenchOptions { quick: false, wall: true, seed: 1, ..Default::default() });
        assert_eq!(full.len(), protocols * (1 + 5 * 4 + 2 + 1 + 1) + 1);
        // With the binary at hand, two net rows per protocol: full speed and 80% load.
        let with_nodes = plan(&BenchOptions {
            quick: true,
            wall: true,
            seed: 1,
            node_exe: Some(PathBuf::from("agora")),
            ..Default::default()
        });
        assert_eq!(with_nodes.len(), quick.len() + protocols * 2);
        assert_eq!(with_nodes.iter().filter(|p| p.mode() == "net").count(), protocols * 2);
        assert!(full.iter().any(|p| p.nodes == 64 && p.scenario == "equivocator"));
        assert!(full.iter().any(|p| p.wall && p.scenario == "durable"));
    }

    #[test]
    fn repeated_runs_show_their_range_beside_the_median() {
        let mut run = record("pbft", 4, "no-faults");
        run.tps = 880.0;
        assert_eq!(percent_of_limit(&run), "88%");
        run.percent_of_limit_runs = vec![88.0, 85.2, 89.6];
        assert_eq!(percent_of_limit(&run), "88% (85–90%, 3 runs)");
    }

    #[test]
    fn the_theory_check_reproduces_the_papers() {
        let machine =
            Machine { cpu: "test".into(), cores: 1, verify_one_core: 1.0, verify_all_cores: 1.0 };
        let options = BenchOptions { quick: true, wall: false, seed: 1, ..Default::default() };
        let two = (ProtocolChoice::HotStuff, THEORY_TWO_CHAIN);
        for (protocol, scenario) in
            ProtocolChoice::ALL.map(|p| (p, "theory")).into_iter().chain([two])
        {
            let r = run_one(
                &Planned { protocol, nodes: 4, scenario, wall: false, net: false },
                &options,
                &machine,
            )
            .unwrap();
            let (t, m) = (r.theory_ms.unwrap(), r.measured_ms.unwrap());
            assert!((m - t).abs() / t < 0.01, "{protocol:?}: theory {t} ms, measured {m} ms");
            assert!(r.safety_ok && r.state_digest_agree);
        }
    }

    #[test]
    fn the_front_door_measure_admits_every_order_over_http() {
        let r = measure_front_door(300, 1).unwrap();
        assert_eq!(r.orders, 300);
        assert!(r.http_admitted_per_sec > 0.0 && r.mempool_admitted_per_sec > 0.0, "{r:?}");
        let mut s = String::new();
        front_door::markdown(&r, &mut s);
        assert!(s.contains("admitted 300 signed orders"), "{s}");
    }

    #[test]
    fn the_recovery_measure_replays_what_follows_its_snapshot() {
        let r = measure_recovery(2_000, 1).unwrap();
        // The orders asked for, after the snapshot at the tenth block.
        assert_eq!((r.orders, r.blocks), (2_000, 4), "{r:?}");
        assert!(r.disk_syncs_per_sec > 0.0 && r.limit_one_core > 0.0);
        let mut s = String::new();
        recovery::markdown(&r, &mut s);
        assert!(s.contains(&format!("replayed {} orders in {} blocks", r.orders, r.blocks)), "{s}");
    }

    #[test]
    fn reports_are_written_as_markdown_json_and_svg() {
        let runs = vec![
            record("streamlet", 4, "no-faults"),
            record("streamlet", 7, "no-faults"),
            record("pbft", 4, "no-faults"),
            record("simplex", 4, "no-faults"),
        ];
        let report = Report {
            machine: Machine {
                cpu: "test cpu".into(),
                cores: 2,
                verify_one_core: 20_000.0,
                verify_all_cores: 40_000.0,
            },
            git_commit: Some("abc1234".into()),
            quick: true,
            seed: 1,
            network: network(true),
            runs,
            fairness: None,
            recovery: None,
            front_door: None,
        };
        let dir = std::env::temp_dir().join(format!("agora-bench-test-{}", std::process::id()));
        let written = write(&report, &dir).unwrap();
        assert_eq!(written.len(), 5);
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("| streamlet | sim | 7 | no-faults | 700 |") && md.contains("abc1234"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        for field in [
            "protocol",
            "nodes",
            "scenario",
            "mode",
            "tps",
            "latency_ms_p50",
            "latency_ms_p99",
            "messages_per_block",
            "bytes_per_tx",
            "replica_core_tps",
            "limit_tps",
            "safety_ok",
            "state_digest_agree",
        ] {
            assert!(json["runs"][0].get(field).is_some(), "{field}");
        }
        let svg = std::fs::read_to_string(dir.join("throughput.svg")).unwrap();
        assert!(svg.contains("<svg") && ProtocolChoice::ALL.iter().all(|p| svg.contains(p.name())));
    }
}
