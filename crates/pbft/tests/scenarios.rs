//! PBFT in the simulator, with a fixed one-way delay δ: the paper's normal-case timings, crashed
//! primaries and view changes, equivocation, checkpoints and catching up.

use agora_consensus::{BlockStatus, ChainView, TxLog};
use agora_crypto::SecretKey;
use agora_netsim::{
    AdversaryEnv, Emission, Fault, FaultKind, Partition, Payload, SimConfig, SimReport, Simulation,
    Targets, TraceEvent, TraceMode, Workload,
};
use agora_pbft::{Pbft, PbftConfig, PbftMessage, PrePrepare, statement};
use agora_types::{Block, NodeId, Phase, Transaction, View, Vote};
use bytes::Bytes;

const MS: u64 = 1_000_000;
const DELTA: u64 = 10 * MS;
const T: u64 = 200 * MS;

fn config(nodes: usize, duration_ms: u64) -> SimConfig {
    let mut c = SimConfig::new(nodes);
    c.seed = 11;
    c.network.latency_ns = DELTA;
    c.duration_ns = duration_ms * MS;
    c
}

fn load(c: &mut SimConfig, rate: f64, end_ms: u64, targets: Targets) {
    c.workload = Some(Workload {
        rate_per_sec: rate,
        start_ns: 0,
        end_ns: end_ms * MS,
        clients: 16,
        payload_bytes: 32,
        targets,
    });
}

fn simulation(config: SimConfig, pbft: PbftConfig) -> Simulation<Pbft> {
    Simulation::new(
        config,
        |me, committee, key| {
            Pbft::new(pbft, committee.clone(), me, key.clone()).expect("a valid configuration")
        },
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap()
}

fn tx(nonce: u64) -> Transaction {
    Transaction::new_signed(&SecretKey::from_seed(77, 0), nonce, Bytes::from_static(b"order"))
        .unwrap()
}

fn assert_safe_and_complete(r: &SimReport) {
    assert!(r.safety_ok, "seed {}: {:?}", r.seed, r.violations);
    assert_eq!(r.txs_finalized, r.submissions.accepted, "seed {}: a request was lost", r.seed);
}

#[test]
fn normal_case_prepares_at_2_delta_commits_at_3_delta_and_replies_at_4_delta() {
    for crashed_backup in [None, Some(NodeId(3))] {
        let mut c = config(4, 500);
        c.trace = TraceMode::Record;
        if let Some(node) = crashed_backup {
            c.faults = vec![Fault { at_ns: 0, node, kind: FaultKind::Crash }];
        }
        let mut sim = simulation(c, PbftConfig::new(T));
        let t0 = 100 * MS;
        sim.submit_at(t0, NodeId(0), tx(0));
        let report = sim.run();
        assert_safe_and_complete(&report);
        // The primary pre-prepares on arrival, at t0.
        let block = &report.finalized_blocks[0];
        assert_eq!((block.height, block.round, block.proposed_at_ns), (1, 0, t0));
        for node in (0..4).map(NodeId).filter(|n| Some(*n) != crashed_backup) {
            let views = sim.engine(node).block_views();
            let b = views.iter().find(|v| v.height.0 == 1).unwrap();
            assert_eq!(b.status, BlockStatus::Finalized);
            assert_eq!(b.notarized_at_ns, Some(t0 + 2 * DELTA), "node {node}: prepared");
            assert_eq!(
                b.finalized_at_ns,
                Some(t0 + 3 * DELTA),
                "node {node}: committed and executed"
            );
        }
        // The client (at replica 0) has f + 1 = 2 matching replies at t0 + 4δ.
        assert_eq!(sim.engine(NodeId(0)).client_latencies_ns(), &[4 * DELTA]);
        let commits: Vec<u64> = sim
            .trace()
            .events()
            .iter()
            .filter_map(|e| match e {
                TraceEvent::Commit { t_ns, .. } => Some(*t_ns),
                _ => None,
            })
            .collect();
        assert_eq!(commits, vec![t0 + 3 * DELTA; if crashed_backup.is_some() { 3 } else { 4 }]);
    }
}

#[test]
fn a_crashed_primary_is_replaced_and_no_request_is_lost() {
    let mut c = config(4, 3_000);
    load(&mut c, 200.0, 2_000, Targets::Nodes(vec![NodeId(1), NodeId(2), NodeId(3)]));
    let crash_at = 500 * MS;
    c.faults = vec![Fault { at_ns: crash_at, node: NodeId(0), kind: FaultKind::Crash }];
    let mut sim = simulation(c, PbftConfig::new(T));
    let report = sim.run();
    assert_safe_and_complete(&report);
    // Nothing is final between the crash and the first view-change timeout.
    let stalled: Vec<_> = report
        .finalized_blocks
        .iter()
        .filter(|b| b.finalized_at_ns > crash_at + DELTA * 4 && b.finalized_at_ns < crash_at + T)
        .collect();
    assert!(stalled.is_empty(), "{stalled:?}");
    // View 1 (primary 1) takes over.
    assert!(report.finalized_blocks.iter().any(|b| b.round == 1));
    for node in 1..4 {
        assert_eq!(sim.engine(NodeId(node)).view(), View(1));
    }
}

#[test]
fn a_crashed_primary_is_replaced_even_when_only_f_backups_hold_requests() {
    // n = 7, f = 2: clients reach only replicas 1 and 2. When primary 0 crashes, two view
    // changes are not f+1, so the others must learn of the requests to time out as well.
    let mut c = config(7, 3_000);
    load(&mut c, 200.0, 2_000, Targets::Nodes(vec![NodeId(1), NodeId(2)]));
    c.faults = vec![Fault { at_ns: 500 * MS, node: NodeId(0), kind: FaultKind::Crash }];
    let mut sim = simulation(c, PbftConfig::new(T));
    let report = sim.run();
    assert_safe_and_complete(&report);
    assert!(report.txs_finalized > 300, "seed {}: {} final", report.seed, report.txs_finalized);
    for node in 1..7 {
        assert_eq!(sim.engine(NodeId(node)).view(), View(1), "seed {}: node {node}", report.seed);
    }
}

/// Times at which `node` started each of its view changes (resends of the same view change are
/// not new ones).
fn view_change_sends(sim: &Simulation<Pbft>, node: u16) -> Vec<u64> {
    let mut first: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for e in sim.trace().events() {
        if let TraceEvent::Send { t_ns, from, kind: "view-change", instance: Some(view), .. } = e
            && from.0 == node
        {
            first.entry(*view).or_insert(*t_ns);
        }
    }
    first.into_values().collect()
}

#[test]
fn with_the_primaries_of_views_0_and_1_down_the_new_view_waits_grow_t_then_2t() {
    let mut c = config(7, 3_000);
    c.trace = TraceMode::Record;
    c.faults = vec![
        Fault { at_ns: 0, node: NodeId(0), kind: FaultKind::Crash },
        Fault { at_ns: 0, node: NodeId(1), kind: FaultKind::Crash },
    ];
    let mut sim = simulation(c, PbftConfig::new(T));
    let t0 = 50 * MS;
    for (i, node) in (2..7).enumerate() {
        sim.submit_at(t0, NodeId(node), tx(i as u64));
    }
    let report = sim.run();
    assert_safe_and_complete(&report);
    for node in 2..7 {
        let sends = view_change_sends(&sim, node);
        // First: the request timer, T after the request arrived. Second: 2f+1 view changes for
        // view 1 arrive δ later, then the wait for view 1's NEW-VIEW, 2T, runs out.
        assert_eq!(sends, vec![t0 + T, t0 + T + DELTA + 2 * T], "node {node}");
        assert_eq!(sim.engine(NodeId(node)).view(), View(2));
    }
    assert!(report.finalized_blocks.iter().all(|b| b.round == 2));
}

#[test]
fn a_request_prepared_in_view_0_survives_the_view_change_with_its_sequence_number_and_digest() {
    // Prepares cross before the split; commits are cut ({0,1} | {2,3}): everyone prepared seq 1,
    // nobody committed it. After healing, the backups' timers move the group to view 1.
    let t0 = 100 * MS;
    let mut c = config(4, 2_000);
    c.network.partitions = vec![Partition {
        start_ns: t0 + 2 * DELTA,
        end_ns: t0 + 150 * MS,
        groups: vec![vec![NodeId(0), NodeId(1)]],
    }];
    let mut sim = simulation(c, PbftConfig::new(T));
    sim.submit_at(t0, NodeId(0), tx(0));
    sim.run_until(t0 + 100 * MS);
    let prepared = sim.engine(NodeId(2)).block_views();
    let pre = prepared.iter().find(|v| v.height.0 == 1).expect("seq 1 is in the log").clone();
    assert_eq!(pre.status, BlockStatus::Notarized, "prepared in view 0, not committed");
    let report = sim.run();
    assert_safe_and_complete(&report);
    let block = &report.finalized_blocks[0];
    assert_eq!((block.height, block.digest), (1, pre.digest), "same sequence number and digest");
    assert!(block.finalized_at_ns > t0 + T, "committed only after the view change");
    assert!((0..4).all(|n| sim.engine(NodeId(n)).view() == View(1)));
}

#[test]
fn an_equivocating_primary_cannot_make_replicas_execute_different_batches() {
    // The primary sends one batch to replica 1 and another, for the same sequence number, to
    // replicas 2 and 3, signing both.
    let equivocate = |env: &mut AdversaryEnv<'_>,
                      to: NodeId,
                      message: PbftMessage,
                      out: &mut Vec<Emission<PbftMessage>>| {
        if let PbftMessage::PrePrepare(pp) = &message
            && to != NodeId(1)
        {
            let h = pp.block.header();
            let other = Block::new(
                h.parent,
                h.round,
                h.height,
                h.proposer,
                h.created_at_ns + 1,
                pp.block.batch().clone(),
            );
            let vote = Vote::sign(
                statement(Phase::PrePrepare, pp.view(), pp.seq(), other.digest()),
                env.me,
                env.key,
            );
            out.push(Emission::now(
                to,
                Payload::Message(PbftMessage::PrePrepare(PrePrepare { vote, block: other })),
            ));
            return;
        }
        out.push(Emission::now(to, Payload::Message(message)));
    };
    let mut c = config(4, 3_000);
    load(&mut c, 100.0, 2_000, Targets::Nodes(vec![NodeId(1), NodeId(2), NodeId(3)]));
    let mut sim = simulation(c, PbftConfig::new(T));
    sim.set_adversary(NodeId(0), Box::new(equivocate));
    let report = sim.run();
    assert!(report.safety_ok, "{:?}", report.violations);
    assert!(report.txs_finalized > 0);
    let d1 = &report.nodes_detail[1];
    for d in &report.nodes_detail[2..] {
        // Logs are prefixes of one another (the checker); equal heights mean equal logs.
        if d.finalized_height == d1.finalized_height {
            assert_eq!(d.log_digest, d1.log_digest);
        }
    }
}

#[test]
fn f_plus_one_crashed_replicas_commit_nothing_and_stay_safe() {
    let mut c = config(4, 2_000);
    load(&mut c, 100.0, 1_500, Targets::Nodes(vec![NodeId(0), NodeId(1)]));
    c.faults = vec![
        Fault { at_ns: 0, node: NodeId(2), kind: FaultKind::Crash },
        Fault { at_ns: 0, node: NodeId(3), kind: FaultKind::Crash },
    ];
    let report = simulation(c, PbftConfig::new(T)).run();
    assert!(report.safety_ok);
    assert!(report.finalized_blocks.is_empty());
}

#[test]
fn the_log_stays_bounded_over_10_000_batches() {
    // One transaction per batch, so that 10,000 sequence numbers pass in 7 simulated seconds;
    // the window and the pipeline are sized for the load (64 in flight per 3δ ≈ 2,100/s).
    let mut pbft = PbftConfig::new(T);
    pbft.batch.txs_max = 1;
    pbft.checkpoint_interval = 32;
    pbft.log_window = 128;
    pbft.max_inflight = 64;
    let mut c = config(4, 7_400);
    c.trace = TraceMode::Off;
    load(&mut c, 1_500.0, 7_000, Targets::Random);
    let mut sim = simulation(c, pbft);
    let bound = (pbft.log_window + pbft.max_inflight) as usize * 2;
    let mut max_log = 0;
    let mut max_votes = 0;
    for step in 1..=74 {
        sim.run_until(step * 100 * MS);
        for node in 0..4 {
            max_log = max_log.max(sim.engine(NodeId(node)).log_len());
            max_votes = max_votes.max(sim.engine(NodeId(node)).votes_held());
        }
    }
    let report = sim.finish();
    let view_changes: u64 = (0..4).map(|n| sim.engine(NodeId(n)).stats().view_changes).sum();
    assert_eq!(view_changes, 0, "no view change without a fault");
    assert_safe_and_complete(&report);
    assert!(report.finalized_blocks.len() >= 10_000, "{} batches", report.finalized_blocks.len());
    assert!(max_log <= bound, "log grew to {max_log} entries (bound {bound})");
    assert!(max_votes <= bound * 4 * 3, "{max_votes} votes held");
    assert!(sim.engine(NodeId(1)).stable_checkpoint().0 >= 9_984);
}

#[test]
fn a_replica_partitioned_away_catches_up_after_healing() {
    let mut c = config(4, 3_000);
    load(&mut c, 300.0, 2_500, Targets::Nodes(vec![NodeId(0), NodeId(1), NodeId(2)]));
    c.network.partitions =
        vec![Partition { start_ns: 200 * MS, end_ns: 1_500 * MS, groups: vec![vec![NodeId(3)]] }];
    let mut sim = simulation(c, PbftConfig::new(T));
    sim.run_until(1_400 * MS);
    let behind = sim.engine(NodeId(3)).last_executed();
    let ahead = sim.engine(NodeId(0)).last_executed();
    assert!(ahead.0 > behind.0 + 32, "replica 3 fell behind ({behind:?} vs {ahead:?})");
    let report = sim.run();
    assert_safe_and_complete(&report);
    // To the last block, not only to the last stable checkpoint: the blocks after it come on
    // their commit certificates.
    let caught_up = sim.engine(NodeId(3)).last_executed();
    let top = sim.engine(NodeId(0)).last_executed();
    assert_eq!(caught_up, top, "replica 3 caught up to the end");
    assert!(sim.engine(NodeId(3)).stats().transferred_blocks > 0);
}

#[test]
fn a_replica_healed_as_the_load_ends_takes_the_last_blocks_on_their_commit_certificates() {
    // Healed 100 ms before the last request: the COMMITs it then sees show it behind, and no
    // checkpoint will come after them. It asks the committers for the blocks between, and
    // executes to the last one without starting a view change.
    let mut c = config(4, 3_500);
    load(&mut c, 300.0, 2_500, Targets::Nodes(vec![NodeId(0), NodeId(1), NodeId(2)]));
    c.network.partitions =
        vec![Partition { start_ns: 200 * MS, end_ns: 2_400 * MS, groups: vec![vec![NodeId(3)]] }];
    let mut sim = simulation(c, PbftConfig::new(T));
    let report = sim.run();
    assert_safe_and_complete(&report);
    let behind = sim.engine(NodeId(3));
    assert_eq!(behind.last_executed(), sim.engine(NodeId(0)).last_executed());
    assert!(behind.stats().certified_blocks > 0, "{:?}", behind.stats());
}

#[test]
fn a_partition_that_splits_the_quorum_heals_and_every_request_is_final() {
    // Halves {0, 1} | {2, 3}: no side has 2f+1, so nothing commits and view changes cannot
    // complete; they are resent, so after healing the group settles on a view and goes on.
    let mut c = config(4, 5_000);
    load(&mut c, 200.0, 3_000, Targets::Random);
    c.network.partitions = vec![Partition {
        start_ns: 1_000 * MS,
        end_ns: 2_000 * MS,
        groups: vec![vec![NodeId(0), NodeId(1)]],
    }];
    let report = simulation(c, PbftConfig::new(T)).run();
    assert_safe_and_complete(&report);
    assert!(report.finalized_blocks.iter().any(|b| b.finalized_at_ns > 2_000 * MS));
}
