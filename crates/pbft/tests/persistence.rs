//! What a replica journals and how it comes back: one backup driven by hand through a real
//! engine journal, and whole committees in the simulator with replicas that crash, lose what
//! they had not synced, and restart from their journals.

use agora_consensus::{
    Action, Application, Context, InMemoryMempool, MempoolLimits, Protocol, TxLog,
};
use agora_crypto::DirectCheck;
use agora_netsim::{Fault, FaultKind, SimConfig, SimReport, Simulation, Targets, Workload};
use agora_pbft::{FetchedBlock, Pbft, PbftConfig, PbftMessage, PbftTimer, PrePrepare, statement};
use agora_store::{BlockStore, EngineJournal, MemJournal};
use agora_types::bytes::Bytes;
use agora_types::{
    Batch, Block, Certificate, Committee, Height, NodeId, Phase, Round, SeqNo, View, Vote,
};

const MS: u64 = 1_000_000;
const T: u64 = 200 * MS;

/// Backup 1 of 4 (the primary of view 0 is replica 0), whose actions go through an engine
/// journal as a driver's would, synced at the end of each step.
struct Backup {
    node: Pbft,
    keys: Vec<agora_types::SecretKey>,
    committee: Committee,
    mempool: InMemoryMempool,
    journal: EngineJournal<MemJournal>,
    actions: Vec<Action<PbftMessage, PbftTimer>>,
}

impl Backup {
    fn new() -> Self {
        let (committee, keys) = Committee::deterministic(1, 4).unwrap();
        let node = Self::fresh(&committee, &keys);
        Self {
            node,
            keys,
            committee,
            mempool: InMemoryMempool::new(MempoolLimits::default()),
            journal: EngineJournal::default(),
            actions: Vec::new(),
        }
    }

    fn fresh(committee: &Committee, keys: &[agora_types::SecretKey]) -> Pbft {
        Pbft::new(PbftConfig::new(T), committee.clone(), NodeId(1), keys[1].clone()).unwrap()
    }

    /// Runs one step of the engine and journals what it persisted.
    fn step(&mut self, run: impl FnOnce(&mut Pbft, &mut Context<'_, PbftMessage, PbftTimer>)) {
        let start = self.actions.len();
        let mut check = DirectCheck;
        let mut ctx = Context::new(1, NodeId(1), &mut self.actions, &mut self.mempool, &mut check);
        run(&mut self.node, &mut ctx);
        for action in &self.actions[start..] {
            if let Action::Persist { record, checkpoint } = action {
                self.journal.persist(record, *checkpoint).unwrap();
            }
        }
        self.journal.sync().unwrap();
    }

    fn deliver(&mut self, from: u16, message: PbftMessage) {
        self.step(|node, ctx| node.on_message(ctx, NodeId(from), message));
    }

    /// The replica crashes and starts again as a fresh engine, from its journal or (with
    /// `amnesia`) from nothing.
    fn restart(&mut self, amnesia: bool) {
        if amnesia {
            self.journal = EngineJournal::default();
        }
        self.node = Self::fresh(&self.committee, &self.keys);
        let records = self.journal.records().unwrap();
        self.node.restore(&records).expect("an engine restores from its own records");
        self.actions.clear();
        self.step(|node, ctx| node.on_start(ctx));
    }

    /// The primary of `view`'s signed pre-prepare of a block with one marker transaction.
    fn pre_prepare(&self, view: u64, seq: u64, marker: u64) -> PrePrepare {
        let tx = agora_types::Transaction::new_signed(
            &agora_types::SecretKey::from_seed(9, 0),
            marker,
            Bytes::from_static(b"order"),
        )
        .unwrap();
        let primary = (view % 4) as u16;
        let block = Block::new(
            agora_crypto::Digest::ZERO,
            Round(view),
            Height(seq),
            NodeId(primary),
            marker,
            Batch::new(vec![tx]).unwrap(),
        );
        let s = statement(Phase::PrePrepare, View(view), SeqNo(seq), block.digest());
        PrePrepare { vote: Vote::sign(s, NodeId(primary), &self.keys[usize::from(primary)]), block }
    }

    fn vote(&self, phase: Phase, pp: &PrePrepare, voter: u16) -> Vote {
        let s = statement(phase, pp.view(), pp.seq(), pp.digest());
        Vote::sign(s, NodeId(voter), &self.keys[usize::from(voter)])
    }

    /// The digests replica 1 broadcast a vote of `phase` for since the last call.
    fn sent(&mut self, phase: Phase) -> Vec<agora_crypto::Digest> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Broadcast { message: PbftMessage::Prepare(v) | PbftMessage::Commit(v) }
                    if v.statement.phase == phase && v.voter == NodeId(1) =>
                {
                    Some(v.statement.value)
                }
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_prepare_leaves_only_after_its_pre_prepare_is_journalled() {
    let mut b = Backup::new();
    let pp = b.pre_prepare(0, 1, 1);
    b.deliver(0, PbftMessage::PrePrepare(pp));
    let persisted = b.actions.iter().position(|a| matches!(a, Action::Persist { .. }));
    let prepared = b
        .actions
        .iter()
        .position(|a| matches!(a, Action::Broadcast { message: PbftMessage::Prepare(_) }));
    assert!(persisted.unwrap() < prepared.unwrap(), "{:?}", b.actions);
}

#[test]
fn a_restarted_backup_refuses_a_second_digest_for_its_slot_and_an_amnesiac_one_prepares_it() {
    for amnesia in [false, true] {
        let mut b = Backup::new();
        let first = b.pre_prepare(0, 1, 1);
        b.deliver(0, PbftMessage::PrePrepare(first.clone()));
        b.restart(amnesia);
        let resent = b.sent(Phase::Prepare);
        b.actions.clear();
        // An equivocating primary sends a second block for the same (v, n).
        let second = b.pre_prepare(0, 1, 2);
        b.deliver(0, PbftMessage::PrePrepare(second.clone()));
        let prepared = b.sent(Phase::Prepare);
        if amnesia {
            assert_eq!(prepared, vec![second.digest()], "an amnesiac backup prepares anything");
        } else {
            assert_eq!(resent, vec![first.digest()], "the restarted backup prepares again");
            assert_eq!(prepared, vec![], "a restarted backup prepared a second digest");
            assert_eq!(b.node.stats().dropped.get("conflicting pre-prepare"), Some(&1));
        }
    }
}

#[test]
fn a_restarted_replica_names_its_prepared_request_in_its_view_change_and_keeps_the_view() {
    let mut b = Backup::new();
    let pp = b.pre_prepare(0, 1, 1);
    b.deliver(0, PbftMessage::PrePrepare(pp.clone()));
    for voter in [2, 3] {
        let prepare = b.vote(Phase::Prepare, &pp, voter);
        b.deliver(voter, PbftMessage::Prepare(prepare));
    }
    assert_eq!(b.sent(Phase::Commit), vec![pp.digest()], "prepared, so it commits");
    b.restart(false);
    assert_eq!(b.sent(Phase::Commit), vec![pp.digest()], "it sends its commit again");

    // Its request timer expires: the view change it sends names the prepared request, block
    // and all, although the replica that prepared it crashed since.
    b.actions.clear();
    b.step(|node, ctx| node.on_timer(ctx, PbftTimer::Request(View(0))));
    let view_change = b.actions.iter().find_map(|a| match a {
        Action::Broadcast { message: PbftMessage::ViewChange(vc) } => Some(vc.clone()),
        _ => None,
    });
    let vc = view_change.expect("a view change");
    assert_eq!(vc.new_view, View(1));
    assert_eq!(vc.prepared.len(), 1);
    assert_eq!(vc.prepared[0].digest(), pp.digest());
    assert_eq!(vc.prepared[0].block.as_ref(), Some(&pp.block));

    // Restarted again, it is still changing to view 1, sends that VIEW-CHANGE again, and takes
    // nothing more of view 0.
    b.restart(false);
    assert_eq!((b.node.view(), b.node.is_view_changing()), (View(1), true));
    let again = b.actions.iter().any(
        |a| matches!(a, Action::Broadcast { message: PbftMessage::ViewChange(v) } if **v == *vc),
    );
    assert!(again, "the view change is sent again: {:?}", b.actions);
    b.actions.clear();
    b.deliver(0, PbftMessage::PrePrepare(b.pre_prepare(0, 2, 3)));
    assert_eq!(b.sent(Phase::Prepare), vec![]);
}

#[test]
fn a_backup_that_sees_a_later_sequence_number_committed_fetches_the_gap_on_commit_certificates() {
    let mut b = Backup::new();
    let pps: Vec<PrePrepare> = (1..=3).map(|seq| b.pre_prepare(0, seq, seq)).collect();
    let commit_of = |b: &Backup, pp: &PrePrepare, voters: &[u16]| {
        let votes = voters.iter().map(|v| b.vote(Phase::Commit, pp, *v));
        Certificate::new(
            statement(Phase::Commit, pp.view(), pp.seq(), pp.digest()),
            votes.map(|v| (v.voter, v.signature)),
        )
    };
    // It holds the pre-prepare of 3 (so its request timer runs) but missed 1 and 2, and sees
    // 3 committed by the three others.
    b.deliver(0, PbftMessage::PrePrepare(pps[2].clone()));
    for voter in [0, 2, 3] {
        b.deliver(voter, PbftMessage::Commit(b.vote(Phase::Commit, &pps[2], voter)));
    }
    assert_eq!(b.node.last_executed(), SeqNo(0));
    // The request timer runs out: a view change only it wants would take it out of view 0, so
    // it asks one of the committers for the blocks instead, once per executed position.
    b.actions.clear();
    b.step(|node, ctx| node.on_timer(ctx, PbftTimer::Request(View(0))));
    assert!(!b.node.is_view_changing());
    assert_eq!(b.node.stats().view_changes_deferred, 1);
    let fetch = b.actions.iter().find_map(|a| match a {
        Action::Send { to, message: PbftMessage::Fetch { from, to: last } } => {
            Some((*to, *from, *last))
        }
        _ => None,
    });
    let (peer, first, last) = fetch.expect("a FETCH for the gap");
    assert!([0, 2, 3].contains(&peer.0), "asked {peer:?}, not a committer");
    assert_eq!((first, last), (SeqNo(1), SeqNo(3)));
    // A block whose certificate is short of a quorum, or certifies another digest, is refused.
    let short =
        FetchedBlock { block: pps[0].block.clone(), commit: Some(commit_of(&b, &pps[0], &[0, 2])) };
    let other = FetchedBlock {
        block: pps[0].block.clone(),
        commit: Some(commit_of(&b, &pps[1], &[0, 2, 3])),
    };
    for forged in [short, other] {
        b.deliver(peer.0, PbftMessage::Blocks(vec![forged]));
        assert_eq!(b.node.last_executed(), SeqNo(0));
    }
    assert_eq!(b.node.stats().dropped["fetched block with an invalid commit certificate"], 2);
    // The certified blocks execute, each committed with its certificate as proof.
    let blocks = pps
        .iter()
        .map(|pp| FetchedBlock {
            block: pp.block.clone(),
            commit: Some(commit_of(&b, pp, &[0, 2, 3])),
        })
        .collect();
    b.actions.clear();
    b.deliver(peer.0, PbftMessage::Blocks(blocks));
    assert_eq!(b.node.last_executed(), SeqNo(3));
    assert_eq!(b.node.stats().certified_blocks, 3);
    let proofs: Vec<_> = b
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Commit { block, proof } => Some((block.height(), proof[0].statement().phase)),
            _ => None,
        })
        .collect();
    assert_eq!(proofs, (1..=3).map(|h| (Height(h), Phase::Commit)).collect::<Vec<_>>());
    // What is final at 2 is known: another pre-prepare there is not prepared (a Byzantine
    // primary's twin would otherwise have this honest replica prepare twice; Twins seed 91).
    b.actions.clear();
    b.deliver(0, PbftMessage::PrePrepare(b.pre_prepare(0, 2, 99)));
    assert_eq!(b.sent(Phase::Prepare), vec![]);
    assert_eq!(b.node.stats().dropped["pre-prepare for an executed sequence number"], 1);
    // Fetched blocks are journalled before they execute, with their certificates: a restart
    // executes them again, each with its proof (the block store may have lost them).
    b.restart(false);
    assert_eq!(b.node.last_executed(), SeqNo(3));
    let again: Vec<_> = b
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Commit { block, proof } => Some((block.height(), proof.len())),
            _ => None,
        })
        .collect();
    assert_eq!(again, (1..=3).map(|h| (Height(h), 1)).collect::<Vec<_>>());
}

#[test]
fn a_backup_whose_catch_up_brings_nothing_changes_view_at_the_next_expiry() {
    let mut b = Backup::new();
    let pp = b.pre_prepare(0, 3, 3);
    b.deliver(0, PbftMessage::PrePrepare(pp.clone()));
    for voter in [0, 2, 3] {
        b.deliver(voter, PbftMessage::Commit(b.vote(Phase::Commit, &pp, voter)));
    }
    b.step(|node, ctx| node.on_timer(ctx, PbftTimer::Request(View(0))));
    assert!(!b.node.is_view_changing());
    // No one answers: the primary may be at work for the others only; the next expiry at the
    // same position starts the view change, as §4.4 says.
    b.step(|node, ctx| node.on_timer(ctx, PbftTimer::Request(View(0))));
    assert!(b.node.is_view_changing());
    assert_eq!(b.node.view(), View(1));
}

fn config(duration_ms: u64, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(4);
    c.seed = seed;
    c.network.latency_ns = 10 * MS;
    c.duration_ns = duration_ms * MS;
    c.processing.per_sync_ns = MS;
    c.workload = Some(Workload {
        rate_per_sec: 300.0,
        start_ns: 0,
        end_ns: (duration_ms - 1_500) * MS,
        clients: 16,
        payload_bytes: 32,
        targets: Targets::Nodes(vec![NodeId(0), NodeId(1), NodeId(2), NodeId(3)]),
    });
    c
}

fn run(c: SimConfig) -> (Simulation<Pbft>, SimReport) {
    let pbft = PbftConfig::new(T);
    let mut sim = Simulation::new(
        c,
        move |me, committee, key| Pbft::new(pbft, committee.clone(), me, key.clone()).unwrap(),
        |_| Box::new(TxLog::new(true)),
    )
    .unwrap();
    sim.set_rebuild(move |me, committee, key| {
        Pbft::new(pbft, committee.clone(), me, key.clone()).unwrap()
    });
    // The application comes back from the node's block store, not from memory.
    sim.set_restore_app(|_, snapshot| match snapshot {
        None => Ok(Box::new(TxLog::new(true))),
        Some(s) => TxLog::from_snapshot(&s.bytes, s.state_digest)
            .map(|log| Box::new(log) as Box<dyn Application>)
            .ok_or_else(|| "not a log".to_owned()),
    });
    let report = sim.run();
    (sim, report)
}

#[test]
fn a_replica_restarted_after_the_load_stopped_asks_for_what_it_missed() {
    // The backup crashes during the load and comes back after the last request was final: no
    // message of the normal case will reach it again, nor a checkpoint. It asks its peers, and
    // takes the blocks on their commit certificates, without a view change.
    let mut c = config(4_000, 31);
    c.faults = vec![
        Fault { at_ns: 1_500 * MS, node: NodeId(2), kind: FaultKind::CrashInSync },
        Fault { at_ns: 3_200 * MS, node: NodeId(2), kind: FaultKind::Recover },
    ];
    let (sim, r) = run(c);
    assert!(r.safety_ok, "{:?}", r.violations);
    let top = &r.nodes_detail[0];
    let restarted = &r.nodes_detail[2];
    assert_eq!(restarted.recoveries, 1);
    assert_eq!(
        (restarted.finalized_height, restarted.log_digest),
        (top.finalized_height, top.log_digest)
    );
    let stats = sim.engine(NodeId(2)).stats();
    assert!(stats.certified_blocks > 0, "{stats:?}");
    assert_eq!(stats.view_changes, 0, "{stats:?}");
    // What the others executed while it was down is in its store, each block with its proof.
    let store = sim.block_store(NodeId(2));
    assert_eq!(store.tip().0, top.finalized_height);
}

#[test]
fn a_replica_restarted_from_its_journal_rejoins_and_agrees() {
    // The primary (replica 0) and a backup (replica 2), each crashing in the middle of a journal
    // sync and coming back as a fresh engine from what was durable.
    for victim in [0u16, 2] {
        let mut c = config(4_000, 21 + u64::from(victim));
        c.faults = vec![
            Fault { at_ns: 900 * MS, node: NodeId(victim), kind: FaultKind::CrashInSync },
            Fault { at_ns: 1_600 * MS, node: NodeId(victim), kind: FaultKind::Recover },
        ];
        let (sim, r) = run(c);
        assert!(r.safety_ok, "victim {victim}: {:?}", r.violations);
        assert_eq!(r.txs_finalized, r.submissions.accepted, "victim {victim}: a request was lost");
        let restarted = &r.nodes_detail[usize::from(victim)];
        assert_eq!((restarted.recoveries, restarted.crashes_mid_sync), (1, 1), "victim {victim}");
        assert_eq!(restarted.app_recoveries, 1, "victim {victim}");
        // Every replica, the restarted one too, ends with the same log to the last block: what
        // it missed while down came by state transfer and on commit certificates.
        let top = &r.nodes_detail[0];
        for d in &r.nodes_detail {
            assert_eq!((d.finalized_height, d.log_digest), (top.finalized_height, top.log_digest));
        }
        for node in 0..4u16 {
            let d = &r.nodes_detail[usize::from(node)];
            assert_eq!(sim.engine(NodeId(node)).last_executed().0, d.finalized_height);
        }
        // Stable checkpoints prune the journal to the blocks of the log window.
        assert!(restarted.journal_bytes < 256 * 1024, "{} journal bytes", restarted.journal_bytes);
        // The rebuilt application stored the same state digest as the others at every height
        // both still hold.
        let (mine, theirs) = (sim.block_store(NodeId(victim)), sim.block_store(NodeId(1)));
        assert!(mine.tip().0 > 64, "a snapshot was due: tip {}", mine.tip());
        assert!(mine.latest_snapshot().unwrap().is_some());
        for height in mine.base().0.max(theirs.base().0)..=mine.tip().0 {
            let height = Height(height);
            assert_eq!(mine.state_digest(height).unwrap(), theirs.state_digest(height).unwrap());
        }
    }
}
