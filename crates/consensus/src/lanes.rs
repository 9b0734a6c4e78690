//! A mempool with priority lanes: block space is shared among kinds of transactions by a
//! deterministic policy, and within a kind fairly among the accounts that sent them.
//!
//! Consensus does not know what a transaction means, so a [`Classifier`] given by the
//! application puts each one in a lane (the market uses liquidations, cancels, high-value orders
//! and ordinary orders). The account is the transaction's sender.
//!
//! When a leader asks for a batch of capacity C (transactions):
//! 1. **Guaranteed minimum.** Every lane with pending transactions first gets up to
//!    `ceil(min_share × C)` slots, in lane order. Nothing starves while it has a minimum.
//! 2. **Weighted shares.** What is left is shared among the lanes that still have transactions,
//!    in proportion to their weights; a lane that needs less than its share gives the rest back
//!    (water-filling), so the batch is full whenever enough is pending.
//! 3. **Fair across accounts.** Inside a lane, accounts take turns (weighted round robin: an
//!    account of weight w takes w transactions per turn), oldest waiting account first, and an
//!    account's own transactions keep their arrival order. An account that floods a lane only
//!    lengthens its own queue.
//!
//! The batch lists the lanes in order (the first lane first), each lane in the order of its
//! turns. The byte bound is applied in that order: a transaction that does not fit is left for
//! the next batch, and smaller ones after it may still go in.
//!
//! Admission (deduplication, bounds, memory of committed ids) is [`InMemoryMempool`]'s.

use std::collections::BTreeMap;
use std::fmt;

use agora_crypto::{Digest, PublicKeyBytes};
use agora_types::Transaction;
use rustc_hash::FxHashMap;

use crate::mempool::{
    BatchLimits, InMemoryMempool, Mempool, MempoolError, MempoolLimits, Submitted,
};

/// Puts a transaction in a lane: an index into [`LanePolicy::lanes`]. An index out of range
/// means the last lane.
pub type Classifier = Box<dyn Fn(&Transaction) -> usize + Send>;

/// One lane's share of block space.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneSpec {
    /// A name for reports ("liquidations").
    pub name: String,
    /// Relative weight for the space left after every lane's minimum (at least 1).
    pub weight: u32,
    /// The fraction of a batch's capacity this lane is guaranteed when it has transactions
    /// waiting, from 0 to 1. The minimums of all lanes should add up to at most 1; if they add up
    /// to more, earlier lanes get theirs first.
    pub min_share: f64,
}

/// How block space is shared: lanes in priority order, and accounts' weights inside a lane.
#[derive(Debug, Clone, PartialEq)]
pub struct LanePolicy {
    /// The lanes, first lane first. At least one.
    pub lanes: Vec<LaneSpec>,
    /// Accounts (senders) whose turn inside a lane is larger than 1; everyone else has weight 1.
    pub account_weights: Vec<(PublicKeyBytes, u32)>,
}

impl LanePolicy {
    /// One lane, every account of weight 1: arrival order across accounts' turns.
    pub fn single() -> Self {
        Self {
            lanes: vec![LaneSpec { name: "all".into(), weight: 1, min_share: 0.0 }],
            account_weights: Vec::new(),
        }
    }

    /// The slots each lane gets out of `capacity`, given how many each could fill (`demand`).
    /// Deterministic; the sum is at most `capacity` and equals it when the demand is there.
    pub fn quotas(&self, capacity: usize, demand: &[usize]) -> Vec<usize> {
        let k = self.lanes.len().min(demand.len());
        let mut quota = vec![0usize; k];
        let mut left = capacity;
        // 1. Minimums, in lane order.
        for (l, spec) in self.lanes.iter().take(k).enumerate() {
            let share = spec.min_share.clamp(0.0, 1.0);
            let min = (share * capacity as f64).ceil() as usize;
            let q = min.min(demand[l]).min(left);
            quota[l] = q;
            left -= q;
        }
        // 2. Water-filling by weight among lanes with unmet demand.
        while left > 0 {
            let open: Vec<usize> = (0..k).filter(|&l| quota[l] < demand[l]).collect();
            if open.is_empty() {
                break;
            }
            let total: u64 = open.iter().map(|&l| u64::from(self.lanes[l].weight.max(1))).sum();
            let round = left;
            let mut given = 0;
            for &l in &open {
                let share =
                    (round as u64 * u64::from(self.lanes[l].weight.max(1)) / total) as usize;
                let q = share.min(demand[l] - quota[l]);
                quota[l] += q;
                given += q;
            }
            left -= given;
            if given == 0 {
                // Shares rounded down to nothing: hand out single slots in lane order.
                for &l in &open {
                    if left == 0 {
                        break;
                    }
                    quota[l] += 1;
                    left -= 1;
                }
            }
        }
        quota
    }
}

/// A bounded, deduplicated mempool that fills batches by a [`LanePolicy`].
pub struct LanedMempool {
    inner: InMemoryMempool,
    policy: LanePolicy,
    classify: Classifier,
    weights: FxHashMap<PublicKeyBytes, u32>,
    /// Per lane: account → arrival numbers of its pending transactions (ascending).
    lanes: Vec<BTreeMap<PublicKeyBytes, BTreeMap<u64, Digest>>>,
    /// Transaction id → (lane, arrival).
    placed: FxHashMap<Digest, (usize, u64)>,
    /// Pending transactions per lane.
    lane_len: Vec<usize>,
    next_arrival: u64,
}

impl fmt::Debug for LanedMempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanedMempool")
            .field("policy", &self.policy)
            .field("pending", &self.lane_lengths())
            .finish_non_exhaustive()
    }
}

impl LanedMempool {
    /// An empty mempool with the given bounds, policy and classifier.
    ///
    /// # Panics
    /// If the policy has no lane (a programming error, not an input).
    pub fn new(limits: MempoolLimits, policy: LanePolicy, classify: Classifier) -> Self {
        assert!(!policy.lanes.is_empty(), "a lane policy needs at least one lane");
        let weights = policy.account_weights.iter().map(|(k, w)| (*k, (*w).max(1))).collect();
        let lanes = vec![BTreeMap::new(); policy.lanes.len()];
        Self {
            inner: InMemoryMempool::new(limits),
            policy,
            classify,
            weights,
            lane_len: vec![0; lanes.len()],
            lanes,
            placed: FxHashMap::default(),
            next_arrival: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &LanePolicy {
        &self.policy
    }

    /// Pending transactions per lane.
    pub fn lane_lengths(&self) -> Vec<usize> {
        self.lane_len.clone()
    }

    /// The lane `tx` goes to.
    pub fn lane_of(&self, tx: &Transaction) -> usize {
        (self.classify)(tx).min(self.lanes.len() - 1)
    }

    /// Up to `max` transactions of lane `l` in turn order, leaving out skipped ones.
    fn lane_candidates<'a>(
        &'a self,
        l: usize,
        max: usize,
        skip: &dyn Fn(&Digest) -> bool,
    ) -> Vec<&'a Transaction> {
        // Accounts in the order of their oldest pending transaction.
        let mut queues: Vec<(u64, u32, std::collections::btree_map::Iter<'a, u64, Digest>)> = self
            .lanes[l]
            .iter()
            .filter_map(|(account, q)| {
                let first = *q.keys().next()?;
                let weight = self.weights.get(account).copied().unwrap_or(1);
                Some((first, weight, q.iter()))
            })
            .collect();
        queues.sort_unstable_by_key(|(first, _, _)| *first);
        let mut out = Vec::new();
        while out.len() < max && !queues.is_empty() {
            queues.retain_mut(|(_, weight, ids)| {
                let mut taken = 0;
                while taken < *weight && out.len() < max {
                    let Some((arrival, id)) = ids.next() else { return false };
                    if skip(id) {
                        continue;
                    }
                    // Arrivals are counted here exactly as in `inner`: both count accepted
                    // transactions only.
                    if let Some(tx) = self.inner.by_arrival(*arrival) {
                        out.push(tx);
                        taken += 1;
                    }
                }
                true
            });
        }
        out
    }
}

impl Mempool for LanedMempool {
    fn insert(&mut self, tx: Transaction) -> Result<Submitted, MempoolError> {
        let lane = self.lane_of(&tx);
        let (id, sender) = (tx.id(), *tx.sender());
        let outcome = self.inner.insert(tx)?;
        if outcome == Submitted::Accepted {
            let arrival = self.next_arrival;
            self.next_arrival += 1;
            self.lanes[lane].entry(sender).or_default().insert(arrival, id);
            self.placed.insert(id, (lane, arrival));
            self.lane_len[lane] += 1;
        }
        Ok(outcome)
    }

    fn select(&self, limits: &BatchLimits, skip: &dyn Fn(&Digest) -> bool) -> Vec<Transaction> {
        let capacity = limits.txs_max;
        // Quotas from the pending counts first; a lane that comes up short (transactions in
        // flight are skipped) gives its space back and the quotas are shared again. Each pass
        // settles at least one lane, and turns come out in the same order whatever the cap,
        // so a lane is only ever extended.
        let mut demand = self.lane_len.clone();
        let mut candidates: Vec<Vec<&Transaction>> = vec![Vec::new(); self.lanes.len()];
        let quotas = loop {
            let quotas = self.policy.quotas(capacity, &demand);
            let mut short = false;
            for (l, quota) in quotas.iter().enumerate() {
                if candidates[l].len() < *quota {
                    candidates[l] = self.lane_candidates(l, *quota, skip);
                    if candidates[l].len() < *quota {
                        demand[l] = candidates[l].len();
                        short = true;
                    }
                }
            }
            if !short {
                break quotas;
            }
        };
        let mut out = Vec::with_capacity(quotas.iter().sum());
        let mut bytes = 0;
        for (lane, quota) in candidates.iter().zip(quotas) {
            for tx in lane.iter().take(quota) {
                let size = tx.encoded_len();
                if bytes + size <= limits.bytes_max {
                    bytes += size;
                    out.push((*tx).clone());
                }
            }
        }
        out
    }

    fn remove_committed(&mut self, txs: &[Transaction]) {
        for tx in txs {
            if let Some((lane, arrival)) = self.placed.remove(&tx.id()) {
                let accounts = &mut self.lanes[lane];
                if let Some(q) = accounts.get_mut(tx.sender()) {
                    if q.remove(&arrival).is_some() {
                        self.lane_len[lane] -= 1;
                    }
                    if q.is_empty() {
                        accounts.remove(tx.sender());
                    }
                }
            }
        }
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
    use agora_crypto::SecretKey;
    use bytes::Bytes;

    /// The lane is the payload's first byte.
    fn by_first_byte() -> Classifier {
        Box::new(|tx: &Transaction| tx.payload().first().copied().unwrap_or(0) as usize)
    }

    fn tx(account: u64, nonce: u64, lane: u8) -> Transaction {
        let payload = Bytes::from(vec![lane, 0, 0, 0]);
        Transaction::new_signed(&SecretKey::from_seed(77, account), nonce, payload).unwrap()
    }

    fn account(n: u64) -> PublicKeyBytes {
        PublicKeyBytes::from(SecretKey::from_seed(77, n).public_key())
    }

    fn policy(mins: [f64; 4], weights: [u32; 4]) -> LanePolicy {
        let names = ["liquidations", "cancels", "high-value", "ordinary"];
        LanePolicy {
            lanes: (0..4)
                .map(|l| LaneSpec { name: names[l].into(), weight: weights[l], min_share: mins[l] })
                .collect(),
            account_weights: Vec::new(),
        }
    }

    fn limits(txs_max: usize) -> BatchLimits {
        BatchLimits { txs_max, bytes_max: usize::MAX }
    }

    /// Proposes and commits `blocks` batches; returns them.
    fn run_blocks(m: &mut LanedMempool, cap: usize, blocks: usize) -> Vec<Vec<Transaction>> {
        (0..blocks)
            .map(|_| {
                let batch = m.select(&limits(cap), &|_| false);
                m.remove_committed(&batch);
                batch
            })
            .collect()
    }

    #[test]
    fn quotas_give_minimums_then_weights_and_return_unused_space() {
        let p = policy([0.2, 0.1, 0.1, 0.1], [8, 4, 2, 1]);
        // Everyone floods: minimums 20/10/10/10, the other 50 by weight 8:4:2:1
        // (rounding down, then single slots in lane order).
        assert_eq!(p.quotas(100, &[1000; 4]), vec![48, 23, 16, 13]);
        // Only ordinary orders: they take everything.
        assert_eq!(p.quotas(100, &[0, 0, 0, 1000]), vec![0, 0, 0, 100]);
        // Three liquidations, a flood of the rest: all three liquidations go in.
        let q = p.quotas(100, &[3, 1000, 1000, 1000]);
        assert_eq!(q[0], 3);
        assert_eq!(q.iter().sum::<usize>(), 100);
        // Too little demand to fill: everything goes in.
        assert_eq!(p.quotas(100, &[1, 2, 3, 4]), vec![1, 2, 3, 4]);
    }

    #[test]
    fn liquidations_go_into_the_next_block_under_a_flood() {
        let mut m = LanedMempool::new(
            MempoolLimits::default(),
            policy([0.2, 0.1, 0.1, 0.1], [8, 4, 2, 1]),
            by_first_byte(),
        );
        // 50 accounts flood ordinary orders, 20 each.
        for a in 0..50 {
            for n in 0..20 {
                m.insert(tx(a, n, 3)).unwrap();
            }
        }
        // Then five liquidations arrive, the newest transactions of all.
        let liquidations: Vec<Transaction> = (0..5).map(|n| tx(999, n, 0)).collect();
        for l in &liquidations {
            m.insert(l.clone()).unwrap();
        }
        let batch = m.select(&limits(100), &|_| false);
        assert_eq!(batch.len(), 100);
        assert_eq!(&batch[..5], &liquidations[..], "first, and all of them");
    }

    #[test]
    fn a_weighted_account_gets_its_share_and_flooders_only_lengthen_their_queue() {
        let mut p = policy([0.0; 4], [1; 4]);
        // The market maker (account 0) has weight 3; four others weight 1.
        p.account_weights.push((account(0), 3));
        let mut m = LanedMempool::new(MempoolLimits::default(), p, by_first_byte());
        // Everyone floods the ordinary lane; account 1 floods ten times as much.
        for a in 0..5u64 {
            let count = if a == 1 { 5_000 } else { 500 };
            for n in 0..count {
                m.insert(tx(a, n, 3)).unwrap();
            }
        }
        let blocks = run_blocks(&mut m, 70, 10);
        let mut share = [0usize; 5];
        for tx in blocks.iter().flatten() {
            let a = (0..5).find(|a| account(*a) == *tx.sender()).unwrap();
            share[a as usize] += 1;
        }
        // 700 slots, weights 3:1:1:1:1 → 300 and 100 each, the flooder no more than the others.
        assert_eq!(share, [300, 100, 100, 100, 100]);
    }

    #[test]
    fn an_ordinary_order_waits_a_bounded_number_of_blocks() {
        let mut m = LanedMempool::new(
            MempoolLimits::default(),
            policy([0.2, 0.1, 0.1, 0.1], [8, 4, 2, 1]),
            by_first_byte(),
        );
        // Higher lanes are flooded and stay flooded: 30 accounts per lane, refilled each block.
        let victim = tx(5_000, 0, 3);
        let mut nonce = 0;
        let mut refill = |m: &mut LanedMempool| {
            for a in 0..30 {
                for lane in 0..3u8 {
                    m.insert(tx(a + 100 * u64::from(lane), nonce, lane)).unwrap();
                }
            }
            // 100 ordinary flooders ahead of the victim too.
            for a in 0..100 {
                m.insert(tx(1_000 + a, nonce, 3)).unwrap();
            }
            nonce += 1;
        };
        refill(&mut m);
        m.insert(victim.clone()).unwrap();
        // Capacity 100: the ordinary lane's minimum is 10 a block. 100 accounts are older than
        // the victim's, each takes one turn, so the victim is in within 11 blocks.
        let mut included_at = None;
        for block in 0..20 {
            refill(&mut m);
            let batch = m.select(&limits(100), &|_| false);
            m.remove_committed(&batch);
            if batch.contains(&victim) {
                included_at = Some(block);
                break;
            }
        }
        let at = included_at.expect("the ordinary order was never included");
        assert!(at <= 10, "included after {} blocks", at + 1);
    }

    #[test]
    fn skipped_and_committed_transactions_leave_the_turns() {
        let mut m =
            LanedMempool::new(MempoolLimits::default(), policy([0.0; 4], [1; 4]), by_first_byte());
        let a: Vec<Transaction> = (0..3).map(|n| tx(1, n, 3)).collect();
        let b: Vec<Transaction> = (0..3).map(|n| tx(2, n, 3)).collect();
        for t in a.iter().chain(&b) {
            m.insert(t.clone()).unwrap();
        }
        assert_eq!(m.insert(a[0].clone()), Ok(Submitted::Duplicate));
        // Turns alternate, each account in its own arrival order.
        let all = m.select(&limits(10), &|_| false);
        assert_eq!(
            all,
            vec![
                a[0].clone(),
                b[0].clone(),
                a[1].clone(),
                b[1].clone(),
                a[2].clone(),
                b[2].clone()
            ]
        );
        let in_flight = a[0].id();
        let rest = m.select(&limits(2), &|id| *id == in_flight);
        assert_eq!(rest, vec![a[1].clone(), b[0].clone()]);
        m.remove_committed(&a);
        assert_eq!(m.select(&limits(10), &|_| false), b);
        assert_eq!(m.len(), 3);
        assert_eq!(m.lane_lengths(), vec![0, 0, 0, 3]);
    }
}
