//! Streamlet's message handling: votes per second through one node at n = 4 and n = 64.
//!
//! A recording pass drives one node through K epochs (epoch timers, the leader's proposal, every
//! other member's signed vote) and keeps the inputs; the timed pass replays them into a fresh
//! engine. "verified" checks every signature with k256 (what a replica pays); "engine" accepts
//! signatures unchecked, measuring the engine's own work (vote keeping, notarization, finality,
//! echo).

use agora_benches::bench_votes;
use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{DirectCheck, SignatureCheck, domain};
use agora_streamlet::{
    LeaderRule, Proposal, Streamlet, StreamletConfig, StreamletMessage, StreamletTimer,
};
use agora_types::{
    Batch, Block, Committee, Epoch, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};
use criterion::{Criterion, criterion_group, criterion_main};

const DELTA: u64 = 50_000_000;

enum Input {
    Epoch(u64, Epoch),
    Message(u64, NodeId, Box<StreamletMessage>),
}

fn config() -> StreamletConfig {
    let mut c = StreamletConfig::new(DELTA);
    c.leader = LeaderRule::RoundRobin;
    c
}

fn engine(committee: &Committee, keys: &[SecretKey], me: NodeId) -> Streamlet {
    Streamlet::new(config(), committee.clone(), me, keys[me.index()].clone())
        .expect("a valid configuration")
}

/// Runs node 0 through `epochs` epochs and returns its inputs.
fn record(n: usize, epochs: u64) -> (Committee, Vec<SecretKey>, Vec<Input>) {
    let (committee, keys) = Committee::deterministic(5, n).unwrap();
    let me = NodeId(0);
    let mut node = engine(&committee, &keys, me);
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut actions = Vec::new();
    let mut inputs = Vec::new();
    let mut tip = Block::genesis();
    let mut check = DirectCheck;
    for e in 1..=epochs {
        let now = config().epoch_start_ns(Epoch(e));
        let mut ctx = Context::new(now, me, &mut actions, &mut mempool, &mut check);
        node.on_timer(&mut ctx, StreamletTimer::EpochStart(Epoch(e)));
        inputs.push(Input::Epoch(now, Epoch(e)));
        let leader = config().leader.leader(n as u16, agora_types::Round(e));
        let block = if leader == me {
            actions
                .iter()
                .find_map(|a| match a {
                    Action::Broadcast { message: StreamletMessage::Propose(p) } => {
                        Some(p.block.clone())
                    }
                    _ => None,
                })
                .expect("the leader proposes")
        } else {
            let block = Block::new(
                tip.digest(),
                Round(e),
                Height(tip.height().0 + 1),
                leader,
                now,
                Batch::empty(),
            );
            let signature = keys[leader.index()].sign(&domain::PROPOSAL, block.digest().as_bytes());
            let message = StreamletMessage::Propose(Proposal { block: block.clone(), signature });
            let mut ctx = Context::new(now + 1, me, &mut actions, &mut mempool, &mut check);
            node.on_message(&mut ctx, leader, message.clone());
            inputs.push(Input::Message(now + 1, leader, Box::new(message)));
            block
        };
        let statement = Statement {
            phase: Phase::Vote,
            round: Round(e),
            height: block.height(),
            value: block.digest(),
        };
        for voter in (1..n as u16).map(NodeId) {
            let message =
                StreamletMessage::Vote(Vote::sign(statement, voter, &keys[voter.index()]));
            let mut ctx = Context::new(now + 2, me, &mut actions, &mut mempool, &mut check);
            node.on_message(&mut ctx, voter, message.clone());
            inputs.push(Input::Message(now + 2, voter, Box::new(message)));
        }
        actions.clear();
        tip = block;
    }
    assert_eq!(node.notarized_height().0, epochs, "every recorded block was notarized");
    (committee, keys, inputs)
}

fn replay(
    committee: &Committee,
    keys: &[SecretKey],
    inputs: &[Input],
    checker: &mut dyn SignatureCheck,
) -> Height {
    let mut node = engine(committee, keys, NodeId(0));
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut actions = Vec::new();
    for input in inputs {
        match input {
            Input::Epoch(now, e) => {
                let mut ctx = Context::new(*now, NodeId(0), &mut actions, &mut mempool, checker);
                node.on_timer(&mut ctx, StreamletTimer::EpochStart(*e));
            }
            Input::Message(now, from, m) => {
                let mut ctx = Context::new(*now, NodeId(0), &mut actions, &mut mempool, checker);
                node.on_message(&mut ctx, *from, (**m).clone());
            }
        }
        actions.clear();
    }
    node.finalized_tip().height()
}

fn votes(c: &mut Criterion) {
    let runs: Vec<_> = [(4usize, 400u64), (64, 40)]
        .into_iter()
        .map(|(n, epochs)| {
            let recorded = record(n, epochs);
            let votes = recorded
                .2
                .iter()
                .filter(|i| matches!(i, Input::Message(_, _, m) if matches!(**m, StreamletMessage::Vote(_))))
                .count() as u64;
            (n, recorded, votes)
        })
        .collect();
    bench_votes(c, "streamlet_votes", &runs, |(committee, keys, inputs), checker| {
        replay(committee, keys, inputs, checker).0
    });
}

criterion_group!(benches, votes);
criterion_main!(benches);
