//! The blocks one node has seen, each with its QC when the node holds one, and finality.
//!
//! A block's parent is the block its justify certifies, so the tree is the paper's chain of
//! `b.parent` links, and a QC on a block certifies its whole branch. The tree is a pure data
//! structure: it is told of blocks and QCs, and answers ancestry, the chain behind a
//! certified block, and which blocks a commit makes final.

use std::collections::{BTreeMap, VecDeque};

use agora_crypto::Digest;
use agora_types::{Block, Certificate};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) block: Block,
    /// The QC of this block, once this node holds one.
    pub(crate) qc: Option<Certificate>,
    pub(crate) certified_at: Option<u64>,
    pub(crate) finalized_at: Option<u64>,
    pub(crate) votes: usize,
}

/// Why a commit could not be applied yet, or at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitError {
    /// A block on the path back to the finalized tip has not arrived: ask a peer.
    Missing,
    /// The block does not descend from the finalized tip: two commits conflict, which only
    /// more than f Byzantine members can cause. The engine refuses it and counts it.
    Conflict,
}

#[derive(Debug, Clone)]
pub(crate) struct Tree {
    entries: BTreeMap<Digest, Entry>,
    /// QCs whose blocks have not arrived, with when they did.
    early: BTreeMap<Digest, (Certificate, u64)>,
    early_max: usize,
    finalized_tip: Digest,
    history_max: usize,
    finalized_order: VecDeque<Digest>,
    /// Pruned forks, newest last, kept (bounded by `history_max`) only so views can show them.
    dead: VecDeque<Entry>,
}

impl Tree {
    /// A tree whose root is `root`, final and certified as genesis is: where a node starts, or
    /// resumes from a checkpoint (with the root's QC, when it had one).
    pub(crate) fn rooted(
        root: Block,
        qc: Option<Certificate>,
        history_max: usize,
        early_max: usize,
    ) -> Self {
        let digest = root.digest();
        let entry =
            Entry { block: root, qc, certified_at: Some(0), finalized_at: Some(0), votes: 0 };
        Self {
            entries: BTreeMap::from([(digest, entry)]),
            early: BTreeMap::new(),
            early_max,
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

    /// The view of the finalized tip (0 for genesis).
    pub(crate) fn finalized_view(&self) -> u64 {
        self.finalized_tip().round().0
    }

    /// The QC of `digest`, held with its block or before it.
    pub(crate) fn qc_of(&self, digest: &Digest) -> Option<&Certificate> {
        match self.entries.get(digest) {
            Some(e) => e.qc.as_ref(),
            None => self.early.get(digest).map(|(c, _)| c),
        }
    }

    pub(crate) fn set_votes(&mut self, digest: &Digest, votes: usize) {
        if let Some(e) = self.entries.get_mut(digest) {
            e.votes = e.votes.max(votes);
        }
    }

    /// Adds a block whose parent is known (callers hold orphans back). Returns true when the
    /// block's QC had arrived before it.
    pub(crate) fn insert(&mut self, block: Block) -> bool {
        let digest = block.digest();
        if self.entries.contains_key(&digest) {
            return false;
        }
        let (qc, certified_at) = self.early.remove(&digest).unzip();
        let early = qc.is_some();
        self.entries
            .insert(digest, Entry { block, qc, certified_at, finalized_at: None, votes: 0 });
        early
    }

    /// Records `qc`, a verified QC; false when it was known already, or when its block has
    /// not arrived and the bound on such QCs is reached.
    pub(crate) fn certify(&mut self, qc: Certificate, now: u64) -> bool {
        let s = *qc.statement();
        if s.round.0 <= self.finalized_view() {
            return false;
        }
        match self.entries.get_mut(&s.value) {
            Some(e) if e.qc.is_some() => false,
            Some(e) => {
                e.votes = e.votes.max(qc.signatures().len());
                e.qc = Some(qc);
                e.certified_at.get_or_insert(now);
                true
            }
            None if self.early.contains_key(&s.value) || self.early.len() >= self.early_max => {
                false
            }
            None => {
                self.early.insert(s.value, (qc, now));
                true
            }
        }
    }

    /// True when `descendant` is `ancestor` or reaches it through parent links this node
    /// holds.
    pub(crate) fn extends(&self, descendant: &Digest, ancestor: &Digest) -> bool {
        let Some(target) = self.entries.get(ancestor) else { return false };
        let floor = target.block.height();
        let mut at = *descendant;
        loop {
            if at == *ancestor {
                return true;
            }
            match self.entries.get(&at) {
                Some(e) if e.block.height() > floor => at = e.block.parent(),
                _ => return false,
            }
        }
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

    /// Commits `target` and its unfinalized ancestors; returns them oldest first. A target
    /// already final commits nothing.
    pub(crate) fn commit(&mut self, target: Digest, now: u64) -> Result<Vec<Block>, CommitError> {
        if self.entries.get(&target).is_some_and(|e| e.finalized_at.is_some()) {
            return Ok(Vec::new());
        }
        let mut path = Vec::new();
        let mut at = target;
        while at != self.finalized_tip {
            let Some(entry) = self.entries.get(&at) else { return Err(CommitError::Missing) };
            if entry.finalized_at.is_some() || entry.block.height() <= self.finalized_tip().height()
            {
                return Err(CommitError::Conflict);
            }
            path.push(at);
            at = entry.block.parent();
        }
        path.reverse();
        let mut out = Vec::with_capacity(path.len());
        for d in path {
            let entry = self.entries.get_mut(&d).expect("on the path");
            entry.finalized_at = Some(now);
            out.push(entry.block.clone());
            self.finalized_tip = d;
            self.finalized_order.push_back(d);
        }
        self.prune();
        Ok(out)
    }

    /// Forgets what finality made useless: forks that leave the finalized chain, early QCs at
    /// or below the finalized view, and the oldest finalized blocks beyond the history bound.
    fn prune(&mut self) {
        let tip = self.finalized_tip;
        let horizon = self.finalized_view();
        let dead: Vec<Digest> = self
            .entries
            .iter()
            .filter(|(d, e)| e.finalized_at.is_none() && !self.extends(d, &tip))
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
        self.early.retain(|_, (qc, _)| qc.statement().round.0 > horizon);
        while self.finalized_order.len() > self.history_max {
            let Some(old) = self.finalized_order.pop_front() else { break };
            self.entries.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{Batch, Height, NodeId, Phase, Round, Statement};

    fn child(parent: &Block, view: u64) -> Block {
        Block::new(
            parent.digest(),
            Round(view),
            Height(parent.height().0 + 1),
            NodeId(0),
            view,
            Batch::empty(),
        )
    }

    fn qc(block: &Block) -> Certificate {
        let s = Statement {
            phase: Phase::Vote,
            round: block.round(),
            height: Height(0),
            value: block.digest(),
        };
        Certificate::new(s, std::iter::empty())
    }

    #[test]
    fn commits_take_the_prefix_prune_forks_and_refuse_a_conflict() {
        let g = Block::genesis();
        let mut t = Tree::rooted(g.clone(), None, 1_000, 10);
        let b1 = child(&g, 1);
        let fork = child(&g, 2);
        let b3 = child(&b1, 3);
        for b in [&b1, &fork, &b3] {
            t.insert(b.clone());
        }
        assert!(t.extends(&b3.digest(), &g.digest()) && !t.extends(&b3.digest(), &fork.digest()));
        assert_eq!(t.commit(child(&b3, 4).digest(), 1), Err(CommitError::Missing));
        let done = t.commit(b3.digest(), 9).unwrap();
        assert_eq!(done.iter().map(|b| b.height().0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!t.contains(&fork.digest()));
        assert_eq!(t.dead_forks().count(), 1);
        assert_eq!(t.commit(b1.digest(), 10), Ok(Vec::new()));
        let off = child(&b1, 5);
        t.insert(off.clone());
        assert_eq!(t.commit(off.digest(), 10), Err(CommitError::Conflict));
    }

    #[test]
    fn a_qc_before_its_block_is_bounded_and_joins_the_block_when_it_arrives() {
        let g = Block::genesis();
        let mut t = Tree::rooted(g.clone(), None, 1_000, 1);
        let (b1, b2) = (child(&g, 1), child(&g, 2));
        assert!(t.certify(qc(&b1), 3));
        assert!(!t.certify(qc(&b1), 4), "known already");
        assert!(!t.certify(qc(&b2), 4), "the early bound is 1");
        assert!(t.qc_of(&b1.digest()).is_some());
        assert!(t.insert(b1.clone()));
        assert_eq!(t.get(&b1.digest()).unwrap().certified_at, Some(3));
        assert!(t.certify(qc(&b2), 5), "room again");
    }
}
