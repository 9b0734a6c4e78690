//! A Byzantine leader that front-runs: whenever it builds a block, it looks for large orders
//! among the transactions it is about to propose and sandwiches each one with orders of its
//! own, placed just ahead of it.
//!
//! For a large buy of `q` lots at worst price `w` it inserts, in this order, before the victim:
//! 0. (once per block, first) a cancel of whatever it still has resting from earlier
//!    sandwiches;
//! 1. a buy of `q` lots, immediate-or-cancel, up to `w`: it takes the cheap offers the victim
//!    wanted;
//! 2. a sell of `q` lots, good-till-cancelled, at `w − 1`: the victim, finding the cheap offers
//!    gone, buys from it at nearly its worst price.
//!
//! (Mirrored for a large sell.) Everything it sends is validly signed by its own funded
//! account, and its consensus engine runs unmodified: the attack lives in its mempool
//! ([`FrontrunMempool`]), so its blocks are as valid as anyone's. What it earns depends only on
//! where the market executes its orders relative to the victim's
//! ([`ExecutionOrder`](agora_market::ExecutionOrder)).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_consensus::{BatchLimits, Mempool, MempoolError, Submitted};
use agora_crypto::{Digest, SecretKey};
use agora_orderbook::{OrderType, SelfTrade, Side, TimeInForce};
use agora_types::{Transaction, codec};
use rustc_hash::FxHashMap;

use agora_market::OrderAction;

/// Sandwiches remembered per victim at most; beyond it the memory starts again (a victim seen
/// again then gets a new sandwich).
const REMEMBERED_MAX: usize = 65_536;

/// A mempool that front-runs large orders in every batch it hands its engine.
pub struct FrontrunMempool {
    inner: Box<dyn Mempool>,
    key: SecretKey,
    min_qty: u64,
    next_nonce: Cell<u64>,
    next_id: Cell<u64>,
    /// Victim id → the two orders placed ahead of it: the same ones each time the victim is
    /// selected again, so a re-proposal does not spend new nonces.
    made: RefCell<FxHashMap<Digest, [Transaction; 2]>>,
    attacks: Arc<AtomicU64>,
}

impl std::fmt::Debug for FrontrunMempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontrunMempool")
            .field("min_qty", &self.min_qty)
            .field("attacks", &self.attacks.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FrontrunMempool {
    /// Wraps `inner`; the front-runner trades from the account of `key` and preys on placed
    /// orders of at least `min_qty` lots.
    pub fn new(inner: Box<dyn Mempool>, key: SecretKey, min_qty: u64) -> Self {
        Self {
            inner,
            key,
            min_qty,
            next_nonce: Cell::new(0),
            next_id: Cell::new(1),
            made: RefCell::new(FxHashMap::default()),
            attacks: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts the victims sandwiched (shared, to read after a run).
    pub fn attacks(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.attacks)
    }

    fn sign(&self, action: &OrderAction) -> Transaction {
        let nonce = self.next_nonce.get();
        self.next_nonce.set(nonce + 1);
        Transaction::new_signed(&self.key, nonce, action.encode())
            .expect("an order action is far below the payload limit")
    }

    /// The front-runner's two orders for `victim`, if it is prey.
    fn sandwich(&self, victim: &Transaction) -> Option<[Transaction; 2]> {
        if let Some(made) = self.made.borrow().get(&victim.id()) {
            return Some(made.clone());
        }
        let OrderAction::Place { market, side, price: Some(worst), qty, .. } =
            codec::decode::<OrderAction>(victim.payload()).ok()?
        else {
            return None;
        };
        if qty < self.min_qty
            || *victim.sender() == agora_crypto::PublicKeyBytes::from(self.key.public_key())
        {
            return None;
        }
        let back_price = match side {
            Side::Buy => worst.checked_sub(1).filter(|p| *p > 0)?,
            Side::Sell => worst + 1,
        };
        let order = |side, order_type, tif, price| {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            self.sign(&OrderAction::Place {
                market: market.clone(),
                id,
                side,
                order_type,
                tif,
                price: Some(price),
                qty,
                budget: None,
                stp: SelfTrade::CancelResting,
            })
        };
        let front = order(side, OrderType::Limit, TimeInForce::Ioc, worst);
        let back = order(side.opposite(), OrderType::Limit, TimeInForce::Gtc, back_price);
        let made = [front, back];
        let mut memory = self.made.borrow_mut();
        if memory.len() >= REMEMBERED_MAX {
            memory.clear();
        }
        memory.insert(victim.id(), made.clone());
        self.attacks.fetch_add(1, Ordering::Relaxed);
        Some(made)
    }
}

impl Mempool for FrontrunMempool {
    fn insert(&mut self, tx: Transaction) -> Result<Submitted, MempoolError> {
        self.inner.insert(tx)
    }

    fn select(&self, limits: &BatchLimits, skip: &dyn Fn(&Digest) -> bool) -> Vec<Transaction> {
        let honest = self.inner.select(limits, skip);
        let mut out = Vec::with_capacity(honest.len());
        let mut bytes = 0;
        let mut fits = |tx: &Transaction, out: &Vec<Transaction>| {
            let size = tx.encoded_len();
            let ok = out.len() < limits.txs_max && bytes + size <= limits.bytes_max;
            if ok {
                bytes += size;
            }
            ok
        };
        // A block with prey starts by cancelling what is left of earlier sandwiches: the
        // front-runner wants to be flat, not to keep quotes at victims' worst prices. (Signed
        // afresh each time: an earlier one may be in a block still in flight.)
        if honest.iter().any(|t| self.sandwich(t).is_some()) {
            let cleanup = self.sign(&OrderAction::CancelAll { market: None });
            if fits(&cleanup, &out) {
                out.push(cleanup);
            }
        }
        for tx in honest {
            if let Some(made) = self.sandwich(&tx) {
                for m in made {
                    if fits(&m, &out) {
                        out.push(m);
                    }
                }
            }
            if !fits(&tx, &out) {
                break;
            }
            out.push(tx);
        }
        out
    }

    fn remove_committed(&mut self, txs: &[Transaction]) {
        self.inner.remove_committed(txs);
    }

    fn contains(&self, id: &Digest) -> bool {
        self.inner.contains(id)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_consensus::{InMemoryMempool, MempoolLimits};

    use crate::agents::market_order;

    #[test]
    fn large_orders_get_a_sandwich_ahead_of_them_and_the_same_one_again() {
        let trader = SecretKey::from_seed(1, 1);
        let small =
            Transaction::new_signed(&trader, 0, market_order(1, Side::Buy, 2_010, 5).encode())
                .unwrap();
        let large =
            Transaction::new_signed(&trader, 1, market_order(2, Side::Buy, 2_030, 80).encode())
                .unwrap();
        let mut m = FrontrunMempool::new(
            Box::new(InMemoryMempool::new(MempoolLimits::default())),
            SecretKey::from_seed(1, 99),
            60,
        );
        m.insert(small.clone()).unwrap();
        m.insert(large.clone()).unwrap();
        let batch = m.select(&BatchLimits::default(), &|_| false);
        assert_eq!(batch.len(), 5);
        assert_eq!((&batch[1], &batch[4]), (&small, &large));
        let action = |tx: &Transaction| codec::decode::<OrderAction>(tx.payload()).unwrap();
        assert_eq!(action(&batch[0]), OrderAction::CancelAll { market: None });
        assert!(matches!(
            action(&batch[2]),
            OrderAction::Place {
                side: Side::Buy,
                price: Some(2_030),
                qty: 80,
                tif: TimeInForce::Ioc,
                ..
            }
        ));
        assert!(matches!(
            action(&batch[3]),
            OrderAction::Place {
                side: Side::Sell,
                price: Some(2_029),
                qty: 80,
                tif: TimeInForce::Gtc,
                ..
            }
        ));
        // Selected again (the block was not final), the same sandwich.
        assert_eq!(m.select(&BatchLimits::default(), &|_| false)[1..], batch[1..]);
        assert_eq!(m.attacks().load(Ordering::Relaxed), 1);
        // Never more than the batch bound.
        let two = BatchLimits { txs_max: 2, bytes_max: usize::MAX };
        assert_eq!(m.select(&two, &|_| false).len(), 2);
    }
}
