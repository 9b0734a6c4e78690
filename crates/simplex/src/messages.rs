//! Simplex's messages: signed proposals, the three kinds of vote, certificates, and catching up.

use agora_consensus::{Message, Tamper};
use agora_crypto::{SecretKey, Signature, domain};
use agora_types::{Block, Certificate, Height, NodeId, Transaction, Vote};
use serde::{Deserialize, Serialize};

/// A block proposal, signed by its proposer over the block digest (its round is the
/// iteration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposed block.
    pub block: Block,
    /// The proposer's signature over the block digest under `agora/proposal/v1`.
    pub signature: Signature,
}

/// Simplex's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SimplexMessage {
    /// A leader's proposal (or, in an answer to [`SimplexMessage::Sync`], a notarized block
    /// sent again).
    Propose(Proposal),
    /// A node's vote: for a block ([`Phase::Vote`](agora_types::Phase::Vote)), for an
    /// iteration's dummy block ([`Phase::Skip`](agora_types::Phase::Skip)), or to finalize
    /// ([`Phase::Finalize`](agora_types::Phase::Finalize)).
    Vote(Vote),
    /// A quorum certificate a node forwards: the notarization of a block or of a dummy block,
    /// or a finalization.
    Certificate(Certificate),
    /// Client transactions on their way to upcoming leaders.
    Forward(Vec<Transaction>),
    /// A node that is missing blocks or notarizations asks for what its peer holds above its
    /// own finalized height; the answer comes as certificates and proposals.
    Sync {
        /// The asker's finalized height.
        finalized: Height,
    },
}

/// A proposal is a proposal; a node's own `Vote` is its vote.
impl Tamper for SimplexMessage {
    fn proposed_block(&self) -> Option<&Block> {
        match self {
            SimplexMessage::Propose(p) => Some(&p.block),
            _ => None,
        }
    }

    fn repropose(&self, block: Block, _signer: NodeId, key: &SecretKey) -> Option<Self> {
        // The signer a Simplex proposal claims is its block's proposer.
        self.proposed_block()?;
        let signature = key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        Some(SimplexMessage::Propose(Proposal { block, signature }))
    }

    fn own_vote(&self) -> Option<&Vote> {
        match self {
            SimplexMessage::Vote(v) => Some(v),
            _ => None,
        }
    }

    fn with_vote(&self, vote: Vote) -> Option<Self> {
        self.own_vote().map(|_| SimplexMessage::Vote(vote))
    }
}

impl Message for SimplexMessage {
    fn transactions(&self) -> &[Transaction] {
        match self {
            SimplexMessage::Propose(p) => p.block.batch().transactions(),
            SimplexMessage::Forward(txs) => txs,
            _ => &[],
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            SimplexMessage::Propose(_) => "propose",
            SimplexMessage::Vote(v) => match v.statement.phase {
                agora_types::Phase::Skip => "skip",
                agora_types::Phase::Finalize => "finalize",
                _ => "vote",
            },
            SimplexMessage::Certificate(c) => match c.statement().phase {
                agora_types::Phase::Skip => "skip-certificate",
                agora_types::Phase::Finalize => "finalization",
                _ => "notarization",
            },
            SimplexMessage::Forward(_) => "forward",
            SimplexMessage::Sync { .. } => "sync",
        }
    }

    fn instance(&self) -> Option<u64> {
        match self {
            SimplexMessage::Propose(p) => Some(p.block.round().0),
            SimplexMessage::Vote(v) => Some(v.statement.round.0),
            SimplexMessage::Certificate(c) => Some(c.statement().round.0),
            _ => None,
        }
    }
}
