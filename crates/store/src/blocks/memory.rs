//! A [`BlockStore`] in memory: the simulator's store, and the reference the redb store is
//! tested against.

use std::collections::{BTreeMap, HashMap};

use agora_types::{Digest, Height};
use bytes::Bytes;

use super::{BlockStore, FinalizedBlock, Snapshot, SnapshotPolicy, check_consecutive, prune_point};
use crate::StoreError;

/// Blocks and snapshots in maps. Every write is durable at once, as a redb commit is, so a
/// simulated crash keeps all of it.
#[derive(Debug, Clone, Default)]
pub struct MemBlockStore {
    policy: SnapshotPolicy,
    blocks: BTreeMap<Height, FinalizedBlock>,
    tx_heights: HashMap<Digest, Height>,
    snapshots: BTreeMap<Height, Snapshot>,
    base: Height,
    tip: Height,
    application: Option<Bytes>,
}

impl MemBlockStore {
    /// An empty store that keeps snapshots by `policy`.
    pub fn new(policy: SnapshotPolicy) -> Self {
        Self { policy, base: Height(1), ..Self::default() }
    }
}

impl BlockStore for MemBlockStore {
    fn append(&mut self, blocks: &[FinalizedBlock]) -> Result<(), StoreError> {
        check_consecutive(self.tip, blocks)?;
        for block in blocks {
            for tx in block.block.batch().transactions() {
                self.tx_heights.insert(tx.id(), block.height());
            }
            self.tip = block.height();
            self.blocks.insert(block.height(), block.clone());
        }
        Ok(())
    }

    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        if snapshot.height > self.tip || snapshot.height < self.base {
            return Err(StoreError::SnapshotOutOfRange { height: snapshot.height, tip: self.tip });
        }
        self.snapshots.insert(snapshot.height, snapshot.clone());
        while self.snapshots.len() > self.policy.kept.max(1) {
            self.snapshots.pop_first();
        }
        Ok(())
    }

    fn tip(&self) -> Height {
        self.tip
    }

    fn base(&self) -> Height {
        self.base
    }

    fn block(&self, height: Height) -> Result<Option<FinalizedBlock>, StoreError> {
        Ok(self.blocks.get(&height).cloned())
    }

    fn blocks(&self, from: Height, count_max: usize) -> Result<Vec<FinalizedBlock>, StoreError> {
        Ok(self.blocks.range(from..).take(count_max).map(|(_, block)| block.clone()).collect())
    }

    fn tx_height(&self, id: &Digest) -> Result<Option<Height>, StoreError> {
        Ok(self.tx_heights.get(id).copied())
    }

    fn state_digest(&self, height: Height) -> Result<Option<Digest>, StoreError> {
        Ok(self.blocks.get(&height).map(|block| block.state_digest))
    }

    fn snapshot_at_most(&self, height: Height) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.snapshots.range(..=height).next_back().map(|(_, snapshot)| snapshot.clone()))
    }

    fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    fn set_application(&mut self, description: &[u8]) -> Result<(), StoreError> {
        self.application = Some(Bytes::copy_from_slice(description));
        Ok(())
    }

    fn application(&self) -> Result<Option<Bytes>, StoreError> {
        Ok(self.application.clone())
    }

    fn prune_below(&mut self, height: Height) -> Result<(), StoreError> {
        let latest = self.snapshots.last_key_value().map(|(height, _)| *height);
        let to = prune_point(height, self.base, latest);
        let kept = self.blocks.split_off(&to);
        for block in std::mem::replace(&mut self.blocks, kept).into_values() {
            for tx in block.block.batch().transactions() {
                self.tx_heights.remove(&tx.id());
            }
        }
        self.base = to;
        Ok(())
    }
}
