//! A Byzantine member floods one node with a million hostile messages: proposals with unknown
//! parents, a stream of equivocating proposals, votes for random values, votes far in the
//! future, forged and non-member votes, certificates that do not verify, and requests for its
//! blocks. The node drops what it must, counts why, keeps its state, and the memory it retains
//! stays under a stated bound. One test in this binary, so the global allocation counter sees
//! only it.

use std::alloc::System;

use agora_consensus::Protocol;
use agora_crypto::{Digest, domain};
use agora_netsim::flood::{MESSAGES, REPEAT_GROWTH_MAX_BYTES, bulky_batch, flood, live_bytes};
use agora_simplex::{LeaderRule, Proposal, Simplex, SimplexConfig, SimplexMessage};
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DELTA: u64 = 50_000_000;
/// What the node may retain, at most, after the whole flood.
const RETAINED_MAX_BYTES: isize = 48 << 20;

fn hostile_pool(keys: &[SecretKey]) -> Vec<SimplexMessage> {
    let evil = &keys[0];
    let batch = bulky_batch;
    // Node 0 leads iterations 4, 8, …, 60 (round robin), all within the accepted window.
    let iterations: Vec<u64> = (1..=15).map(|k| 4 * k).collect();
    let propose = |parent: Digest, iteration: u64, stamp: u64| {
        let block = Block::new(parent, Round(iteration), Height(1), NodeId(0), stamp, batch(stamp));
        let signature = evil.sign(&domain::PROPOSAL, block.digest().as_bytes());
        SimplexMessage::Propose(Proposal { block, signature })
    };
    let vote = |phase: Phase, iteration: u64, value: Digest, voter: NodeId| {
        let s = Statement { phase, round: Round(iteration), height: Height(0), value };
        Vote { voter, ..Vote::sign(s, NodeId(0), evil) }
    };
    let random = |k: u64| domain::BLOCK.hash(&k.to_le_bytes());
    let mut pool = Vec::new();
    for k in 0..1_000u64 {
        let iteration = iterations[k as usize % iterations.len()];
        // A proposal whose parent nobody has.
        pool.push(propose(random(k), iteration, k));
        // A block on genesis, one of many for the same iteration: equivocation (and none
        // extends a notarized chain of its length, so none gets a vote).
        pool.push(propose(Block::genesis().digest(), iteration, 1_000_000 + k));
        // A vote and a finalize vote for values nobody proposed.
        pool.push(SimplexMessage::Vote(vote(
            Phase::Vote,
            iteration,
            random(10_000 + k),
            NodeId(0),
        )));
        pool.push(SimplexMessage::Vote(vote(
            Phase::Finalize,
            iteration,
            random(40_000 + k),
            NodeId(0),
        )));
    }
    for k in 0..500u64 {
        // Far in the future, forged, from a non-member, and a skip naming a block.
        pool.push(SimplexMessage::Vote(vote(Phase::Vote, 5_000 + k, random(k), NodeId(0))));
        pool.push(SimplexMessage::Vote(vote(Phase::Vote, 4, random(20_000 + k), NodeId(1))));
        pool.push(SimplexMessage::Vote(vote(Phase::Vote, 4, random(30_000 + k), NodeId(77))));
        pool.push(SimplexMessage::Vote(vote(Phase::Skip, 4, random(k), NodeId(0))));
        // A "certificate" of node 0's vote and three forgeries.
        let real = vote(Phase::Vote, 8, random(50_000 + k), NodeId(0));
        let forged = (1..4).map(|i| (NodeId(i), real.signature));
        let certificate = Certificate::new(
            real.statement,
            [(NodeId(0), real.signature)].into_iter().chain(forged),
        );
        pool.push(SimplexMessage::Certificate(certificate));
        // A request for every block, again and again.
        pool.push(SimplexMessage::Sync { finalized: Height(0) });
    }
    pool
}

#[test]
fn a_million_hostile_messages_leave_state_and_memory_bounded() {
    let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    let mut config = SimplexConfig::new(DELTA);
    config.leader = LeaderRule::RoundRobin;
    let mut node =
        Simplex::new(config, committee, NodeId(3), keys[3].clone()).expect("a valid configuration");
    let pool = hostile_pool(&keys);
    let region = Region::new(GLOBAL);
    let start =
        |node: &mut Simplex, ctx: &mut agora_consensus::Ctx<'_, Simplex>| node.on_start(ctx);
    let flooded = flood(&mut node, NodeId(3), NodeId(0), &pool, MESSAGES, start, || {
        let c = region.change();
        live_bytes(c.bytes_allocated, c.bytes_deallocated, c.bytes_reallocated)
    });

    assert_eq!(node.finalized_tip().digest(), Block::genesis().digest());
    assert_eq!(node.iteration(), 1, "nothing may be notarized");
    assert_eq!(node.stats().votes_cast, 0, "no hostile proposal extends a notarized chain");
    let dropped = &node.stats().dropped;
    eprintln!("drops {dropped:?}");
    let reasons = [
        "far-future iteration",
        "bad vote",
        "not a Simplex vote",
        "bad certificate",
        "too many proposals in the iteration",
        "sync asked too soon",
    ];
    for reason in reasons {
        assert!(dropped.get(reason).copied().unwrap_or(0) > 0, "no drop for {reason}: {dropped:?}");
    }
    flooded.assert_within(RETAINED_MAX_BYTES, REPEAT_GROWTH_MAX_BYTES);
}
