//! The file journal against random truncation, bit flips, missing and foreign segments, and
//! against the in-memory journal.

use std::fs;
use std::path::{Path, PathBuf};

use agora_store::journal::file::SEGMENT_HEADER_BYTES;
use agora_store::{FileJournal, FileJournalConfig, Journal, Lsn, MemJournal, StoreError};
use proptest::prelude::*;

fn open(
    dir: &Path,
    segment_bytes: u64,
) -> Result<(FileJournal, Option<agora_store::TornTail>), StoreError> {
    FileJournal::open(dir, FileJournalConfig { segment_bytes })
}

fn payloads(journal: &mut impl Journal) -> Vec<Vec<u8>> {
    journal.records().unwrap().into_iter().map(|(_, record)| record.to_vec()).collect()
}

/// Writes `records`, synced, into a fresh journal in `dir`; returns the segment files.
fn written(dir: &Path, records: &[Vec<u8>], segment_bytes: u64) -> Vec<PathBuf> {
    let (mut journal, _) = open(dir, segment_bytes).unwrap();
    for record in records {
        journal.append(record).unwrap();
    }
    journal.sync().unwrap();
    segments(dir)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "journal"))
        .collect();
    files.sort();
    files
}

/// Where each record's frame ends in a single-segment journal.
fn frame_ends(records: &[Vec<u8>]) -> Vec<usize> {
    records
        .iter()
        .scan(SEGMENT_HEADER_BYTES, |at, record| {
            *at += 16 + record.len();
            Some(*at)
        })
        .collect()
}

fn records_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A cut anywhere in the body keeps exactly the records written whole before it, and
    /// reports a torn tail unless the cut fell between two records.
    #[test]
    fn a_truncated_journal_keeps_every_whole_record(records in records_strategy(), cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let files = written(dir.path(), &records, u64::MAX);
        let len = fs::metadata(&files[0]).unwrap().len() as usize;
        let keep = SEGMENT_HEADER_BYTES + cut.index(len - SEGMENT_HEADER_BYTES + 1);
        fs::OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(keep as u64).unwrap();

        let (mut journal, torn) = open(dir.path(), u64::MAX).unwrap();
        let ends = frame_ends(&records);
        let whole = ends.iter().filter(|end| **end <= keep).count();
        prop_assert_eq!(payloads(&mut journal), records[..whole].to_vec());
        let at_boundary = keep == SEGMENT_HEADER_BYTES || ends.contains(&keep);
        prop_assert_eq!(torn.is_some(), !at_boundary);
        if let Some(torn) = torn {
            prop_assert_eq!(torn.lsn, Lsn(whole as u64));
        }
        // The cut is repaired: appending continues from the last whole record.
        prop_assert_eq!(journal.append(b"after").unwrap(), Lsn(whole as u64));
        journal.sync().unwrap();
        drop(journal);
        let (mut journal, torn) = open(dir.path(), u64::MAX).unwrap();
        prop_assert!(torn.is_none());
        prop_assert_eq!(payloads(&mut journal).len(), whole + 1);
    }

    /// One flipped bit never yields a changed record: damage in the last record reads as a
    /// torn tail (one record shorter, reported); damage anywhere before it is an error naming
    /// the damaged record, never a shorter history.
    #[test]
    fn a_flipped_bit_is_never_a_silently_shorter_history(records in records_strategy(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let files = written(dir.path(), &records, u64::MAX);
        let mut bytes = fs::read(&files[0]).unwrap();
        let position = at.index(bytes.len());
        bytes[position] ^= 1 << bit;
        fs::write(&files[0], &bytes).unwrap();

        let ends = frame_ends(&records);
        let damaged = ends.iter().filter(|end| **end <= position).count();
        match open(dir.path(), u64::MAX) {
            Ok((mut journal, torn)) => {
                prop_assert!(position >= SEGMENT_HEADER_BYTES, "a damaged header was accepted");
                prop_assert_eq!(damaged, records.len() - 1, "only the last record may be cut");
                prop_assert_eq!(torn.map(|torn| torn.lsn), Some(Lsn(damaged as u64)));
                prop_assert_eq!(payloads(&mut journal), records[..damaged].to_vec());
            }
            Err(StoreError::Corrupt { lsn, path, .. }) => {
                prop_assert_eq!(path, files[0].clone());
                if position >= SEGMENT_HEADER_BYTES {
                    prop_assert_eq!(lsn, Lsn(damaged as u64));
                }
            }
            Err(StoreError::ForeignFormat { .. }) | Err(StoreError::UnsupportedVersion { .. }) => {
                prop_assert!(position < SEGMENT_HEADER_BYTES);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// The file journal keeps what the in-memory one keeps, through syncs, prunes (some
    /// waiting for a later record's durability) and crashes (a drop without a sync loses what
    /// was appended since the last sync).
    #[test]
    fn the_file_journal_agrees_with_the_memory_journal(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = open(dir.path(), 256).unwrap();
        let mut memory = MemJournal::new();
        for op in ops {
            match op {
                Op::Append(record) => {
                    prop_assert_eq!(file.append(&record).unwrap(), memory.append(&record).unwrap());
                }
                Op::Sync => {
                    file.sync().unwrap();
                    memory.sync().unwrap();
                }
                Op::Prune(back, wait) => {
                    // Keep from `to`, once the record `wait` after it (a checkpoint that keeps
                    // the records before it) is durable.
                    let to = Lsn(memory.next_lsn().0.saturating_sub(back));
                    let durable_at = Lsn(to.0 + wait.min(back));
                    file.prune_once_durable(to, durable_at).unwrap();
                    memory.prune_once_durable(to, durable_at).unwrap();
                }
                Op::Crash => {
                    drop(file);
                    let (reopened, _) = open(dir.path(), 256).unwrap();
                    file = reopened;
                    // A crash loses a suffix of what was not synced: a segment closed by a roll
                    // was synced then, so the file may keep more than the last sync promised.
                    let synced_end = memory.next_lsn().0 - memory.unsynced() as u64;
                    let kept_end = file.next_lsn().0;
                    prop_assert!(kept_end >= synced_end, "a synced record was lost");
                    prop_assert!(kept_end <= memory.next_lsn().0, "a record was invented");
                    memory.crash((kept_end - synced_end) as usize);
                }
            }
            // The file journal drops whole segments only, so it may keep more at the front.
            let kept_in_memory = memory.records().unwrap();
            let kept_in_file = file.records().unwrap();
            prop_assert!(kept_in_file.ends_with(&kept_in_memory));
            prop_assert_eq!(file.next_lsn(), memory.next_lsn());
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Sync,
    Prune(u64, u64),
    Crash,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..100).prop_map(Op::Append),
        2 => Just(Op::Sync),
        1 => (0u64..4, 0u64..3).prop_map(|(back, wait)| Op::Prune(back, wait)),
        1 => Just(Op::Crash),
    ]
}

fn records(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!("record {i}").into_bytes()).collect()
}

#[test]
fn records_roll_into_segments_and_pruning_drops_whole_ones() {
    let dir = tempfile::tempdir().unwrap();
    let files = written(dir.path(), &records(40), 128);
    assert!(files.len() > 5, "{} segments", files.len());
    let (mut journal, _) = open(dir.path(), 128).unwrap();
    assert_eq!(payloads(&mut journal), records(40));
    let size_before = journal.size_bytes();
    journal.prune(Lsn(30)).unwrap();
    journal.sync().unwrap();
    let kept = journal.records().unwrap();
    assert!(kept[0].0 <= Lsn(30) && kept.last().unwrap().0 == Lsn(39));
    assert!(journal.size_bytes() < size_before);
    assert!(segments(dir.path()).len() < files.len());
    drop(journal);
    let (mut journal, _) = open(dir.path(), 128).unwrap();
    assert_eq!(journal.records().unwrap(), kept, "pruning survives a reopen");
}

#[test]
fn a_missing_segment_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let files = written(dir.path(), &records(40), 128);
    fs::remove_file(&files[2]).unwrap();
    match open(dir.path(), 128) {
        Err(StoreError::MissingRecords { path, .. }) => assert_eq!(path, files[3]),
        other => panic!("expected a missing-records error, got {other:?}"),
    }
}

#[test]
fn a_closed_segment_cut_short_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let files = written(dir.path(), &records(40), 128);
    let len = fs::metadata(&files[1]).unwrap().len();
    fs::OpenOptions::new().write(true).open(&files[1]).unwrap().set_len(len - 3).unwrap();
    let error = open(dir.path(), 128).unwrap_err();
    assert!(matches!(&error, StoreError::Corrupt { path, .. } if *path == files[1]), "{error}");
    assert!(error.to_string().contains(&files[1].display().to_string()));
}

#[test]
fn a_foreign_file_with_a_segment_name_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{:020}.journal", 0));
    fs::write(&path, b"this is not a journal segment, it is a text file").unwrap();
    let error = open(dir.path(), 128).unwrap_err();
    assert!(matches!(&error, StoreError::ForeignFormat { path: p, .. } if *p == path), "{error}");
}

#[test]
fn a_segment_whose_creation_a_crash_cut_short_is_begun_again() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &records(3), u64::MAX);
    let next = dir.path().join(format!("{:020}.journal", 3));
    fs::write(&next, b"AGORA").unwrap();
    let (mut journal, torn) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(torn.map(|torn| torn.bytes_cut), Some(5));
    assert_eq!(payloads(&mut journal), records(3));
    assert_eq!(journal.append(b"next").unwrap(), Lsn(3));
}

#[test]
fn an_oversized_record_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path(), u64::MAX).unwrap();
    let huge = vec![0u8; agora_store::RECORD_BYTES_MAX + 1];
    assert!(matches!(journal.append(&huge), Err(StoreError::RecordTooLarge { .. })));
    assert_eq!(journal.next_lsn(), Lsn(0));
}

#[test]
fn a_journal_in_a_path_that_is_a_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let error = open(&file, 128).unwrap_err();
    assert!(error.to_string().contains("plain"), "{error}");
}
