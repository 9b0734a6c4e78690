//! Client transactions on their way to upcoming leaders, written once for the engines whose
//! leaders rotate (Streamlet, Simplex): what waits to be forwarded, and when each pending
//! transaction was last forwarded, so that a backlog is sent again only after it waited.

use agora_crypto::Digest;
use agora_types::Transaction;
use rustc_hash::FxHashMap;

/// What a node holds of its forwarding; see the module docs. Rounds are the engine's own
/// (epochs, iterations).
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    pending: Vec<Transaction>,
    forwarded_at: FxHashMap<Digest, u64>,
    memory: usize,
}

impl Forwarding {
    /// Remembers when at most `memory` transactions were forwarded (beyond it, everything is
    /// forgotten at once: forgetting only makes a forward come early).
    pub fn new(memory: usize) -> Self {
        Self { pending: Vec::new(), forwarded_at: FxHashMap::default(), memory }
    }

    /// A transaction submitted here waits to be forwarded; returns how many wait.
    pub fn push(&mut self, tx: Transaction) -> usize {
        self.pending.push(tx);
        self.pending.len()
    }

    /// What waits, taken and noted as forwarded in `round` (empty if nothing waits).
    pub fn take(&mut self, round: u64) -> Vec<Transaction> {
        let txs = std::mem::take(&mut self.pending);
        self.note(&txs, round);
        txs
    }

    /// Notes `txs` as forwarded in `round`, by this node or to it.
    pub fn note(&mut self, txs: &[Transaction], round: u64) {
        if self.forwarded_at.len() + txs.len() > self.memory {
            self.forwarded_at.clear();
        }
        self.forwarded_at.extend(txs.iter().map(|tx| (tx.id(), round)));
    }

    /// True when the transaction `id` was forwarded fewer than `after` rounds before `round`.
    pub fn recently(&self, id: &Digest, round: u64, after: u64) -> bool {
        self.forwarded_at.get(id).is_some_and(|at| round.saturating_sub(*at) < after)
    }

    /// Forgets a transaction that is final.
    pub fn forget(&mut self, id: &Digest) {
        self.forwarded_at.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::SecretKey;
    use bytes::Bytes;

    fn tx(nonce: u64) -> Transaction {
        Transaction::new_signed(&SecretKey::from_seed(1, 1), nonce, Bytes::from_static(b"x"))
            .unwrap()
    }

    #[test]
    fn a_backlog_is_sent_again_only_after_it_waited_and_memory_is_bounded() {
        let mut f = Forwarding::new(2);
        assert_eq!(f.push(tx(1)), 1);
        assert_eq!(f.take(5).len(), 1);
        assert!(f.take(5).is_empty());
        assert!(f.recently(&tx(1).id(), 8, 4));
        assert!(!f.recently(&tx(1).id(), 9, 4));
        f.forget(&tx(1).id());
        assert!(!f.recently(&tx(1).id(), 5, 4));
        f.note(&[tx(2), tx(3)], 1);
        f.note(&[tx(4)], 1);
        assert!(!f.recently(&tx(2).id(), 1, 4), "over the memory, the old notes go");
        assert!(f.recently(&tx(4).id(), 1, 4));
    }
}
