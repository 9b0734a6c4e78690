//! `agora simulate`: run a protocol in the simulator from a handful of options and summarise it.
//!
//! Unless the options say otherwise the network is ideal: fixed latency, no jitter, no loss,
//! unlimited bandwidth and zero processing cost, so results can be checked against the papers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use agora_consensus::BlockView;
use agora_crypto::Digest;
use agora_engines::EngineConfig;
use agora_hotstuff::{ChainRule, HotStuffConfig};
use agora_netsim::{
    Behaviour, Fault, FaultKind, Jitter, LatencySummary, SimConfig, SimError, SimReport, Targets,
    TraceEvent, TraceMode, Violation, Workload,
};
use agora_pbft::PbftConfig;
use agora_simplex::SimplexConfig;
use agora_streamlet::{LeaderRule, StreamletConfig};
use agora_types::{Epoch, NodeId, Round};

use crate::agents::AgentsConfig;
use crate::fairness::Fairness;
use crate::render::{self, ChainPicture};
use crate::spec::{MarketSpec, RunSpec, SpecError};
use agora_market::ExecutionOrder;
use agora_market::priority::Priority;

pub use agora_engines::ProtocolChoice;

mod options;
mod summary;

use options::MS;
pub use options::{LeaderChoice, SimulateBounds, SimulateError, SimulateOptions, WorkloadChoice};
pub(crate) use summary::Describe;
pub use summary::{
    BlockSummary, InjectedSummary, KindCount, LatencyMs, MessageSummary, NodeSummary,
    SimulationSummary,
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
            ProtocolChoice::Streamlet | ProtocolChoice::Simplex | ProtocolChoice::HotStuff => {
                self.options.leader_rule().leader(self.options.nodes as u16, round)
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

/// Runs the simulation the options describe.
pub fn run(options: &SimulateOptions) -> Result<SimulationRun, SimulateError> {
    let spec = options.spec()?;
    if let Some(dir) = &options.store_dir {
        // Checked before the run, not after it.
        crate::replay::check_store_dir(dir, spec.sim.nodes)?;
    }
    let warnings = spec.engine.warnings(spec.sim.network.latency_ns);
    let mut finished = spec.run()?;
    if let (Some(dir), Some((application, stores))) = (&options.store_dir, finished.stores.take()) {
        crate::replay::write_stores(dir, &stores, &application)?;
    }
    let report = &finished.report;
    let mut summary = summarise(options, report, &finished.views);
    summary.view_changes = finished.view_changes;
    if let Some(seen) = finished.market {
        summary.state_digest_agree = Some(report.safety_ok && honest_digests_agree(report));
        summary.trades = Some(seen.trades);
        summary.orders_applied = Some(seen.orders_applied);
        summary.market_maker_requotes = Some(seen.market_maker_requotes);
        summary.fairness = Some(seen.fairness);
    }
    summary.latency_client_ms = finished.client_latencies_ns.map(|mut l| {
        let s = LatencySummary::of(&mut l);
        LatencyMs { p50: ms(s.p50_ns), p99: ms(s.p99_ns), max: ms(s.max_ns) }
    });
    Ok(SimulationRun {
        summary,
        report: finished.report,
        view_node: finished.view_node,
        views: finished.views,
        trace: finished.trace,
        warnings,
        options: options.clone(),
    })
}

/// The honest replicas that reached the highest finalized height hold the same state digest.
fn honest_digests_agree(report: &SimReport) -> bool {
    let honest = || report.nodes_detail.iter().filter(|d| d.honest);
    let top = honest().map(|d| d.finalized_height).max().unwrap_or(0);
    let mut digests = honest().filter(|d| d.finalized_height == top).map(|d| d.state_digest);
    let first = digests.next();
    first.is_some() && digests.all(|d| Some(d) == first)
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
        assert_eq!(e.to_string(), "delta_ms must be from 1 to 60000, got 0.0");
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
