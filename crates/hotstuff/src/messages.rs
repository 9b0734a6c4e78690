//! HotStuff's messages: proposals that carry their parent's QC, votes to the next leader,
//! timeouts and timeout certificates, forwarded QCs, and catching up.

use std::collections::BTreeMap;

use agora_consensus::{Message, Tamper};
use agora_crypto::{Digest, SecretKey, Signature, domain};
use agora_types::{
    Block, Certificate, Committee, Height, NodeId, Phase, Round, Statement, Transaction, Vote,
};
use serde::{Deserialize, Serialize};

/// A block proposal, signed by its proposer over the block digest. The block's round is its
/// view and its parent is the block `justify` certifies: the paper's `b.justify`, which need
/// not be signed into the block, since a QC for the parent is the same statement whoever
/// gathered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposed block.
    pub block: Block,
    /// The proposer's signature over the block digest under `agora/proposal/v1`.
    pub signature: Signature,
    /// The QC of the block's parent; `None` for a child of genesis (view 0's implicit QC).
    pub justify: Option<Certificate>,
    /// The timeout certificate of the view before the block's, when the leader entered its
    /// view through one rather than through a QC of that view.
    pub tc: Option<TimeoutCertificate>,
}

/// A node's timeout of a view: its signed [`Phase::Timeout`] statement, whose height is the
/// view of `high_qc`, and that QC (which lets a node that missed it catch up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    /// The signed statement.
    pub vote: Vote,
    /// The highest QC the signer holds; `None` for genesis.
    pub high_qc: Option<Certificate>,
}

/// A quorum of timeouts of one view: it moves every node to the next view, and tells the next
/// leader's voters the highest QC a quorum held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutCertificate {
    /// The view that timed out.
    pub view: u64,
    /// Each signer, the view of the highest QC it reported, and its signature over the
    /// timeout statement, in signer order.
    pub timeouts: Vec<(NodeId, u64, Signature)>,
    /// The highest of the reported QCs; `None` when every signer reported genesis.
    pub high_qc: Option<Certificate>,
}

impl TimeoutCertificate {
    /// The highest QC view its signers reported.
    pub fn high_qc_view(&self) -> u64 {
        self.timeouts.iter().map(|(_, v, _)| *v).max().unwrap_or(0)
    }

    /// The signed vote of one of its entries.
    pub fn vote_of(&self, (voter, high, signature): &(NodeId, u64, Signature)) -> Vote {
        Vote {
            statement: timeout_statement(self.view, *high),
            voter: *voter,
            signature: *signature,
        }
    }
}

/// The statement of a timeout of `view` by a node whose highest QC is of view `high`.
pub fn timeout_statement(view: u64, high: u64) -> Statement {
    Statement {
        phase: Phase::Timeout,
        round: Round(view),
        height: Height(high),
        value: Digest::ZERO,
    }
}

/// The view a QC certifies (0 for genesis's implicit one).
pub fn qc_view(qc: Option<&Certificate>) -> u64 {
    qc.map_or(0, |c| c.statement().round.0)
}

/// HotStuff's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HotStuffMessage {
    /// A leader's proposal (or, in an answer to [`HotStuffMessage::Sync`], a block sent again).
    Propose(Proposal),
    /// A vote for a block, sent to the next view's leader.
    Vote(Vote),
    /// A node gave up on a view; sent to every member.
    Timeout(Timeout),
    /// A QC a node forwards: at its timer, the one that brought it into its view; in a sync
    /// answer, the QCs of the blocks it sends.
    Certificate(Certificate),
    /// A timeout certificate a node forwards at its timer, when one brought it into its view.
    TimeoutCertificate(TimeoutCertificate),
    /// Client transactions on their way to upcoming leaders.
    Forward(Vec<Transaction>),
    /// A node that is missing blocks asks for what its peer holds above its own finalized
    /// height; the answer comes as certificates and proposals.
    Sync {
        /// The asker's finalized height.
        finalized: Height,
    },
}

/// A proposal is a proposal; a node's own `Vote` is its vote.
impl Tamper for HotStuffMessage {
    fn proposed_block(&self) -> Option<&Block> {
        match self {
            HotStuffMessage::Propose(p) => Some(&p.block),
            _ => None,
        }
    }

    fn repropose(&self, block: Block, _signer: NodeId, key: &SecretKey) -> Option<Self> {
        // The signer a HotStuff proposal claims is its block's proposer. The QC stays, unless
        // the new block extends genesis, whose QC is implicit (an adversary can build on it
        // whenever it likes); the timeout certificate stays.
        let HotStuffMessage::Propose(original) = self else { return None };
        let signature = key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        let justify = if block.parent() == Block::genesis().digest() {
            None
        } else {
            original.justify.clone()
        };
        Some(HotStuffMessage::Propose(Proposal {
            block,
            signature,
            justify,
            tc: original.tc.clone(),
        }))
    }

    fn repropose_beside(&self, earlier: &Self, _signer: NodeId, key: &SecretKey) -> Option<Self> {
        let (HotStuffMessage::Propose(now), HotStuffMessage::Propose(before)) = (self, earlier)
        else {
            return None;
        };
        let (h, b) = (now.block.header(), before.block.header());
        let block = Block::new(
            b.parent,
            h.round,
            b.height,
            h.proposer,
            h.created_at_ns,
            now.block.batch().clone(),
        );
        let signature = key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        Some(HotStuffMessage::Propose(Proposal {
            block,
            signature,
            justify: before.justify.clone(),
            tc: now.tc.clone(),
        }))
    }

    fn with_round_skipped(&self, received: &[Self], committee: &Committee) -> Option<Self> {
        let HotStuffMessage::Propose(p) = self else { return None };
        if p.tc.is_some() {
            return Some(self.clone());
        }
        let view = p.block.round().0.checked_sub(1).filter(|v| *v > 0)?;
        let mut timeouts: BTreeMap<NodeId, &Timeout> = BTreeMap::new();
        for m in received {
            if let HotStuffMessage::Timeout(t) = m
                && t.vote.statement.round.0 == view
                && t.vote.statement.height.0 == qc_view(t.high_qc.as_ref())
            {
                timeouts.entry(t.vote.voter).or_insert(t);
            }
        }
        if timeouts.len() < committee.notarization_quorum() {
            return None;
        }
        let high_qc = timeouts
            .values()
            .filter_map(|t| t.high_qc.clone())
            .max_by_key(|qc| qc.statement().round.0);
        let tc = TimeoutCertificate {
            view,
            timeouts: timeouts
                .values()
                .map(|t| (t.vote.voter, t.vote.statement.height.0, t.vote.signature))
                .collect(),
            high_qc,
        };
        Some(HotStuffMessage::Propose(Proposal { tc: Some(tc), ..p.clone() }))
    }

    fn own_vote(&self) -> Option<&Vote> {
        match self {
            HotStuffMessage::Vote(v) => Some(v),
            _ => None,
        }
    }

    fn with_vote(&self, vote: Vote) -> Option<Self> {
        self.own_vote().map(|_| HotStuffMessage::Vote(vote))
    }
}

impl Message for HotStuffMessage {
    fn transactions(&self) -> &[Transaction] {
        match self {
            HotStuffMessage::Propose(p) => p.block.batch().transactions(),
            HotStuffMessage::Forward(txs) => txs,
            _ => &[],
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            HotStuffMessage::Propose(_) => "propose",
            HotStuffMessage::Vote(_) => "vote",
            HotStuffMessage::Timeout(_) => "timeout",
            HotStuffMessage::Certificate(_) => "qc",
            HotStuffMessage::TimeoutCertificate(_) => "tc",
            HotStuffMessage::Forward(_) => "forward",
            HotStuffMessage::Sync { .. } => "sync",
        }
    }

    fn instance(&self) -> Option<u64> {
        match self {
            HotStuffMessage::Propose(p) => Some(p.block.round().0),
            HotStuffMessage::Vote(v) => Some(v.statement.round.0),
            HotStuffMessage::Timeout(t) => Some(t.vote.statement.round.0),
            HotStuffMessage::Certificate(c) => Some(c.statement().round.0),
            HotStuffMessage::TimeoutCertificate(tc) => Some(tc.view),
            _ => None,
        }
    }
}
