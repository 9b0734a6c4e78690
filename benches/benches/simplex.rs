//! Simplex's message handling: votes per second through one node at n = 4 and n = 64.
//!
//! A recording pass drives one node through K iterations (the leader's proposal, every other
//! member's signed vote, then every other member's finalize vote) and keeps the inputs; the
//! timed pass replays them into a fresh engine. "verified" checks every signature with k256
//! (what a replica pays); "engine" accepts signatures unchecked, measuring the engine's own work
//! (vote keeping, notarization, the finalize vote, finality).

use agora_benches::bench_votes;
use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{DirectCheck, SignatureCheck, domain};
use agora_simplex::{LeaderRule, Proposal, Simplex, SimplexConfig, SimplexMessage};
use agora_types::{
    Batch, Block, Committee, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};
use criterion::{Criterion, criterion_group, criterion_main};

const DELTA: u64 = 50_000_000;

fn engine(committee: &Committee, keys: &[SecretKey], me: NodeId) -> Simplex {
    let mut c = SimplexConfig::new(DELTA);
    c.leader = LeaderRule::RoundRobin;
    Simplex::new(c, committee.clone(), me, keys[me.index()].clone()).expect("a valid configuration")
}

/// Runs node 0 through `iterations` iterations and returns its inputs (time, sender, message).
fn record(
    n: usize,
    iterations: u64,
) -> (Committee, Vec<SecretKey>, Vec<(u64, NodeId, SimplexMessage)>) {
    let (committee, keys) = Committee::deterministic(5, n).unwrap();
    let me = NodeId(0);
    let mut node = engine(&committee, &keys, me);
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut actions = Vec::new();
    let mut inputs = Vec::new();
    let mut tip = Block::genesis();
    let mut check = DirectCheck;
    node.on_start(&mut Context::new(0, me, &mut actions, &mut mempool, &mut check));
    for h in 1..=iterations {
        let now = h * 1_000_000;
        let leader = NodeId((h % n as u64) as u16);
        let mut deliver =
            |node: &mut Simplex, actions: &mut Vec<_>, from: NodeId, m: SimplexMessage| {
                let mut ctx = Context::new(now, me, actions, &mut mempool, &mut check);
                node.on_message(&mut ctx, from, m.clone());
                inputs.push((now, from, m));
            };
        let block = if leader == me {
            actions
                .iter()
                .find_map(|a| match a {
                    Action::Broadcast { message: SimplexMessage::Propose(p) } => {
                        Some(p.block.clone())
                    }
                    _ => None,
                })
                .expect("the leader proposes on entering its iteration")
        } else {
            let block = Block::new(
                tip.digest(),
                Round(h),
                Height(tip.height().0 + 1),
                leader,
                now,
                Batch::empty(),
            );
            let signature = keys[leader.index()].sign(&domain::PROPOSAL, block.digest().as_bytes());
            deliver(
                &mut node,
                &mut actions,
                leader,
                SimplexMessage::Propose(Proposal { block: block.clone(), signature }),
            );
            block
        };
        actions.clear();
        for phase in [Phase::Vote, Phase::Finalize] {
            let statement =
                Statement { phase, round: Round(h), height: Height(0), value: block.digest() };
            for voter in (1..n as u16).map(NodeId) {
                let vote = Vote::sign(statement, voter, &keys[voter.index()]);
                deliver(&mut node, &mut actions, voter, SimplexMessage::Vote(vote));
            }
        }
        tip = block;
    }
    assert_eq!(node.finalized_tip().height().0, iterations, "every recorded block was final");
    (committee, keys, inputs)
}

fn replay(
    committee: &Committee,
    keys: &[SecretKey],
    inputs: &[(u64, NodeId, SimplexMessage)],
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
        .map(|(n, iterations)| {
            let recorded = record(n, iterations);
            let votes =
                recorded.2.iter().filter(|(_, _, m)| matches!(m, SimplexMessage::Vote(_))).count()
                    as u64;
            (n, recorded, votes)
        })
        .collect();
    bench_votes(c, "simplex_votes", &runs, |(committee, keys, inputs), checker| {
        replay(committee, keys, inputs, checker).0
    });
}

criterion_group!(benches, votes);
criterion_main!(benches);
