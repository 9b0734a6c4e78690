//! Durability and recovery on this machine: how many syncs its disk makes per second (the
//! physical limit of durability), and how fast a replica rebuilds its market from a snapshot
//! and the finalized blocks after it, against the signature-verification limit measured
//! just before (replay verifies every order's signature, on one core).

use std::io::Write as _;
use std::time::{Duration, Instant};

use agora_crypto::DirectCheck;
use agora_market::{MarketApp, MarketGenesis};
use agora_runtime::verify_rate;
use agora_store::{
    Height, Ledger, RedbBlockStore, Snapshot, SnapshotPolicy, StoreError, replay_from,
};
use agora_types::{Batch, Block, Digest, NodeId, Round, Transaction};
use serde::Serialize;

use crate::agents::{self, AgentsConfig};

/// Orders per block of the recovery chain.
const BLOCK_ORDERS: usize = 500;
/// Blocks before the snapshot the replay starts from.
const PREFIX_BLOCKS: u64 = 10;

/// What the durability and recovery measures found.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryRecord {
    /// A 64-byte write and `fdatasync` of one file, in a loop: syncs per second.
    pub disk_syncs_per_sec: f64,
    /// Orders replayed after the snapshot (accepted or refused by the market).
    pub orders: u64,
    /// Blocks they were in.
    pub blocks: u64,
    /// Restoring the market from the snapshot (decoding it and recomputing its digest), ms.
    pub snapshot_restore_ms: f64,
    /// Replaying the blocks after it, every digest compared with the stored one, seconds.
    pub replay_seconds: f64,
    /// Orders replayed per second.
    pub orders_per_sec: f64,
    /// k256 verifications per second on one core, measured just before the replay.
    pub limit_one_core: f64,
}

/// Syncs per second of a file in `dir`: the physical limit of durability on this disk.
fn disk_syncs_per_sec(dir: &std::path::Path, duration: Duration) -> Result<f64, String> {
    let path = dir.join("syncs");
    let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < duration {
        file.write_all(&[syncs as u8; 64]).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        syncs += 1;
    }
    Ok(syncs as f64 / start.elapsed().as_secs_f64())
}

/// The agents' orders (at least `orders` of them after the prefix) with their genesis.
fn chain(orders: usize, seed: u64) -> (MarketGenesis, Vec<Block>) {
    let wanted = orders + PREFIX_BLOCKS as usize * BLOCK_ORDERS;
    let traders = 32;
    let config = AgentsConfig {
        traders,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 1_000.0,
        quote_every_ns: 100_000_000,
        // The traders alone place about `wanted` orders: a tenth more, so that enough come.
        end_ns: (1.1 * wanted as f64 / traders as f64 / 1_000.0 * 1e9) as u64,
        large_orders: 0.0,
        frontrunner: false,
    };
    let (genesis, submissions, _) = agents::generate(&config, seed, 4);
    // Market makers and the liquidator add to the traders' orders: there are enough.
    let txs: Vec<Transaction> = submissions.into_iter().take(wanted).map(|s| s.tx).collect();
    let blocks = txs
        .chunks(BLOCK_ORDERS)
        .zip(1..)
        .map(|(chunk, height)| {
            let batch = Batch::new(chunk.to_vec()).expect("a block of the agents' orders");
            Block::new(Digest::ZERO, Round(height), Height(height), NodeId(0), 0, batch)
        })
        .collect();
    (genesis, blocks)
}

/// Builds a store of about `orders` orders after a snapshot, then measures replaying them.
pub fn measure(orders: usize, seed: u64) -> Result<RecoveryRecord, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let disk_syncs_per_sec = disk_syncs_per_sec(dir.path(), Duration::from_millis(500))?;
    let (genesis, blocks) = chain(orders, seed);
    let path = dir.path().join(agora_store::BLOCKS_FILE);
    let policy = SnapshotPolicy { every: PREFIX_BLOCKS, kept: usize::MAX };
    let failed = |e: StoreError| e.to_string();
    let store = RedbBlockStore::open(&path, policy).map_err(failed)?;
    let fresh = |_: Option<&Snapshot>| Ok(MarketApp::new(&genesis));
    let (mut ledger, _) =
        Ledger::open(store, fresh, &mut DirectCheck).map_err(|e| e.to_string())?;
    for group in blocks.chunks(PREFIX_BLOCKS as usize) {
        for block in group {
            ledger.apply(block.clone(), Vec::new(), &mut DirectCheck).map_err(|e| e.to_string())?;
        }
        ledger.flush().map_err(failed)?;
    }
    let (_, store) = ledger.into_parts().map_err(failed)?;
    let (limit_one_core, _) = verify_rate(1, Duration::from_millis(400));
    let mut restore_ns = 0;
    let restore = |snapshot: Option<&Snapshot>| {
        let snapshot = snapshot.ok_or("no snapshot at the prefix")?;
        let started = Instant::now();
        let app = MarketApp::from_snapshot(&genesis, &snapshot.bytes, snapshot.state_digest)
            .map_err(|e| e.to_string());
        restore_ns = started.elapsed().as_nanos();
        app
    };
    let started = Instant::now();
    let (_, replayed) =
        replay_from(&store, Height(PREFIX_BLOCKS), restore, &mut DirectCheck, |_, _| {})
            .map_err(|e| e.to_string())?;
    let replay_seconds = started.elapsed().as_secs_f64();
    let orders: usize = blocks.iter().skip(PREFIX_BLOCKS as usize).map(|b| b.batch().len()).sum();
    Ok(RecoveryRecord {
        disk_syncs_per_sec,
        orders: orders as u64,
        blocks: replayed.blocks,
        snapshot_restore_ms: restore_ns as f64 / 1e6,
        replay_seconds,
        orders_per_sec: orders as f64 / replay_seconds.max(1e-9),
        limit_one_core,
    })
}

/// The report's section.
pub(super) fn markdown(r: &RecoveryRecord, s: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "\n## Durability and recovery\n");
    let _ = writeln!(
        s,
        "This machine's disk makes {:.0} syncs/s (a 64-byte write and `fdatasync`, in a loop): the physical limit of durability, which group commit shares among a pass's records.\n",
        r.disk_syncs_per_sec
    );
    let _ = writeln!(
        s,
        "A replica rebuilding its market from a snapshot restored it in {:.1} ms, then replayed {} orders in {} blocks in {:.2} s, comparing every state digest with the stored one: {:.0} orders/s, {:.0}% of one core's verification limit measured just before ({:.0}/s; replay verifies every signature, on one core).",
        r.snapshot_restore_ms,
        r.orders,
        r.blocks,
        r.replay_seconds,
        r.orders_per_sec,
        100.0 * r.orders_per_sec / r.limit_one_core.max(1e-9),
        r.limit_one_core
    );
}
