//! HotStuff's message handling: votes per second through one node at n = 4 and n = 64.
//!
//! A recording pass drives node 0 through K views under round robin: each view's proposal,
//! carrying the QC of the view before (2f + 1 signed votes, which node 0 verifies), and, in
//! the views node 0 leads next, every other member's vote (from which it gathers the QC and
//! proposes). The timed pass replays the inputs into a fresh engine. The votes counted are
//! both kinds: those in QCs and those sent to node 0. "verified" checks every signature with
//! k256 (what a replica pays); "engine" accepts signatures unchecked, measuring the engine's own
//! work (the vote keeper, QCs, the lock and commit rules, the tree).

use agora_benches::bench_votes;
use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{DirectCheck, SignatureCheck, domain};
use agora_hotstuff::{HotStuff, HotStuffConfig, HotStuffMessage, LeaderRule, Proposal};
use agora_types::{
    Batch, Block, Certificate, Committee, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};
use criterion::{Criterion, criterion_group, criterion_main};

const DELTA: u64 = 50_000_000;

fn engine(committee: &Committee, keys: &[SecretKey], me: NodeId) -> HotStuff {
    let mut c = HotStuffConfig::new(DELTA);
    c.leader = LeaderRule::RoundRobin;
    HotStuff::new(c, committee.clone(), me, keys[me.index()].clone())
        .expect("a valid configuration")
}

/// The vote statement for `block`.
fn statement(block: &Block) -> Statement {
    Statement { phase: Phase::Vote, round: block.round(), height: Height(0), value: block.digest() }
}

type Inputs = Vec<(u64, NodeId, HotStuffMessage)>;

/// Runs node 0 through `views` views and returns its inputs (time, sender, message) and the
/// votes they carry.
fn record(n: usize, views: u64) -> (Committee, Vec<SecretKey>, Inputs, u64) {
    let (committee, keys) = Committee::deterministic(5, n).unwrap();
    let quorum = committee.notarization_quorum();
    let me = NodeId(0);
    let mut node = engine(&committee, &keys, me);
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut actions = Vec::new();
    let mut inputs = Vec::new();
    let mut votes = 0u64;
    let mut tip = Block::genesis();
    let mut check = DirectCheck;
    node.on_start(&mut Context::new(0, me, &mut actions, &mut mempool, &mut check));
    // A QC of `block` by the first `quorum` members other than node 0.
    let qc = |block: &Block| {
        let s = statement(block);
        Certificate::new(
            s,
            (1..=quorum as u16)
                .map(|i| (NodeId(i), Vote::sign(s, NodeId(i), &keys[usize::from(i)]).signature)),
        )
    };
    for v in 1..=views {
        let now = v * 1_000_000;
        let leader = NodeId((v % n as u64) as u16);
        let mut deliver =
            |node: &mut HotStuff, actions: &mut Vec<_>, from: NodeId, m: HotStuffMessage| {
                let mut ctx = Context::new(now, me, actions, &mut mempool, &mut check);
                node.on_message(&mut ctx, from, m.clone());
                inputs.push((now, from, m));
            };
        let block = if leader == me {
            actions
                .iter()
                .find_map(|a| match a {
                    Action::Broadcast { message: HotStuffMessage::Propose(p) } => {
                        Some(p.block.clone())
                    }
                    _ => None,
                })
                .expect("node 0 proposes once it gathers the QC of the view before")
        } else {
            let block = Block::new(
                tip.digest(),
                Round(v),
                Height(tip.height().0 + 1),
                leader,
                now,
                Batch::empty(),
            );
            let signature = keys[leader.index()].sign(&domain::PROPOSAL, block.digest().as_bytes());
            let justify = (tip.height().0 > 0).then(|| qc(&tip));
            votes += justify.as_ref().map_or(0, |j| j.signatures().len() as u64);
            let proposal = Proposal { block: block.clone(), signature, justify, tc: None };
            deliver(&mut node, &mut actions, leader, HotStuffMessage::Propose(proposal));
            block
        };
        actions.clear();
        if NodeId(((v + 1) % n as u64) as u16) == me {
            for voter in (1..n as u16).map(NodeId) {
                let vote = Vote::sign(statement(&block), voter, &keys[voter.index()]);
                deliver(&mut node, &mut actions, voter, HotStuffMessage::Vote(vote));
                votes += 1;
            }
        }
        tip = block;
    }
    // The last proposal carries the QC of the view before it: three chains commit up to the
    // block three views back.
    assert_eq!(node.finalized_tip().height().0, views - 3, "every block but the last three final");
    (committee, keys, inputs, votes)
}

fn replay(
    committee: &Committee,
    keys: &[SecretKey],
    inputs: &[(u64, NodeId, HotStuffMessage)],
    checker: &mut dyn SignatureCheck,
) -> Height {
    let mut node = engine(committee, keys, NodeId(0));
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut actions = Vec::new();
    node.on_start(&mut Context::new(0, NodeId(0), &mut actions, &mut mempool, checker));
    for (now, from, m) in inputs {
        actions.clear();
        let mut ctx = Context::new(*now, NodeId(0), &mut actions, &mut mempool, checker);
        node.on_message(&mut ctx, *from, m.clone());
    }
    node.finalized_tip().height()
}

fn votes(c: &mut Criterion) {
    let runs: Vec<_> = [(4usize, 400u64), (64, 40)]
        .into_iter()
        .map(|(n, views)| {
            let (committee, keys, inputs, votes) = record(n, views);
            (n, (committee, keys, inputs), votes)
        })
        .collect();
    bench_votes(c, "hotstuff_votes", &runs, |(committee, keys, inputs), checker| {
        replay(committee, keys, inputs, checker).0
    });
}

criterion_group!(benches, votes);
criterion_main!(benches);
