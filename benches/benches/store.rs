//! Durability's physical limit on this machine and what agora's stores cost on top of it:
//!
//! - `fdatasync`: one byte appended to a file and synced, the floor of any durable write;
//! - `journal_sync_1`: one 200-byte record appended to the journal and synced (a vote);
//! - `journal_sync_100`: 100 records, one sync (group commit: one pass of the event loop);
//! - `redb_append_1`: one finalized block of 100 transactions in one redb commit.
//!
//! Each reads as syncs per second; their ratios to `fdatasync` are what group commit and the
//! stores' formats cost.

use std::fs::OpenOptions;
use std::io::Write;

use agora_store::{
    BlockStore, FileJournal, FileJournalConfig, FinalizedBlock, Journal, RedbBlockStore,
    SnapshotPolicy,
};
use agora_types::bytes::Bytes;
use agora_types::{Batch, Block, Committee, Digest, Height, NodeId, Round, Transaction};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn syncs(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group("durable");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));

    let mut file =
        OpenOptions::new().create(true).append(true).open(dir.path().join("raw")).unwrap();
    g.bench_function("fdatasync", |b| {
        b.iter(|| {
            file.write_all(b"x").unwrap();
            file.sync_data().unwrap();
        })
    });

    let record = [7u8; 200];
    let (mut journal, _) =
        FileJournal::open(dir.path().join("journal"), FileJournalConfig::default()).unwrap();
    g.bench_function("journal_sync_1", |b| {
        b.iter(|| {
            journal.append(&record).unwrap();
            journal.sync().unwrap();
        })
    });
    g.bench_function("journal_sync_100", |b| {
        b.iter(|| {
            for _ in 0..100 {
                journal.append(&record).unwrap();
            }
            journal.sync().unwrap();
        })
    });

    let (_, keys) = Committee::deterministic(1, 4).unwrap();
    let txs: Vec<Transaction> = (0..100)
        .map(|i| Transaction::new_signed(&keys[0], i, Bytes::from(vec![1u8; 64])).unwrap())
        .collect();
    let batch = Batch::new(txs).unwrap();
    let mut store =
        RedbBlockStore::open(dir.path().join("blocks.redb"), SnapshotPolicy::default()).unwrap();
    let mut height = 0;
    g.bench_function("redb_append_1", |b| {
        b.iter(|| {
            height += 1;
            let block = Block::new(
                Digest::ZERO,
                Round(height),
                Height(height),
                NodeId(0),
                0,
                batch.clone(),
            );
            let finalized = FinalizedBlock { block, proof: Vec::new(), state_digest: Digest::ZERO };
            store.append(&[finalized]).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, syncs);
criterion_main!(benches);
