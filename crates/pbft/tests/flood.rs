//! The primary of view 0 turns hostile and floods one backup with a million messages:
//! conflicting pre-prepares with large batches for every sequence number in the window,
//! pre-prepares for views it does not lead, prepares, commits and checkpoints for random values,
//! view changes for near and far views, fetches for huge ranges and unsolicited blocks. The
//! backup drops what it must, counts why, executes nothing, and the memory it retains stays
//! under a stated bound. One test in this binary, so the global allocation counter sees only it.

use std::alloc::System;

use agora_consensus::Protocol;
use agora_crypto::{Digest, domain};
use agora_netsim::flood::{MESSAGES, REPEAT_GROWTH_MAX_BYTES, bulky_batch, flood, live_bytes};
use agora_pbft::{
    CheckpointProof, FetchedBlock, NewView, Pbft, PbftConfig, PbftMessage, PrePrepare, ViewChange,
    checkpoint_statement, genesis_log_digest, statement,
};
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, SecretKey, SeqNo, View, Vote,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// What the backup may retain, at most: one pre-prepared block (about 110 KB here) per sequence
/// number of the log window (64), the votes, and change.
const RETAINED_MAX_BYTES: isize = 48 << 20;

fn hostile_pool(keys: &[SecretKey]) -> Vec<PbftMessage> {
    let evil = &keys[0];
    let block = |seq: u64, k: u64| {
        Block::new(Digest::ZERO, Round(0), Height(seq), NodeId(0), k, bulky_batch(k))
    };
    let random = |k: u64| domain::BLOCK.hash(&k.to_le_bytes());
    let sign = |phase, view: u64, seq: u64, value| {
        Vote::sign(statement(phase, View(view), SeqNo(seq), value), NodeId(0), evil)
    };
    let mut pool = Vec::new();
    for seq in 1..=64u64 {
        for k in 0..6u64 {
            // Conflicting pre-prepares for one sequence number, each with its own large batch.
            let b = block(seq, seq * 10 + k);
            let vote = sign(Phase::PrePrepare, 0, seq, b.digest());
            pool.push(PbftMessage::PrePrepare(PrePrepare { vote, block: b }));
        }
        for k in 0..8u64 {
            let value = random(seq * 100 + k);
            pool.push(PbftMessage::Prepare(sign(Phase::Prepare, 0, seq, value)));
            pool.push(PbftMessage::Commit(sign(Phase::Commit, 0, seq, value)));
            // Votes for views ahead of the current one, and far ahead.
            pool.push(PbftMessage::Prepare(sign(Phase::Prepare, 1 + k, seq, value)));
            pool.push(PbftMessage::Commit(sign(Phase::Commit, 10_000 + k, seq, value)));
        }
        let digest = random(seq);
        pool.push(PbftMessage::Checkpoint(Vote::sign(
            checkpoint_statement(SeqNo(seq * 16), digest),
            NodeId(0),
            evil,
        )));
    }
    // Pre-prepares in views node 0 does not lead (view 1 is node 1's).
    for view in 1..=15u64 {
        let b = block(1, 100_000 + view);
        let vote = sign(Phase::PrePrepare, view, 1, b.digest());
        pool.push(PbftMessage::PrePrepare(PrePrepare { vote, block: b }));
        let genesis = CheckpointProof::genesis(genesis_log_digest());
        let vc = ViewChange::new(View(view), genesis.clone(), Vec::new(), NodeId(0), evil);
        pool.push(PbftMessage::ViewChange(Box::new(vc)));
        let far = ViewChange::new(View(1_000 + view), genesis, Vec::new(), NodeId(0), evil);
        pool.push(PbftMessage::ViewChange(Box::new(far)));
    }
    // A view change whose checkpoint certificate holds one signature, not 2f+1.
    let digest = random(7);
    let lonely = Vote::sign(checkpoint_statement(SeqNo(16), digest), NodeId(0), evil);
    let certificate = Certificate::new(lonely.statement, [(NodeId(0), lonely.signature)]);
    let bad = CheckpointProof { seq: SeqNo(16), digest, certificate: Some(certificate) };
    let vc = ViewChange::new(View(16), bad, Vec::new(), NodeId(0), evil);
    pool.push(PbftMessage::ViewChange(Box::new(vc)));
    // A NEW-VIEW for view 4 (node 0 leads it) backed by its own view change alone.
    let genesis = CheckpointProof::genesis(genesis_log_digest());
    let own = ViewChange::new(View(4), genesis, Vec::new(), NodeId(0), evil);
    let nv = NewView { view: View(4), view_changes: vec![own], pre_prepares: Vec::new() };
    pool.push(PbftMessage::NewView(Box::new(nv)));
    pool.push(PbftMessage::Fetch { from: SeqNo(1), to: SeqNo(u64::MAX) });
    pool.push(PbftMessage::Blocks(
        (1..=8).map(|s| FetchedBlock { block: block(s, 500_000 + s), commit: None }).collect(),
    ));
    pool
}

#[test]
fn a_million_hostile_messages_leave_state_and_memory_bounded() {
    let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    let mut node = Pbft::new(PbftConfig::new(1_000_000_000), committee, NodeId(3), keys[3].clone())
        .expect("a valid configuration");
    let pool = hostile_pool(&keys);
    let region = Region::new(GLOBAL);
    let flooded = flood(
        &mut node,
        NodeId(3),
        NodeId(0),
        &pool,
        MESSAGES,
        |node, ctx| node.on_start(ctx),
        || {
            let c = region.change();
            live_bytes(c.bytes_allocated, c.bytes_deallocated, c.bytes_reallocated)
        },
    );

    let dropped = &node.stats().dropped;
    eprintln!("drops {dropped:?}");
    assert_eq!(node.last_executed(), SeqNo(0), "nothing may execute");
    assert_eq!(node.view(), View(0), "one replica cannot move the view");
    for reason in [
        "conflicting pre-prepare",
        "vote for another view",
        "view change for an old or far view",
        "bad checkpoint certificate",
        "new view with too few view changes",
    ] {
        assert!(dropped.get(reason).copied().unwrap_or(0) > 0, "no drop for {reason}: {dropped:?}");
    }
    flooded.assert_within(RETAINED_MAX_BYTES, REPEAT_GROWTH_MAX_BYTES);
}
