//! A bounded memory of recent transaction ids.

use std::collections::VecDeque;

use agora_crypto::Digest;
use rustc_hash::FxHashSet;

/// The last `capacity` distinct transaction ids inserted, oldest forgotten first.
///
/// The mempool remembers what was committed so that a late duplicate is refused; each engine
/// remembers what it finalized or executed so that it never proposes or accepts a transaction
/// twice. All three are this one set, bounded so that memory does not grow with the log.
#[derive(Debug, Clone, Default)]
pub struct RecentIds {
    capacity: usize,
    set: FxHashSet<Digest>,
    order: VecDeque<Digest>,
}

impl RecentIds {
    /// An empty set that remembers at most `capacity` ids (0 remembers none).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, ..Self::default() }
    }

    /// Remembers `id`; returns whether it was new. Beyond the capacity the oldest is forgotten.
    pub fn insert(&mut self, id: Digest) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &Digest) -> bool {
        self.set.contains(id)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(k: u8) -> Digest {
        Digest::from_bytes([k; 32])
    }

    #[test]
    fn the_oldest_is_forgotten_first_and_repeats_do_not_count() {
        let mut r = RecentIds::new(2);
        assert!(r.insert(id(1)));
        assert!(!r.insert(id(1)));
        assert!(r.insert(id(2)));
        assert!(r.insert(id(3)));
        assert_eq!(r.len(), 2);
        assert!(!r.contains(&id(1)));
        assert!(r.contains(&id(2)) && r.contains(&id(3)));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let mut r = RecentIds::new(0);
        assert!(r.insert(id(1)));
        assert!(r.insert(id(1)));
        assert!(r.is_empty());
    }
}
