//! The blocks one node has seen, with Simplex's chain rules (§3 of the paper):
//!
//! - Every iteration h has either a real block or the *dummy block* ⊥_h. A real block names
//!   its parent, the last real block before it; the iterations between them are dummy blocks
//!   in its chain.
//! - A *notarized blockchain of length h* is a chain in which the block of every iteration
//!   1..=h, real or dummy, is notarized. Here: a real block is on a notarized chain when it is
//!   notarized, its parent is, and every iteration between them has its dummy block notarized
//!   (a *skip* certificate).
//! - *Finality*: a finalization of iteration h finalizes the notarized block of h and its
//!   whole prefix.
//!
//! The chain is a pure data structure: it is told of blocks, notarizations and skips, and
//! answers which parent a leader may extend, whether a proposal extends a notarized chain, and
//! which blocks a finalization makes final.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_crypto::Digest;
use agora_types::Block;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) block: Block,
    pub(crate) notarized_at: Option<u64>,
    pub(crate) finalized_at: Option<u64>,
    pub(crate) votes: usize,
}

/// Why a finalization could not be applied yet, or at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinalizeError {
    /// A block on the path back to the finalized tip has not arrived: ask a peer.
    Missing,
    /// The block does not descend from the finalized tip: two finalizations conflict, which
    /// only more than f Byzantine members can cause. The engine refuses it and counts it.
    Conflict,
}

#[derive(Debug, Clone)]
pub(crate) struct Chain {
    entries: BTreeMap<Digest, Entry>,
    /// Notarized real blocks above the finalized tip, by iteration (their blocks may not have
    /// arrived yet: `notarized_early`).
    notarized: BTreeMap<u64, BTreeSet<Digest>>,
    /// Notarized digests whose blocks have not arrived, with the time of the notarization.
    notarized_early: BTreeMap<Digest, u64>,
    /// Iterations above the finalized tip whose dummy block is notarized.
    skipped: BTreeSet<u64>,
    skips_max: usize,
    finalized_tip: Digest,
    history_max: usize,
    finalized_order: VecDeque<Digest>,
    /// Pruned forks, newest last, kept (bounded by `history_max`) only so views can show them.
    dead: VecDeque<Entry>,
}

impl Chain {
    /// A chain whose root is `root`, final and notarized as genesis is: where a node starts, or
    /// resumes from a checkpoint.
    pub(crate) fn rooted(root: Block, history_max: usize, skips_max: usize) -> Self {
        let digest = root.digest();
        let entry = Entry { block: root, notarized_at: Some(0), finalized_at: Some(0), votes: 0 };
        Self {
            entries: BTreeMap::from([(digest, entry)]),
            notarized: BTreeMap::new(),
            notarized_early: BTreeMap::new(),
            skipped: BTreeSet::new(),
            skips_max: skips_max.max(1),
            finalized_tip: digest,
            history_max: history_max.max(1),
            finalized_order: VecDeque::from([digest]),
            dead: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<&Entry> {
        self.entries.get(digest)
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.entries.contains_key(digest)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub(crate) fn dead_forks(&self) -> impl Iterator<Item = &Entry> {
        self.dead.iter()
    }

    pub(crate) fn finalized_tip(&self) -> &Block {
        &self.entries[&self.finalized_tip].block
    }

    /// The iteration of the finalized tip (0 for genesis).
    pub(crate) fn finalized_iteration(&self) -> u64 {
        self.finalized_tip().round().0
    }

    pub(crate) fn set_votes(&mut self, digest: &Digest, votes: usize) {
        if let Some(e) = self.entries.get_mut(digest) {
            e.votes = e.votes.max(votes);
        }
    }

    /// Iterations above the finalized tip whose dummy block is notarized.
    pub(crate) fn skipped(&self) -> impl Iterator<Item = u64> + '_ {
        self.skipped.iter().copied()
    }

    /// Adds a block whose parent is known (callers hold orphans back). Returns true when the
    /// block's notarization had arrived before it.
    pub(crate) fn insert(&mut self, block: Block) -> bool {
        let digest = block.digest();
        if self.entries.contains_key(&digest) {
            return false;
        }
        let notarized_at = self.notarized_early.remove(&digest);
        self.entries.insert(digest, Entry { block, notarized_at, finalized_at: None, votes: 0 });
        notarized_at.is_some()
    }

    /// Records that the block `digest` of `iteration` is notarized (its block may not have
    /// arrived yet).
    pub(crate) fn notarize(&mut self, digest: Digest, iteration: u64, now: u64) {
        if iteration <= self.finalized_iteration() {
            return;
        }
        self.notarized.entry(iteration).or_default().insert(digest);
        match self.entries.get_mut(&digest) {
            Some(e) => {
                e.notarized_at.get_or_insert(now);
            }
            None => {
                self.notarized_early.entry(digest).or_insert(now);
            }
        }
    }

    /// Records that the dummy block of `iteration` is notarized; false if the bound on held
    /// skips is reached (the caller counts the drop).
    pub(crate) fn skip(&mut self, iteration: u64) -> bool {
        if iteration <= self.finalized_iteration() || self.skipped.contains(&iteration) {
            return true;
        }
        if self.skipped.len() >= self.skips_max {
            return false;
        }
        self.skipped.insert(iteration);
        true
    }

    /// True when every iteration strictly between `after` and `before` has its dummy block
    /// notarized.
    fn gap_skipped(&self, after: u64, before: u64) -> bool {
        let (from, to) = (after.saturating_add(1), before);
        from >= to || self.skipped.range(from..to).count() as u64 == to - from
    }

    /// True when the real block `digest` ends a notarized chain: it and every real block back
    /// to the finalized tip are notarized, and every iteration between two of them is skipped.
    pub(crate) fn on_notarized_chain(&self, digest: &Digest) -> bool {
        let mut at = *digest;
        loop {
            if at == self.finalized_tip {
                return true;
            }
            let Some(entry) = self.entries.get(&at) else { return false };
            if entry.notarized_at.is_none() || entry.finalized_at.is_some() {
                return false;
            }
            let Some(parent) = self.entries.get(&entry.block.parent()) else { return false };
            if !self.gap_skipped(parent.block.round().0, entry.block.round().0) {
                return false;
            }
            at = entry.block.parent();
        }
    }

    /// §3 "Vote": a block of `iteration` whose parent is `parent` extends a notarized
    /// blockchain of length `iteration − 1`: the parent ends a notarized chain and every
    /// iteration after it is skipped.
    pub(crate) fn extends_notarized_chain(&self, parent: &Digest, iteration: u64) -> bool {
        let Some(p) = self.entries.get(parent) else { return false };
        p.block.round().0 < iteration
            && self.gap_skipped(p.block.round().0, iteration)
            && self.on_notarized_chain(parent)
    }

    /// §3 "Propose": the block a leader of `iteration` extends, the latest real block ending a
    /// notarized blockchain of length `iteration − 1`; `None` when this node knows no such
    /// chain (it lacks a notarization, or a block).
    pub(crate) fn parent_for(&self, iteration: u64) -> Option<&Block> {
        self.notarized
            .range(..iteration)
            .rev()
            .flat_map(|(_, digests)| digests.iter())
            .chain(std::iter::once(&self.finalized_tip))
            .find(|d| self.extends_notarized_chain(d, iteration))
            .map(|d| &self.entries[d].block)
    }

    /// The iterations below `iteration` that no notarization this node knows covers, after the
    /// latest real block that ends a notarized chain: the ones it cannot build on. Oldest
    /// first, at most `max`.
    pub(crate) fn uncovered_before(&self, iteration: u64, max: usize) -> Vec<u64> {
        let base = self
            .notarized
            .range(..iteration)
            .rev()
            .flat_map(|(_, digests)| digests.iter())
            .find(|d| self.on_notarized_chain(d))
            .map_or(self.finalized_iteration(), |d| self.entries[d].block.round().0);
        (base + 1..iteration).filter(|j| !self.skipped.contains(j)).take(max).collect()
    }

    /// The blocks from the finalized tip (exclusive) up to `from`, newest first; stops at a
    /// missing block.
    pub(crate) fn unfinalized_ancestry(&self, from: &Digest) -> Vec<&Block> {
        let mut out = Vec::new();
        let mut at = *from;
        while at != self.finalized_tip {
            let Some(entry) = self.entries.get(&at) else { break };
            if entry.finalized_at.is_some() {
                break;
            }
            out.push(&entry.block);
            at = entry.block.parent();
        }
        out
    }

    /// §3 "Finalize": finalizes `target` and its unfinalized ancestors; returns them oldest
    /// first. A target at or below the finalized tip's iteration finalizes nothing.
    pub(crate) fn finalize(
        &mut self,
        target: Digest,
        now: u64,
    ) -> Result<Vec<Block>, FinalizeError> {
        if self.entries.get(&target).is_some_and(|e| e.finalized_at.is_some()) {
            return Ok(Vec::new());
        }
        let mut path = Vec::new();
        let mut at = target;
        loop {
            if at == self.finalized_tip {
                break;
            }
            let Some(entry) = self.entries.get(&at) else { return Err(FinalizeError::Missing) };
            if entry.finalized_at.is_some() || entry.block.height() <= self.finalized_tip().height()
            {
                return Err(FinalizeError::Conflict);
            }
            path.push(at);
            at = entry.block.parent();
        }
        path.reverse();
        let mut out = Vec::with_capacity(path.len());
        for d in path {
            let entry = self.entries.get_mut(&d).expect("on the path");
            entry.finalized_at = Some(now);
            entry.notarized_at.get_or_insert(now);
            out.push(entry.block.clone());
            self.finalized_tip = d;
            self.finalized_order.push_back(d);
        }
        self.prune();
        Ok(out)
    }

    /// Forgets what finality made useless: forks that leave the finalized chain, notarizations
    /// and skips at or below the finalized iteration, and the oldest finalized blocks beyond
    /// the history bound.
    fn prune(&mut self) {
        let tip = self.finalized_tip;
        let tip_height = self.entries[&tip].block.height();
        let horizon = self.finalized_iteration();
        let dead: Vec<Digest> = self
            .entries
            .iter()
            .filter(|(d, e)| e.finalized_at.is_none() && !self.descends_from(d, &tip, tip_height))
            .map(|(d, _)| *d)
            .collect();
        for d in dead {
            if let Some(entry) = self.entries.remove(&d) {
                self.dead.push_back(entry);
                if self.dead.len() > self.history_max {
                    self.dead.pop_front();
                }
            }
        }
        self.notarized = self.notarized.split_off(&(horizon + 1));
        let live: BTreeSet<&Digest> = self.notarized.values().flatten().collect();
        self.notarized_early.retain(|d, _| live.contains(d));
        self.skipped = self.skipped.split_off(&(horizon + 1));
        while self.finalized_order.len() > self.history_max {
            let Some(old) = self.finalized_order.pop_front() else { break };
            self.entries.remove(&old);
        }
    }

    fn descends_from(
        &self,
        d: &Digest,
        ancestor: &Digest,
        ancestor_height: agora_types::Height,
    ) -> bool {
        let mut at = *d;
        loop {
            if at == *ancestor {
                return true;
            }
            match self.entries.get(&at) {
                Some(e) if e.block.height() > ancestor_height => at = e.block.parent(),
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{Batch, Height, NodeId, Round};

    /// A block of `iteration` on `parent`.
    fn child(parent: &Block, iteration: u64) -> Block {
        Block::new(
            parent.digest(),
            Round(iteration),
            Height(parent.height().0 + 1),
            NodeId(0),
            iteration,
            Batch::empty(),
        )
    }

    fn chain() -> (Chain, Block) {
        (Chain::rooted(Block::genesis(), 1_000, 1_000), Block::genesis())
    }

    #[test]
    fn a_block_extends_a_notarized_chain_only_across_skipped_iterations() {
        let (mut c, g) = chain();
        assert!(c.extends_notarized_chain(&g.digest(), 1));
        // Iteration 1 is neither skipped nor notarized: nothing of iteration 2 may extend genesis.
        assert!(!c.extends_notarized_chain(&g.digest(), 2));
        assert_eq!(c.parent_for(2), None);
        assert_eq!(c.uncovered_before(3, 10), vec![1, 2]);
        assert!(c.skip(1));
        assert!(c.extends_notarized_chain(&g.digest(), 2));
        assert_eq!(c.parent_for(2).map(Block::digest), Some(g.digest()));
        let b2 = child(&g, 2);
        c.insert(b2.clone());
        // Not notarized yet: the leader of 3 has nothing to extend.
        assert!(!c.on_notarized_chain(&b2.digest()));
        assert_eq!(c.parent_for(3), None);
        c.notarize(b2.digest(), 2, 5);
        assert_eq!(c.parent_for(3).map(Block::digest), Some(b2.digest()));
        assert!(c.uncovered_before(3, 10).is_empty());
        // The dummy of 3 notarized too: both the real chain and a skip over 2 are valid for 4
        // only if 2 were skipped; it is not, so 4 must extend b2.
        assert!(c.skip(3));
        assert_eq!(c.parent_for(4).map(Block::digest), Some(b2.digest()));
        assert!(!c.extends_notarized_chain(&g.digest(), 4));
    }

    #[test]
    fn a_notarization_before_its_block_counts_when_the_block_arrives() {
        let (mut c, g) = chain();
        let b1 = child(&g, 1);
        c.notarize(b1.digest(), 1, 3);
        assert_eq!(c.parent_for(2), None);
        assert!(c.insert(b1.clone()));
        assert_eq!(c.parent_for(2).map(Block::digest), Some(b1.digest()));
    }

    #[test]
    fn finality_takes_the_prefix_prunes_forks_and_refuses_a_conflict() {
        let (mut c, g) = chain();
        let b1 = child(&g, 1);
        let fork = child(&g, 2);
        let b3 = child(&b1, 3);
        for b in [&b1, &fork, &b3] {
            c.insert(b.clone());
        }
        assert_eq!(c.finalize(child(&b3, 4).digest(), 1), Err(FinalizeError::Missing));
        let done = c.finalize(b3.digest(), 9).unwrap();
        assert_eq!(done.iter().map(|b| b.height().0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(c.finalized_tip().digest(), b3.digest());
        assert!(!c.contains(&fork.digest()));
        assert_eq!(c.dead_forks().count(), 1);
        // Nothing at or below the tip finalizes again, and a block off the chain conflicts.
        assert_eq!(c.finalize(b3.digest(), 10), Ok(Vec::new()));
        assert_eq!(c.finalize(b1.digest(), 10), Ok(Vec::new()));
        let off = child(&b1, 5);
        c.insert(off.clone());
        assert_eq!(c.finalize(off.digest(), 10), Err(FinalizeError::Conflict));
    }

    #[test]
    fn skips_are_bounded_and_pruned_by_finality() {
        let mut c = Chain::rooted(Block::genesis(), 10, 2);
        assert!(c.skip(1) && c.skip(2));
        assert!(!c.skip(3));
        let b3 = child(&Block::genesis(), 3);
        c.insert(b3.clone());
        c.finalize(b3.digest(), 1).unwrap();
        assert_eq!(c.skipped().count(), 0);
        assert!(c.skip(4));
    }
}
