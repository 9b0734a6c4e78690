//! A protocol-neutral picture of the blocks one node has seen: what renderers and reports use.

use agora_crypto::Digest;
use agora_types::{Block, Height, NodeId, Round};
use serde::Serialize;

/// How far a block got at one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStatus {
    /// Seen as a proposal only.
    Proposed,
    /// Certified by a quorum of votes (notarized, prepared).
    Notarized,
    /// Final: part of the node's committed log.
    Finalized,
}

/// One block as one node saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockView {
    /// The block's digest.
    pub digest: Digest,
    /// Its parent's digest.
    pub parent: Digest,
    /// Epoch or view.
    pub round: Round,
    /// Height.
    pub height: Height,
    /// Proposer (the round's leader).
    pub proposer: NodeId,
    /// Transactions in it.
    pub txs: usize,
    /// How far it got.
    pub status: BlockStatus,
    /// Distinct votes this node counted for it.
    pub votes: usize,
    /// When its proposer made it.
    pub proposed_at_ns: u64,
    /// When this node saw it notarized, if it did.
    pub notarized_at_ns: Option<u64>,
    /// When this node finalized it, if it did.
    pub finalized_at_ns: Option<u64>,
}

impl BlockView {
    /// The view of `block` at a node that counted `votes` for it and saw it notarized and
    /// final when it says (the status follows: finalized, else notarized, else proposed).
    pub fn of(
        block: &Block,
        votes: usize,
        notarized_at_ns: Option<u64>,
        finalized_at_ns: Option<u64>,
    ) -> Self {
        let status = match (notarized_at_ns, finalized_at_ns) {
            (_, Some(_)) => BlockStatus::Finalized,
            (Some(_), None) => BlockStatus::Notarized,
            (None, None) => BlockStatus::Proposed,
        };
        Self {
            digest: block.digest(),
            parent: block.parent(),
            round: block.round(),
            height: block.height(),
            proposer: block.proposer(),
            txs: block.batch().len(),
            status,
            votes,
            proposed_at_ns: block.header().created_at_ns,
            notarized_at_ns,
            finalized_at_ns,
        }
    }
}

/// Engines that can show the block tree they have seen implement this.
pub trait ChainView {
    /// Every block this node knows (genesis included), in a deterministic order.
    fn block_views(&self) -> Vec<BlockView>;
}
