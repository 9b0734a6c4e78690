//! A replica's application and its block store, kept in step: every final block is applied,
//! then stored with the state digest it produced, and every K blocks the application's state is
//! stored as a snapshot. A replica that restarts opens its ledger: the newest snapshot, then the
//! blocks after it replayed, each digest checked against the stored one.
//!
//! The driver calls [`Ledger::apply`] for each commit of a pass and [`Ledger::flush`] once at
//! the end of the pass (group commit: one store transaction per pass), and flushes before it
//! syncs the engine's journal. The store is then never behind what the journal says was
//! committed, and a restarted engine that commits again what the ledger holds is skipped
//! ([`Outcome::Held`]).
//!
//! This is CometBFT's handshake and replay, where the block store is the source of truth for
//! what the application must have applied, reduced to one process: the application's state is
//! what the snapshot and the blocks after it rebuild, and nothing else.

use agora_consensus::{Application, Applied};
use agora_crypto::SignatureCheck;
use agora_types::{Block, Certificate, Digest, Height};

use crate::{BlockStore, FinalizedBlock, Snapshot, StoreError};

/// Blocks a ledger holds before a flush at most: a driver whose pass commits more flushes in
/// the middle of it.
pub const PENDING_BLOCKS_MAX: usize = 1_024;

/// Why a ledger could not be opened or replayed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The snapshot the replay starts from does not restore.
    #[error("the snapshot at height {height} does not restore: {reason}")]
    Snapshot {
        /// Its height.
        height: Height,
        /// Why the application refused it.
        reason: String,
    },
    /// Replaying the block at `height` gave another state digest than the stored one.
    #[error("height {height}: replay gives state digest {replayed}, the store holds {stored}")]
    Diverged {
        /// The first height that differs.
        height: Height,
        /// The digest the store holds.
        stored: Digest,
        /// The digest the replay computed.
        replayed: Digest,
    },
    /// A block the replay needs is not held (pruned, or never stored).
    #[error("height {height} is not in the store (it holds {base} to {tip})")]
    Missing {
        /// The height that is missing.
        height: Height,
        /// The lowest height held.
        base: Height,
        /// The highest height held.
        tip: Height,
    },
    /// A block was committed out of order: the ledger is at `expected - 1`.
    #[error("block at height {found} committed where height {expected} was next")]
    Gap {
        /// The height that should have come next.
        expected: Height,
        /// The height that came.
        found: Height,
    },
}

/// What [`Ledger::apply`] did with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, with what the application reported.
    Applied(Applied),
    /// The ledger already holds this height (a restarted engine committing again what it
    /// committed before its crash): nothing changed.
    Held,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// The height of the snapshot it started from, if it did.
    pub snapshot: Option<Height>,
    /// Blocks replayed after it.
    pub blocks: u64,
    /// Transactions the application executed in them.
    pub executed: u64,
    /// The height it reached.
    pub height: Height,
}

/// A replica's application with its block store. See the [module docs](self).
#[derive(Debug)]
pub struct Ledger<A, S> {
    app: A,
    store: S,
    /// The height of the last block applied.
    height: Height,
    /// Applied, not yet stored.
    pending: Vec<FinalizedBlock>,
    /// Taken, not yet stored (stored after the blocks they follow).
    snapshots: Vec<Snapshot>,
    /// Blocks kept below the tip when a snapshot lets older ones go; `None` keeps them all.
    retain: Option<u64>,
}

impl<A: Application, S: BlockStore> Ledger<A, S> {
    /// Opens the ledger over `store`: `restore(None)` builds the application in its genesis
    /// state, and `restore(Some(snapshot))` rebuilds it from a snapshot, checking its digest.
    /// The newest snapshot the store holds is used, then the blocks after it are replayed,
    /// each state digest compared with the stored one.
    pub fn open(
        store: S,
        restore: impl FnOnce(Option<&Snapshot>) -> Result<A, String>,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(Self, Replayed), LedgerError> {
        let (app, replayed) = replay_from(&store, Height(u64::MAX), restore, checker, |_, _| {})?;
        let ledger = Self {
            app,
            store,
            height: replayed.height,
            pending: Vec::new(),
            snapshots: Vec::new(),
            retain: None,
        };
        Ok((ledger, replayed))
    }

    /// Forgets the application and whatever was not flushed, as a process that crashes does,
    /// and rebuilds it from the store as [`Ledger::open`] does.
    pub fn reopen(
        &mut self,
        restore: impl FnOnce(Option<&Snapshot>) -> Result<A, String>,
        checker: &mut dyn SignatureCheck,
    ) -> Result<Replayed, LedgerError> {
        self.pending.clear();
        self.snapshots.clear();
        let (app, replayed) =
            replay_from(&self.store, Height(u64::MAX), restore, checker, |_, _| {})?;
        self.app = app;
        self.height = replayed.height;
        Ok(replayed)
    }

    /// Keeps at least the newest `blocks` blocks: each time a snapshot is stored, the blocks
    /// below both it and the newest `blocks` are pruned. Without this the store keeps every
    /// block, to serve peers and queries; with it the store's size is bounded by `blocks`
    /// blocks, their digests and index entries, and the policy's `kept` snapshots.
    pub fn with_retention(mut self, blocks: u64) -> Self {
        self.retain = Some(blocks.max(1));
        self
    }

    /// Applies the final block `block`, whose certificates are `proof`, if it is the next
    /// height; the block and its state digest are stored at the next [`Ledger::flush`], and a
    /// snapshot with them when one is due. A height the ledger holds is skipped; a height
    /// beyond the next is [`LedgerError::Gap`], and changes nothing.
    pub fn apply(
        &mut self,
        block: Block,
        proof: Vec<Certificate>,
        checker: &mut dyn SignatureCheck,
    ) -> Result<Outcome, LedgerError> {
        let height = block.height();
        if height <= self.height {
            return Ok(Outcome::Held);
        }
        let expected = Height(self.height.0 + 1);
        if height != expected {
            return Err(LedgerError::Gap { expected, found: height });
        }
        if self.pending.len() >= PENDING_BLOCKS_MAX {
            self.flush()?;
        }
        let applied = self.app.apply(&block, checker);
        self.height = height;
        self.pending.push(FinalizedBlock { block, proof, state_digest: applied.state_digest });
        if self.store.policy().due(height)
            && let Some(bytes) = self.app.state_snapshot()
        {
            self.snapshots.push(Snapshot { height, state_digest: applied.state_digest, bytes });
        }
        Ok(Outcome::Applied(applied))
    }

    /// Stores what was applied since the last flush in one transaction, then the snapshots
    /// taken in it. On an error nothing pending is dropped: the next flush tries again.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.pending.is_empty() {
            self.store.append(&self.pending)?;
            self.pending.clear();
        }
        let snapshots = std::mem::take(&mut self.snapshots);
        for snapshot in &snapshots {
            self.store.put_snapshot(snapshot)?;
        }
        if let Some(retain) = self.retain
            && !snapshots.is_empty()
        {
            // The store clamps this to the newest snapshot: nothing goes that it still needs.
            let below = Height((self.store.tip().0 + 1).saturating_sub(retain));
            self.store.prune_below(below)?;
        }
        Ok(())
    }

    /// The height of the last block applied (stored or pending).
    pub fn height(&self) -> Height {
        self.height
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The store (what was flushed).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// What survives a crash: the store, without what was not flushed.
    pub fn crash(self) -> S {
        self.store
    }

    /// The application and the store, with anything pending flushed first.
    pub fn into_parts(mut self) -> Result<(A, S), StoreError> {
        self.flush()?;
        Ok((self.app, self.store))
    }
}

/// Rebuilds the application from `store` as it was at its tip: from the newest snapshot at or
/// below `from` (from genesis when there is none, or when `from` is 0), then every block after
/// it, each state digest compared with the stored one. `each` sees every replayed block with
/// what the application reported. The first height whose digest differs is
/// [`LedgerError::Diverged`], naming it.
pub fn replay_from<A: Application, S: BlockStore>(
    store: &S,
    from: Height,
    restore: impl FnOnce(Option<&Snapshot>) -> Result<A, String>,
    checker: &mut dyn SignatureCheck,
    mut each: impl FnMut(&FinalizedBlock, &Applied),
) -> Result<(A, Replayed), LedgerError> {
    let snapshot = if from == Height(0) { None } else { store.snapshot_at_most(from)? };
    let start = snapshot.as_ref().map_or(Height(0), |snapshot| snapshot.height);
    if let Some(snapshot) = &snapshot
        && let Some(stored) = store.state_digest(snapshot.height)?
        && stored != snapshot.state_digest
    {
        return Err(LedgerError::Diverged {
            height: snapshot.height,
            stored,
            replayed: snapshot.state_digest,
        });
    }
    let mut app = restore(snapshot.as_ref())
        .map_err(|reason| LedgerError::Snapshot { height: start, reason })?;
    let mut replayed =
        Replayed { snapshot: snapshot.map(|s| s.height), height: start, ..Replayed::default() };
    let tip = store.tip();
    /// Blocks read from the store at a time.
    const READ_BLOCKS: usize = 256;
    while replayed.height < tip {
        let next = Height(replayed.height.0 + 1);
        let blocks = store.blocks(next, READ_BLOCKS)?;
        if blocks.first().is_none_or(|block| block.height() != next) {
            return Err(LedgerError::Missing { height: next, base: store.base(), tip });
        }
        for block in blocks.iter().take_while(|block| block.height() <= tip) {
            let expected = Height(replayed.height.0 + 1);
            if block.height() != expected {
                return Err(LedgerError::Missing { height: expected, base: store.base(), tip });
            }
            let applied = app.apply(&block.block, checker);
            if applied.state_digest != block.state_digest {
                return Err(LedgerError::Diverged {
                    height: block.height(),
                    stored: block.state_digest,
                    replayed: applied.state_digest,
                });
            }
            each(block, &applied);
            replayed.height = block.height();
            replayed.blocks += 1;
            replayed.executed += applied.executed as u64;
        }
    }
    Ok((app, replayed))
}
