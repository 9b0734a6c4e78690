//! A replica that restarts from a market snapshot and replays the finalized blocks after it
//! has, at every height, the state digest it had before: for every execution order, from
//! snapshots taken at several heights. A damaged snapshot is refused, never restored wrong.

use agora_consensus::Application;
use agora_crypto::{Digest, DirectCheck};
use agora_lab::agents::{self, AgentsConfig};
use agora_market::{ExecutionOrder, MarketApp, MarketGenesis, MarketSnapshotError};
use agora_types::{Batch, Block, Height, NodeId, Round};

/// A trading day's worth of agent orders in blocks of 100, and their genesis.
fn day() -> (MarketGenesis, Vec<Block>) {
    let config = AgentsConfig {
        traders: 50,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 20.0,
        quote_every_ns: 200_000_000,
        end_ns: 4_000_000_000,
        large_orders: 0.05,
        frontrunner: false,
    };
    let (genesis, orders, _) = agents::generate(&config, 7, 4);
    let mut parent = Block::genesis().digest();
    let blocks = orders
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let height = i as u64 + 1;
            let batch = Batch::new(chunk.iter().map(|o| o.tx.clone()).collect()).unwrap();
            let block = Block::new(parent, Round(height), Height(height), NodeId(0), 0, batch);
            parent = block.digest();
            block
        })
        .collect();
    (genesis, blocks)
}

#[test]
fn a_replica_restored_from_a_snapshot_replays_to_the_same_digest_at_every_height() {
    let (genesis, blocks) = day();
    assert!(blocks.len() >= 20, "{} blocks", blocks.len());
    for order in [ExecutionOrder::Proposal, ExecutionOrder::Canonical, ExecutionOrder::BatchAuction]
    {
        let mut original = MarketApp::new(&genesis).with_order(order);
        let mut digests = Vec::new();
        let mut snapshots = Vec::new();
        for block in &blocks {
            digests.push(original.apply(block, &mut DirectCheck).state_digest);
            if block.height().0 % 7 == 0 {
                snapshots.push((block.height(), original.snapshot(), original.state_digest()));
            }
        }
        for (height, bytes, digest) in snapshots {
            let mut restored = MarketApp::from_snapshot(&genesis, &bytes, digest)
                .unwrap_or_else(|e| panic!("{order:?} at {height}: {e}"));
            assert_eq!(restored.order(), order);
            assert_eq!(restored.height(), original_height(order, height));
            for block in &blocks[height.0 as usize..] {
                let replayed = restored.apply(block, &mut DirectCheck).state_digest;
                let before = digests[block.height().0 as usize - 1];
                assert_eq!(replayed, before, "{order:?}: from {height}, at {}", block.height());
            }
        }
    }
}

/// The height a market reports after applying the block at `height`: in canonical order, a
/// block executes once its successor is final.
fn original_height(order: ExecutionOrder, height: Height) -> Height {
    match order {
        ExecutionOrder::Canonical => Height(height.0 - 1),
        _ => height,
    }
}

#[test]
fn a_damaged_snapshot_is_refused_never_restored_wrong() {
    let (genesis, blocks) = day();
    let mut app = MarketApp::new(&genesis);
    for block in &blocks[..10] {
        app.apply(block, &mut DirectCheck);
    }
    let (bytes, digest) = (app.snapshot(), app.state_digest());
    for position in (0..bytes.len()).step_by(bytes.len() / 200 + 1) {
        let mut damaged = bytes.to_vec();
        damaged[position] ^= 0x04;
        // An error is the expected answer; a restore that succeeds must be the same state.
        if let Ok(restored) = MarketApp::from_snapshot(&genesis, &damaged, digest) {
            assert_eq!(restored.state_digest(), digest, "flip at {position}");
        }
    }
    let truncated = MarketApp::from_snapshot(&genesis, &bytes[..bytes.len() / 2], digest);
    assert!(matches!(truncated, Err(MarketSnapshotError::Undecodable(_))));
    let elsewhere = MarketApp::from_snapshot(&genesis, &bytes, Digest::ZERO);
    assert!(matches!(elsewhere, Err(MarketSnapshotError::WrongDigest { .. })));
}
