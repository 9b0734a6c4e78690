//! Streamlet in the simulator, against the paper's timings: fixed one-way delay δ < Δ, no GST,
//! epoch e starting at t_e = 2Δ(e − 1).

use std::collections::{BTreeMap, BTreeSet};

use agora_consensus::{BlockStatus, BlockView, ChainView, TxLog};
use agora_crypto::domain;
use agora_netsim::{
    AdversaryEnv, Emission, Fault, FaultKind, Payload, SimConfig, SimReport, Simulation, Targets,
    Workload,
};
use agora_streamlet::{LeaderRule, Proposal, Streamlet, StreamletConfig, StreamletMessage};
use agora_types::{Block, NodeId, Phase, Round, Statement, Vote};

const MS: u64 = 1_000_000;
const DELTA: u64 = 50 * MS;
const SMALL_DELTA: u64 = 10 * MS;

fn t(epoch: u64) -> u64 {
    2 * DELTA * (epoch - 1)
}

struct Run {
    sim: Simulation<Streamlet>,
    report: SimReport,
}

impl Run {
    fn views(&self, node: u16) -> Vec<BlockView> {
        self.sim.engine(NodeId(node)).block_views()
    }

    /// The block of `epoch` in `node`'s view (panics if there are several).
    fn block_of(&self, node: u16, epoch: u64) -> Option<BlockView> {
        let mut of: Vec<BlockView> =
            self.views(node).into_iter().filter(|v| v.round.0 == epoch).collect();
        assert!(of.len() <= 1, "node {node} has {} blocks in epoch {epoch}", of.len());
        of.pop()
    }
}

fn config(nodes: usize, epochs: u64) -> SimConfig {
    let mut c = SimConfig::new(nodes);
    c.seed = 3;
    c.network.latency_ns = SMALL_DELTA;
    c.duration_ns = t(epochs + 1) - 1;
    c.workload = Some(Workload {
        rate_per_sec: 100.0,
        start_ns: 0,
        end_ns: t(epochs.saturating_sub(4).max(1)),
        clients: 8,
        payload_bytes: 24,
        targets: Targets::Random,
    });
    c
}

fn run_with(
    config: SimConfig,
    rule: LeaderRule,
    setup: impl FnOnce(&mut Simulation<Streamlet>),
) -> Run {
    let mut sc = StreamletConfig::new(DELTA);
    sc.leader = rule;
    let mut sim = Simulation::new(
        config,
        |me, committee, key| {
            Streamlet::new(sc, committee.clone(), me, key.clone()).expect("a valid configuration")
        },
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    setup(&mut sim);
    let report = sim.run();
    assert!(report.safety_ok, "seed {}: {:?}", report.seed, report.violations);
    Run { sim, report }
}

fn run(config: SimConfig, rule: LeaderRule) -> Run {
    run_with(config, rule, |_| {})
}

fn assert_equal_logs(r: &Run, nodes: impl Iterator<Item = u16> + Clone) {
    let first = nodes.clone().next().unwrap();
    let d0 = &r.report.nodes_detail[usize::from(first)];
    for n in nodes {
        let d = &r.report.nodes_detail[usize::from(n)];
        assert_eq!(
            (d.finalized_height, d.log_digest),
            (d0.finalized_height, d0.log_digest),
            "node {n}"
        );
    }
}

#[test]
fn happy_path_notarizes_at_t_plus_2_delta_and_finalizes_one_epoch_later() {
    let epochs = 12;
    let r = run(config(4, epochs), LeaderRule::Hashed { seed: 0 });
    for node in 0..4 {
        for e in 1..=epochs {
            let b = r
                .block_of(node, e)
                .unwrap_or_else(|| panic!("node {node} has no block of epoch {e}"));
            assert_eq!(b.notarized_at_ns, Some(t(e) + 2 * SMALL_DELTA), "node {node} epoch {e}");
            if e < epochs {
                assert_eq!(
                    b.finalized_at_ns,
                    Some(t(e + 1) + 2 * SMALL_DELTA),
                    "node {node} epoch {e}"
                );
            } else {
                assert_eq!(
                    b.status,
                    BlockStatus::Notarized,
                    "the last block is notarized, not final"
                );
            }
            assert!(b.votes >= 3);
        }
    }
    // The finalized tip trails the notarized tip by one block.
    for node in 0..4 {
        let engine = r.sim.engine(NodeId(node));
        assert_eq!(engine.finalized_tip().height().0 + 1, engine.notarized_height().0);
    }
    assert_equal_logs(&r, 0..4);
    assert_eq!(r.report.txs_finalized, r.report.submissions.accepted);
    assert!(r.report.submissions.accepted > 50);
}

#[test]
fn a_leader_down_for_its_epoch_costs_one_block_and_delays_finality() {
    // The seed's scenario: the leader of epoch 5 neither sends nor receives during epoch 5.
    let e = 5;
    let epochs = 12;
    let rule = LeaderRule::Hashed { seed: 0 };
    let leader = rule.leader(4, Round(e));
    let mut c = config(4, epochs);
    c.faults = vec![
        Fault { at_ns: t(e), node: leader, kind: FaultKind::Crash },
        Fault { at_ns: t(e + 1), node: leader, kind: FaultKind::Restart },
    ];
    let r = run(c, rule);
    for node in 0..4u16 {
        assert!(r.block_of(node, e).is_none(), "node {node} has a block of epoch {e}");
        let before = r.block_of(node, e - 1).unwrap();
        let after = r.block_of(node, e + 1).unwrap();
        let next = r.block_of(node, e + 2).unwrap();
        assert_eq!(after.parent, before.digest, "B_(e+1) extends B_(e-1)");
        for b in [&before, &after, &next] {
            assert_eq!(
                b.finalized_at_ns,
                Some(t(e + 3) + 2 * SMALL_DELTA),
                "node {node} epoch {}",
                b.round
            );
        }
    }
    assert_equal_logs(&r, 0..4);
}

#[test]
fn a_permanently_crashed_node_under_round_robin_costs_one_block_in_four() {
    let epochs = 40;
    let mut c = config(4, epochs);
    c.faults = vec![Fault { at_ns: 0, node: NodeId(0), kind: FaultKind::Crash }];
    let r = run(c, LeaderRule::RoundRobin);
    // Node 0 leads epochs 4, 8, 12, …: those have no block; the rest are finalized.
    let finalized: Vec<u64> = r.report.finalized_blocks.iter().map(|b| b.round).collect();
    assert!(finalized.iter().all(|e| e % 4 != 0), "{finalized:?}");
    // Everything up to epoch 38 is final (37, 38 and 39 are consecutive; 40 has no block).
    let expected: Vec<u64> = (1..=38).filter(|e| e % 4 != 0).collect();
    assert_eq!(finalized, expected);
    for k in 0..9 {
        let window = finalized.iter().filter(|e| (4 * k + 1..=4 * k + 4).contains(*e)).count();
        assert_eq!(
            window,
            3,
            "epochs {}..={}: three blocks final in every four epochs",
            4 * k + 1,
            4 * k + 4
        );
    }
    assert_equal_logs(&r, 1..4);
    assert_eq!(r.report.nodes_detail[0].finalized_height, 0);
}

#[test]
fn f_plus_one_crashed_nodes_stop_everything_safely() {
    let mut c = config(4, 10);
    c.faults = vec![
        Fault { at_ns: 0, node: NodeId(2), kind: FaultKind::Crash },
        Fault { at_ns: 0, node: NodeId(3), kind: FaultKind::Crash },
    ];
    let r = run(c, LeaderRule::Hashed { seed: 0 });
    assert!(r.report.finalized_blocks.is_empty());
    for node in 0..2 {
        assert!(r.views(node).iter().all(|v| v.height.0 == 0 || v.status == BlockStatus::Proposed));
    }
}

#[test]
fn an_equivocating_leader_gets_at_most_one_block_notarized() {
    // Node 0 leads epochs 4, 8, … under round robin. In its epochs it proposes one block to
    // node 1 and another to nodes 2 and 3, signs both, and votes for both.
    let equivocate = |env: &mut AdversaryEnv<'_>,
                      to: NodeId,
                      message: StreamletMessage,
                      out: &mut Vec<Emission<StreamletMessage>>| {
        let StreamletMessage::Propose(Proposal { block, signature }) = message else {
            out.push(Emission::now(to, Payload::Message(message)));
            return;
        };
        let (block, signature) = if to == NodeId(1) {
            (block, signature)
        } else {
            let h = block.header();
            let other = Block::new(
                h.parent,
                h.round,
                h.height,
                h.proposer,
                h.created_at_ns + 1,
                block.batch().clone(),
            );
            let signature = env.key.sign(&domain::PROPOSAL, other.digest().as_bytes());
            (other, signature)
        };
        let statement = Statement {
            phase: Phase::Vote,
            round: block.round(),
            height: block.height(),
            value: block.digest(),
        };
        let vote = Vote::sign(statement, env.me, env.key);
        out.push(Emission::now(
            to,
            Payload::Message(StreamletMessage::Propose(Proposal { block, signature })),
        ));
        out.push(Emission::now(to, Payload::Message(StreamletMessage::Vote(vote))));
    };
    let r = run_with(config(4, 20), LeaderRule::RoundRobin, |sim| {
        sim.set_adversary(NodeId(0), Box::new(equivocate))
    });
    // (The losing block of each such epoch is pruned once the epoch is final, so the views at the
    // end show only the winner; the equivocation counter shows both arrived.)
    let mut notarized: BTreeMap<u64, BTreeSet<_>> = BTreeMap::new();
    for node in 1..4 {
        for v in r.views(node) {
            if v.status != BlockStatus::Proposed {
                notarized.entry(v.round.0).or_default().insert(v.digest);
            }
        }
    }
    assert!(notarized.values().all(|s| s.len() <= 1), "{notarized:?}");
    // In epoch 4 the block shown to nodes 2 and 3 wins. (Later Byzantine epochs may have no
    // notarized block at all: the adversary's own engine never counted its forged vote, so it
    // proposes on a shorter chain, which honest nodes refuse.)
    assert_eq!(notarized.get(&4).map(BTreeSet::len), Some(1));
    // Honest leaders' epochs keep finalizing.
    let finalized = r.report.finalized_blocks.iter().filter(|b| b.round % 4 != 0).count();
    assert!(finalized >= 12, "{finalized} honest blocks final");
    assert_equal_logs(&r, 1..4);
    assert!(r.sim.engine(NodeId(1)).stats().votes_cast > 0);
    assert!(
        r.sim.engine(NodeId(1)).stats().equivocations > 0,
        "the leader's double votes were seen"
    );
}

#[test]
fn echo_costs_messages_and_can_be_switched_off() {
    let with_echo = run(config(4, 10), LeaderRule::Hashed { seed: 0 }).report;
    let mut sc = StreamletConfig::new(DELTA);
    sc.echo = false;
    let mut sim = Simulation::new(
        config(4, 10),
        |me, committee, key| {
            Streamlet::new(sc, committee.clone(), me, key.clone()).expect("a valid configuration")
        },
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    let without = sim.run();
    assert!(without.safety_ok);
    assert!(
        with_echo.by_kind.contains_key("echo-vote")
            && with_echo.by_kind.contains_key("echo-propose")
    );
    assert!(!without.by_kind.contains_key("echo-vote"));
    assert!(without.messages.messages < with_echo.messages.messages);
    // Without faults, the same blocks are finalized either way.
    assert_eq!(without.finalized_blocks.len(), with_echo.finalized_blocks.len());
}

/// Swarm seed 520000495 (n = 5), reduced: a node cut off while the others finalize a few
/// blocks is then needed for every quorum (another node crashed). It holds proposals whose
/// parents it never saw, and finalized blocks are never sent again unasked: it asks their
/// proposers with SYNC, catches up, and the chain goes on.
#[test]
fn a_node_left_behind_the_finalized_tip_catches_up_when_its_quorum_needs_it() {
    let epochs = 60;
    let mut c = config(4, epochs);
    let heal = t(12);
    c.network.partitions =
        vec![agora_netsim::Partition { start_ns: 0, end_ns: heal, groups: vec![vec![NodeId(3)]] }];
    c.faults = vec![Fault { at_ns: heal, node: NodeId(2), kind: FaultKind::Crash }];
    let r = run(c, LeaderRule::RoundRobin);
    let behind_at_heal =
        r.report.finalized_blocks.iter().filter(|b| b.finalized_at_ns < heal).count();
    assert!(behind_at_heal >= 3, "the others finalized {behind_at_heal} blocks without node 3");
    // Node 3 has every block the others finalized, and blocks finalized after the crash exist:
    // with node 2 down, none could be final without node 3's votes.
    assert_equal_logs(&r, [0u16, 1, 3].into_iter());
    let after = r.report.finalized_blocks.iter().filter(|b| b.finalized_at_ns > heal).count();
    assert!(after > 0, "nothing final after the crash");
    let d3 = &r.report.nodes_detail[3];
    assert!(d3.finalized_height > behind_at_heal as u64, "node 3 at {}", d3.finalized_height);
}

#[test]
fn a_node_restarted_from_its_journal_rejoins_and_agrees() {
    // Node 2 crashes in epoch 6, while a sync may be in flight, and comes back in epoch 9 as a
    // fresh engine restored from its journal: it resumes from its last checkpoint, catches up
    // and ends with the same log as the others.
    let epochs = 30;
    let mut c = config(4, epochs);
    c.processing.per_sync_ns = MS;
    c.faults = vec![
        Fault { at_ns: t(6) + SMALL_DELTA, node: NodeId(2), kind: FaultKind::Crash },
        Fault { at_ns: t(9) + 7 * MS, node: NodeId(2), kind: FaultKind::Recover },
    ];
    let r = run_with(c, LeaderRule::RoundRobin, |sim| {
        let mut sc = StreamletConfig::new(DELTA);
        sc.leader = LeaderRule::RoundRobin;
        sim.set_rebuild(move |me, committee, key| {
            Streamlet::new(sc, committee.clone(), me, key.clone()).expect("a valid configuration")
        });
    });
    let restarted = &r.report.nodes_detail[2];
    assert_eq!(restarted.recoveries, 1);
    assert!(restarted.journal_syncs > 0);
    assert!(restarted.finalized_height > 20, "it kept finalizing: {}", restarted.finalized_height);
    // Checkpoints at every finalization keep the journal to a few records.
    assert!(restarted.journal_bytes < 16 * 1024, "{} journal bytes", restarted.journal_bytes);
    assert_equal_logs(&r, 0..4);
}
