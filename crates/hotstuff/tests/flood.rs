//! A Byzantine member floods one node with a million hostile messages: proposals with unknown
//! parents and forged QCs, a stream of equivocating proposals, proposals whose QC is not their
//! parent's, votes for views the node does not lead next, votes for random values, votes and
//! timeouts far in the future, forged and non-member votes, timeouts that do not verify,
//! timeout certificates and QCs that do not verify, and requests for its blocks. The node
//! drops what it must, counts why, keeps its state, and the memory it retains stays under a
//! stated bound. One test in this binary, so the global allocation counter sees only it.

use std::alloc::System;

use agora_consensus::Protocol;
use agora_crypto::{Digest, domain};
use agora_hotstuff::{
    HotStuff, HotStuffConfig, HotStuffMessage, LeaderRule, Proposal, Timeout, TimeoutCertificate,
    timeout_statement,
};
use agora_netsim::flood::{MESSAGES, REPEAT_GROWTH_MAX_BYTES, bulky_batch, flood, live_bytes};
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DELTA: u64 = 50_000_000;
/// What the node may retain, at most, after the whole flood.
const RETAINED_MAX_BYTES: isize = 48 << 20;

fn hostile_pool(keys: &[SecretKey]) -> Vec<HotStuffMessage> {
    let evil = &keys[0];
    let batch = bulky_batch;
    // Node 0 leads views 4, 8, …, 60 (round robin), all within the accepted window.
    let views: Vec<u64> = (1..=15).map(|k| 4 * k).collect();
    let random = |k: u64| domain::BLOCK.hash(&k.to_le_bytes());
    // A "QC" of `value` signed by node 0 alone, its signature copied for the others.
    let forged_qc = |round: u64, value: Digest| {
        let s = Statement { phase: Phase::Vote, round: Round(round), height: Height(0), value };
        let sig = Vote::sign(s, NodeId(0), evil).signature;
        Certificate::new(s, (0..3u16).map(|i| (NodeId(i), sig)))
    };
    let propose = |parent: Digest, view: u64, stamp: u64, justify: Option<Certificate>| {
        let block = Block::new(parent, Round(view), Height(1), NodeId(0), stamp, batch(stamp));
        let signature = evil.sign(&domain::PROPOSAL, block.digest().as_bytes());
        HotStuffMessage::Propose(Proposal { block, signature, justify, tc: None })
    };
    let vote = |view: u64, value: Digest, voter: NodeId| {
        let s = Statement { phase: Phase::Vote, round: Round(view), height: Height(0), value };
        HotStuffMessage::Vote(Vote { voter, ..Vote::sign(s, NodeId(0), evil) })
    };
    let timeout = |view: u64, voter: NodeId| {
        let vote = Vote { voter, ..Vote::sign(timeout_statement(view, 0), NodeId(0), evil) };
        HotStuffMessage::Timeout(Timeout { vote, high_qc: None })
    };
    let genesis = Block::genesis().digest();
    let mut pool = Vec::new();
    for k in 0..1_000u64 {
        let view = views[k as usize % views.len()];
        // A proposal whose parent nobody has, with a forged QC of it.
        let parent = random(k);
        pool.push(propose(parent, view, k, Some(forged_qc(view - 1, parent))));
        // A block on genesis, one of many for the same view: equivocation.
        pool.push(propose(genesis, view, 1_000_000 + k, None));
        // A block on genesis whose QC names another block.
        pool.push(propose(genesis, view, 2_000_000 + k, Some(forged_qc(1, random(3_000 + k)))));
        // Votes for views whose next leader is not node 3, and for random values of views it
        // leads next (node 3 leads 3, 7, 11, …: it gathers the votes of 2, 6, 10, …).
        pool.push(vote(view, random(10_000 + k), NodeId(0)));
        pool.push(vote(2 + 4 * (k % 15), random(40_000 + k), NodeId(0)));
    }
    for k in 0..500u64 {
        // Far in the future, forged, and from a non-member.
        pool.push(vote(5_002 + 4 * k, random(k), NodeId(0)));
        pool.push(vote(2, random(20_000 + k), NodeId(1)));
        pool.push(vote(2, random(30_000 + k), NodeId(77)));
        // Timeouts: node 0's own (one signer: no certificate), forged, far ahead, and one whose
        // height claims a QC it does not carry.
        pool.push(timeout(1 + k % 64, NodeId(0)));
        pool.push(timeout(1 + k % 64, NodeId(2)));
        pool.push(timeout(5_000 + k, NodeId(0)));
        let mut lying = Vote::sign(timeout_statement(9, 3), NodeId(0), evil);
        lying.statement.height = Height(4);
        pool.push(HotStuffMessage::Timeout(Timeout { vote: lying, high_qc: None }));
        // A timeout certificate and a QC with node 0's signature copied for the others.
        let sig = Vote::sign(timeout_statement(1, 0), NodeId(0), evil).signature;
        pool.push(HotStuffMessage::TimeoutCertificate(TimeoutCertificate {
            view: 1 + k % 32,
            timeouts: (0..3u16).map(|i| (NodeId(i), 0, sig)).collect(),
            high_qc: None,
        }));
        pool.push(HotStuffMessage::Certificate(forged_qc(8, random(50_000 + k))));
        // A request for every block, again and again.
        pool.push(HotStuffMessage::Sync { finalized: Height(0) });
    }
    pool
}

#[test]
fn a_million_hostile_messages_leave_state_and_memory_bounded() {
    let (committee, keys) = Committee::deterministic(1, 4).unwrap();
    let mut config = HotStuffConfig::new(DELTA);
    config.leader = LeaderRule::RoundRobin;
    let mut node = HotStuff::new(config, committee, NodeId(3), keys[3].clone())
        .expect("a valid configuration");
    let pool = hostile_pool(&keys);
    let region = Region::new(GLOBAL);
    let start =
        |node: &mut HotStuff, ctx: &mut agora_consensus::Ctx<'_, HotStuff>| node.on_start(ctx);
    let flooded = flood(&mut node, NodeId(3), NodeId(0), &pool, MESSAGES, start, || {
        let c = region.change();
        live_bytes(c.bytes_allocated, c.bytes_deallocated, c.bytes_reallocated)
    });

    assert_eq!(node.finalized_tip().digest(), Block::genesis().digest());
    assert_eq!(node.view(), 1, "no QC and no timeout certificate may form");
    assert_eq!(node.high_qc_view(), 0);
    assert_eq!(node.stats().votes_cast, 0, "no hostile proposal is of view 1");
    let dropped = &node.stats().dropped;
    eprintln!("drops {dropped:?}, retained items {}", node.retained_items());
    let reasons = [
        "far-future view",
        "bad vote",
        "bad certificate",
        "bad timeout",
        "bad timeout certificate",
        "justify does not certify the parent",
        "vote for a view this node does not lead next",
        "too many proposals in the view",
        "sync asked too soon",
    ];
    for reason in reasons {
        assert!(dropped.get(reason).copied().unwrap_or(0) > 0, "no drop for {reason}: {dropped:?}");
    }
    flooded.assert_within(RETAINED_MAX_BYTES, REPEAT_GROWTH_MAX_BYTES);
}
