//! The invariant checker. It watches what nodes finalize and knows nothing of any engine.
//!
//! - **Agreement**: honest nodes' finalized logs are prefixes of one another. Each honest commit
//!   is compared with the first honest commit at the same height.
//! - **Validity**: every finalized transaction was submitted by a client (to an honest node or
//!   to a Byzantine one), or signed by a client declared Byzantine (a Byzantine node trading
//!   from its own account puts its orders straight into its blocks), or carries no valid
//!   signature (a forgery, which every application refuses and so executes nothing). A validly
//!   signed transaction that no client sent is a violation. The report counts the finalized
//!   transactions by these origins ([`crate::FinalizedOrigins`]).
//! - **Integrity**: no transaction is finalized twice.
//! - **Order**: each node finalizes heights 1, 2, 3, … without gaps.
//! - **State**: honest replicas report the same state digest at the same height.
//! - **Liveness** (when asked): after GST, every transaction an honest node accepted is final by
//!   its deadline.

use agora_crypto::{Digest, PublicKeyBytes};
use agora_types::{Block, NodeId};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

/// A broken invariant, with what is needed to see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum Violation {
    /// Two honest nodes finalized different blocks at one height.
    Conflict {
        /// When the second one did.
        t_ns: u64,
        /// The height.
        height: u64,
        /// The node that finalized first, and its block.
        first: (NodeId, Digest),
        /// The node that disagreed, and its block.
        second: (NodeId, Digest),
        /// The first node's log up to and including the height, as block digests.
        first_log: Vec<Digest>,
        /// The second node's log, the disagreeing block last.
        second_log: Vec<Digest>,
    },
    /// A node finalized a height out of order.
    Gap {
        /// When.
        t_ns: u64,
        /// Who.
        node: NodeId,
        /// The height it should have finalized next.
        expected: u64,
        /// What it finalized.
        got: u64,
    },
    /// A finalized, authentic transaction (its signature is its sender's) that no client
    /// submitted. Ordering a forged one is not a violation: a Byzantine node can always put
    /// one on the wire, and every application rejects it the same way (the state check
    /// catches any that does not).
    Unsubmitted {
        /// When.
        t_ns: u64,
        /// The transaction.
        tx: Digest,
        /// Its block's height.
        height: u64,
    },
    /// A transaction finalized a second time.
    Duplicate {
        /// When.
        t_ns: u64,
        /// The transaction.
        tx: Digest,
        /// Where it was first.
        first_height: u64,
        /// Where it is again.
        again_height: u64,
    },
    /// Two honest replicas' states differ after the same block.
    StateDivergence {
        /// When.
        t_ns: u64,
        /// The height.
        height: u64,
        /// First replica and its state.
        first: (NodeId, Digest),
        /// Disagreeing replica and its state.
        second: (NodeId, Digest),
    },
    /// A node that restarted finalized a different block at a height it had finalized
    /// before: it forgot what it voted for, or what it finalized.
    Refinalized {
        /// When.
        t_ns: u64,
        /// Who.
        node: NodeId,
        /// The height.
        height: u64,
        /// What it finalized there first.
        first: Digest,
        /// What it finalized there again.
        again: Digest,
    },
    /// A transaction missed its liveness deadline.
    NotFinalized {
        /// The transaction.
        tx: Digest,
        /// When it was submitted.
        submitted_ns: u64,
        /// When it had to be final.
        deadline_ns: u64,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    digest: Digest,
    state: Digest,
    node: NodeId,
}

/// Watches commits; see the module docs.
#[derive(Debug, Default)]
pub struct InvariantChecker {
    canonical: Vec<Entry>,
    logs: Vec<Vec<Digest>>,
    submitted: FxHashSet<Digest>,
    /// Clients whose transactions may be finalized without having been submitted.
    byzantine_clients: FxHashSet<PublicKeyBytes>,
    finalized_at: FxHashMap<Digest, (u64, u64)>,
    /// Of the distinct transactions finalized: submitted by a client (to any node), signed by
    /// a declared Byzantine client, or carrying no valid signature.
    origins: (u64, u64, u64),
    violations: Vec<Violation>,
}

impl InvariantChecker {
    pub(crate) fn new(nodes: usize) -> Self {
        Self { logs: vec![Vec::new(); nodes], ..Self::default() }
    }

    /// Records that `tx` was submitted (or declared).
    pub(crate) fn submitted(&mut self, tx: Digest) {
        self.submitted.insert(tx);
    }

    /// Transactions signed by `client` may appear without submission: a Byzantine node trades
    /// from that account and puts its orders straight into its own blocks.
    pub(crate) fn byzantine_client(&mut self, client: PublicKeyBytes) {
        self.byzantine_clients.insert(client);
    }

    /// An honest node finalized `block`, leaving its application in `state`.
    pub(crate) fn on_commit(&mut self, t_ns: u64, node: NodeId, block: &Block, state: Digest) {
        let log = &mut self.logs[node.index()];
        let height = block.height().0;
        let expected = log.len() as u64 + 1;
        if height != expected {
            self.violations.push(Violation::Gap { t_ns, node, expected, got: height });
            return;
        }
        log.push(block.digest());
        let index = (height - 1) as usize;
        if let Some(entry) = self.canonical.get(index) {
            if entry.digest != block.digest() {
                let first_log =
                    self.logs[entry.node.index()].iter().take(index + 1).copied().collect();
                let second_log = self.logs[node.index()].clone();
                self.violations.push(Violation::Conflict {
                    t_ns,
                    height,
                    first: (entry.node, entry.digest),
                    second: (node, block.digest()),
                    first_log,
                    second_log,
                });
            } else if entry.state != state {
                self.violations.push(Violation::StateDivergence {
                    t_ns,
                    height,
                    first: (entry.node, entry.state),
                    second: (node, state),
                });
            }
            return;
        }
        // The first honest node at this height: the block enters the canonical log.
        self.canonical.push(Entry { digest: block.digest(), state, node });
        for tx in block.batch().transactions() {
            let id = tx.id();
            // The validity rule: a finalized transaction was submitted by a client (to an
            // honest node or a Byzantine one), or signed by a declared Byzantine client (a
            // Byzantine node trading from its own account), or carries no valid signature (a
            // forgery no application executes). Any other validly signed transaction was made
            // up: a client's key signed it, and no client sent it.
            let first = !self.finalized_at.contains_key(&id);
            if self.submitted.contains(&id) {
                self.origins.0 += u64::from(first);
            } else if self.byzantine_clients.contains(tx.sender()) {
                self.origins.1 += u64::from(first);
            } else if tx.verify().is_err() {
                self.origins.2 += u64::from(first);
            } else {
                self.violations.push(Violation::Unsubmitted { t_ns, tx: id, height });
            }
            if let Some((first_height, _)) = self.finalized_at.get(&id) {
                self.violations.push(Violation::Duplicate {
                    t_ns,
                    tx: id,
                    first_height: *first_height,
                    again_height: height,
                });
            } else {
                self.finalized_at.insert(id, (height, t_ns));
            }
        }
    }

    /// `node`, restarted, finalized `block` at a height it had finalized before: the same
    /// block is harmless, another one is a fork of its own log.
    pub(crate) fn on_refinalize(&mut self, t_ns: u64, node: NodeId, block: &Block) {
        let height = block.height().0;
        let Some(first) = self.logs[node.index()].get((height - 1) as usize) else {
            return;
        };
        if *first != block.digest() {
            let (first, again) = (*first, block.digest());
            self.violations.push(Violation::Refinalized { t_ns, node, height, first, again });
        }
    }

    /// Checks liveness at the end of a run: every `(tx, submitted_ns)` with a deadline at or
    /// before `end_ns` must have been final by it.
    pub(crate) fn check_liveness(
        &mut self,
        accepted: impl Iterator<Item = (Digest, u64)>,
        gst_ns: u64,
        bound_ns: u64,
        end_ns: u64,
    ) {
        let mut missed: Vec<Violation> = accepted
            .filter_map(|(tx, submitted_ns)| {
                let deadline_ns = submitted_ns.max(gst_ns).saturating_add(bound_ns);
                if deadline_ns > end_ns {
                    return None;
                }
                match self.finalized_at.get(&tx) {
                    Some((_, t)) if *t <= deadline_ns => None,
                    _ => Some(Violation::NotFinalized { tx, submitted_ns, deadline_ns }),
                }
            })
            .collect();
        missed.sort_by_key(|v| match v {
            Violation::NotFinalized { submitted_ns, tx, .. } => (*submitted_ns, *tx),
            _ => (0, Digest::ZERO),
        });
        self.violations.extend(missed);
    }

    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The finalized log (block digests) agreed so far.
    pub fn canonical(&self) -> impl Iterator<Item = Digest> + '_ {
        self.canonical.iter().map(|e| e.digest)
    }

    /// When `tx` was first finalized (by an honest node), and at which height.
    pub fn finalized(&self, tx: &Digest) -> Option<(u64, u64)> {
        self.finalized_at.get(tx).copied()
    }

    /// Number of distinct transactions finalized.
    pub fn finalized_count(&self) -> usize {
        self.finalized_at.len()
    }

    /// Of the distinct transactions finalized: those a client submitted (to any node), those a
    /// declared Byzantine client signed, and those with no valid signature (see the validity
    /// rule in the module docs).
    pub fn finalized_origins(&self) -> (u64, u64, u64) {
        self.origins
    }

    /// The log of `node` (block digests, height 1 first).
    pub fn log(&self, node: NodeId) -> &[Digest] {
        &self.logs[node.index()]
    }
}
