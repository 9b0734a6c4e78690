//! The ledger: an application and its block store in step, reopened from a snapshot and the
//! blocks after it, and replays that name the first height that differs.

use agora_consensus::{Application, TxLog};
use agora_crypto::DirectCheck;
use agora_store::{
    BlockStore, FinalizedBlock, Height, Ledger, LedgerError, MemBlockStore, Outcome,
    RedbBlockStore, Snapshot, SnapshotPolicy, replay_from,
};
use agora_types::bytes::Bytes;
use agora_types::{Batch, Block, Committee, Digest, NodeId, Round, Transaction};

const POLICY: SnapshotPolicy = SnapshotPolicy { every: 4, kept: 2 };

/// Final blocks 1..=count, two signed transactions each.
fn blocks(count: u64) -> Vec<Block> {
    let (_, keys) = Committee::deterministic(5, 4).unwrap();
    (1..=count)
        .map(|height| {
            let txs = (0..2)
                .map(|i| {
                    let payload = Bytes::from(format!("order {height}/{i}"));
                    Transaction::new_signed(&keys[1], height * 10 + i, payload).unwrap()
                })
                .collect();
            let batch = Batch::new(txs).unwrap();
            Block::new(Digest::ZERO, Round(height), Height(height), NodeId(1), 0, batch)
        })
        .collect()
}

fn restore(snapshot: Option<&Snapshot>) -> Result<TxLog, String> {
    match snapshot {
        None => Ok(TxLog::new(true)),
        Some(s) => TxLog::from_snapshot(&s.bytes, s.state_digest).ok_or("not a TxLog".into()),
    }
}

/// A ledger over `store` that has applied `blocks`, flushing every `per_pass`.
fn filled<S: BlockStore>(store: S, blocks: &[Block], per_pass: usize) -> Ledger<TxLog, S> {
    let (mut ledger, replayed) = Ledger::open(store, restore, &mut DirectCheck).unwrap();
    assert_eq!(replayed.height, Height(0));
    for pass in blocks.chunks(per_pass) {
        for block in pass {
            let outcome = ledger.apply(block.clone(), Vec::new(), &mut DirectCheck).unwrap();
            assert!(matches!(outcome, Outcome::Applied(a) if a.executed == 2));
        }
        ledger.flush().unwrap();
    }
    ledger
}

#[test]
fn a_reopened_ledger_starts_from_its_newest_snapshot_and_reaches_the_same_state() {
    let chain = blocks(23);
    let ledger = filled(MemBlockStore::new(POLICY), &chain, 3);
    let digest = ledger.app().state_digest();
    let (_, store) = ledger.into_parts().unwrap();
    assert_eq!(store.latest_snapshot().unwrap().unwrap().height, Height(20));

    let (reopened, replayed) = Ledger::open(store, restore, &mut DirectCheck).unwrap();
    assert_eq!(replayed.snapshot, Some(Height(20)));
    assert_eq!((replayed.blocks, replayed.executed, replayed.height), (3, 6, Height(23)));
    assert_eq!(reopened.app().state_digest(), digest);
    assert_eq!(reopened.app().executed(), 46, "the snapshot carries the count");
}

#[test]
fn a_ledger_on_redb_survives_the_process_and_replays_from_genesis_to_the_same_digests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let chain = blocks(10);
    let digest = {
        let ledger = filled(RedbBlockStore::open(&path, POLICY).unwrap(), &chain, 4);
        ledger.app().state_digest()
    };
    let store = RedbBlockStore::open(&path, POLICY).unwrap();
    let mut seen = Vec::new();
    let (app, replayed) = replay_from(&store, Height(0), restore, &mut DirectCheck, |block, _| {
        seen.push(block.height().0);
    })
    .unwrap();
    assert_eq!(replayed.snapshot, None);
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(app.state_digest(), digest);
    // From a height: the newest snapshot at or below it.
    let (app, replayed) =
        replay_from(&store, Height(6), restore, &mut DirectCheck, |_, _| {}).unwrap();
    assert_eq!((replayed.snapshot, replayed.blocks), (Some(Height(4)), 6));
    assert_eq!(app.state_digest(), digest);
}

#[test]
fn a_height_committed_again_is_held_and_one_beyond_the_next_is_a_gap_that_changes_nothing() {
    let chain = blocks(5);
    let mut ledger = filled(MemBlockStore::new(POLICY), &chain[..3], 3);
    let digest = ledger.app().state_digest();
    let again = ledger.apply(chain[1].clone(), Vec::new(), &mut DirectCheck).unwrap();
    assert_eq!(again, Outcome::Held);
    let gap = ledger.apply(chain[4].clone(), Vec::new(), &mut DirectCheck);
    assert!(matches!(gap, Err(LedgerError::Gap { expected: Height(4), found: Height(5) })));
    assert_eq!((ledger.height(), ledger.app().state_digest()), (Height(3), digest));
}

#[test]
fn a_stored_digest_that_the_replay_does_not_reproduce_is_named_by_its_height() {
    let chain = blocks(6);
    let mut app = TxLog::new(true);
    let mut store = MemBlockStore::new(POLICY);
    let stored: Vec<FinalizedBlock> = chain
        .iter()
        .map(|block| {
            let mut state_digest = app.apply(block, &mut DirectCheck).state_digest;
            if block.height() == Height(5) {
                state_digest = Digest::from_bytes([9; 32]);
            }
            FinalizedBlock { block: block.clone(), proof: Vec::new(), state_digest }
        })
        .collect();
    store.append(&stored).unwrap();
    let outcome = replay_from(&store, Height(0), restore, &mut DirectCheck, |_, _| {});
    assert!(matches!(outcome, Err(LedgerError::Diverged { height: Height(5), .. })), "{outcome:?}");
    // An application that executes differently (here: without checking signatures, against
    // a log that refused a forged one) diverges at the first block where it matters.
    let unverified = |_: Option<&Snapshot>| Ok(TxLog::new(false));
    let (_, keys) = Committee::deterministic(6, 4).unwrap();
    let signed = Transaction::new_signed(&keys[0], 1, Bytes::from_static(b"x")).unwrap();
    let other = Transaction::new_signed(&keys[0], 2, Bytes::from_static(b"y")).unwrap();
    // The first transaction's signature on the second's content.
    let bad = Transaction::from_parts(
        *other.sender(),
        other.nonce(),
        other.payload().clone(),
        *signed.signature(),
    )
    .unwrap();
    let forged =
        Block::new(Digest::ZERO, Round(1), Height(1), NodeId(1), 0, Batch::new(vec![bad]).unwrap());
    let mut store = MemBlockStore::new(POLICY);
    let digest = TxLog::new(true).apply(&forged, &mut DirectCheck).state_digest;
    store
        .append(&[FinalizedBlock { block: forged, proof: Vec::new(), state_digest: digest }])
        .unwrap();
    let outcome = replay_from(&store, Height(0), unverified, &mut DirectCheck, |_, _| {});
    assert!(matches!(outcome, Err(LedgerError::Diverged { height: Height(1), .. })));
}

#[test]
fn a_replay_from_genesis_over_a_pruned_store_says_which_height_is_missing() {
    let chain = blocks(12);
    let ledger = filled(MemBlockStore::new(POLICY), &chain, 12);
    let (_, mut store) = ledger.into_parts().unwrap();
    store.prune_below(Height(9)).unwrap();
    let outcome = replay_from(&store, Height(0), restore, &mut DirectCheck, |_, _| {});
    assert!(matches!(outcome, Err(LedgerError::Missing { height: Height(1), .. })), "{outcome:?}");
    // From the snapshot the prune kept, it replays.
    let (_, replayed) = Ledger::open(store, restore, &mut DirectCheck).unwrap();
    assert_eq!((replayed.snapshot, replayed.height), (Some(Height(12)), Height(12)));
}

#[test]
fn the_application_description_is_kept_by_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let mut memory = MemBlockStore::new(POLICY);
    {
        let mut redb = RedbBlockStore::open(&path, POLICY).unwrap();
        assert_eq!(redb.application().unwrap(), None);
        redb.set_application(b"market v1").unwrap();
    }
    memory.set_application(b"market v1").unwrap();
    let redb = RedbBlockStore::open(&path, POLICY).unwrap();
    assert_eq!(redb.application().unwrap(), memory.application().unwrap());
    assert_eq!(redb.application().unwrap().as_deref(), Some(&b"market v1"[..]));
}

#[test]
fn a_ledger_with_retention_keeps_its_newest_blocks_and_still_reopens() {
    let chain = blocks(30);
    let store = MemBlockStore::new(POLICY);
    let (ledger, _) = Ledger::open(store, restore, &mut DirectCheck).unwrap();
    let mut ledger = ledger.with_retention(6);
    for block in &chain {
        ledger.apply(block.clone(), Vec::new(), &mut DirectCheck).unwrap();
        ledger.flush().unwrap();
    }
    let digest = ledger.app().state_digest();
    let (_, store) = ledger.into_parts().unwrap();
    // The last snapshot was at 28, when the tip was 28: the newest six then were 23..=28.
    assert_eq!((store.base(), store.tip()), (Height(23), Height(30)));
    let (reopened, replayed) = Ledger::open(store, restore, &mut DirectCheck).unwrap();
    assert_eq!((replayed.snapshot, replayed.blocks), (Some(Height(28)), 2));
    assert_eq!(reopened.app().state_digest(), digest);
}
