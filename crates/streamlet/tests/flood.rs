//! A Byzantine member floods one node with a million hostile messages: proposals with unknown
//! parents, a stream of equivocating proposals, votes for random values, votes far in the
//! future, forged and non-member votes, and requests for its finalized blocks. The node drops
//! what it must, counts why, keeps its state, and the memory it retains stays under a stated
//! bound. One test in this binary, so the global allocation counter sees only it.

use std::alloc::System;

use agora_consensus::Protocol;
use agora_crypto::{Digest, domain};
use agora_netsim::flood::{MESSAGES, REPEAT_GROWTH_MAX_BYTES, bulky_batch, flood, live_bytes};
use agora_streamlet::{
    LeaderRule, Proposal, Streamlet, StreamletConfig, StreamletMessage, StreamletTimer,
};
use agora_types::{
    Block, Committee, Epoch, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DELTA: u64 = 50_000_000;
/// What the node may retain, at most, after the whole flood.
const RETAINED_MAX_BYTES: isize = 48 << 20;

fn hostile_pool(committee_keys: &[SecretKey]) -> Vec<StreamletMessage> {
    let evil = &committee_keys[0];
    // Each proposal carries its own bulky batch: retaining them is what a flood would try to
    // make a node do.
    let batch = bulky_batch;
    // Node 0 leads epochs 4, 8, …, 60 (round robin), all within the accepted window.
    let epochs: Vec<u64> = (1..=15).map(|k| 4 * k).collect();
    let propose = |parent: Digest, epoch: u64, stamp: u64| {
        let block = Block::new(parent, Round(epoch), Height(1), NodeId(0), stamp, batch(stamp));
        let signature = evil.sign(&domain::PROPOSAL, block.digest().as_bytes());
        StreamletMessage::Propose(Proposal { block, signature })
    };
    let vote = |epoch: u64, value: Digest, voter: NodeId| {
        let s = Statement { phase: Phase::Vote, round: Round(epoch), height: Height(1), value };
        Vote { voter, ..Vote::sign(s, NodeId(0), evil) }
    };
    let random = |k: u64| domain::BLOCK.hash(&k.to_le_bytes());
    let mut pool = Vec::new();
    for k in 0..1_000u64 {
        let epoch = epochs[k as usize % epochs.len()];
        // A proposal whose parent nobody has.
        pool.push(propose(random(k), epoch, k));
        // A valid block (parent genesis), one of many for the same epoch: equivocation.
        pool.push(propose(Block::genesis().digest(), epoch, 1_000_000 + k));
        // A vote for a value nobody proposed.
        pool.push(StreamletMessage::Vote(vote(epoch, random(10_000 + k), NodeId(0))));
    }
    for k in 0..500u64 {
        pool.push(StreamletMessage::Vote(vote(1_000 + k, random(k), NodeId(0))));
        pool.push(StreamletMessage::Vote(vote(4, random(20_000 + k), NodeId(1))));
        pool.push(StreamletMessage::Vote(vote(4, random(30_000 + k), NodeId(77))));
        // A request for every finalized block, again and again.
        pool.push(StreamletMessage::Sync { finalized: Height(0) });
    }
    pool
}

#[test]
fn a_million_hostile_messages_leave_state_and_memory_bounded() {
    let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    let mut config = StreamletConfig::new(DELTA);
    config.leader = LeaderRule::RoundRobin;
    let mut node = Streamlet::new(config, committee, NodeId(3), keys[3].clone())
        .expect("a valid configuration");
    let pool = hostile_pool(&keys);
    let region = Region::new(GLOBAL);
    let start = |node: &mut Streamlet, ctx: &mut agora_consensus::Ctx<'_, Streamlet>| {
        node.on_timer(ctx, StreamletTimer::EpochStart(Epoch(1)))
    };
    let flooded = flood(&mut node, NodeId(3), NodeId(0), &pool, MESSAGES, start, || {
        let c = region.change();
        live_bytes(c.bytes_allocated, c.bytes_deallocated, c.bytes_reallocated)
    });

    assert_eq!(node.notarized_height(), Height(0), "nothing may be notarized");
    assert_eq!(node.finalized_tip().digest(), Block::genesis().digest());
    let dropped = &node.stats().dropped;
    eprintln!("drops {dropped:?}");
    let reasons =
        ["far-future epoch", "bad vote", "too many proposals in the epoch", "sync asked too soon"];
    for reason in reasons {
        assert!(dropped.get(reason).copied().unwrap_or(0) > 0, "no drop for {reason}: {dropped:?}");
    }
    flooded.assert_within(RETAINED_MAX_BYTES, REPEAT_GROWTH_MAX_BYTES);
}
