//! What a simulation reports: the summary `--json` prints, and its text form.

use serde::Serialize;

use super::*;

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

/// What Byzantine nodes or clients put in the log.
#[derive(Debug, Clone, Serialize)]
pub struct InjectedSummary {
    /// The sum of the three below.
    pub total: u64,
    /// An honest client's transaction that only a Byzantine node received.
    pub via_byzantine_node: u64,
    /// Signed by a Byzantine client.
    pub byzantine_client: u64,
    /// With no valid signature (executed by no application).
    pub invalid_signature: u64,
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
    /// Times it restarted as a fresh engine restored from its journal (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub recoveries: u64,
    /// Times its application was rebuilt from its block store: the newest snapshot, then the
    /// blocks after it (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub app_recoveries: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
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
    /// Distinct transactions finalized: `txs_finalized_submitted` plus `txs_injected`.
    pub txs_finalized: u64,
    /// Of `txs_submitted`, those finalized.
    pub txs_finalized_submitted: u64,
    /// Finalized transactions that Byzantine nodes or clients put in the log, by origin: an
    /// honest client's transaction sent only to a Byzantine node, a Byzantine client's own
    /// (the front-runner's orders), and forgeries with no valid signature.
    pub txs_injected: InjectedSummary,
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

pub(super) fn ms(ns: u64) -> f64 {
    ns as f64 / MS
}

pub(super) fn summarise(
    options: &SimulateOptions,
    r: &SimReport,
    views: &[BlockView],
) -> SimulationSummary {
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
        txs_finalized_submitted: r.finalized_origins.honest,
        txs_injected: InjectedSummary {
            total: r.finalized_origins.injected(),
            via_byzantine_node: r.finalized_origins.via_byzantine_node,
            byzantine_client: r.finalized_origins.byzantine_client,
            invalid_signature: r.finalized_origins.invalid_signature,
        },
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
                recoveries: d.recoveries,
                app_recoveries: d.app_recoveries,
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
            Violation::Refinalized { t_ns, node, height, first, again } => write!(
                f,
                "at {:.3} ms node {node}, restarted, finalized {} at height {height}, where it had finalized {}",
                at(t_ns),
                again.short(),
                first.short()
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
            "  transactions    {} submitted, {} of them finalized",
            self.txs_submitted, self.txs_finalized_submitted
        )?;
        let injected = &self.txs_injected;
        if injected.total > 0 {
            writeln!(
                f,
                "  injected        {} finalized from Byzantine nodes or clients ({} sent only to a Byzantine node, {} a Byzantine client's own, {} forged)",
                injected.total,
                injected.via_byzantine_node,
                injected.byzantine_client,
                injected.invalid_signature
            )?;
        }
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
            write!(
                f,
                "    n{:<3} {:<9} height {:>4}  log {}",
                n.node,
                if n.honest { "honest" } else { "byzantine" },
                n.finalized_height,
                n.log_digest.short()
            )?;
            if n.recoveries > 0 {
                write!(f, "  restarted {}× from its journal", n.recoveries)?;
            }
            if n.app_recoveries > 0 {
                write!(f, ", its application {}× from its block store", n.app_recoveries)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
