//! Swarm testing: many seeded random scenarios per protocol, each checked for safety always and
//! for liveness after GST.
//!
//! A seed fixes everything about a scenario ([`Scenario::generate`]): the committee size (unless
//! given), which nodes are faulty and how (a [`Behaviour`] from the adversary library, or a
//! crash with or without restart), the network (latency, jitter, loss, duplication,
//! reordering, partitions before GST, GST itself) and the load. Within the fault budget at most
//! f = ⌊(n − 1)/3⌋ nodes are faulty; [`Budget::Beyond`] makes f + 1 faulty, where safety must
//! still hold if they only crash and may fail if one is Byzantine.
//!
//! Liveness: every transaction accepted by an honest node that is up at the end must be final
//! within [`Scenario::liveness_bound_ns`] of `max(submission, GST)`. A failing scenario can be
//! re-run from its seed alone ([`Scenario::reproduce`]); [`write_artifacts`] stores its trace
//! and block-tree picture.

use std::fmt;
use std::path::{Path, PathBuf};

use agora_consensus::BlockView;
use agora_engines::EngineConfig;
use agora_hotstuff::{ChainRule, HotStuffConfig, HotStuffWeakening};
use agora_netsim::{
    BeforeGst, Behaviour, Fault, FaultKind, Gst, Jitter, LivenessCheck, NetworkConfig, Partition,
    SimConfig, SimReport, Targets, TraceEvent, TraceMode, Violation, Workload,
};
use agora_pbft::{PbftConfig, PbftWeakening};
use agora_simplex::{SimplexConfig, SimplexWeakening};
use agora_streamlet::{LeaderRule, StreamletConfig, StreamletWeakening};
use agora_types::{NodeId, Round, View};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::render::{self, ChainPicture};
use crate::simulate::{Describe, ProtocolChoice};
use crate::spec::{RunSpec, SpecError};

const MS: u64 = 1_000_000;
/// Separates the scenario generator's random stream from the simulator's.
const SCENARIO_STREAM: u64 = 0x5357_4152_4d00_0001;
/// Decides, apart from everything else, whether a scenario is the tightest in the budget.
const TIGHT_STREAM: u64 = 0x5357_4152_4d00_0002;
/// How a scenario's nodes restart, on a stream of its own, so that it adds to a seed's other
/// draws without changing them.
const RESTART_STREAM: u64 = 0x5357_4152_4d00_0004;
/// The stream that turns a seed's equivocators into late ones.
const LATE_STREAM: u64 = 0x5357_4152_4d00_0005;
/// The stream that turns half of a HotStuff seed's genesis extenders into stale forkers.
const STALE_STREAM: u64 = 0x5357_4152_4d00_0006;
/// Decides, apart from everything else, whether a two-twin scenario holds a split brain.
const SPLIT_STREAM: u64 = 0x5357_4152_4d00_0003;

mod scenario;

pub use scenario::{Budget, HonestRestart, NodeFault, Restarts, Scenario, Weakening};

/// What one scenario did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// Safety violations (agreement, validity, duplicates, gaps, state divergence), described.
    pub safety: Vec<String>,
    /// Transactions not final in time, described (the first few).
    pub liveness: Vec<String>,
    /// How many transactions missed their liveness deadline.
    pub liveness_missed: usize,
    /// Transactions final at the furthest honest node.
    pub finalized: u64,
    /// Transactions honest nodes accepted.
    pub accepted: u64,
    /// Messages an honest node could not decode (garbage) or dropped.
    pub decode_errors: u64,
    /// Simulator events processed.
    pub events: u64,
    /// Restarts, of any kind; restarts from the journal; crashes while a sync was in flight.
    pub restarts: (u64, u64, u64),
}

impl Outcome {
    /// Neither safety nor liveness failed.
    pub fn ok(&self) -> bool {
        self.safety.is_empty() && self.liveness.is_empty()
    }
}

/// A run's outcome with, when it was recorded, its trace and the block tree of the furthest
/// honest node.
pub struct Recorded {
    /// What happened.
    pub outcome: Outcome,
    /// Every simulator event.
    pub trace: Vec<TraceEvent>,
    /// The block tree the furthest honest node saw.
    pub views: Vec<BlockView>,
    /// That node.
    pub view_node: NodeId,
}

/// Why a scenario did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario's configuration was refused.
    #[error(transparent)]
    Setup(#[from] SpecError),
    /// An engine panicked: a failure of the scenario as surely as a fork (no trace survives).
    #[error("an engine panicked: {0}")]
    Panicked(String),
}

/// Runs `scenario`; with `record`, keeps the trace and the block tree too. An engine panic is
/// caught and returned as [`RunError::Panicked`].
pub fn run(scenario: &Scenario, record: bool) -> Result<Recorded, RunError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_unguarded(scenario, record)))
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            RunError::Panicked(message)
        })?
        .map_err(RunError::Setup)
}

/// With probability one half (on [`SPLIT_STREAM`]), replaces the per-round groups of a run of
/// 3 to 8 consecutive rounds before GST by one split: the first honest member with the first
/// instances of both twins, against the other honest member with their second instances.
fn split_brain(
    seed: u64,
    n: usize,
    twinned: &[NodeId],
    rounds: u64,
    round_ns: u64,
    mut partitions: Vec<Partition>,
) -> Vec<Partition> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SPLIT_STREAM);
    if twinned.len() != 2 || !rng.random_bool(0.5) {
        return partitions;
    }
    let honest: Vec<u16> = (0..n as u16).filter(|i| !twinned.contains(&NodeId(*i))).collect();
    let length = rng.random_range(3..=8u64).min(rounds);
    let first = rng.random_range(0..=rounds - length);
    let (start_ns, end_ns) = (first * round_ns, (first + length) * round_ns);
    partitions.retain(|p| p.end_ns <= start_ns || p.start_ns >= end_ns);
    let side = vec![NodeId(honest[0]), twinned[0], twinned[1]];
    partitions.push(Partition { start_ns, end_ns, groups: vec![side] });
    partitions.sort_by_key(|p| p.start_ns);
    partitions
}

fn run_unguarded(scenario: &Scenario, record: bool) -> Result<Recorded, SpecError> {
    let trace = if record { TraceMode::Record } else { TraceMode::Off };
    let finished = scenario.spec(trace).run()?;
    let mut outcome = outcome(scenario, &finished.report);
    // A finalization an engine refused because it conflicts with its log never reaches the
    // log, so the checker alone cannot see it: two chains met the finality rule, which is a
    // fork of the protocol even if no log shows both.
    for (node, refused) in finished.refused_conflicting_finality {
        outcome.safety.push(format!(
            "node {node} refused {refused} finalization(s) conflicting with its finalized log"
        ));
    }
    // A member that votes twice in one slot is Byzantine by definition: if it is one the
    // scenario calls honest, it forgot a vote (no journal, or a vote sent before it was durable).
    if let Some((observer, e)) = finished.honest_double_votes.first() {
        let s = e.first.statement;
        outcome.safety.push(format!(
            "honest node {} voted twice in round {} at height {} ({} and {}), seen by node {observer}",
            e.first.voter,
            s.round.0,
            s.height.0,
            s.value.short(),
            e.second.statement.value.short(),
        ));
    }
    Ok(Recorded {
        outcome,
        trace: finished.trace.unwrap_or_default(),
        views: finished.views,
        view_node: finished.view_node,
    })
}

fn outcome(scenario: &Scenario, report: &SimReport) -> Outcome {
    let (liveness, safety): (Vec<&Violation>, Vec<&Violation>) =
        report.violations.iter().partition(|v| matches!(v, Violation::NotFinalized { .. }));
    Outcome {
        scenario: scenario.clone(),
        safety: safety.iter().map(|v| Describe(v).to_string()).collect(),
        liveness: liveness.iter().take(3).map(|v| Describe(v).to_string()).collect(),
        liveness_missed: liveness.len(),
        finalized: report.txs_finalized,
        accepted: report.submissions.accepted,
        decode_errors: report
            .nodes_detail
            .iter()
            .filter(|d| d.honest)
            .map(|d| d.decode_errors)
            .sum(),
        events: report.events,
        restarts: report.nodes_detail.iter().fold((0, 0, 0), |(all, journal, mid), d| {
            (all + d.restarts, journal + d.recoveries, mid + d.crashes_mid_sync)
        }),
    }
}

/// Writes a recorded run's scenario, verdict, trace (JSON lines) and block tree (SVG) into
/// `dir`; returns the files written.
pub fn write_artifacts(recorded: &Recorded, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let o = &recorded.outcome;
    let s = &o.scenario;
    let mut summary = format!("{s}\n\nreproduce: {}\n\n", s.reproduce());
    for v in o.safety.iter().chain(&o.liveness) {
        summary += &format!("{v}\n");
    }
    let mut trace = Vec::new();
    for e in &recorded.trace {
        serde_json::to_writer(&mut trace, e).map_err(std::io::Error::other)?;
        trace.push(b'\n');
    }
    let leader = |r: Round| match s.protocol {
        ProtocolChoice::Streamlet | ProtocolChoice::Simplex | ProtocolChoice::HotStuff => {
            LeaderRule::Hashed { seed: s.seed }.leader(s.nodes as u16, r)
        }
        ProtocolChoice::Pbft => agora_pbft::primary(View(r.0), s.nodes),
    };
    let svg = render::svg(&ChainPicture {
        title: format!(
            "{} · seed {} · view of node {}",
            s.protocol.name(),
            s.seed,
            recorded.view_node
        ),
        blocks: &recorded.views,
        nodes: s.nodes,
        leader_of: &leader,
        last_round: recorded.views.iter().map(|v| v.round.0).max().unwrap_or(0),
        round_name: s.protocol.round_name(),
    });
    let files = [
        ("scenario.txt", summary.into_bytes()),
        ("trace.jsonl", trace),
        ("tree.svg", svg.into_bytes()),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// What a campaign asks for.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// The protocol.
    pub protocol: ProtocolChoice,
    /// How many scenarios.
    pub seeds: u64,
    /// The first seed; the others follow it.
    pub first_seed: u64,
    /// A fixed committee size, or drawn per scenario.
    pub nodes: Option<usize>,
    /// The fault budget.
    pub budget: Budget,
    /// A deliberately broken engine, if any.
    pub weakening: Option<Weakening>,
    /// Twins scenarios ([`Scenario::twins`]) instead of the general ones.
    pub twins: bool,
    /// Stop at the first scenario that fails.
    pub stop_on_failure: bool,
    /// HotStuff's commit rule (ignored by the other protocols).
    pub chain: ChainRule,
}

/// What a campaign found.
#[derive(Debug, Clone, Default)]
pub struct CampaignReport {
    /// Scenarios run.
    pub runs: u64,
    /// Scenarios with at least one Byzantine node.
    pub with_byzantine: u64,
    /// Transactions finalized, summed over the scenarios.
    pub finalized: u64,
    /// Undecodable messages honest nodes dropped, summed.
    pub decode_errors: u64,
    /// Restarts, of any kind; restarts from the journal; crashes while a sync was in flight;
    /// summed.
    pub restarts: (u64, u64, u64),
    /// Scenarios that broke safety.
    pub safety_failures: Vec<Outcome>,
    /// Scenarios that broke liveness (and not safety).
    pub liveness_failures: Vec<Outcome>,
    /// Scenarios that could not be set up, with the reason.
    pub errors: Vec<(u64, String)>,
}

impl CampaignReport {
    /// Every scenario upheld what its budget promises: within the budget, safety and liveness;
    /// beyond it, safety whenever the faults were crashes only.
    pub fn passed(&self, budget: Budget) -> bool {
        if !self.errors.is_empty() {
            return false;
        }
        match budget {
            Budget::Within => self.safety_failures.is_empty() && self.liveness_failures.is_empty(),
            Budget::Beyond => self.safety_failures.iter().all(|o| o.scenario.has_byzantine()),
        }
    }
}

impl CampaignOptions {
    /// Why these options describe no campaign, if they do not: an empty seed range, one that
    /// runs past the largest seed, or a committee size other than 4 asked of Twins scenarios
    /// (which are n = 4 plus one twin).
    pub fn check(&self) -> Result<(), String> {
        if self.seeds == 0 {
            return Err("--seeds must be at least 1".into());
        }
        if self.first_seed.checked_add(self.seeds - 1).is_none() {
            return Err(format!(
                "--first-seed {} with --seeds {} runs past the largest seed, {}",
                self.first_seed,
                self.seeds,
                u64::MAX
            ));
        }
        if self.twins && self.nodes.is_some_and(|n| n != 4) {
            return Err(
                "--twins scenarios are n = 4 plus one twin: --nodes must be 4 or left out".into()
            );
        }
        Ok(())
    }
}

/// Runs the scenarios of `options`, calling `each` after every one. Options that describe no
/// campaign ([`CampaignOptions::check`]) run nothing and report the reason as an error.
pub fn campaign(options: &CampaignOptions, mut each: impl FnMut(&Outcome)) -> CampaignReport {
    let mut report = CampaignReport::default();
    if let Err(reason) = options.check() {
        report.errors.push((options.first_seed, reason));
        return report;
    }
    for seed in options.first_seed..=options.first_seed + (options.seeds - 1) {
        let mut scenario = if options.twins {
            Scenario::twins(options.protocol, seed, options.budget)
        } else {
            Scenario::generate(options.protocol, seed, options.nodes, options.budget)
        };
        scenario.weakening = options.weakening;
        scenario.chain = options.chain;
        if options.weakening == Some(Weakening::VoteBeforeDurable) {
            scenario.restarts.honest = Some(scenario.blink_in_sync());
        }
        let outcome = match run(&scenario, false) {
            Ok(r) => r.outcome,
            Err(RunError::Setup(e)) => {
                report.errors.push((seed, e.to_string()));
                continue;
            }
            Err(panicked @ RunError::Panicked(_)) => Outcome {
                scenario: scenario.clone(),
                safety: vec![panicked.to_string()],
                liveness: Vec::new(),
                liveness_missed: 0,
                finalized: 0,
                accepted: 0,
                decode_errors: 0,
                events: 0,
                restarts: (0, 0, 0),
            },
        };
        report.runs += 1;
        report.with_byzantine += u64::from(scenario.has_byzantine());
        report.finalized += outcome.finalized;
        report.decode_errors += outcome.decode_errors;
        report.restarts.0 += outcome.restarts.0;
        report.restarts.1 += outcome.restarts.1;
        report.restarts.2 += outcome.restarts.2;
        each(&outcome);
        let failed = !outcome.ok();
        if !outcome.safety.is_empty() {
            report.safety_failures.push(outcome);
        } else if !outcome.liveness.is_empty() {
            report.liveness_failures.push(outcome);
        }
        if failed && options.stop_on_failure {
            break;
        }
    }
    report
}
