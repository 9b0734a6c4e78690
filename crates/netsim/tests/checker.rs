//! The reference engine commits every submitted transaction exactly once, on a hostile network,
//! and the invariant checker catches every kind of broken engine.

use agora_consensus::reference::{RefConfig, ReferenceEngine};
use agora_consensus::{Ctx, Protocol, TxLog};
use agora_crypto::{Digest, SecretKey};
use agora_netsim::{
    Fault, FaultKind, Jitter, LivenessCheck, SimConfig, SimReport, Simulation, Targets, Violation,
    Workload,
};
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};
use bytes::Bytes;

const MS: u64 = 1_000_000;

fn hostile(nodes: usize, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(nodes);
    c.seed = seed;
    c.duration_ns = 4_000 * MS;
    c.network.latency_ns = 20 * MS;
    c.network.jitter = Jitter::Pareto { scale_ns: 5 * MS, cap_ns: 200 * MS };
    c.network.loss = 0.05;
    c.network.duplicate = 0.02;
    c.network.reorder_ns = Some(30 * MS);
    c.workload = Some(Workload {
        rate_per_sec: 300.0,
        start_ns: 0,
        end_ns: 1_500 * MS,
        clients: 20,
        payload_bytes: 40,
        targets: Targets::Random,
    });
    c
}

fn run_reference(config: SimConfig) -> SimReport {
    let n = config.nodes as u16;
    let mut sim = Simulation::new(
        config,
        |_, _, _| ReferenceEngine::new(RefConfig::new(n)),
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    sim.run()
}

fn assert_every_transaction_exactly_once(report: &SimReport) {
    assert!(report.safety_ok, "seed {}: {:?}", report.seed, report.violations);
    assert!(report.submissions.accepted > 300, "seed {}: too little load", report.seed);
    assert_eq!(report.txs_finalized, report.submissions.accepted, "seed {}", report.seed);
    let finalized_txs: u64 = report.finalized_blocks.iter().map(|b| b.txs).sum();
    assert_eq!(
        finalized_txs, report.txs_finalized,
        "seed {}: a transaction twice in the log",
        report.seed
    );
    let first = &report.nodes_detail[0];
    for d in &report.nodes_detail {
        assert_eq!(
            (d.finalized_height, d.log_digest, d.state_digest),
            (first.finalized_height, first.log_digest, first.state_digest),
            "seed {}: node {} differs",
            report.seed,
            d.node
        );
    }
    assert!(report.dropped.loss > 0, "the network did lose messages");
}

#[test]
fn reference_engine_commits_everything_once_with_4_nodes() {
    for seed in 1..=5 {
        assert_every_transaction_exactly_once(&run_reference(hostile(4, seed)));
    }
}

#[test]
fn reference_engine_commits_everything_once_with_64_nodes() {
    assert_every_transaction_exactly_once(&run_reference(hostile(64, 11)));
}

#[test]
fn a_crashed_leader_misses_the_liveness_deadline() {
    let mut config = hostile(4, 3);
    config.network.loss = 0.0;
    config.faults = vec![Fault { at_ns: 300 * MS, node: NodeId(0), kind: FaultKind::Crash }];
    config.liveness = Some(LivenessCheck { bound_ns: 1_000 * MS });
    let report = run_reference(config);
    assert!(!report.safety_ok);
    assert!(report.violations.iter().all(|v| matches!(v, Violation::NotFinalized { .. })));
    // What was committed before the crash stays committed; everything after it is missed,
    // except what the crashed leader itself accepted: a node down at the end promises nothing.
    assert!(report.txs_finalized > 0);
    let missed = report.violations.len() as u64;
    assert!(missed > 0);
    assert!(missed + report.txs_finalized <= report.submissions.accepted);
}

/// A broken engine: each node commits the blocks of its script, at the scripted times.
#[derive(Clone)]
struct Scripted {
    script: Vec<(u64, Block)>,
    next: usize,
}

impl Protocol for Scripted {
    type Message = Nothing;
    type Timer = ();

    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let Some((at, _)) = self.script.first() {
            ctx.set_timer((), *at);
        }
    }

    fn on_message(&mut self, _: &mut Ctx<'_, Self>, _: NodeId, _: Nothing) {}

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _: ()) {
        let (at, block) = self.script[self.next].clone();
        ctx.commit(block);
        self.next += 1;
        if let Some((later, _)) = self.script.get(self.next) {
            ctx.set_timer((), later - at);
        }
    }
}

/// Scripted nodes send nothing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Nothing;

impl agora_consensus::Message for Nothing {
    fn kind(&self) -> &'static str {
        "nothing"
    }
}

fn tx(nonce: u64) -> Transaction {
    Transaction::new_signed(&SecretKey::from_seed(9, 9), nonce, Bytes::from_static(b"order"))
        .unwrap()
}

fn block(parent: Digest, height: u64, stamp: u64, txs: Vec<Transaction>) -> Block {
    Block::new(parent, Round(height), Height(height), NodeId(0), stamp, Batch::new(txs).unwrap())
}

/// Runs 4 scripted nodes; `script(node)` gives each node's commits. Transactions 0..10 are
/// submitted (to node 0) before anything commits.
fn run_scripted(script: impl Fn(u16) -> Vec<(u64, Block)>) -> SimReport {
    let mut config = SimConfig::new(4);
    config.duration_ns = 100 * MS;
    let mut sim = Simulation::new(
        config,
        |node, _, _| Scripted { script: script(node.0), next: 0 },
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    for nonce in 0..10 {
        sim.submit_at(0, NodeId(0), tx(nonce));
    }
    sim.run()
}

#[test]
fn the_checker_catches_broken_engines() {
    let genesis = Block::genesis().digest();
    let b1 = block(genesis, 1, 0, vec![tx(0), tx(1)]);
    let b1_other = block(genesis, 1, 1, vec![tx(0), tx(1)]);
    let b2_repeat = block(b1.digest(), 2, 0, vec![tx(1)]);
    let b2 = block(b1.digest(), 2, 0, vec![tx(2)]);
    let b_unknown = block(genesis, 1, 0, vec![tx(99)]);

    type Script = Box<dyn Fn(u16) -> Vec<(u64, Block)>>;
    type Case = (&'static str, Script, fn(&Violation) -> bool);
    let cases: Vec<Case> = vec![
        (
            "node 3 commits a different block at height 1",
            Box::new(move |n| {
                vec![(
                    10 * MS + u64::from(n) * MS,
                    if n == 3 { b1_other.clone() } else { b1.clone() },
                )]
            }),
            |v| matches!(v, Violation::Conflict { height: 1, second: (NodeId(3), _), first_log, second_log, .. } if first_log.len() == 1 && second_log.len() == 1),
        ),
        (
            "a transaction committed twice",
            {
                let (b1, b2_repeat) = (block(genesis, 1, 0, vec![tx(0), tx(1)]), b2_repeat.clone());
                Box::new(move |_| vec![(10 * MS, b1.clone()), (20 * MS, b2_repeat.clone())])
            },
            |v| matches!(v, Violation::Duplicate { first_height: 1, again_height: 2, .. }),
        ),
        ("height 2 before height 1", Box::new(move |_| vec![(10 * MS, b2.clone())]), |v| {
            matches!(v, Violation::Gap { expected: 1, got: 2, .. })
        }),
        (
            "a transaction nobody submitted",
            Box::new(move |_| vec![(10 * MS, b_unknown.clone())]),
            |v| matches!(v, Violation::Unsubmitted { height: 1, .. }),
        ),
    ];
    for (name, script, expected) in cases {
        let report = run_scripted(script);
        assert!(!report.safety_ok, "{name}: not caught");
        assert!(expected(&report.violations[0]), "{name}: caught as {:?}", report.violations[0]);
        // The run stopped at the violation.
        assert!(report.end_ns < 100 * MS, "{name}: ran on after the violation");
    }
    // And a correct script passes.
    let good = block(genesis, 1, 0, vec![tx(0)]);
    let report = run_scripted(move |_| vec![(10 * MS, good.clone())]);
    assert!(report.safety_ok, "{:?}", report.violations);
}

#[test]
fn an_equivocating_leader_breaks_the_reference_engine_and_the_checker_says_so() {
    use agora_consensus::reference::RefMessage;
    use agora_netsim::{AdversaryEnv, Emission, Payload};

    // The leader (node 0) shows node 1 a rewritten proposal (same height, another block) and
    // tells everyone it is committed at once: the reference engine trusts its leader.
    let equivocate = |_: &mut AdversaryEnv<'_>,
                      to: NodeId,
                      message: RefMessage,
                      out: &mut Vec<Emission<RefMessage>>| {
        let RefMessage::Propose { block, committed } = message else {
            out.push(Emission::now(to, Payload::Message(message)));
            return;
        };
        let height = block.height();
        let block = if to == NodeId(1) {
            let h = block.header();
            Block::new(
                h.parent,
                h.round,
                h.height,
                h.proposer,
                h.created_at_ns + 1,
                block.batch().clone(),
            )
        } else {
            block
        };
        out.push(Emission::now(to, Payload::Message(RefMessage::Propose { block, committed })));
        out.push(Emission::now(to, Payload::Message(RefMessage::Commit { height })));
    };
    let mut config = hostile(4, 5);
    config.network.loss = 0.0;
    let mut sim = Simulation::new(
        config,
        |_, _, _| ReferenceEngine::new(RefConfig::new(4)),
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    sim.set_adversary(NodeId(0), Box::new(equivocate));
    let report = sim.run();
    assert!(
        matches!(report.violations.first(), Some(Violation::Conflict { height: 1, .. })),
        "{:?}",
        report.violations
    );
}

#[test]
fn a_whole_report_is_deterministic_and_the_trace_writes_as_json_lines() {
    let run = || {
        let mut config = hostile(4, 21);
        config.trace = agora_netsim::TraceMode::Record;
        let mut sim = Simulation::new(
            config,
            |_, _, _| ReferenceEngine::new(RefConfig::new(4)),
            |_| Box::new(TxLog::new(true)),
        )
        .unwrap();
        let mut report = sim.run();
        report.speed = Default::default();
        let mut jsonl = Vec::new();
        sim.trace().write_jsonl(&mut jsonl).unwrap();
        (report.to_json(), jsonl)
    };
    let (a, trace_a) = run();
    let (b, trace_b) = run();
    assert_eq!(a, b);
    assert_eq!(trace_a, trace_b);
    let text = String::from_utf8(trace_a).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first.get("event").is_some() && first.get("t_ns").is_some());
    assert!(text.lines().count() > 1_000);
}
