//! A [`BlockStore`] on [redb](https://docs.rs/redb): one file, ACID transactions, a durable
//! commit per write.
//!
//! Tables:
//!
//! | table       | key                | value                                     |
//! |-------------|--------------------|-------------------------------------------|
//! | `meta`      | name               | `format`, `base` and `tip` as `u64`; `application`, bytes |
//! | `blocks`    | height             | the canonical encoding of a [`FinalizedBlock`] |
//! | `digests`   | height             | the state digest after that height        |
//! | `txs`       | transaction id     | the height that finalized it              |
//! | `snapshots` | height             | state digest (32 bytes), then the snapshot |
//!
//! The transaction index is written in batches, not with each block: a block's index entries
//! wait in memory until [`INDEX_BATCH`] of them have gathered, and are then written in one
//! transaction, which also records the height they reach (`indexed` in `meta`). Random 32-byte
//! keys touch a different B-tree page each, so indexing per block rewrote about as many pages as
//! the block had transactions; batched, a commit touches far fewer per entry. A crash loses only
//! entries the blocks table still holds: opening the store indexes the blocks above `indexed`
//! again, in memory. Lookups see both.
//!
//! Each value is followed by a seal, 8 bytes of its digest keyed by table and key under
//! `agora/store-value/v1`: redb checksums its pages only to recover from an interrupted commit,
//! so without the seal a damaged value would be read back as if it were true.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agora_crypto::Domain;
use agora_types::{Digest, Height, codec};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::{BlockStore, FinalizedBlock, Snapshot, SnapshotPolicy, check_consecutive, prune_point};
use crate::StoreError;

/// The store format this build writes and reads.
pub const STORE_FORMAT: u64 = 1;
/// The largest stored block the store decodes: a proposal's limit with room for its proof.
const BLOCK_BYTES_MAX: usize = 16 * 1024 * 1024;

// Every value is sealed: followed by 8 bytes of its digest, keyed by its table and key, so that
// a damaged value (redb does not checksum committed pages on read) or a value under a wrong key
// is found when it is read, not served.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const DIGESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("digests");
const TXS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("txs");
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// Transaction index entries gathered in memory before they are written in one transaction.
pub const INDEX_BATCH: usize = 16_384;

/// The `meta` key of the application's description.
const APPLICATION: &str = "application";

static SEAL: Domain = Domain::new("agora/store-value/v1");
const SEAL_BYTES: usize = 8;

fn seal_sum(table: &str, key: &[u8], value: &[u8]) -> [u8; SEAL_BYTES] {
    let mut hasher = SEAL.hasher();
    hasher.update_u64(table.len() as u64).update(table.as_bytes());
    hasher.update_u64(key.len() as u64).update(key).update(value);
    hasher.finalize().as_bytes()[..SEAL_BYTES].try_into().expect("8 bytes")
}

/// `value` followed by its seal.
fn seal(table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(value.len() + SEAL_BYTES);
    sealed.extend_from_slice(value);
    sealed.extend_from_slice(&seal_sum(table, key, value));
    sealed
}

/// The value inside `sealed`, if its seal holds.
fn unseal<'v>(table: &str, key: &[u8], sealed: &'v [u8]) -> Option<&'v [u8]> {
    let (value, sum) = sealed.split_last_chunk::<SEAL_BYTES>()?;
    (seal_sum(table, key, value) == *sum).then_some(value)
}

/// The block and state store in one redb file.
pub struct RedbBlockStore {
    path: PathBuf,
    /// Always `Some` until the store is dropped.
    db: Option<Database>,
    policy: SnapshotPolicy,
    base: Height,
    tip: Height,
    /// The index is written through this height; the entries above it are in `pending`.
    indexed: Height,
    /// Index entries not yet written: transaction id → height.
    pending: HashMap<[u8; 32], u64>,
}

impl Drop for RedbBlockStore {
    /// redb tidies its allocator state when a database closes, and can panic doing so on a
    /// damaged file: contained here like every other redb call.
    fn drop(&mut self) {
        let db = self.db.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
    }
}

impl std::fmt::Debug for RedbBlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBlockStore")
            .field("path", &self.path)
            .field("base", &self.base)
            .field("tip", &self.tip)
            .finish()
    }
}

impl RedbBlockStore {
    /// Opens the store at `path`, creating it if there is no file there. A file that is not a
    /// redb database, or one that is but holds no agora store, or one of another format
    /// version, or one too damaged to open, is an error naming the file.
    pub fn open(path: impl AsRef<Path>, policy: SnapshotPolicy) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let existed = path.exists();
        // redb asserts, rather than returns an error, on some damaged files (one cut short
        // below the size its header records): contain that here, so that a damaged file is a
        // typed error like any other.
        let created = std::panic::catch_unwind(|| Database::create(&path));
        let Ok(created) = created else {
            return Err(StoreError::Damaged {
                path,
                reason: "the database file is cut short or damaged",
            });
        };
        let db = created.at(&path)?;
        let mut store = Self {
            path,
            db: Some(db),
            policy,
            base: Height(1),
            tip: Height(0),
            indexed: Height(0),
            pending: HashMap::new(),
        };
        if existed {
            store.guarded(Self::read_meta)?;
            store.guarded(Self::reindex_unguarded)?;
        } else {
            store.guarded(|store| store.write_meta())?;
        }
        Ok(store)
    }

    /// The file the store is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> &Database {
        self.db.as_ref().expect("the database is open until the store is dropped")
    }

    fn write_meta(&self) -> Result<(), StoreError> {
        let txn = self.db().begin_write().at(&self.path)?;
        {
            let mut meta = txn.open_table(META).at(&self.path)?;
            for (name, value) in [("format", STORE_FORMAT), ("base", 1), ("tip", 0), ("indexed", 0)]
            {
                put_meta(&mut meta, name, value).at(&self.path)?;
            }
            // Create the other tables, so that a reader of an empty store finds them.
            txn.open_table(BLOCKS).at(&self.path)?;
            txn.open_table(DIGESTS).at(&self.path)?;
            txn.open_table(TXS).at(&self.path)?;
            txn.open_table(SNAPSHOTS).at(&self.path)?;
        }
        txn.commit().at(&self.path)
    }

    fn read_meta(&mut self) -> Result<(), StoreError> {
        let txn = self.db().begin_read().at(&self.path)?;
        let foreign = || StoreError::ForeignFormat {
            path: self.path.clone(),
            expected: "an agora block store",
        };
        let meta = txn.open_table(META).map_err(|_| foreign())?;
        let get = |name: &str| -> Result<u64, StoreError> {
            let stored = meta.get(name).at(&self.path)?.ok_or_else(foreign)?;
            let value = unseal("meta", name.as_bytes(), stored.value())
                .and_then(|value| value.try_into().ok())
                .ok_or_else(|| {
                    self.undecodable("meta", name.to_string(), "seal mismatch".into())
                })?;
            Ok(u64::from_le_bytes(value))
        };
        let format = get("format")?;
        if format != STORE_FORMAT {
            return Err(StoreError::UnsupportedVersion {
                path: self.path.clone(),
                found: format as u32,
                supported: STORE_FORMAT as u32,
            });
        }
        let (base, tip) = (get("base")?, get("tip")?);
        // A store written before the index was batched indexed every block as it came.
        let indexed = match meta.get("indexed").at(&self.path)? {
            None => tip,
            Some(_) => get("indexed")?,
        };
        (self.base, self.tip, self.indexed) = (Height(base), Height(tip), Height(indexed));
        Ok(())
    }

    /// Indexes again, in memory, the blocks above what the index table reaches (a crash lost
    /// their entries before they were written).
    fn reindex_unguarded(&mut self) -> Result<(), StoreError> {
        let mut from = Height(self.indexed.0.max(self.base.0.saturating_sub(1)) + 1);
        while from <= self.tip {
            let blocks = self.blocks_unguarded(from, 256)?;
            let Some(last) = blocks.last() else { break };
            from = Height(last.height().0 + 1);
            for block in &blocks {
                self.note_index(block);
            }
        }
        Ok(())
    }

    /// Adds `block`'s index entries to those waiting.
    fn note_index(&mut self, block: &FinalizedBlock) {
        for tx in block.block.batch().transactions() {
            self.pending.insert(*tx.id().as_bytes(), block.height().0);
        }
    }

    /// Writes the waiting index entries in one transaction, with the height they reach.
    fn flush_index_unguarded(&mut self) -> Result<(), StoreError> {
        let txn = self.db().begin_write().at(&self.path)?;
        {
            let mut txs = txn.open_table(TXS).at(&self.path)?;
            for (id, height) in &self.pending {
                txs.insert(*id, seal("txs", id, &height.to_le_bytes()).as_slice()).at(&self.path)?;
            }
            let mut meta = txn.open_table(META).at(&self.path)?;
            put_meta(&mut meta, "indexed", self.tip.0).at(&self.path)?;
        }
        txn.commit().at(&self.path)?;
        self.pending.clear();
        self.indexed = self.tip;
        Ok(())
    }

    fn decode_block(&self, height: u64, sealed: &[u8]) -> Result<FinalizedBlock, StoreError> {
        let bytes = self.unsealed("blocks", height, sealed)?;
        let block: FinalizedBlock = codec::decode_with_limit(bytes, BLOCK_BYTES_MAX)
            .map_err(|error| self.undecodable("blocks", height.to_string(), error.to_string()))?;
        if block.height() != Height(height) {
            let reason = format!("holds height {}", block.height());
            return Err(self.undecodable("blocks", height.to_string(), reason));
        }
        Ok(block)
    }

    fn unsealed<'v>(
        &self,
        table: &'static str,
        height: u64,
        sealed: &'v [u8],
    ) -> Result<&'v [u8], StoreError> {
        unseal(table, &height.to_le_bytes(), sealed)
            .ok_or_else(|| self.undecodable(table, height.to_string(), "seal mismatch".into()))
    }

    /// Runs a write, turning a panic inside redb (it asserts on some damaged files rather than
    /// returning an error) into [`StoreError::Damaged`].
    fn guarded<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(self)));
        outcome.unwrap_or_else(|_| Err(self.damaged()))
    }

    /// [`RedbBlockStore::guarded`] for a read.
    fn guarded_read<T>(
        &self,
        read: impl FnOnce(&Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(self)));
        outcome.unwrap_or_else(|_| Err(self.damaged()))
    }

    fn damaged(&self) -> StoreError {
        StoreError::Damaged { path: self.path.clone(), reason: "the database file is damaged" }
    }

    fn undecodable(&self, table: &'static str, key: String, reason: String) -> StoreError {
        StoreError::Undecodable { path: self.path.clone(), table, key, reason }
    }
}

fn put_meta(
    table: &mut redb::Table<&str, &[u8]>,
    name: &str,
    value: u64,
) -> Result<(), redb::StorageError> {
    table.insert(name, seal("meta", name.as_bytes(), &value.to_le_bytes()).as_slice()).map(drop)
}

impl RedbBlockStore {
    fn append_unguarded(&mut self, blocks: &[FinalizedBlock]) -> Result<(), StoreError> {
        check_consecutive(self.tip, blocks)?;
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        let txn = self.db().begin_write().at(&self.path)?;
        {
            let mut table = txn.open_table(BLOCKS).at(&self.path)?;
            let mut digests = txn.open_table(DIGESTS).at(&self.path)?;
            for block in blocks {
                let height = block.height().0;
                let key = height.to_le_bytes();
                let encoded =
                    codec::encode_with_limit(block, BLOCK_BYTES_MAX).map_err(|error| {
                        self.undecodable("blocks", height.to_string(), error.to_string())
                    })?;
                table.insert(height, seal("blocks", &key, &encoded).as_slice()).at(&self.path)?;
                let digest = seal("digests", &key, block.state_digest.as_bytes());
                digests.insert(height, digest.as_slice()).at(&self.path)?;
            }
            let mut meta = txn.open_table(META).at(&self.path)?;
            put_meta(&mut meta, "tip", last.height().0).at(&self.path)?;
        }
        txn.commit().at(&self.path)?;
        self.tip = last.height();
        for block in blocks {
            self.note_index(block);
        }
        if self.pending.len() >= INDEX_BATCH {
            self.flush_index_unguarded()?;
        }
        Ok(())
    }

    fn put_snapshot_unguarded(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        if snapshot.height > self.tip || snapshot.height < self.base {
            return Err(StoreError::SnapshotOutOfRange { height: snapshot.height, tip: self.tip });
        }
        let txn = self.db().begin_write().at(&self.path)?;
        {
            let mut table = txn.open_table(SNAPSHOTS).at(&self.path)?;
            let mut value = Vec::with_capacity(32 + snapshot.bytes.len());
            value.extend_from_slice(snapshot.state_digest.as_bytes());
            value.extend_from_slice(&snapshot.bytes);
            let sealed = seal("snapshots", &snapshot.height.0.to_le_bytes(), &value);
            table.insert(snapshot.height.0, sealed.as_slice()).at(&self.path)?;
            while table.len().at(&self.path)? > self.policy.kept.max(1) as u64 {
                table.pop_first().at(&self.path)?;
            }
        }
        txn.commit().at(&self.path)
    }

    fn block_unguarded(&self, height: Height) -> Result<Option<FinalizedBlock>, StoreError> {
        Ok(self
            .blocks_unguarded(height, 1)?
            .into_iter()
            .next()
            .filter(|block| block.height() == height))
    }

    fn blocks_unguarded(
        &self,
        from: Height,
        count_max: usize,
    ) -> Result<Vec<FinalizedBlock>, StoreError> {
        let txn = self.db().begin_read().at(&self.path)?;
        let table = txn.open_table(BLOCKS).at(&self.path)?;
        let mut blocks = Vec::new();
        for entry in table.range(from.0..).at(&self.path)?.take(count_max) {
            let (height, bytes) = entry.at(&self.path)?;
            blocks.push(self.decode_block(height.value(), bytes.value())?);
        }
        Ok(blocks)
    }

    fn tx_height_unguarded(&self, id: &Digest) -> Result<Option<Height>, StoreError> {
        if let Some(height) = self.pending.get(id.as_bytes()) {
            return Ok(Some(Height(*height)));
        }
        let txn = self.db().begin_read().at(&self.path)?;
        let table = txn.open_table(TXS).at(&self.path)?;
        let Some(stored) = table.get(*id.as_bytes()).at(&self.path)? else {
            return Ok(None);
        };
        let height = unseal("txs", id.as_bytes(), stored.value())
            .and_then(|value| value.try_into().ok())
            .ok_or_else(|| self.undecodable("txs", id.to_string(), "seal mismatch".into()))?;
        Ok(Some(Height(u64::from_le_bytes(height))))
    }

    fn state_digest_unguarded(&self, height: Height) -> Result<Option<Digest>, StoreError> {
        let txn = self.db().begin_read().at(&self.path)?;
        let table = txn.open_table(DIGESTS).at(&self.path)?;
        let Some(stored) = table.get(height.0).at(&self.path)? else {
            return Ok(None);
        };
        let digest = self.unsealed("digests", height.0, stored.value())?;
        let digest = digest
            .try_into()
            .map_err(|_| self.undecodable("digests", height.to_string(), "not a digest".into()))?;
        Ok(Some(Digest::from_bytes(digest)))
    }

    fn snapshot_at_most_unguarded(&self, at_most: Height) -> Result<Option<Snapshot>, StoreError> {
        let txn = self.db().begin_read().at(&self.path)?;
        let table = txn.open_table(SNAPSHOTS).at(&self.path)?;
        let Some(entry) = table.range(..=at_most.0).at(&self.path)?.next_back() else {
            return Ok(None);
        };
        let (height, value) = entry.at(&self.path)?;
        let height = height.value();
        let value = self.unsealed("snapshots", height, value.value())?;
        let Some((digest, bytes)) = value.split_first_chunk::<32>() else {
            return Err(self.undecodable(
                "snapshots",
                height.to_string(),
                "shorter than a digest".into(),
            ));
        };
        Ok(Some(Snapshot {
            height: Height(height),
            state_digest: Digest::from_bytes(*digest),
            bytes: Bytes::copy_from_slice(bytes),
        }))
    }

    fn prune_below_unguarded(&mut self, height: Height) -> Result<(), StoreError> {
        let latest = self.snapshot_at_most_unguarded(Height(u64::MAX))?;
        let latest = latest.map(|snapshot| snapshot.height);
        let to = prune_point(height, self.base, latest);
        if to == self.base {
            return Ok(());
        }
        let txn = self.db().begin_write().at(&self.path)?;
        {
            let mut table = txn.open_table(BLOCKS).at(&self.path)?;
            let mut digests = txn.open_table(DIGESTS).at(&self.path)?;
            let mut txs = txn.open_table(TXS).at(&self.path)?;
            for entry in table.extract_from_if(..to.0, |_, _| true).at(&self.path)? {
                let (key, bytes) = entry.at(&self.path)?;
                let block = self.decode_block(key.value(), bytes.value())?;
                for tx in block.block.batch().transactions() {
                    txs.remove(*tx.id().as_bytes()).at(&self.path)?;
                }
            }
            digests.retain_in(..to.0, |_, _| false).at(&self.path)?;
            let mut meta = txn.open_table(META).at(&self.path)?;
            put_meta(&mut meta, "base", to.0).at(&self.path)?;
        }
        txn.commit().at(&self.path)?;
        self.base = to;
        self.pending.retain(|_, height| *height >= to.0);
        Ok(())
    }
}

impl BlockStore for RedbBlockStore {
    fn append(&mut self, blocks: &[FinalizedBlock]) -> Result<(), StoreError> {
        self.guarded(|store| store.append_unguarded(blocks))
    }

    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.guarded(|store| store.put_snapshot_unguarded(snapshot))
    }

    fn tip(&self) -> Height {
        self.tip
    }

    fn base(&self) -> Height {
        self.base
    }

    fn block(&self, height: Height) -> Result<Option<FinalizedBlock>, StoreError> {
        self.guarded_read(|store| store.block_unguarded(height))
    }

    fn blocks(&self, from: Height, count_max: usize) -> Result<Vec<FinalizedBlock>, StoreError> {
        self.guarded_read(|store| store.blocks_unguarded(from, count_max))
    }

    fn tx_height(&self, id: &Digest) -> Result<Option<Height>, StoreError> {
        self.guarded_read(|store| store.tx_height_unguarded(id))
    }

    fn state_digest(&self, height: Height) -> Result<Option<Digest>, StoreError> {
        self.guarded_read(|store| store.state_digest_unguarded(height))
    }

    fn snapshot_at_most(&self, height: Height) -> Result<Option<Snapshot>, StoreError> {
        self.guarded_read(|store| store.snapshot_at_most_unguarded(height))
    }

    fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    fn set_application(&mut self, description: &[u8]) -> Result<(), StoreError> {
        self.guarded(|store| {
            let txn = store.db().begin_write().at(&store.path)?;
            {
                let mut meta = txn.open_table(META).at(&store.path)?;
                let sealed = seal("meta", APPLICATION.as_bytes(), description);
                meta.insert(APPLICATION, sealed.as_slice()).at(&store.path)?;
            }
            txn.commit().at(&store.path)
        })
    }

    fn application(&self) -> Result<Option<Bytes>, StoreError> {
        self.guarded_read(|store| {
            let txn = store.db().begin_read().at(&store.path)?;
            let meta = txn.open_table(META).at(&store.path)?;
            let Some(stored) = meta.get(APPLICATION).at(&store.path)? else {
                return Ok(None);
            };
            let description =
                unseal("meta", APPLICATION.as_bytes(), stored.value()).ok_or_else(|| {
                    store.undecodable("meta", APPLICATION.into(), "seal mismatch".into())
                })?;
            Ok(Some(Bytes::copy_from_slice(description)))
        })
    }

    fn prune_below(&mut self, height: Height) -> Result<(), StoreError> {
        self.guarded(|store| store.prune_below_unguarded(height))
    }
}

/// Names the file in any redb error.
trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> AtPath<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::Database {
            path: path.to_path_buf(),
            source: Box::new(error.into()),
        })
    }
}
