//! Simplex in the simulator, against the paper's timings: a fixed one-way delay δ well under
//! Δ, no GST. A block is proposed every 2δ, notarized 2δ after its proposal and final 3δ
//! after it; a silent leader costs its iteration the timeout (3Δ) and δ more.

use agora_consensus::{BlockView, ChainView, TxLog};
use agora_netsim::{
    Fault, FaultKind, Partition, SimConfig, SimReport, Simulation, Targets, Workload,
};
use agora_simplex::{LeaderRule, Simplex, SimplexConfig};
use agora_types::NodeId;

const MS: u64 = 1_000_000;
const DELTA: u64 = 50 * MS;
const SMALL_DELTA: u64 = 10 * MS;

struct Run {
    sim: Simulation<Simplex>,
    report: SimReport,
}

impl Run {
    fn views(&self, node: u16) -> Vec<BlockView> {
        self.sim.engine(NodeId(node)).block_views()
    }

    /// The block of `iteration` in `node`'s view (panics if there are several).
    fn block_of(&self, node: u16, iteration: u64) -> Option<BlockView> {
        let mut of: Vec<BlockView> =
            self.views(node).into_iter().filter(|v| v.round.0 == iteration).collect();
        assert!(of.len() <= 1, "node {node} has {} blocks in iteration {iteration}", of.len());
        of.pop()
    }

    fn assert_equal_logs(&self, nodes: impl Iterator<Item = u16> + Clone) {
        let first = nodes.clone().next().unwrap();
        let d0 = &self.report.nodes_detail[usize::from(first)];
        for n in nodes {
            let d = &self.report.nodes_detail[usize::from(n)];
            assert_eq!(
                (d.finalized_height, d.log_digest),
                (d0.finalized_height, d0.log_digest),
                "node {n}"
            );
        }
    }
}

fn config(nodes: usize, duration_ns: u64) -> SimConfig {
    let mut c = SimConfig::new(nodes);
    c.seed = 3;
    c.network.latency_ns = SMALL_DELTA;
    c.duration_ns = duration_ns;
    c.workload = Some(Workload {
        rate_per_sec: 200.0,
        start_ns: 0,
        end_ns: duration_ns * 3 / 4,
        clients: 8,
        payload_bytes: 24,
        targets: Targets::Random,
    });
    c
}

fn run_with(
    config: SimConfig,
    rule: LeaderRule,
    setup: impl FnOnce(&mut Simulation<Simplex>),
) -> Run {
    let mut sc = SimplexConfig::new(DELTA);
    sc.leader = rule;
    let mut sim = Simulation::new(
        config,
        |me, committee, key| {
            Simplex::new(sc, committee.clone(), me, key.clone()).expect("a valid configuration")
        },
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    setup(&mut sim);
    let report = sim.run();
    assert!(report.safety_ok, "seed {}: {:?}", report.seed, report.violations);
    Run { sim, report }
}

#[test]
fn proposals_come_every_two_delta_and_finalize_three_delta_after() {
    let iterations = 40;
    let r =
        run_with(config(4, 2 * SMALL_DELTA * iterations), LeaderRule::Hashed { seed: 0 }, |_| {});
    for node in 0..4 {
        for h in 1..iterations - 2 {
            let b = r
                .block_of(node, h)
                .unwrap_or_else(|| panic!("node {node} has no block of iteration {h}"));
            let proposed = 2 * SMALL_DELTA * (h - 1);
            assert_eq!(b.proposed_at_ns, proposed, "node {node} iteration {h}");
            assert_eq!(
                b.notarized_at_ns,
                Some(proposed + 2 * SMALL_DELTA),
                "node {node} iteration {h}"
            );
            assert_eq!(
                b.finalized_at_ns,
                Some(proposed + 3 * SMALL_DELTA),
                "node {node} iteration {h}"
            );
        }
    }
    // In the report, as the bench reads it: every block final 3δ after its proposal.
    assert!(r.report.finalized_blocks.len() as u64 >= iterations - 3);
    for b in &r.report.finalized_blocks {
        assert_eq!(b.finalized_at_ns - b.proposed_at_ns, 3 * SMALL_DELTA, "{b:?}");
    }
    r.assert_equal_logs(0..4);
    assert_eq!(r.report.txs_finalized, r.report.submissions.accepted);
    assert!(r.report.submissions.accepted > 50);
    for node in 0..4 {
        let stats = r.sim.engine(NodeId(node)).stats();
        assert_eq!(stats.timeouts, 0, "node {node}: {stats:?}");
        assert!(stats.dropped.is_empty(), "node {node}: {stats:?}");
    }
}

#[test]
fn a_crashed_leader_costs_its_iteration_one_timeout_and_the_chain_goes_on() {
    // Round robin: node 3 leads iterations 3, 7, 11, … and is down from the start.
    let duration = 2_000 * MS;
    let mut c = config(4, duration);
    c.faults.push(Fault { at_ns: 0, node: NodeId(3), kind: FaultKind::Crash });
    let r = run_with(c, LeaderRule::RoundRobin, |_| {});
    // Iterations 1 and 2 are healthy; 3 starts at 4δ, times out at 4δ + 3Δ, and its skip
    // votes arrive δ later: iteration 4's block is proposed at 5δ + 3Δ.
    assert_eq!(r.block_of(0, 2).unwrap().proposed_at_ns, 2 * SMALL_DELTA);
    assert_eq!(r.block_of(0, 3), None);
    let b4 = r.block_of(0, 4).expect("the chain goes on after the skipped iteration");
    assert_eq!(b4.proposed_at_ns, 5 * SMALL_DELTA + 3 * DELTA);
    assert_eq!(b4.parent, r.block_of(0, 2).unwrap().digest, "block 4 extends block 2 over ⊥₃");
    assert_eq!(b4.finalized_at_ns, Some(b4.proposed_at_ns + 3 * SMALL_DELTA));
    // Every fourth iteration costs 3Δ + δ; the three others 2δ each: 3Δ + 7δ per cycle.
    let cycle = 3 * DELTA + 7 * SMALL_DELTA;
    let final_blocks = r.report.finalized_blocks.len() as u64;
    assert!(final_blocks >= 3 * (duration / cycle) - 3, "{final_blocks} blocks final");
    r.assert_equal_logs(0..3);
    for node in 0..3 {
        let stats = r.sim.engine(NodeId(node)).stats();
        assert!(stats.skips_cast >= duration / cycle - 1, "node {node}: {stats:?}");
        assert_eq!(stats.late_skips_cast, 0, "node {node}: {stats:?}");
    }
}

#[test]
fn every_node_commits_the_same_log_once() {
    let mut c = config(7, 3_000 * MS);
    c.seed = 11;
    c.network.jitter = agora_netsim::Jitter::Uniform { max_ns: 8 * MS };
    let r = run_with(c, LeaderRule::Hashed { seed: 11 }, |_| {});
    r.assert_equal_logs(0..7);
    assert_eq!(r.report.txs_finalized, r.report.submissions.accepted);
}

#[test]
fn a_node_cut_off_while_the_others_went_on_catches_up() {
    // Node 0 hears nothing and is heard by no one from 100 ms to 1.5 s; the other three are a
    // quorum and go on for dozens of iterations while node 0 stays in one. Then it must catch up, and it is needed: node
    // 1 crashes as the partition heals.
    let mut c = config(4, 4_000 * MS);
    c.network.partitions =
        vec![Partition { start_ns: 100 * MS, end_ns: 1_500 * MS, groups: vec![vec![NodeId(0)]] }];
    c.faults.push(Fault { at_ns: 1_500 * MS, node: NodeId(1), kind: FaultKind::Crash });
    let r = run_with(c, LeaderRule::Hashed { seed: 5 }, |_| {});
    r.assert_equal_logs([0u16, 2, 3].into_iter());
    let behind = r.sim.engine(NodeId(0)).stats();
    assert!(behind.syncs_sent > 0, "{behind:?}");
    let d = &r.report.nodes_detail[0];
    // Half the run is a quorum of three (each iteration node 0 leads is skipped), the rest a
    // quorum of three with node 1 down: about 70 blocks.
    assert!(d.finalized_height > 60, "node 0 reached {}", d.finalized_height);
    // Blocks were final after the heal, with node 0 in every quorum.
    let last = r.report.finalized_blocks.last().unwrap();
    assert!(last.finalized_at_ns > 2_000 * MS, "{last:?}");
}
