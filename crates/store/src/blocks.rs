//! The block and state store: what a replica finalized, kept by height.
//!
//! It holds the finalized blocks with the certificates that prove them final, the index from
//! transaction id to the height that finalized it, the application's state digest at every
//! height, and application snapshots. A replica recovers by loading its latest snapshot and
//! replaying the blocks after it; a replica that was down fetches from a peer's store.
//!
//! # What it grows with
//!
//! With nothing pruned, the store grows with the finalized log: each block, its proof, 32 bytes
//! of state digest per height and about 40 bytes of index per transaction. Snapshots are
//! bounded by count ([`SnapshotPolicy::kept`]). [`BlockStore::prune_below`] drops blocks, their
//! index entries and digests below a height, and never beyond the latest snapshot, so that the
//! snapshot and the blocks after it always rebuild the state; a node that retains R blocks
//! holds at most R blocks, R digests, their index entries and `kept` snapshots.

pub mod memory;
pub mod redb;

use agora_types::{Block, Certificate, Digest, Height};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A block as a replica finalized it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizedBlock {
    /// The block, with its height.
    pub block: Block,
    /// The certificates that prove it final, as its engine defines them: PBFT, the commit
    /// certificate of its sequence number (over the block as pre-prepared, which differs from
    /// the block stored when execution left out requests executed before), or for a block
    /// fetched by state transfer the stable checkpoint certificate its digest chains into;
    /// Streamlet, its notarization (the notarizations of the blocks after it, stored at their
    /// heights, complete the finalizing chain). Empty when the engine had none at hand. The
    /// engine that serves a block to a peer checks the proof; the store keeps it as given.
    pub proof: Vec<Certificate>,
    /// The application's state digest after this block.
    pub state_digest: Digest,
}

impl FinalizedBlock {
    /// Its height.
    pub fn height(&self) -> Height {
        self.block.height()
    }
}

/// The application's state at one height, as the application encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The height of the last block the state includes.
    pub height: Height,
    /// The state digest at that height.
    pub state_digest: Digest,
    /// The application's encoding of its state.
    pub bytes: Bytes,
}

/// When snapshots are taken and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// A snapshot is due at every height that is a multiple of this (K). At least 1.
    pub every: u64,
    /// How many of the newest snapshots are kept. At least 1.
    pub kept: usize,
}

impl Default for SnapshotPolicy {
    /// A snapshot every 1,000 blocks, the newest two kept.
    fn default() -> Self {
        Self { every: 1_000, kept: 2 }
    }
}

impl SnapshotPolicy {
    /// Whether a snapshot is due after the block at `height`.
    pub fn due(&self, height: Height) -> bool {
        height.0 > 0 && height.0.is_multiple_of(self.every.max(1))
    }
}

/// Blocks, state digests, the transaction index and snapshots, by height.
///
/// Every write is one atomic, durable transaction: a crash leaves it whole or absent. A driver
/// appends all the blocks of one pass of its event loop in one call (group commit).
pub trait BlockStore {
    /// Appends finalized blocks, whose heights must follow [`BlockStore::tip`] one by one, with
    /// their index entries and state digests, in one durable transaction.
    fn append(&mut self, blocks: &[FinalizedBlock]) -> Result<(), StoreError>;

    /// Stores a snapshot of a height already appended, then drops the oldest beyond the
    /// policy's count.
    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// The height of the last block stored (0 when there is none).
    fn tip(&self) -> Height;

    /// The lowest height whose block is still held; above the tip when none is.
    fn base(&self) -> Height;

    /// The block at `height`, if it is held.
    fn block(&self, height: Height) -> Result<Option<FinalizedBlock>, StoreError>;

    /// Up to `count_max` consecutive blocks from `from`, fewer where the held range ends: how
    /// a peer serves catch-up in bounded ranges.
    fn blocks(&self, from: Height, count_max: usize) -> Result<Vec<FinalizedBlock>, StoreError>;

    /// The height that finalized the transaction `id`, if it is indexed.
    fn tx_height(&self, id: &Digest) -> Result<Option<Height>, StoreError>;

    /// The state digest after the block at `height`, if it is held.
    fn state_digest(&self, height: Height) -> Result<Option<Digest>, StoreError>;

    /// The newest snapshot, if any.
    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        self.snapshot_at_most(Height(u64::MAX))
    }

    /// The newest snapshot at or below `height`, if any: where a replay that starts from a
    /// given height begins.
    fn snapshot_at_most(&self, height: Height) -> Result<Option<Snapshot>, StoreError>;

    /// When snapshots are due and how many are kept.
    fn policy(&self) -> SnapshotPolicy;

    /// Records what the blocks are applied to (the application and its genesis, in the
    /// encoding of whoever writes the store), so that a tool that replays the store can build
    /// the same application. Written once, when a store is first used; one atomic write.
    fn set_application(&mut self, description: &[u8]) -> Result<(), StoreError>;

    /// What [`BlockStore::set_application`] recorded, if anything.
    fn application(&self) -> Result<Option<Bytes>, StoreError>;

    /// Drops the blocks, index entries and digests below `height`, clamped so that the blocks
    /// after the latest snapshot always remain (nothing is dropped without a snapshot).
    fn prune_below(&mut self, height: Height) -> Result<(), StoreError>;
}

/// Checks that `blocks` follow `tip` one by one.
pub(crate) fn check_consecutive(tip: Height, blocks: &[FinalizedBlock]) -> Result<(), StoreError> {
    for (expected, block) in (tip.0 + 1..).map(Height).zip(blocks) {
        if block.height() != expected {
            return Err(StoreError::OutOfOrder { expected, found: block.height() });
        }
    }
    Ok(())
}

/// Where [`BlockStore::prune_below`] may prune to: never beyond the latest snapshot's
/// successor, never below the current base.
pub(crate) fn prune_point(asked: Height, base: Height, snapshot: Option<Height>) -> Height {
    let limit = snapshot.map_or(Height(0), |height| Height(height.0 + 1));
    asked.min(limit).max(base)
}

/// A boxed store is one: drivers that choose their store at run time hold
/// `Box<dyn BlockStore + Send>`.
impl<B: BlockStore + ?Sized> BlockStore for Box<B> {
    fn append(&mut self, blocks: &[FinalizedBlock]) -> Result<(), StoreError> {
        (**self).append(blocks)
    }

    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        (**self).put_snapshot(snapshot)
    }

    fn tip(&self) -> Height {
        (**self).tip()
    }

    fn base(&self) -> Height {
        (**self).base()
    }

    fn block(&self, height: Height) -> Result<Option<FinalizedBlock>, StoreError> {
        (**self).block(height)
    }

    fn blocks(&self, from: Height, count_max: usize) -> Result<Vec<FinalizedBlock>, StoreError> {
        (**self).blocks(from, count_max)
    }

    fn tx_height(&self, id: &Digest) -> Result<Option<Height>, StoreError> {
        (**self).tx_height(id)
    }

    fn state_digest(&self, height: Height) -> Result<Option<Digest>, StoreError> {
        (**self).state_digest(height)
    }

    fn snapshot_at_most(&self, height: Height) -> Result<Option<Snapshot>, StoreError> {
        (**self).snapshot_at_most(height)
    }

    fn policy(&self) -> SnapshotPolicy {
        (**self).policy()
    }

    fn set_application(&mut self, description: &[u8]) -> Result<(), StoreError> {
        (**self).set_application(description)
    }

    fn application(&self) -> Result<Option<Bytes>, StoreError> {
        (**self).application()
    }

    fn prune_below(&mut self, height: Height) -> Result<(), StoreError> {
        (**self).prune_below(height)
    }
}
