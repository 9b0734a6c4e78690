//! What a protocol tells generic adversaries about its messages, so that one library of
//! Byzantine behaviours (in `agora-netsim`) serves every engine.
//!
//! An engine's message type answers two questions — "is this a proposal, and of which block?"
//! and "is this the sender's own signed vote?" — and can rebuild the message around a different
//! block or vote, signed with a key it is handed. That is enough to equivocate, double-vote,
//! forge, replay into other rounds and flood far-future rounds without the adversary knowing
//! the protocol.

use agora_crypto::SecretKey;
use agora_types::{Block, Committee, NodeId, Round, Vote};

use crate::Message;

/// A message type that generic adversaries can take apart and rebuild.
pub trait Tamper: Message {
    /// The block this message proposes (a proposal, a pre-prepare), if it is one.
    fn proposed_block(&self) -> Option<&Block>;

    /// The same kind of message proposing `block` instead, signed by `signer` with `key` (which
    /// need not be `signer`'s: forgers pass their own). `None` when this is not a proposal.
    fn repropose(&self, block: Block, signer: NodeId, key: &SecretKey) -> Option<Self>;

    /// The sender's own signed statement this message carries (a vote, a prepare, a commit, a
    /// checkpoint), if it is one.
    fn own_vote(&self) -> Option<&Vote>;

    /// The same kind of message carrying `vote` instead, as given (valid or not).
    fn with_vote(&self, vote: Vote) -> Option<Self>;

    /// This proposal moved beside `earlier`, an earlier proposal (the sender's, or one it
    /// received): a block
    /// of this message's round on the parent of `earlier`'s block, at its height, carrying
    /// what `earlier` carried to justify that parent (protocols whose proposals carry their
    /// parent's certificate, such as HotStuff), signed with `key`. `None` (the default) when
    /// the protocol's proposals carry no such certificate, or either is not a proposal.
    fn repropose_beside(&self, earlier: &Self, signer: NodeId, key: &SecretKey) -> Option<Self> {
        let _ = (earlier, signer, key);
        None
    }

    /// This proposal carrying proof, made from messages the sender `received`, that the round
    /// before its own ended without a certificate: HotStuff's timeout certificate, from a
    /// quorum of that round's signed timeouts. Itself when it carries such proof already;
    /// `None` (the default) when the protocol has no such proof, this is not a proposal, or
    /// `received` holds too little.
    fn with_round_skipped(&self, received: &[Self], committee: &Committee) -> Option<Self> {
        let _ = (received, committee);
        None
    }

    /// The round (epoch or view) the message belongs to, if it belongs to one.
    fn round(&self) -> Option<Round> {
        self.own_vote()
            .map(|v| v.statement.round)
            .or_else(|| self.proposed_block().map(Block::round))
    }
}
