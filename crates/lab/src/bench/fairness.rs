//! The report's fairness section: what a front-running leader earns under each execution
//! order, what large orders pay, and what priority lanes do under overload.
//!
//! - **Front-running.** For each protocol and execution order, the market runs over several
//!   seeds with node 0 front-running ([`crate::frontrun`]) and, on the same seeds, without it.
//!   Node 0 is PBFT's first primary (it builds every block) and one of Streamlet's and
//!   Simplex's four hashed leaders (about a quarter of the blocks).
//! - **Lanes.** Each protocol is overloaded (more orders than its blocks hold), once first come
//!   first served and once with the default priority lanes; the latency of each lane and the
//!   block space per class of account are compared.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{BenchOptions, network};
use crate::fairness::Fairness;
use crate::simulate::{self, ProtocolChoice, SimulateOptions, WorkloadChoice};
use agora_market::ExecutionOrder;
use agora_market::priority::Priority;
use agora_types::NodeId;

/// One planned fairness run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FairnessPlanned {
    /// A market with or without a front-runner at node 0.
    FrontRun {
        /// Protocol.
        protocol: ProtocolChoice,
        /// Execution order.
        ordering: ExecutionOrder,
        /// Seed.
        seed: u64,
        /// Node 0 front-runs.
        frontrunner: bool,
    },
    /// An overloaded market, first come first served or with lanes.
    Overload {
        /// Protocol.
        protocol: ProtocolChoice,
        /// Priority lanes on.
        priority: bool,
    },
}

impl FairnessPlanned {
    /// A short label for progress output.
    pub fn label(&self) -> String {
        match self {
            FairnessPlanned::FrontRun { protocol, ordering, seed, frontrunner } => format!(
                "fairness {} {} seed {seed}{}",
                protocol.name(),
                ordering.name(),
                if *frontrunner { " front-runner" } else { "" }
            ),
            FairnessPlanned::Overload { protocol, priority } => format!(
                "lanes {} overload {}",
                protocol.name(),
                if *priority { "priority" } else { "first-come" }
            ),
        }
    }
}

/// Seeds of the front-running runs.
pub fn fairness_seeds(options: &BenchOptions) -> Vec<u64> {
    let count = if options.quick { 3 } else { 8 };
    (0..count).map(|i| options.seed + i).collect()
}

/// The fairness runs, in order (none for the main comparison).
pub fn fairness_plan(options: &BenchOptions) -> Vec<FairnessPlanned> {
    if options.main {
        return Vec::new();
    }
    let mut out = Vec::new();
    for protocol in ProtocolChoice::ALL {
        for ordering in ExecutionOrder::ALL {
            for seed in fairness_seeds(options) {
                for frontrunner in [true, false] {
                    out.push(FairnessPlanned::FrontRun { protocol, ordering, seed, frontrunner });
                }
            }
        }
        for priority in [false, true] {
            out.push(FairnessPlanned::Overload { protocol, priority });
        }
    }
    out
}

/// The options of a fairness run.
pub fn fairness_options(planned: &FairnessPlanned, options: &BenchOptions) -> SimulateOptions {
    let net = network(options.quick);
    let base = SimulateOptions {
        latency_ms: net.latency_ms,
        jitter_ms: net.jitter_ms,
        delta_ms: net.delta_ms,
        bandwidth_mbps: Some(net.bandwidth_mbps),
        view_timeout_ms: 400.0,
        workload: WorkloadChoice::Market,
        duration_ms: if options.quick { 6_000.0 } else { 10_000.0 },
        ..SimulateOptions::default()
    };
    match *planned {
        FairnessPlanned::FrontRun { protocol, ordering, seed, frontrunner } => SimulateOptions {
            protocol,
            seed,
            ordering,
            tx_rate: 400.0,
            priority: Some(Priority::default()),
            frontrunner: frontrunner.then_some(NodeId(0)),
            ..base
        },
        FairnessPlanned::Overload { protocol, priority } => SimulateOptions {
            protocol,
            seed: options.seed,
            duration_ms: 5_000.0,
            // Streamlet holds 100 orders per 120 ms epoch, PBFT 20 per batch with 8 in flight,
            // Simplex 100 per iteration of about 50 ms (2δ with jitter): each is offered about
            // twice what it finalizes.
            batch_max: if protocol == ProtocolChoice::Pbft { 20 } else { 100 },
            tx_rate: if protocol == ProtocolChoice::Streamlet { 2_000.0 } else { 4_000.0 },
            priority: priority.then(Priority::default),
            ..base
        },
    }
}

/// What one fairness run measured.
#[derive(Debug, Clone)]
pub struct FairnessOutcome {
    /// The run.
    pub planned: FairnessPlanned,
    /// Its fairness figures.
    pub fairness: Fairness,
    /// No invariant broken.
    pub safety_ok: bool,
    /// Every honest replica ended with the same state digest.
    pub state_digest_agree: bool,
}

/// Runs one fairness run.
pub fn run_fairness(
    planned: &FairnessPlanned,
    options: &BenchOptions,
) -> Result<FairnessOutcome, String> {
    let run = simulate::run(&fairness_options(planned, options)).map_err(|e| e.to_string())?;
    let s = run.summary;
    Ok(FairnessOutcome {
        planned: *planned,
        fairness: s.fairness.ok_or("a market run without fairness figures")?,
        safety_ok: s.safety_ok,
        state_digest_agree: s.state_digest_agree.unwrap_or(false),
    })
}

/// Front-running under one protocol and execution order, over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct FrontRunRecord {
    /// `streamlet` or `pbft`.
    pub protocol: &'static str,
    /// `proposal`, `canonical` or `batch-auction`.
    pub ordering: &'static str,
    /// The front-running node.
    pub frontrunner: u16,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Large orders it sandwiched, over all seeds.
    pub attacks: u64,
    /// Its mean profit per run, quote units marked to the final mid.
    pub frontrunner_profit: f64,
    /// Its lowest and highest profit of a run: what it could not unwind is marked to the final
    /// mid, so single runs swing.
    pub profit_range: (f64, f64),
    /// Its profit per sandwiched order.
    pub profit_per_attack: f64,
    /// The large orders' mean slippage against the mid before their block, bps.
    pub victim_slippage_bps: f64,
    /// The same without a front-runner, same seeds.
    pub baseline_slippage_bps: f64,
    /// No invariant broken in any run.
    pub safety_ok: bool,
    /// Replicas agreed in every run.
    pub state_digest_agree: bool,
}

/// One lane under overload.
#[derive(Debug, Clone, Serialize)]
pub struct LaneRecord {
    /// `streamlet` or `pbft`.
    pub protocol: &'static str,
    /// Priority lanes on (otherwise first come, first served).
    pub priority: bool,
    /// Lane name.
    pub lane: String,
    /// Submission → finalization, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Transactions measured.
    pub count: u64,
}

/// Block space per class of account under overload.
#[derive(Debug, Clone, Serialize)]
pub struct ShareRecord {
    /// `streamlet` or `pbft`.
    pub protocol: &'static str,
    /// Priority lanes on.
    pub priority: bool,
    /// Share per class of account (`trader`, `market_maker`, `liquidator`, …).
    pub block_share: BTreeMap<String, f64>,
}

/// The fairness section of a report.
#[derive(Debug, Clone, Serialize)]
pub struct FairnessReport {
    /// Front-running per protocol and execution order.
    pub frontrunning: Vec<FrontRunRecord>,
    /// Lane latencies under overload.
    pub lanes: Vec<LaneRecord>,
    /// Block space under overload.
    pub block_share: Vec<ShareRecord>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Gathers the outcomes into the report's tables.
pub fn summarise_fairness(outcomes: &[FairnessOutcome]) -> FairnessReport {
    let mut frontrunning = Vec::new();
    for protocol in ProtocolChoice::ALL {
        for ordering in ExecutionOrder::ALL {
            let of = |with: bool| -> Vec<&FairnessOutcome> {
                outcomes
                    .iter()
                    .filter(|o| {
                        matches!(o.planned, FairnessPlanned::FrontRun { protocol: p, ordering: x, frontrunner, .. }
                            if p == protocol && x == ordering && frontrunner == with)
                    })
                    .collect()
            };
            let (with, without) = (of(true), of(false));
            if with.is_empty() {
                continue;
            }
            let attacks: u64 = with.iter().map(|o| o.fairness.frontrunner_attacks).sum();
            let profit: f64 = with.iter().map(|o| o.fairness.frontrunner_profit).sum();
            frontrunning.push(FrontRunRecord {
                protocol: protocol.name(),
                ordering: ordering.name(),
                frontrunner: 0,
                seeds: with
                    .iter()
                    .filter_map(|o| match o.planned {
                        FairnessPlanned::FrontRun { seed, .. } => Some(seed),
                        FairnessPlanned::Overload { .. } => None,
                    })
                    .collect(),
                attacks,
                frontrunner_profit: profit / with.len() as f64,
                profit_range: with
                    .iter()
                    .map(|o| o.fairness.frontrunner_profit)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p), hi.max(p))),
                profit_per_attack: profit / attacks.max(1) as f64,
                victim_slippage_bps: mean(with.iter().map(|o| o.fairness.victim_slippage_bps)),
                baseline_slippage_bps: mean(without.iter().map(|o| o.fairness.victim_slippage_bps)),
                safety_ok: with.iter().chain(&without).all(|o| o.safety_ok),
                state_digest_agree: with.iter().chain(&without).all(|o| o.state_digest_agree),
            });
        }
    }
    let mut lanes = Vec::new();
    let mut block_share = Vec::new();
    for o in outcomes {
        let FairnessPlanned::Overload { protocol, priority } = o.planned else { continue };
        for (lane, l) in &o.fairness.lane_latency_ms {
            lanes.push(LaneRecord {
                protocol: protocol.name(),
                priority,
                lane: lane.clone(),
                p50_ms: l.p50,
                p99_ms: l.p99,
                count: l.count,
            });
        }
        block_share.push(ShareRecord {
            protocol: protocol.name(),
            priority,
            block_share: o.fairness.block_share.clone(),
        });
    }
    FairnessReport { frontrunning, lanes, block_share }
}

/// The fairness section in Markdown.
pub(super) fn fairness_markdown(f: &FairnessReport, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "\n## Fairness\n");
    let _ = writeln!(
        out,
        "A market at 400 orders/s, 5% of traders' orders large (60–120 lots), priority lanes on. Node 0 front-runs: it sandwiches every large order in the blocks it builds (a buy ahead of a large buy, an offer just under its worst price) and cancels its leftovers each block. It is PBFT's primary (every block) and one of Streamlet's and Simplex's four hashed leaders. Profit is in quote units, its position marked to the final mid; slippage is the large orders' execution cost against the mid before their block, with and without the front-runner on the same seeds.\n"
    );
    let _ = writeln!(
        out,
        "| protocol | execution order | seeds | sandwiches | front-runner profit per run | lowest … highest run | per sandwich | victims' slippage bps | without front-runner | safety | digests agree |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &f.frontrunning {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.0} … {:.0} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.protocol,
            r.ordering,
            r.seeds.len(),
            r.attacks,
            r.frontrunner_profit,
            r.profit_range.0,
            r.profit_range.1,
            r.profit_per_attack,
            r.victim_slippage_bps,
            r.baseline_slippage_bps,
            if r.safety_ok { "ok" } else { "VIOLATED" },
            if r.state_digest_agree { "yes" } else { "no" },
        );
    }
    let _ = writeln!(
        out,
        "\nUnder overload (about twice what the blocks hold: Streamlet 2,000 orders/s in blocks of 100, PBFT 4,000/s in blocks of 20, Simplex 4,000/s in blocks of 100), first come first served against the default lanes (liquidations 8:20%, cancels 4:10%, high-value 2:10%, ordinary 1:10%; market makers' turn 2):\n"
    );
    let _ = writeln!(out, "| protocol | lanes | lane | p50 ms | p99 ms | orders |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for l in &f.lanes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {} |",
            l.protocol,
            if l.priority { "priority" } else { "first-come" },
            l.lane,
            l.p50_ms,
            l.p99_ms,
            l.count
        );
    }
    let _ = writeln!(out, "\n| protocol | lanes | block share per account class |");
    let _ = writeln!(out, "|---|---|---|");
    for s in &f.block_share {
        let shares: Vec<String> =
            s.block_share.iter().map(|(k, v)| format!("{k} {:.1}%", 100.0 * v)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            s.protocol,
            if s.priority { "priority" } else { "first-come" },
            shares.join(", ")
        );
    }
}

/// Victims' slippage with and without the front-runner, per protocol and execution order,
/// as grouped bars.
pub(super) fn plot_fairness(
    f: &FairnessReport,
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let groups: Vec<&FrontRunRecord> = f.frontrunning.iter().collect();
    let max_y = groups
        .iter()
        .map(|r| r.victim_slippage_bps.max(r.baseline_slippage_bps))
        .fold(1.0, f64::max)
        * 1.25;
    // Room for each execution order's name under its pair of bars.
    let width = (90 * groups.len() as u32 + 140).max(860);
    let root = SVGBackend::new(path, (width, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Large orders' slippage with and without a front-running leader",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..max_y)?;
    // The execution order under each pair of bars; the protocol under each run of them.
    let labels: Vec<&str> = groups.iter().map(|r| r.ordering).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < labels.len() {
                labels[i].to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("slippage against the mid, bps")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;
    let with = RGBColor(229, 57, 53);
    let without = RGBColor(120, 144, 156);
    for (series, colour, offset, value) in [
        (
            "with the front-runner",
            with,
            0.15,
            (|r: &FrontRunRecord| r.victim_slippage_bps) as fn(&FrontRunRecord) -> f64,
        ),
        ("without", without, 0.5, |r: &FrontRunRecord| r.baseline_slippage_bps),
    ] {
        chart
            .draw_series(groups.iter().enumerate().map(|(i, r)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0.0), (x + 0.35, value(r))], colour.filled())
            }))?
            .label(series)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    let mut start = 0;
    while start < groups.len() {
        let protocol = groups[start].protocol;
        let end = start + groups[start..].iter().take_while(|r| r.protocol == protocol).count();
        let (x, y) = chart.backend_coord(&((start + end) as f64 / 2.0, 0.0));
        let style =
            ("sans-serif", 15).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(protocol, (x, y + 28), style))?;
        start = end;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_protocols_orders_seeds_and_overload() {
        let quick = BenchOptions { quick: true, wall: false, seed: 1, ..Default::default() };
        let plan = fairness_plan(&quick);
        assert_eq!(plan.len(), ProtocolChoice::ALL.len() * (3 * 3 * 2 + 2));
        assert!(fairness_plan(&BenchOptions { main: true, ..quick.clone() }).is_empty());
        assert!(plan.iter().all(|p| fairness_options(p, &quick).sim_config().is_ok()));
    }
}
