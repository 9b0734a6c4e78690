//! A journal and a block store survive a crash: what was synced comes back, a torn tail is cut
//! and reported, and damage before the tail is refused by name.
//!
//! ```sh
//! cargo run -p agora-store --example crash_and_recover
//! ```

use std::fs;

use agora_store::{
    BlockStore, FileJournal, FileJournalConfig, FinalizedBlock, Journal, RedbBlockStore, Snapshot,
    SnapshotPolicy, StoreError,
};
use agora_types::bytes::Bytes;
use agora_types::{Batch, Block, Digest, Height, NodeId, Round};

fn main() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let journal_dir = dir.path().join("journal");

    // Three votes, synced; a fourth appended, and the process dies before its sync.
    let (mut journal, _) = FileJournal::open(&journal_dir, FileJournalConfig::default())?;
    for epoch in 1..=3 {
        journal.append(format!("voted in epoch {epoch}").as_bytes())?;
    }
    journal.sync()?;
    journal.append(b"voted in epoch 4")?;
    drop(journal);
    let (mut journal, torn) = FileJournal::open(&journal_dir, FileJournalConfig::default())?;
    println!(
        "after a crash before the sync: {} records, torn tail: {torn:?}",
        journal.records()?.len()
    );

    // A crash in the middle of a write leaves part of a record: it is cut and reported.
    journal.append(b"voted in epoch 4")?;
    journal.sync()?;
    drop(journal);
    let segment = fs::read_dir(&journal_dir).unwrap().next().unwrap().unwrap().path();
    let len = fs::metadata(&segment).unwrap().len();
    fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 5).unwrap();
    let (mut journal, torn) = FileJournal::open(&journal_dir, FileJournalConfig::default())?;
    println!("after a torn write: {} records, torn tail: {torn:?}", journal.records()?.len());

    // A flipped bit before the tail is refused, never read as a shorter history.
    let mut bytes = fs::read(&segment).unwrap();
    bytes[30] ^= 1;
    fs::write(&segment, bytes).unwrap();
    match FileJournal::open(&journal_dir, FileJournalConfig::default()) {
        Err(error) => println!("after a bit flip: {error}"),
        Ok(_) => unreachable!("damage before the tail is always refused"),
    }

    // Finalized blocks and a snapshot, reopened.
    let path = dir.path().join("blocks.redb");
    let policy = SnapshotPolicy { every: 2, kept: 2 };
    let mut store = RedbBlockStore::open(&path, policy)?;
    let blocks: Vec<FinalizedBlock> = (1..=4)
        .map(|height| FinalizedBlock {
            block: Block::new(
                Digest::ZERO,
                Round(height),
                Height(height),
                NodeId(0),
                0,
                Batch::empty(),
            ),
            proof: Vec::new(),
            state_digest: Digest::from_bytes([height as u8; 32]),
        })
        .collect();
    store.append(&blocks)?;
    let state_digest = blocks[3].state_digest;
    store.put_snapshot(&Snapshot {
        height: Height(4),
        state_digest,
        bytes: Bytes::from_static(b"state"),
    })?;
    drop(store);
    let store = RedbBlockStore::open(&path, policy)?;
    let snapshot = store.latest_snapshot()?.expect("the snapshot survives");
    println!("block store reopened: tip {}, snapshot at {}", store.tip(), snapshot.height);
    Ok(())
}
