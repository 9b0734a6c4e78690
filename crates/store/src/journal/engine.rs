//! An engine's records in a [`Journal`]: the one envelope every driver writes them in.
//!
//! Engines persist opaque records, some of which are checkpoints: a checkpoint stands for every
//! record before it but the last few it names (`keep`), which it still needs (say, the blocks of
//! the log above a stable checkpoint, journalled once when they arrived rather than copied into
//! every checkpoint). A driver appends each record behind a tag byte (0 a record, 1 a checkpoint
//! that keeps nothing before it, 2 a checkpoint followed by its `keep` as 8 little-endian bytes),
//! prunes the journal before what each checkpoint keeps (the journal waits until the checkpoint
//! itself is durable), and on a restart hands the engine the records from the latest
//! checkpoint's kept records on.

use bytes::Bytes;

use super::{Journal, Lsn};
use crate::StoreError;

const RECORD: u8 = 0;
const CHECKPOINT: u8 = 1;
const CHECKPOINT_KEEPING: u8 = 2;

/// A journal holding one engine's records; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct EngineJournal<J> {
    journal: J,
    buffer: Vec<u8>,
}

impl<J: Journal> EngineJournal<J> {
    /// The engine's records in `journal`.
    pub fn new(journal: J) -> Self {
        Self { journal, buffer: Vec::new() }
    }

    /// Appends `record`. `checkpoint: Some(keep)` makes it a checkpoint that stands for every
    /// record before it but the last `keep`: the journal drops the others once the checkpoint is
    /// durable.
    pub fn persist(&mut self, record: &[u8], checkpoint: Option<u64>) -> Result<Lsn, StoreError> {
        self.buffer.clear();
        match checkpoint {
            None => self.buffer.push(RECORD),
            Some(0) => self.buffer.push(CHECKPOINT),
            Some(keep) => {
                self.buffer.push(CHECKPOINT_KEEPING);
                self.buffer.extend_from_slice(&keep.to_le_bytes());
            }
        }
        self.buffer.extend_from_slice(record);
        let lsn = self.journal.append(&self.buffer)?;
        if let Some(keep) = checkpoint {
            self.journal.prune_once_durable(Lsn(lsn.0.saturating_sub(keep)), lsn)?;
        }
        Ok(lsn)
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.journal.sync()
    }

    /// The engine's records from the latest checkpoint's kept records on, oldest first: what
    /// `Protocol::restore` is handed. A record with an unknown tag, or a checkpoint that keeps
    /// records the journal no longer holds, is [`StoreError::Corrupt`] (its checksum held, so
    /// another program or version wrote it).
    pub fn records(&mut self) -> Result<Vec<Bytes>, StoreError> {
        let records = self.journal.records()?;
        let corrupt = |lsn, reason| StoreError::Corrupt {
            path: "engine journal".into(),
            offset: 0,
            lsn,
            reason,
        };
        // The latest checkpoint: its position, its LSN and how many records before it it keeps.
        let mut latest = (0, Lsn::default(), 0);
        let mut bodies = Vec::with_capacity(records.len());
        for (index, (lsn, record)) in records.iter().enumerate() {
            match record.first() {
                Some(&RECORD) => bodies.push(record.slice(1..)),
                Some(&CHECKPOINT) => {
                    latest = (index, *lsn, 0);
                    bodies.push(record.slice(1..));
                }
                Some(&CHECKPOINT_KEEPING) if record.len() >= 9 => {
                    let keep = u64::from_le_bytes(record[1..9].try_into().expect("8 bytes"));
                    latest = (index, *lsn, keep);
                    bodies.push(record.slice(9..));
                }
                _ => return Err(corrupt(*lsn, "a record without an engine record's tag")),
            }
        }
        // Only the latest checkpoint's kept records must still be here: a later checkpoint may
        // have pruned what an earlier one kept.
        let (index, lsn, keep) = latest;
        let from = usize::try_from(keep)
            .ok()
            .and_then(|keep| index.checked_sub(keep))
            .ok_or(corrupt(lsn, "a checkpoint keeps records the journal does not hold"))?;
        bodies.drain(..from);
        Ok(bodies)
    }

    /// The journal.
    pub fn journal(&self) -> &J {
        &self.journal
    }

    /// The journal, to crash it in a simulation.
    pub fn journal_mut(&mut self) -> &mut J {
        &mut self.journal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemJournal;

    #[test]
    fn a_restart_replays_from_the_latest_durable_checkpoint() {
        let mut journal = EngineJournal::new(MemJournal::new());
        journal.persist(b"vote 1", None).unwrap();
        journal.persist(b"state at 1", Some(0)).unwrap();
        journal.persist(b"vote 2", None).unwrap();
        journal.sync().unwrap();
        journal.persist(b"state at 2", Some(0)).unwrap();
        journal.journal_mut().crash(0);
        let records = journal.records().unwrap();
        assert_eq!(records, vec![Bytes::from_static(b"state at 1"), Bytes::from_static(b"vote 2")]);
        let kept = journal.journal_mut().records().unwrap().len();
        assert_eq!(
            kept, 2,
            "the durable checkpoint pruned the vote before it, the lost one nothing"
        );
    }

    #[test]
    fn a_checkpoint_keeps_the_records_it_names_and_a_lost_one_prunes_nothing() {
        let mut journal = EngineJournal::new(MemJournal::new());
        for record in [b"block 1", b"block 2", b"block 3"] {
            journal.persist(record, None).unwrap();
        }
        journal.persist(b"state keeping 2", Some(2)).unwrap();
        journal.persist(b"vote", None).unwrap();
        journal.sync().unwrap();
        let expected: Vec<Bytes> = [&b"block 2"[..], b"block 3", b"state keeping 2", b"vote"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        assert_eq!(journal.records().unwrap(), expected);
        assert_eq!(journal.journal_mut().records().unwrap().len(), 4, "block 1 pruned");

        // A checkpoint keeping nothing, lost in a crash: the earlier one still holds.
        journal.persist(b"state keeping 0", Some(0)).unwrap();
        journal.journal_mut().crash(0);
        assert_eq!(journal.records().unwrap(), expected);
    }

    #[test]
    fn a_checkpoint_keeping_more_than_the_journal_holds_is_corrupt() {
        let mut journal = EngineJournal::new(MemJournal::new());
        journal.persist(b"block", None).unwrap();
        journal.persist(b"state keeping 5", Some(5)).unwrap();
        assert!(matches!(journal.records(), Err(StoreError::Corrupt { .. })));
    }
}
