//! A [`Journal`] in memory that forgets what was not synced when its node crashes: the
//! simulator's journal.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Journal, Lsn, check_size, framed_len};
use crate::StoreError;

/// A journal held in memory, with the durability of a file journal: [`MemJournal::crash`]
/// keeps what was synced and at most a prefix of what was not, as a disk does when power goes
/// in the middle of a write.
#[derive(Debug, Clone, Default)]
pub struct MemJournal {
    /// The position of the first kept record.
    first: Lsn,
    /// Synced records, then `unsynced` more after them.
    records: VecDeque<Bytes>,
    unsynced: usize,
    bytes: u64,
    prune_to: Lsn,
    /// The record whose durability the prune waits for (at or after `prune_to`).
    prune_when: Lsn,
}

impl MemJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records were appended since the last sync.
    pub fn unsynced(&self) -> usize {
        self.unsynced
    }

    /// The node crashed: of the records appended since the last sync, only the first
    /// `keep_unsynced` survive (clamped to how many there are); the rest are lost. A simulator
    /// draws `keep_unsynced` to model a crash between an append and its sync.
    pub fn crash(&mut self, keep_unsynced: usize) {
        let lost = self.unsynced - keep_unsynced.min(self.unsynced);
        for record in self.records.drain(self.records.len() - lost..) {
            self.bytes -= framed_len(record.len());
        }
        self.unsynced = 0;
        // A restarted node opens its journal afresh: no prune point survives the crash.
        self.prune_to = self.first;
        self.prune_when = self.first;
    }

    fn synced_end(&self) -> Lsn {
        Lsn(self.first.0 + (self.records.len() - self.unsynced) as u64)
    }

    fn apply_prune(&mut self) {
        // Records before the prune point go only once the record the prune waits for is
        // durable: if a crash lost a checkpoint, the records it summarised are still needed.
        let synced_end = self.synced_end();
        let durable =
            self.prune_when < synced_end || (self.unsynced == 0 && self.prune_when == synced_end);
        if !durable {
            return;
        }
        while self.first < self.prune_to {
            let record = self.records.pop_front().expect("a synced record before the prune point");
            self.bytes -= framed_len(record.len());
            self.first = self.first.next();
        }
    }
}

impl Journal for MemJournal {
    fn append(&mut self, record: &[u8]) -> Result<Lsn, StoreError> {
        check_size(record)?;
        let lsn = self.next_lsn();
        self.records.push_back(Bytes::copy_from_slice(record));
        self.unsynced += 1;
        self.bytes += framed_len(record.len());
        Ok(lsn)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.unsynced = 0;
        self.apply_prune();
        Ok(())
    }

    fn prune_once_durable(&mut self, keep_from: Lsn, durable_at: Lsn) -> Result<(), StoreError> {
        let next = self.next_lsn();
        self.prune_to = self.prune_to.max(keep_from.min(next));
        self.prune_when = self.prune_when.max(durable_at.max(keep_from).min(next));
        self.apply_prune();
        Ok(())
    }

    fn next_lsn(&self) -> Lsn {
        Lsn(self.first.0 + self.records.len() as u64)
    }

    fn records(&mut self) -> Result<Vec<(Lsn, Bytes)>, StoreError> {
        let lsns = (self.first.0..).map(Lsn);
        Ok(lsns.zip(self.records.iter().cloned()).collect())
    }

    fn size_bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_the_synced_records_and_a_prefix_of_the_rest() {
        let mut journal = MemJournal::new();
        journal.append(b"a").unwrap();
        journal.sync().unwrap();
        for record in [b"b", b"c", b"d"] {
            journal.append(record).unwrap();
        }
        journal.crash(1);
        let kept: Vec<Bytes> = journal.records().unwrap().into_iter().map(|(_, r)| r).collect();
        assert_eq!(kept, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert_eq!(journal.next_lsn(), Lsn(2));
    }

    #[test]
    fn pruning_waits_until_the_prune_point_is_durable() {
        let mut journal = MemJournal::new();
        for record in [b"a", b"b"] {
            journal.append(record).unwrap();
        }
        journal.sync().unwrap();
        let checkpoint = journal.append(b"checkpoint").unwrap();
        journal.prune(checkpoint).unwrap();
        journal.crash(0);
        assert_eq!(
            journal.records().unwrap().len(),
            2,
            "the old records outlive a lost checkpoint"
        );
        let checkpoint = journal.append(b"checkpoint").unwrap();
        journal.prune(checkpoint).unwrap();
        journal.sync().unwrap();
        assert_eq!(
            journal.records().unwrap(),
            vec![(checkpoint, Bytes::from_static(b"checkpoint"))]
        );
    }

    #[test]
    fn a_prune_that_waits_for_a_later_record_keeps_everything_until_that_record_is_durable() {
        let mut journal = MemJournal::new();
        for record in [b"a", b"b"] {
            journal.append(record).unwrap();
        }
        journal.sync().unwrap();
        journal.append(b"c").unwrap();
        let checkpoint = journal.append(b"checkpoint keeping b and c").unwrap();
        // Keep from b once the checkpoint is durable: b, the prune point, already is.
        journal.prune_once_durable(Lsn(1), checkpoint).unwrap();
        assert_eq!(journal.records().unwrap().len(), 4, "the checkpoint is not durable yet");
        journal.crash(1);
        assert_eq!(journal.records().unwrap().len(), 3, "a lost checkpoint prunes nothing");
        let checkpoint = journal.append(b"checkpoint again").unwrap();
        journal.prune_once_durable(Lsn(1), checkpoint).unwrap();
        journal.sync().unwrap();
        let kept: Vec<Bytes> = journal.records().unwrap().into_iter().map(|(_, r)| r).collect();
        let expected: Vec<Bytes> =
            [&b"b"[..], b"c", b"checkpoint again"].into_iter().map(Bytes::from_static).collect();
        assert_eq!(kept, expected);
    }
}
