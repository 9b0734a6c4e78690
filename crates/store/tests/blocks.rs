//! The redb block store against the in-memory one, across reopens, and against bad files.

use std::fs;

use agora_store::{
    BlockStore, FinalizedBlock, Height, MemBlockStore, RedbBlockStore, Snapshot, SnapshotPolicy,
    StoreError,
};
use agora_types::bytes::Bytes;
use agora_types::{
    Batch, Block, Certificate, Committee, Digest, NodeId, Phase, Round, Statement, Transaction,
    Vote,
};
use proptest::prelude::*;

const POLICY: SnapshotPolicy = SnapshotPolicy { every: 4, kept: 2 };

/// A chain of `count` finalized blocks from height `from`, each with `txs` transactions and a
/// commit certificate of three signers.
fn chain(from: u64, count: u64, txs: u64) -> Vec<FinalizedBlock> {
    let (_, keys) = Committee::deterministic(3, 4).unwrap();
    (from..from + count)
        .map(|height| {
            let batch = Batch::new(
                (0..txs)
                    .map(|i| {
                        let payload = Bytes::from(format!("order {height}/{i}"));
                        Transaction::new_signed(&keys[0], height * 100 + i, payload).unwrap()
                    })
                    .collect(),
            )
            .unwrap();
            let block =
                Block::new(Digest::ZERO, Round(height), Height(height), NodeId(0), 0, batch);
            let statement = Statement {
                phase: Phase::Commit,
                round: Round(0),
                height: Height(height),
                value: block.digest(),
            };
            let proof = Certificate::new(
                statement,
                (0..3u16).map(|i| {
                    (NodeId(i), Vote::sign(statement, NodeId(i), &keys[i as usize]).signature)
                }),
            );
            let state_digest = agora_crypto::Domain::new("test/state").hash(&height.to_le_bytes());
            FinalizedBlock { block, proof: vec![proof], state_digest }
        })
        .collect()
}

fn snapshot(height: u64) -> Snapshot {
    Snapshot {
        height: Height(height),
        state_digest: Digest::from_bytes([height as u8; 32]),
        bytes: Bytes::from(vec![height as u8; 10 + height as usize]),
    }
}

/// Everything a reader can ask of a store, for comparing two.
fn contents(store: &dyn BlockStore, chain: &[FinalizedBlock]) -> String {
    let mut out = format!("base {} tip {}\n", store.base(), store.tip());
    for block in chain {
        let height = block.height();
        let held = store.block(height).unwrap();
        let tx = block.block.batch().transactions().first().map(|tx| tx.id());
        let indexed = tx.map(|id| store.tx_height(&id).unwrap());
        out += &format!(
            "{height}: {:?} {:?} {indexed:?}\n",
            held.map(|held| held == *block),
            store.state_digest(height).unwrap(),
        );
    }
    let latest = store.latest_snapshot().unwrap();
    out += &format!("snapshot {:?}\n", latest.map(|s| (s.height, s.state_digest, s.bytes)));
    out += &format!("range {:?}\n", store.blocks(store.base(), 3).unwrap().len());
    out
}

#[derive(Debug, Clone)]
enum Op {
    Append(u64),
    Snapshot,
    Prune(u64),
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..4).prop_map(Op::Append),
        1 => Just(Op::Snapshot),
        1 => (0u64..8).prop_map(Op::Prune),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of appends, snapshots, prunes and reopens leaves the redb store answering
    /// every query exactly as the in-memory store does.
    #[test]
    fn redb_answers_as_the_memory_store_does(ops in prop::collection::vec(op_strategy(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.redb");
        let all = chain(1, 64, 1);
        let mut redb = RedbBlockStore::open(&path, POLICY).unwrap();
        let mut memory = MemBlockStore::new(POLICY);
        for op in ops {
            match op {
                Op::Append(count) => {
                    let from = memory.tip().0 as usize;
                    let blocks = &all[from..(from + count as usize).min(all.len())];
                    redb.append(blocks).unwrap();
                    memory.append(blocks).unwrap();
                }
                Op::Snapshot if memory.tip() >= memory.base() => {
                    let snapshot = snapshot(memory.tip().0);
                    redb.put_snapshot(&snapshot).unwrap();
                    memory.put_snapshot(&snapshot).unwrap();
                }
                Op::Snapshot => {}
                Op::Prune(back) => {
                    let to = Height(memory.tip().0.saturating_sub(back));
                    redb.prune_below(to).unwrap();
                    memory.prune_below(to).unwrap();
                }
                Op::Reopen => {
                    drop(redb);
                    redb = RedbBlockStore::open(&path, POLICY).unwrap();
                }
            }
            prop_assert_eq!(contents(&redb, &all), contents(&memory, &all));
        }
    }
}

#[test]
fn blocks_out_of_order_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbBlockStore::open(dir.path().join("blocks.redb"), POLICY).unwrap();
    store.append(&chain(1, 2, 1)).unwrap();
    let error = store.append(&chain(4, 1, 1)).unwrap_err();
    assert!(matches!(error, StoreError::OutOfOrder { expected: Height(3), found: Height(4) }));
    assert_eq!(store.tip(), Height(2));
}

#[test]
fn a_range_is_bounded_and_stops_at_the_tip() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbBlockStore::open(dir.path().join("blocks.redb"), POLICY).unwrap();
    store.append(&chain(1, 10, 2)).unwrap();
    let heights = |from, max| -> Vec<u64> {
        store.blocks(Height(from), max).unwrap().iter().map(|b| b.height().0).collect()
    };
    assert_eq!(heights(3, 4), vec![3, 4, 5, 6]);
    assert_eq!(heights(9, 4), vec![9, 10]);
    assert!(heights(11, 4).is_empty());
}

#[test]
fn nothing_is_pruned_without_a_snapshot_and_never_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbBlockStore::open(dir.path().join("blocks.redb"), POLICY).unwrap();
    let blocks = chain(1, 10, 1);
    store.append(&blocks).unwrap();
    store.prune_below(Height(8)).unwrap();
    assert_eq!(store.base(), Height(1));
    store.put_snapshot(&snapshot(4)).unwrap();
    store.prune_below(Height(8)).unwrap();
    assert_eq!(store.base(), Height(5), "the blocks after the snapshot stay");
    assert!(store.block(Height(4)).unwrap().is_none());
    let pruned_tx = blocks[3].block.batch().transactions()[0].id();
    assert_eq!(store.tx_height(&pruned_tx).unwrap(), None);
    let kept_tx = blocks[4].block.batch().transactions()[0].id();
    assert_eq!(store.tx_height(&kept_tx).unwrap(), Some(Height(5)));
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = RedbBlockStore::open(&path, POLICY).unwrap_err();
    assert!(error.to_string().contains("blocks.redb"), "{error}");
}

/// A store of 20 blocks written in four commits, the blocks, and the file's bytes.
fn stored(path: &std::path::Path) -> (Vec<FinalizedBlock>, Vec<u8>) {
    let blocks = chain(1, 20, 3);
    let mut store = RedbBlockStore::open(path, POLICY).unwrap();
    for block in blocks.chunks(5) {
        store.append(block).unwrap();
    }
    drop(store);
    (blocks, fs::read(path).unwrap())
}

/// Opens a damaged file: an error is fine, and so is an earlier commit redb recovered; a
/// panic or a block that differs from the one stored is not.
fn check_damaged(path: &std::path::Path, blocks: &[FinalizedBlock], what: &str) {
    if let Ok(store) = RedbBlockStore::open(path, POLICY) {
        for block in store.blocks(Height(1), 20).unwrap_or_default() {
            assert_eq!(block, blocks[block.height().0 as usize - 1], "{what}");
        }
    }
}

#[test]
fn a_truncated_database_is_an_error_or_an_earlier_commit_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let (blocks, full) = stored(&path);
    for keep in [0, 1, 100, 4096, full.len() / 2, full.len() - 1] {
        fs::write(&path, &full[..keep]).unwrap();
        check_damaged(&path, &blocks, &format!("cut to {keep} bytes"));
    }
}

#[test]
fn a_flipped_byte_in_the_database_never_hands_back_a_changed_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let (blocks, full) = stored(&path);
    for position in (0..full.len()).step_by(full.len() / 97 + 1) {
        let mut damaged = full.clone();
        damaged[position] ^= 0x10;
        fs::write(&path, &damaged).unwrap();
        check_damaged(&path, &blocks, &format!("flip at {position}"));
    }
}

#[test]
fn a_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("something")).unwrap();
        txn.commit().unwrap();
    }
    let error = RedbBlockStore::open(&path, POLICY).unwrap_err();
    assert!(matches!(&error, StoreError::ForeignFormat { .. }), "{error}");
    assert!(error.to_string().contains("other.redb"), "{error}");
}

/// The transaction index is written in batches: past a batch, after a reopen, and for the
/// entries still in memory when the store was last closed, every transaction is found at its
/// height, and none of a pruned block is.
#[test]
fn the_batched_index_finds_every_transaction_across_batches_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    // 17 blocks of 1,024 transactions: one batch written, one waiting in memory.
    let blocks = chain(1, 17, 1_024);
    const { assert!(17 * 1_024 > agora_store::blocks::redb::INDEX_BATCH) };
    let check = |store: &RedbBlockStore| {
        for block in &blocks {
            let txs = block.block.batch().transactions();
            for tx in [txs.first().unwrap(), txs.last().unwrap()] {
                assert_eq!(store.tx_height(&tx.id()).unwrap(), Some(block.height()));
            }
        }
    };
    {
        let mut store = RedbBlockStore::open(&path, POLICY).unwrap();
        store.append(&blocks[..10]).unwrap();
        store.append(&blocks[10..]).unwrap();
        check(&store);
    }
    let mut store = RedbBlockStore::open(&path, POLICY).unwrap();
    check(&store);
    store.put_snapshot(&snapshot(16)).unwrap();
    store.prune_below(Height(12)).unwrap();
    let pruned = blocks[10].block.batch().transactions()[5].id();
    assert_eq!(store.tx_height(&pruned).unwrap(), None);
    drop(store);
    let store = RedbBlockStore::open(&path, POLICY).unwrap();
    assert_eq!(store.tx_height(&pruned).unwrap(), None);
    let kept = blocks[12].block.batch().transactions()[5].id();
    assert_eq!(store.tx_height(&kept).unwrap(), Some(Height(13)));
}
