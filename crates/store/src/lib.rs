//! agora's durable storage: what a replica must not forget, and what it finalized.
//!
//! Two stores, each behind a narrow trait with a file implementation for real nodes and an
//! in-memory one for the simulator:
//!
//! - [`Journal`]: the consensus journal. Append-only, checksummed, length-prefixed records in
//!   segments, made durable by an explicit [`Journal::sync`]. An engine's safety state (the
//!   votes it cast, what it locked, prepared or committed) goes here, and the driver syncs it
//!   before any message sent after it leaves the node. [`FileJournal`] is segment files in a
//!   directory; [`MemJournal`] forgets what was not synced when the simulator crashes its node.
//!   Recovery reads up to the first torn or corrupt record: a torn tail is cut and reported, and
//!   damage before the tail is [`StoreError::Corrupt`], never a silently shorter history.
//! - [`BlockStore`]: finalized blocks with their certificates by height, the index from
//!   transaction id to height, the state digest at every height, and application snapshots
//!   every K blocks ([`SnapshotPolicy`]). [`RedbBlockStore`] keeps them in one
//!   [redb](https://docs.rs/redb) file, one ACID transaction per write; [`MemBlockStore`] in
//!   maps.
//!
//! - [`Ledger`]: an application and its block store kept in step. A driver applies each final
//!   block through it and flushes once per pass; a restart opens it from the newest snapshot
//!   and replays the blocks after it, checking every stored state digest ([`replay_from`],
//!   which `agora replay` runs too).
//!
//! The crate depends on `agora-types` and on the consensus seam (`agora-consensus`, for the
//! [`Application`](agora_consensus::Application) trait the ledger drives), and knows no engine
//! and no application: records are bytes an engine encodes, and snapshots are bytes an
//! application encodes.
//!
//! The write-then-sync-then-speak discipline follows malachite's write-ahead log and
//! commonware's simplex journal; the torn-tail rule (cut a record the crash interrupted, refuse
//! damage before it) answers malachite's issue #1434.
//!
//! ```
//! use agora_store::{FileJournal, FileJournalConfig, Journal, Lsn};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (mut journal, torn) = FileJournal::open(dir.path(), FileJournalConfig::default()).unwrap();
//! assert!(torn.is_none());
//! journal.append(b"voted for block 7 in epoch 3").unwrap();
//! journal.sync().unwrap(); // durable: only now may the vote be sent
//! drop(journal);
//!
//! let (mut journal, _) = FileJournal::open(dir.path(), FileJournalConfig::default()).unwrap();
//! let records = journal.records().unwrap();
//! assert_eq!(records[0].0, Lsn(0));
//! assert_eq!(&records[0].1[..], b"voted for block 7 in epoch 3");
//! ```

pub mod blocks;
pub mod journal;
pub mod ledger;

use std::path::PathBuf;

pub use agora_types::Height;
pub use blocks::memory::MemBlockStore;
pub use blocks::redb::RedbBlockStore;
pub use blocks::{BlockStore, FinalizedBlock, Snapshot, SnapshotPolicy};
pub use journal::engine::EngineJournal;
pub use journal::file::{FileJournal, FileJournalConfig};
pub use journal::memory::MemJournal;
pub use journal::{Journal, Lsn, RECORD_BYTES_MAX, TornTail};
pub use ledger::{Ledger, LedgerError, Outcome, Replayed, replay_from};

/// The block store's file in a replica's directory, beside its `journal` directory.
pub const BLOCKS_FILE: &str = "blocks.redb";

/// Why a store operation failed. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused a read, a write or a sync.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not one of agora's stores.
    #[error("{}: not {expected}", path.display())]
    ForeignFormat {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        expected: &'static str,
    },
    /// The file is one of agora's stores, in a format version this build does not read.
    #[error("{}: format version {found}, this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version the file has.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A record was damaged after it was written whole: recovery refuses to shorten the history.
    #[error("{}: record {lsn} at byte {offset} is corrupt ({reason})", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damaged record starts in it.
        offset: u64,
        /// The position the damaged record has.
        lsn: Lsn,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A segment does not start where the one before it ended: records are missing.
    #[error("{}: starts at record {found}, but the segment before ends at {expected}", path.display())]
    MissingRecords {
        /// The segment file.
        path: PathBuf,
        /// Where it should have started.
        expected: Lsn,
        /// Where it starts.
        found: Lsn,
    },
    /// A record above [`RECORD_BYTES_MAX`] was appended.
    #[error("a record of {len} bytes is above the journal's limit of {max}")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Blocks were appended out of height order.
    #[error("block at height {found} appended where height {expected} was next")]
    OutOfOrder {
        /// The height that should have come next.
        expected: Height,
        /// The height that came.
        found: Height,
    },
    /// A database file too damaged to open.
    #[error("{}: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A snapshot of a height the store does not hold.
    #[error("a snapshot at height {height}, outside the stored blocks (tip {tip})")]
    SnapshotOutOfRange {
        /// The snapshot's height.
        height: Height,
        /// The store's tip.
        tip: Height,
    },
    /// A stored value does not decode.
    #[error("{}: table {table}, key {key}: {reason}", path.display())]
    Undecodable {
        /// The store's file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The key: a height, a name or a transaction id.
        key: String,
        /// Why.
        reason: String,
    },
    /// The database refused an operation.
    #[error("{}: {source}", path.display())]
    Database {
        /// The store's file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::Error>,
    },
}
