//! Streamlet's messages: signed proposals and votes, their echoes, and catching up.

use agora_consensus::{Message, Tamper};
use agora_crypto::{SecretKey, Signature, domain};
use agora_types::{Block, Height, NodeId, Transaction, Vote};
use serde::{Deserialize, Serialize};

/// A block proposal, signed by its proposer over the block digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposed block (its round is the epoch).
    pub block: Block,
    /// The proposer's signature over the block digest under `agora/proposal/v1`.
    pub signature: Signature,
}

/// Streamlet's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StreamletMessage {
    /// A leader's proposal.
    Propose(Proposal),
    /// A node's vote.
    Vote(Vote),
    /// A proposal forwarded by a node that received it (the echo rule).
    EchoPropose(Proposal),
    /// A vote forwarded by a node that received it.
    EchoVote(Vote),
    /// Client transactions on their way to upcoming leaders.
    Forward(Vec<Transaction>),
    /// A stalled node asks the proposers of the newest proposals it holds for the finalized
    /// blocks above its own finalized height; the answer comes as echoes of their proposals and
    /// of the votes that notarized them.
    Sync {
        /// The asker's finalized height.
        finalized: Height,
    },
}

/// Proposals (and their echoes) are proposals; a node's own `Vote` is its vote (echoed votes are
/// other members').
impl Tamper for StreamletMessage {
    fn proposed_block(&self) -> Option<&Block> {
        match self {
            StreamletMessage::Propose(p) | StreamletMessage::EchoPropose(p) => Some(&p.block),
            _ => None,
        }
    }

    fn repropose(&self, block: Block, _signer: NodeId, key: &SecretKey) -> Option<Self> {
        // The signer a Streamlet proposal claims is its block's proposer.
        self.proposed_block()?;
        let signature = key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        Some(StreamletMessage::Propose(Proposal { block, signature }))
    }

    fn own_vote(&self) -> Option<&Vote> {
        match self {
            StreamletMessage::Vote(v) => Some(v),
            _ => None,
        }
    }

    fn with_vote(&self, vote: Vote) -> Option<Self> {
        self.own_vote().map(|_| StreamletMessage::Vote(vote))
    }
}

impl Message for StreamletMessage {
    fn transactions(&self) -> &[Transaction] {
        match self {
            StreamletMessage::Propose(p) | StreamletMessage::EchoPropose(p) => {
                p.block.batch().transactions()
            }
            StreamletMessage::Forward(txs) => txs,
            _ => &[],
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            StreamletMessage::Propose(_) => "propose",
            StreamletMessage::Vote(_) => "vote",
            StreamletMessage::EchoPropose(_) => "echo-propose",
            StreamletMessage::EchoVote(_) => "echo-vote",
            StreamletMessage::Forward(_) => "forward",
            StreamletMessage::Sync { .. } => "sync",
        }
    }
}
