//! The seam between an engine and the transactions waiting to be ordered, and a bounded default.

use std::collections::BTreeMap;

use agora_crypto::Digest;
use agora_types::{Batch, Transaction};
use rustc_hash::FxHashMap;

use crate::RecentIds;

/// How large a batch a leader may propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many transactions.
    pub txs_max: usize,
    /// At most this many encoded bytes of transactions.
    pub bytes_max: usize,
}

impl Default for BatchLimits {
    /// 1,000 transactions or 1 MiB, whichever comes first.
    fn default() -> Self {
        Self { txs_max: 1_000, bytes_max: 1024 * 1024 }
    }
}

impl BatchLimits {
    /// Whether a received batch is within these limits: at most `txs_max` transactions and at
    /// most `bytes_max` encoded bytes of them, plus the batch's count prefix (a varint of at most
    /// 8 bytes for any count a batch can hold). Every engine checks proposals with this, so a
    /// leader and its followers never disagree about what fits.
    pub fn admits(&self, batch: &Batch) -> bool {
        batch.len() <= self.txs_max && batch.encoded().len() <= self.bytes_max.saturating_add(8)
    }
}

/// What became of a submitted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// New: it waits to be ordered.
    Accepted,
    /// Already pending here, or committed recently: nothing changed.
    Duplicate,
}

/// Why a transaction was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// The mempool is at its bound (count or bytes): backpressure. The client must retry later;
    /// the transaction was not stored.
    #[error("mempool full ({txs} transactions, {bytes} bytes); retry later")]
    Full {
        /// Transactions pending.
        txs: usize,
        /// Bytes pending.
        bytes: usize,
    },
}

/// Transactions waiting to be ordered, as an engine sees them.
///
/// A transaction stays in the mempool from [`insert`](Mempool::insert) until the driver reports
/// it committed ([`remove_committed`](Mempool::remove_committed)); proposing it does not remove
/// it, so a proposal that never becomes final loses nothing. The engine passes a `skip`
/// predicate to [`select`](Mempool::select) for transactions it has already put into blocks that
/// are still in flight.
pub trait Mempool {
    /// Adds `tx` unless it is a duplicate (pending, or recently committed) or the mempool is full.
    fn insert(&mut self, tx: Transaction) -> Result<Submitted, MempoolError>;

    /// The oldest pending transactions within `limits`, in arrival order, leaving out those for
    /// which `skip` is true. Nothing is removed.
    fn select(&self, limits: &BatchLimits, skip: &dyn Fn(&Digest) -> bool) -> Vec<Transaction>;

    /// These transactions were committed: forget them, and refuse them from now on.
    fn remove_committed(&mut self, txs: &[Transaction]);

    /// True when `id` is pending.
    fn contains(&self, id: &Digest) -> bool;

    /// Number of pending transactions.
    fn len(&self) -> usize;

    /// True when nothing is pending.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bounds of an [`InMemoryMempool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Pending transactions at most.
    pub txs_max: usize,
    /// Pending encoded bytes at most.
    pub bytes_max: usize,
    /// How many committed ids are remembered to refuse late duplicates (oldest forgotten first).
    /// Replays older than this are the application's to refuse (per-account nonces).
    pub committed_memory: usize,
}

impl Default for MempoolLimits {
    /// 100,000 transactions, 64 MiB, and the last 1,000,000 committed ids.
    fn default() -> Self {
        Self { txs_max: 100_000, bytes_max: 64 * 1024 * 1024, committed_memory: 1_000_000 }
    }
}

/// The default mempool: bounded, deduplicated by transaction id, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct InMemoryMempool {
    limits: MempoolLimits,
    /// Arrival sequence number → transaction; iteration is arrival order.
    pending: BTreeMap<u64, Transaction>,
    /// Transaction id → arrival sequence number.
    index: FxHashMap<Digest, u64>,
    pending_bytes: usize,
    next_arrival: u64,
    committed: RecentIds,
}

impl InMemoryMempool {
    /// An empty mempool with the given bounds.
    pub fn new(limits: MempoolLimits) -> Self {
        Self { limits, committed: RecentIds::new(limits.committed_memory), ..Self::default() }
    }

    /// Encoded bytes pending.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The pending transaction with this id.
    pub fn get(&self, id: &Digest) -> Option<&Transaction> {
        self.pending.get(self.index.get(id)?)
    }

    /// The pending transaction that was the `arrival`-th accepted (counting from 0).
    pub(crate) fn by_arrival(&self, arrival: u64) -> Option<&Transaction> {
        self.pending.get(&arrival)
    }
}

impl Mempool for InMemoryMempool {
    fn insert(&mut self, tx: Transaction) -> Result<Submitted, MempoolError> {
        let id = tx.id();
        if self.index.contains_key(&id) || self.committed.contains(&id) {
            return Ok(Submitted::Duplicate);
        }
        let size = tx.encoded_len();
        if self.pending.len() >= self.limits.txs_max
            || self.pending_bytes + size > self.limits.bytes_max
        {
            return Err(MempoolError::Full { txs: self.pending.len(), bytes: self.pending_bytes });
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.index.insert(id, arrival);
        self.pending.insert(arrival, tx);
        self.pending_bytes += size;
        Ok(Submitted::Accepted)
    }

    fn select(&self, limits: &BatchLimits, skip: &dyn Fn(&Digest) -> bool) -> Vec<Transaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for tx in self.pending.values() {
            if out.len() >= limits.txs_max {
                break;
            }
            if skip(&tx.id()) {
                continue;
            }
            let size = tx.encoded_len();
            if bytes + size > limits.bytes_max {
                break;
            }
            bytes += size;
            out.push(tx.clone());
        }
        out
    }

    fn remove_committed(&mut self, txs: &[Transaction]) {
        for tx in txs {
            let id = tx.id();
            if let Some(arrival) = self.index.remove(&id)
                && let Some(removed) = self.pending.remove(&arrival)
            {
                self.pending_bytes -= removed.encoded_len();
            }
            self.committed.insert(id);
        }
    }

    fn contains(&self, id: &Digest) -> bool {
        self.index.contains_key(id)
    }

    fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::SecretKey;
    use bytes::Bytes;

    fn tx(nonce: u64) -> Transaction {
        Transaction::new_signed(&SecretKey::from_seed(5, 0), nonce, Bytes::from_static(b"payload"))
            .unwrap()
    }

    fn ids(txs: &[Transaction]) -> Vec<u64> {
        txs.iter().map(Transaction::nonce).collect()
    }

    #[test]
    fn arrival_order_dedup_and_removal() {
        let mut m = InMemoryMempool::new(MempoolLimits::default());
        for n in [3, 1, 2] {
            assert_eq!(m.insert(tx(n)), Ok(Submitted::Accepted));
        }
        assert_eq!(m.insert(tx(1)), Ok(Submitted::Duplicate));
        assert_eq!(m.len(), 3);
        let all = m.select(&BatchLimits::default(), &|_| false);
        assert_eq!(ids(&all), vec![3, 1, 2]);
        // Selecting removes nothing; skipping leaves out in-flight ones.
        let skip = tx(1).id();
        assert_eq!(ids(&m.select(&BatchLimits::default(), &|id| *id == skip)), vec![3, 2]);
        m.remove_committed(&[tx(3), tx(9)]);
        assert_eq!(ids(&m.select(&BatchLimits::default(), &|_| false)), vec![1, 2]);
        // A committed transaction submitted again is a duplicate, even one never seen pending.
        assert_eq!(m.insert(tx(3)), Ok(Submitted::Duplicate));
        assert_eq!(m.insert(tx(9)), Ok(Submitted::Duplicate));
        assert!(m.contains(&tx(2).id()) && !m.contains(&tx(3).id()));
    }

    #[test]
    fn batch_limits_by_count_and_bytes() {
        let mut m = InMemoryMempool::new(MempoolLimits::default());
        for n in 0..10 {
            m.insert(tx(n)).unwrap();
        }
        let size = tx(0).encoded_len();
        let by_count = BatchLimits { txs_max: 4, bytes_max: usize::MAX };
        assert_eq!(ids(&m.select(&by_count, &|_| false)), vec![0, 1, 2, 3]);
        let by_bytes = BatchLimits { txs_max: 100, bytes_max: 3 * size + size / 2 };
        assert_eq!(ids(&m.select(&by_bytes, &|_| false)), vec![0, 1, 2]);
    }

    #[test]
    fn full_is_backpressure_not_loss() {
        let limits = MempoolLimits { txs_max: 2, bytes_max: usize::MAX, committed_memory: 10 };
        let mut m = InMemoryMempool::new(limits);
        m.insert(tx(0)).unwrap();
        m.insert(tx(1)).unwrap();
        assert!(matches!(m.insert(tx(2)), Err(MempoolError::Full { txs: 2, .. })));
        assert_eq!(m.len(), 2, "a refused transaction leaves nothing behind");
        m.remove_committed(&[tx(0)]);
        assert_eq!(m.insert(tx(2)), Ok(Submitted::Accepted));
        let by_bytes =
            MempoolLimits { txs_max: 100, bytes_max: tx(0).encoded_len(), committed_memory: 10 };
        let mut m = InMemoryMempool::new(by_bytes);
        m.insert(tx(0)).unwrap();
        assert!(m.insert(tx(1)).is_err());
        m.remove_committed(&[tx(0)]);
        assert_eq!(m.pending_bytes(), 0);
    }

    #[test]
    fn committed_memory_is_bounded() {
        let limits = MempoolLimits { committed_memory: 3, ..MempoolLimits::default() };
        let mut m = InMemoryMempool::new(limits);
        let committed: Vec<Transaction> = (0..5).map(tx).collect();
        m.remove_committed(&committed);
        assert_eq!(m.committed.len(), 3);
        // The two oldest were forgotten; the mempool accepts them again (the application's
        // nonce check refuses them at execution).
        assert_eq!(m.insert(tx(0)), Ok(Submitted::Accepted));
        assert_eq!(m.insert(tx(4)), Ok(Submitted::Duplicate));
    }
}
