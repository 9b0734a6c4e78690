//! The block tree one node has seen, with Streamlet's chain rules:
//!
//! - A *notarized chain* is a chain from genesis in which every block is notarized (genesis,
//!   epoch 0, is).
//! - *Finality*: "if in any notarized chain there are three adjacent blocks with consecutive
//!   epoch numbers, the prefix of the chain up to the second of the three blocks is final".
//!
//! The tree is a pure data structure: it is told of blocks and notarizations and answers which
//! chains are longest and which blocks became final.

use std::collections::{BTreeMap, BTreeSet};

use agora_crypto::Digest;
use agora_types::{Block, Height};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) block: Block,
    pub(crate) notarized_at: Option<u64>,
    /// This block and all its ancestors are notarized.
    pub(crate) on_notarized_chain: bool,
    pub(crate) finalized_at: Option<u64>,
    pub(crate) votes: usize,
}

/// Finalizing would contradict what is already final: only possible with more than f Byzantine
/// nodes. The engine refuses to commit and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConflictingFinality {
    pub(crate) block: Digest,
}

#[derive(Debug, Clone)]
pub(crate) struct BlockTree {
    entries: BTreeMap<Digest, Entry>,
    children: BTreeMap<Digest, BTreeSet<Digest>>,
    /// Notarized digests whose blocks have not arrived yet.
    notarized_early: BTreeMap<Digest, u64>,
    /// Tips of the longest notarized chains, and their height.
    longest_tips: BTreeSet<Digest>,
    longest: Height,
    finalized_tip: Digest,
    /// Finalized blocks kept for views, oldest first; older ones are forgotten.
    history_max: usize,
    finalized_order: std::collections::VecDeque<Digest>,
    /// Pruned forks, newest last, kept (bounded by `history_max`) only so views can show them.
    dead: std::collections::VecDeque<Entry>,
}

impl BlockTree {
    pub(crate) fn new(history_max: usize) -> Self {
        Self::rooted(Block::genesis(), history_max)
    }

    /// A tree whose root is `root`, final and notarized as genesis is: where a node that
    /// restarts from a checkpoint resumes.
    pub(crate) fn rooted(root: Block, history_max: usize) -> Self {
        let digest = root.digest();
        let longest = root.height();
        let entry = Entry {
            block: root,
            notarized_at: Some(0),
            on_notarized_chain: true,
            finalized_at: Some(0),
            votes: 0,
        };
        Self {
            entries: BTreeMap::from([(digest, entry)]),
            children: BTreeMap::new(),
            notarized_early: BTreeMap::new(),
            longest_tips: BTreeSet::from([digest]),
            longest,
            finalized_tip: digest,
            history_max: history_max.max(1),
            finalized_order: std::collections::VecDeque::from([digest]),
            dead: std::collections::VecDeque::new(),
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

    /// Forks pruned because they left the finalized chain (the most recent, bounded).
    pub(crate) fn dead_forks(&self) -> impl Iterator<Item = &Entry> {
        self.dead.iter()
    }

    pub(crate) fn finalized_tip(&self) -> &Block {
        &self.entries[&self.finalized_tip].block
    }

    pub(crate) fn set_votes(&mut self, digest: &Digest, votes: usize) {
        if let Some(e) = self.entries.get_mut(digest) {
            e.votes = e.votes.max(votes);
        }
    }

    /// Length (tip height) of the longest notarized chains.
    pub(crate) fn longest(&self) -> Height {
        self.longest
    }

    /// True when `parent` is the tip of one of the longest notarized chains: a block extending it
    /// extends a longest notarized chain.
    pub(crate) fn extends_longest(&self, parent: &Digest) -> bool {
        self.longest_tips.contains(parent)
    }

    /// The tip a leader extends: among the longest notarized chains, the one whose tip has the
    /// highest epoch, then the smallest digest (deterministic; the paper allows any).
    pub(crate) fn best_tip(&self) -> &Block {
        self.longest_tips
            .iter()
            .map(|d| &self.entries[d].block)
            .max_by(|a, b| a.round().cmp(&b.round()).then(b.digest().cmp(&a.digest())))
            // Never empty while the rules hold (the finalized tip is notarized); a broken rule
            // (a test's deliberate mutant) must not turn into a panic here.
            .unwrap_or_else(|| self.finalized_tip())
    }

    /// Blocks from `from` back to the finalized tip (exclusive), newest first.
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

    /// Adds a block whose parent is known. Returns the blocks that became final as a result (a
    /// notarization may have arrived before the block), oldest first.
    pub(crate) fn insert(
        &mut self,
        block: Block,
        now: u64,
    ) -> Result<Vec<Block>, ConflictingFinality> {
        let digest = block.digest();
        if self.entries.contains_key(&digest) {
            return Ok(Vec::new());
        }
        debug_assert!(self.entries.contains_key(&block.parent()), "callers hold orphans back");
        self.children.entry(block.parent()).or_default().insert(digest);
        let notarized_at = self.notarized_early.remove(&digest);
        self.entries.insert(
            digest,
            Entry { block, notarized_at, on_notarized_chain: false, finalized_at: None, votes: 0 },
        );
        if notarized_at.is_some() {
            self.extend_notarized_chains(digest, now)
        } else {
            Ok(Vec::new())
        }
    }

    /// Records that `digest` is notarized (its block may not have arrived yet). Returns the blocks
    /// that became final, oldest first.
    pub(crate) fn notarize(
        &mut self,
        digest: Digest,
        now: u64,
    ) -> Result<Vec<Block>, ConflictingFinality> {
        match self.entries.get_mut(&digest) {
            None => {
                self.notarized_early.entry(digest).or_insert(now);
                Ok(Vec::new())
            }
            Some(e) if e.notarized_at.is_some() => Ok(Vec::new()),
            Some(e) => {
                e.notarized_at = Some(now);
                self.extend_notarized_chains(digest, now)
            }
        }
    }

    /// `start` is newly notarized (or newly has its block): if its parent is on a notarized chain
    /// it joins, and so do its notarized descendants. Each block that joins checks the finality
    /// rule with its parent and grandparent.
    fn extend_notarized_chains(
        &mut self,
        start: Digest,
        now: u64,
    ) -> Result<Vec<Block>, ConflictingFinality> {
        let parent_on_chain = {
            let e = &self.entries[&start];
            self.entries.get(&e.block.parent()).is_some_and(|p| p.on_notarized_chain)
        };
        if !parent_on_chain {
            return Ok(Vec::new());
        }
        let mut finalized = Vec::new();
        let mut stack = vec![start];
        while let Some(d) = stack.pop() {
            // A finalization earlier in this walk may have pruned `d` as a dead fork.
            let Some(entry) = self.entries.get_mut(&d) else { continue };
            if entry.on_notarized_chain || entry.notarized_at.is_none() {
                continue;
            }
            entry.on_notarized_chain = true;
            let height = entry.block.height();
            if height > self.longest {
                self.longest = height;
                self.longest_tips.clear();
            }
            if height == self.longest {
                self.longest_tips.insert(d);
            }
            if let Some(middle) = self.three_consecutive(&d) {
                finalized.extend(self.finalize_up_to(middle, now)?);
            }
            if let Some(kids) = self.children.get(&d) {
                stack.extend(kids.iter().copied());
            }
        }
        Ok(finalized)
    }

    /// If `tip`, its parent and its grandparent have consecutive epochs, the parent (the second
    /// of the three, never the third).
    fn three_consecutive(&self, tip: &Digest) -> Option<Digest> {
        let third = &self.entries.get(tip)?.block;
        let second = &self.entries.get(&third.parent())?.block;
        if third.round() == agora_types::Round(0) {
            return None;
        }
        let first = &self.entries.get(&second.parent())?.block;
        let consecutive =
            first.round().0 + 1 == second.round().0 && second.round().0 + 1 == third.round().0;
        consecutive.then(|| second.digest())
    }

    /// Finalizes `target` and its unfinalized ancestors, oldest first.
    fn finalize_up_to(
        &mut self,
        target: Digest,
        now: u64,
    ) -> Result<Vec<Block>, ConflictingFinality> {
        if self.entries[&target].finalized_at.is_some() {
            return Ok(Vec::new());
        }
        let mut path = Vec::new();
        let mut at = target;
        loop {
            if at == self.finalized_tip {
                break;
            }
            let entry = &self.entries[&at];
            if entry.finalized_at.is_some() || entry.block.height() <= self.finalized_tip().height()
            {
                // The chain leaves the finalized chain: finalizing it would fork the log.
                return Err(ConflictingFinality { block: target });
            }
            path.push(at);
            at = entry.block.parent();
        }
        path.reverse();
        let mut out = Vec::with_capacity(path.len());
        for d in path {
            let below = self.finalized_tip().height();
            let entry = self.entries.get_mut(&d).expect("on the path");
            // The finalized chain only grows: each block joins one above the last.
            assert!(entry.block.height() > below, "the finalized height never goes back");
            entry.finalized_at = Some(now);
            out.push(entry.block.clone());
            self.finalized_tip = d;
            self.finalized_order.push_back(d);
        }
        self.prune();
        Ok(out)
    }

    /// Forgets forks that can no longer be finalized (they leave the finalized chain) and the
    /// oldest finalized blocks beyond the history bound.
    fn prune(&mut self) {
        let tip = self.finalized_tip;
        let tip_height = self.entries[&tip].block.height();
        let dead: Vec<Digest> = self
            .entries
            .iter()
            .filter(|(d, e)| e.finalized_at.is_none() && !self.descends_from(d, &tip, tip_height))
            .map(|(d, _)| *d)
            .collect();
        for d in dead {
            if let Some(entry) = self.remove(&d) {
                self.dead.push_back(entry);
                if self.dead.len() > self.history_max {
                    self.dead.pop_front();
                }
            }
        }
        while self.finalized_order.len() > self.history_max {
            let Some(old) = self.finalized_order.pop_front() else { break };
            let _ = self.remove(&old);
        }
    }

    fn remove(&mut self, d: &Digest) -> Option<Entry> {
        let entry = self.entries.remove(d)?;
        if let Some(siblings) = self.children.get_mut(&entry.block.parent()) {
            siblings.remove(d);
            if siblings.is_empty() {
                self.children.remove(&entry.block.parent());
            }
        }
        self.longest_tips.remove(d);
        Some(entry)
    }

    fn descends_from(&self, d: &Digest, ancestor: &Digest, ancestor_height: Height) -> bool {
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
    use agora_types::{Batch, NodeId, Round};

    /// A block of `epoch` on `parent`.
    fn child(parent: &Block, epoch: u64) -> Block {
        Block::new(
            parent.digest(),
            Round(epoch),
            Height(parent.height().0 + 1),
            NodeId(0),
            epoch,
            Batch::empty(),
        )
    }

    fn tree() -> (BlockTree, Block) {
        (BlockTree::new(1_000), Block::genesis())
    }

    fn heights(blocks: &[Block]) -> Vec<u64> {
        blocks.iter().map(|b| b.height().0).collect()
    }

    #[test]
    fn three_consecutive_epochs_finalize_the_middle_block_not_the_third() {
        let (mut t, g) = tree();
        let b1 = child(&g, 1);
        let b2 = child(&b1, 2);
        let b3 = child(&b2, 3);
        for b in [&b1, &b2, &b3] {
            t.insert(b.clone(), 0).unwrap();
        }
        assert!(t.notarize(b1.digest(), 1).unwrap().is_empty());
        // genesis (0), b1 (1), b2 (2): consecutive, so b1 (the middle) is final, b2 is not.
        assert_eq!(heights(&t.notarize(b2.digest(), 2).unwrap()), vec![1]);
        assert!(t.get(&b2.digest()).unwrap().finalized_at.is_none());
        assert_eq!(heights(&t.notarize(b3.digest(), 3).unwrap()), vec![2]);
        assert_eq!(t.finalized_tip().digest(), b2.digest());
    }

    #[test]
    fn a_gap_in_epochs_delays_finality_until_three_are_consecutive() {
        // The seed's leader failure: no block of epoch 3, so 4 extends 2.
        let (mut t, g) = tree();
        let b1 = child(&g, 1);
        let b2 = child(&b1, 2);
        let b4 = child(&b2, 4);
        let b5 = child(&b4, 5);
        let b6 = child(&b5, 6);
        let mut finalized = Vec::new();
        for b in [&b1, &b2, &b4, &b5, &b6] {
            t.insert(b.clone(), 0).unwrap();
            finalized.push(heights(&t.notarize(b.digest(), 0).unwrap()));
        }
        // b1 final with b2; 2-4-5 is not consecutive; 4-5-6 finalizes b2, b4 and b5 at once.
        assert_eq!(finalized, vec![vec![], vec![1], vec![], vec![], vec![2, 3, 4]]);
    }

    #[test]
    fn longest_notarized_chain_and_ties() {
        let (mut t, g) = tree();
        assert!(t.extends_longest(&g.digest()));
        let a = child(&g, 1);
        let b = child(&g, 2); // a fork at height 1, later epoch
        t.insert(a.clone(), 0).unwrap();
        t.insert(b.clone(), 0).unwrap();
        // Unnotarized blocks do not count.
        assert_eq!(t.longest(), Height(0));
        assert!(t.extends_longest(&g.digest()) && !t.extends_longest(&a.digest()));
        t.notarize(a.digest(), 0).unwrap();
        t.notarize(b.digest(), 0).unwrap();
        // Two longest chains of length 1: both may be extended; the leader picks the later epoch.
        assert_eq!(t.longest(), Height(1));
        assert!(t.extends_longest(&a.digest()) && t.extends_longest(&b.digest()));
        assert!(!t.extends_longest(&g.digest()));
        assert_eq!(t.best_tip().digest(), b.digest());
    }

    #[test]
    fn a_notarization_before_its_block_counts_when_the_block_arrives() {
        let (mut t, g) = tree();
        let b1 = child(&g, 1);
        let b2 = child(&b1, 2);
        t.notarize(b2.digest(), 5).unwrap();
        t.notarize(b1.digest(), 5).unwrap();
        t.insert(b1.clone(), 6).unwrap();
        assert_eq!(t.longest(), Height(1), "b2 is notarized but not yet known");
        assert_eq!(heights(&t.insert(b2.clone(), 7).unwrap()), vec![1]);
        assert_eq!(t.longest(), Height(2));
    }

    #[test]
    fn a_notarized_block_off_a_notarized_chain_is_not_extended() {
        let (mut t, g) = tree();
        let b1 = child(&g, 1);
        let b2 = child(&b1, 2);
        t.insert(b1.clone(), 0).unwrap();
        t.insert(b2.clone(), 0).unwrap();
        t.notarize(b2.digest(), 0).unwrap();
        assert_eq!(t.longest(), Height(0), "b2's parent is not notarized");
        t.notarize(b1.digest(), 0).unwrap();
        assert_eq!(t.longest(), Height(2));
    }

    #[test]
    fn dead_forks_are_pruned_after_finality() {
        let (mut t, g) = tree();
        let b1 = child(&g, 1);
        let fork = child(&g, 2);
        let b2 = child(&b1, 3);
        let b3 = child(&b2, 4);
        for b in [&b1, &fork, &b2, &b3] {
            t.insert(b.clone(), 0).unwrap();
            t.notarize(b.digest(), 0).unwrap();
        }
        // b1, b2, b3 have epochs 1, 3, 4: not consecutive; add epoch 5 to finalize b3.
        let b4 = child(&b3, 5);
        t.insert(b4.clone(), 0).unwrap();
        assert_eq!(heights(&t.notarize(b4.digest(), 0).unwrap()), vec![1, 2, 3]);
        assert!(!t.contains(&fork.digest()), "the fork leaves the finalized chain");
        assert_eq!(
            t.dead_forks().map(|e| e.block.digest()).collect::<Vec<_>>(),
            vec![fork.digest()]
        );
        assert!(t.contains(&b4.digest()));
    }
}
