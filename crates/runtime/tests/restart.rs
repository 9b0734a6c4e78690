//! A replica of a real-time cluster stopped at a drawn point (between a journal append and its
//! sync, with or without its last blocks stored), restarted from its directory: it catches up,
//! no finalized transaction is lost or applied twice, and every replica stored the same state
//! digest at every height. Half the cases bound the stores to their newest blocks.

use std::collections::HashSet;
use std::time::Duration;

use agora_consensus::{Application, Protocol, TxLog};
use agora_crypto::{DirectCheck, SecretKey};
use agora_hotstuff::{ChainRule, HotStuff, HotStuffConfig};
use agora_pbft::{Pbft, PbftConfig};
use agora_runtime::{ClusterConfig, Load, ReplicaCrash, Storage, WallReport, run};
use agora_simplex::{Simplex, SimplexConfig};
use agora_store::{BLOCKS_FILE, BlockStore, Height, RedbBlockStore, SnapshotPolicy, replay_from};
use agora_streamlet::{Streamlet, StreamletConfig};
use agora_types::{Committee, NodeId, Transaction};
use bytes::Bytes;

const NODES: usize = 4;
const VICTIM: NodeId = NodeId(3);
const SNAPSHOTS: SnapshotPolicy = SnapshotPolicy { every: 8, kept: 2 };
/// Blocks kept below the tip in the cases that bound their stores.
const RETAINED: u64 = 40;

/// `txs` signed transactions, to every replica but the victim (what a crashed replica held in
/// its mempool is lost with it, as a client of a crashed server must resend), at `rate`.
fn load(txs: usize, rate: f64) -> Load {
    let clients: Vec<SecretKey> = (0..16).map(|i| SecretKey::from_seed(9, i)).collect();
    let txs = (0..txs)
        .map(|i| {
            let payload = Bytes::from(vec![i as u8; 40]);
            let tx = Transaction::new_signed(&clients[i % 16], (i / 16) as u64, payload).unwrap();
            (NodeId((i % (NODES - 1)) as u16), tx)
        })
        .collect();
    Load { txs, rate_per_sec: Some(rate), window: 2_000 }
}

/// splitmix64: the crash point drawn from the case's seed.
fn draw(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn cluster(dir: &std::path::Path, seed: u64) -> (ClusterConfig, ReplicaCrash) {
    let r = draw(seed);
    let crash = ReplicaCrash {
        node: VICTIM,
        at_sync: 10 + r % 150,
        // Both sides of the block store's transaction, in turn.
        blocks_stored: seed.is_multiple_of(2),
        down_for: Duration::from_millis(100 + (r >> 40) % 300),
    };
    let mut config = ClusterConfig::new(NODES);
    config.storage = Storage::Dir(dir.to_path_buf());
    config.snapshots = SNAPSHOTS;
    config.crashes = vec![crash];
    config.timeout = Duration::from_secs(90);
    // Odd seeds keep every block (the checks below replay from genesis); even ones keep 40.
    if seed.is_multiple_of(2) {
        config.retained_blocks = Some(RETAINED);
    }
    (config, crash)
}

/// Runs the case and checks it, naming the seed and the crash in every failure.
fn check<P: Protocol + Send + 'static>(
    protocol: &str,
    seed: u64,
    engine: impl Fn(NodeId, &Committee, &SecretKey) -> P,
) where
    P::Timer: Send,
{
    let dir = tempfile::tempdir().unwrap();
    let (config, crash) = cluster(dir.path(), seed);
    let case = format!("{protocol} seed {seed}: {crash:?}");
    let load = load(3_000, 1_000.0);
    let submitted: HashSet<_> = load.txs.iter().map(|(_, tx)| tx.id()).collect();
    let report: WallReport = run(config, engine, |_| Box::new(TxLog::new(true)), load)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let victim = &report.replicas[VICTIM.index()];
    assert_eq!(victim.restarts, 1, "{case}: {victim:?}");
    assert_eq!(report.txs_submitted, 3_000, "{case}");
    assert_eq!(report.txs_finalized, 3_000, "{case}: a replica did not catch up");
    assert!(report.state_digests_agree, "{case}");
    // Every store, read back from disk: each submitted transaction at exactly one height, no
    // other, and the same state digest at every height in every store, reproduced by replay.
    let stores: Vec<RedbBlockStore> = (0..NODES)
        .map(|i| {
            RedbBlockStore::open(dir.path().join(format!("node-{i}")).join(BLOCKS_FILE), SNAPSHOTS)
                .unwrap()
        })
        .collect();
    // One certificate per block; Simplex adds the finalization to the block one names, and
    // HotStuff the QCs of the chain that commits it (two, or one with the two-chain rule).
    let proofs = match protocol {
        "simplex" => 1..=2,
        "hotstuff" => 1..=3,
        _ => 1..=1,
    };
    for (i, store) in stores.iter().enumerate() {
        let restore = |snapshot: Option<&agora_store::Snapshot>| match snapshot {
            None => Ok(TxLog::new(true)),
            Some(s) => TxLog::from_snapshot(&s.bytes, s.state_digest).ok_or("not a log".into()),
        };
        if seed.is_multiple_of(2) {
            // A bounded store: pruned below its retained blocks, and it rebuilds its state
            // from its snapshot, each block with its proof.
            let held = store.tip().0 + 1 - store.base().0;
            assert!(store.base() > Height(1), "{case}: replica {i} pruned nothing");
            assert!(held <= RETAINED + SNAPSHOTS.every, "{case}: replica {i} holds {held}");
            let replayed =
                replay_from(store, Height(u64::MAX), restore, &mut DirectCheck, |b, _| {
                    assert!(
                        proofs.contains(&b.proof.len()),
                        "{case}: replica {i}, height {}",
                        b.height()
                    );
                });
            let (_, replayed) = replayed.unwrap_or_else(|e| panic!("{case}: replica {i}: {e}"));
            assert_eq!(replayed.height, store.tip(), "{case}: replica {i}");
            continue;
        }
        let mut seen = HashSet::new();
        let (log, _) = replay_from(store, Height(0), restore, &mut DirectCheck, |block, _| {
            // Every stored block carries the certificates that show it final.
            let height = block.height();
            assert!(proofs.contains(&block.proof.len()), "{case}: replica {i}, height {height}");
            for tx in block.block.batch().transactions() {
                assert!(seen.insert(tx.id()), "{case}: replica {i} applied a transaction twice");
            }
        })
        .unwrap_or_else(|e| panic!("{case}: replica {i}'s store does not replay: {e}"));
        assert_eq!(seen, submitted, "{case}: replica {i} lost or invented a transaction");
        assert_eq!(log.executed(), 3_000, "{case}: replica {i}");
        assert!(store.latest_snapshot().unwrap().is_some(), "{case}: replica {i}");
    }
    let base = stores.iter().map(BlockStore::base).max().unwrap();
    let tip = stores.iter().map(BlockStore::tip).min().unwrap();
    for height in base.0..=tip.0 {
        let digests: Vec<_> =
            stores.iter().map(|s| s.state_digest(Height(height)).unwrap()).collect();
        assert!(digests[0].is_some(), "{case}: height {height} is not held");
        assert!(digests.iter().all(|d| *d == digests[0]), "{case}: height {height} differs");
    }
}

#[test]
fn a_pbft_replica_killed_at_a_drawn_sync_restarts_from_its_directory_and_agrees() {
    let mut pbft = PbftConfig::new(1_000_000_000);
    pbft.checkpoint_interval = 16;
    pbft.batch.txs_max = 50;
    for seed in [1, 2, 3, 4] {
        check("pbft", seed, |me, committee: &Committee, key: &SecretKey| {
            Pbft::new(pbft, committee.clone(), me, key.clone()).expect("a valid configuration")
        });
    }
}

#[test]
fn a_streamlet_replica_killed_at_a_drawn_sync_restarts_from_its_directory_and_agrees() {
    let mut streamlet = StreamletConfig::new(20_000_000);
    streamlet.batch.txs_max = 50;
    for seed in [1, 2, 3, 4] {
        check("streamlet", seed, |me, committee: &Committee, key: &SecretKey| {
            Streamlet::new(streamlet, committee.clone(), me, key.clone())
                .expect("a valid configuration")
        });
    }
}

#[test]
fn a_simplex_replica_killed_at_a_drawn_sync_restarts_from_its_directory_and_agrees() {
    let mut simplex = SimplexConfig::new(20_000_000);
    simplex.batch.txs_max = 50;
    simplex.empty_block_after_ns = simplex.delta_ns;
    for seed in [1, 2, 3, 4] {
        check("simplex", seed, |me, committee: &Committee, key: &SecretKey| {
            Simplex::new(simplex, committee.clone(), me, key.clone())
                .expect("a valid configuration")
        });
    }
}

#[test]
fn a_hotstuff_replica_killed_at_a_drawn_sync_restarts_from_its_directory_and_agrees() {
    for (chain, seeds) in [(ChainRule::Three, [1, 2]), (ChainRule::Two, [3, 4])] {
        let mut hotstuff = HotStuffConfig::new(20_000_000).with_chain(chain);
        hotstuff.batch.txs_max = 50;
        hotstuff.empty_block_after_ns = hotstuff.delta_ns;
        for seed in seeds {
            check("hotstuff", seed, |me, committee: &Committee, key: &SecretKey| {
                HotStuff::new(hotstuff, committee.clone(), me, key.clone())
                    .expect("a valid configuration")
            });
        }
    }
}

#[test]
fn crashes_need_stores_on_disk_and_inline_application() {
    let mut config = ClusterConfig::new(NODES);
    config.storage = Storage::Memory;
    config.crashes = vec![ReplicaCrash {
        node: VICTIM,
        at_sync: 1,
        blocks_stored: true,
        down_for: Duration::ZERO,
    }];
    let pbft = PbftConfig::new(1_000_000_000);
    let engine = |me, committee: &Committee, key: &SecretKey| {
        Pbft::new(pbft, committee.clone(), me, key.clone()).unwrap()
    };
    let apps = |_| Box::new(TxLog::new(true)) as Box<dyn Application + Send>;
    let error = run(config, engine, apps, load(10, 100.0)).unwrap_err();
    assert!(error.to_string().contains("stores on disk"), "{error}");
}
