//! An engine's records in a [`Journal`]: the one envelope every driver writes them in.
//!
//! Engines persist opaque records, some of which are checkpoints: a checkpoint stands for every
//! record before it. A driver appends each record behind one tag byte (0 a record, 1 a
//! checkpoint), prunes the journal before each checkpoint (the journal waits until the
//! checkpoint is durable), and on a restart hands the engine the records from the latest
//! checkpoint on.

use bytes::Bytes;

use super::{Journal, Lsn};
use crate::StoreError;

const RECORD: u8 = 0;
const CHECKPOINT: u8 = 1;

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

    /// Appends `record`; a `checkpoint` stands for every record before it, which the journal
    /// drops once the checkpoint is durable.
    pub fn persist(&mut self, record: &[u8], checkpoint: bool) -> Result<Lsn, StoreError> {
        self.buffer.clear();
        self.buffer.push(if checkpoint { CHECKPOINT } else { RECORD });
        self.buffer.extend_from_slice(record);
        let lsn = self.journal.append(&self.buffer)?;
        if checkpoint {
            self.journal.prune(lsn)?;
        }
        Ok(lsn)
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.journal.sync()
    }

    /// The engine's records from the latest checkpoint on, oldest first: what
    /// `Protocol::restore` is handed. A record with an unknown tag is [`StoreError::Corrupt`]
    /// (its checksum held, so another program or version wrote it).
    pub fn records(&mut self) -> Result<Vec<Bytes>, StoreError> {
        let records = self.journal.records()?;
        let mut from = 0;
        for (index, (lsn, record)) in records.iter().enumerate() {
            match record.first() {
                Some(&CHECKPOINT) => from = index,
                Some(&RECORD) => {}
                _ => {
                    return Err(StoreError::Corrupt {
                        path: "engine journal".into(),
                        offset: 0,
                        lsn: *lsn,
                        reason: "a record without an engine record's tag",
                    });
                }
            }
        }
        Ok(records.into_iter().skip(from).map(|(_, record)| record.slice(1..)).collect())
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
        journal.persist(b"vote 1", false).unwrap();
        journal.persist(b"state at 1", true).unwrap();
        journal.persist(b"vote 2", false).unwrap();
        journal.sync().unwrap();
        journal.persist(b"state at 2", true).unwrap();
        journal.journal_mut().crash(0);
        let records = journal.records().unwrap();
        assert_eq!(records, vec![Bytes::from_static(b"state at 1"), Bytes::from_static(b"vote 2")]);
        let kept = journal.journal_mut().records().unwrap().len();
        assert_eq!(
            kept, 2,
            "the durable checkpoint pruned the vote before it, the lost one nothing"
        );
    }
}
