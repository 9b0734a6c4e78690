//! A library of Byzantine behaviours that work with any engine whose messages implement
//! [`Tamper`]: equivocation, double and conflicting votes, selective silence, replay, forgery,
//! garbling, invalid content and flooding.
//!
//! Each behaviour is an [`Adversary`] built by [`adversary`]. Except for [`Behaviour::Silent`]
//! and [`Behaviour::SelectiveLeader`], a behaviour sends what its engine sends *and* its attack,
//! so the node keeps taking part and the attack meets engines in every state. Everything random
//! comes from the simulator's adversary RNG: the same seed gives the same attack.

use std::collections::VecDeque;
use std::str::FromStr;

use agora_consensus::Tamper;
use agora_crypto::{Digest, domain};
use agora_types::{
    Batch, Block, Committee, NodeId, PublicKeyBytes, Round, Transaction, Vote, codec,
};
use bytes::Bytes;
use rand::RngExt;

use crate::adversary::{Adversary, AdversaryEnv, Emission, Garbler, Payload, Silent};

/// One Byzantine behaviour; see the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// As leader, proposes one block to the lower half of the committee and a conflicting
    /// sibling (same parent, round and height; one transaction fewer, or a later timestamp) to
    /// the upper half, both signed.
    Equivocate,
    /// Sends the upper half, instead of its vote, a signed vote for another value.
    DoubleVote,
    /// Sends everyone its vote and a signed vote for a conflicting value.
    ConflictingVotes,
    /// Sends nothing at all.
    Silent,
    /// As leader, proposes only to the upper half; everything else goes to all.
    SelectiveLeader,
    /// Re-sends messages it sent earlier (kept in a bounded ring), to random peers.
    Replay,
    /// Adds forgeries: its vote claimed as another member's, a vote signed under the wrong
    /// domain, a vote whose value changed after signing, a proposal in another member's name.
    Forge,
    /// Adds garbage: random bytes, and its real messages truncated or with bits flipped.
    Garble,
    /// As leader, adds invalid proposals: a header whose payload digest is wrong, a
    /// transaction with a bad signature, a batch that holds one transaction twice, or a batch
    /// over the engines' limits.
    InvalidContent,
    /// Adds validly signed copies of its votes and proposals for rounds far in the future.
    Flood,
    /// Equivocates as [`Behaviour::Equivocate`] does, then tells each half the other story
    /// too, 20 to 150 ms later: a node that restarted in between and forgot the block it voted
    /// for is tempted to vote again. It helps the halves agree sooner, so the benches keep the
    /// plain equivocator; the swarm draws this one in half its equivocators.
    LateEquivocate,
    /// As leader, proposes, instead of its block, a block of the same round on genesis
    /// (height 1): once anything is final, a block that forks the log if honest nodes vote
    /// for it without checking that it extends the chain the protocol says (a notarized
    /// blockchain, the longest notarized chain). The swarm draws it in Simplex scenarios, in
    /// half their equivocators.
    ExtendGenesis,
    /// As leader, tells one member its block and every other member, instead, a block beside
    /// that block's grandparent (on the grandparent's parent, with the certificate the
    /// grandparent's proposal carried, kept from the proposals it received), and votes for
    /// that stale block itself. When the others have not seen the certificate its block
    /// carries, it holds both until their timeouts of the round before reach it, and gives
    /// the stale block the certificate it makes of them ([`Tamper::with_round_skipped`]);
    /// meanwhile it sends them nothing else but votes. The one member may commit the
    /// grandparent on the certificate its block carries, while the others, whose lock lags a
    /// two-chain commit rule, certify the stale branch beside it. Only protocols whose
    /// proposals carry their parent's certificate can be told it
    /// ([`Tamper::repropose_beside`]); the swarm draws it in HotStuff scenarios, in a quarter
    /// of their equivocators. Without the grandparent at hand it moves beside its own previous
    /// proposal.
    StaleFork,
}

impl Behaviour {
    /// Every behaviour, in a fixed order: those the swarm draws, then the late equivocator
    /// and the genesis extender.
    pub const ALL: [Behaviour; 13] = {
        let mut all = [Behaviour::LateEquivocate; 13];
        all[11] = Behaviour::ExtendGenesis;
        all[12] = Behaviour::StaleFork;
        let mut i = 0;
        while i < Self::DRAWN.len() {
            all[i] = Self::DRAWN[i];
            i += 1;
        }
        all
    };

    /// The behaviours the swarm draws from, in the order it has always drawn them (so that a
    /// seed draws what it drew before [`Behaviour::LateEquivocate`] existed; the swarm turns
    /// half its equivocators into late ones on a random stream of its own).
    pub const DRAWN: [Behaviour; 10] = [
        Behaviour::Equivocate,
        Behaviour::DoubleVote,
        Behaviour::ConflictingVotes,
        Behaviour::Silent,
        Behaviour::SelectiveLeader,
        Behaviour::Replay,
        Behaviour::Forge,
        Behaviour::Garble,
        Behaviour::InvalidContent,
        Behaviour::Flood,
    ];

    /// The behaviour's name on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Equivocate => "equivocate",
            Behaviour::DoubleVote => "double-vote",
            Behaviour::ConflictingVotes => "conflicting-votes",
            Behaviour::Silent => "silent",
            Behaviour::SelectiveLeader => "selective-leader",
            Behaviour::Replay => "replay",
            Behaviour::Forge => "forge",
            Behaviour::Garble => "garble",
            Behaviour::InvalidContent => "invalid-content",
            Behaviour::Flood => "flood",
            Behaviour::LateEquivocate => "late-equivocate",
            Behaviour::ExtendGenesis => "extend-genesis",
            Behaviour::StaleFork => "stale-fork",
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown behaviour name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown behaviour {0:?}; one of: equivocate, double-vote, conflicting-votes, silent, selective-leader, replay, forge, garble, invalid-content, flood, late-equivocate, extend-genesis, stale-fork"
)]
pub struct UnknownBehaviour(pub String);

impl FromStr for Behaviour {
    type Err = UnknownBehaviour;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Behaviour::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| UnknownBehaviour(s.into()))
    }
}

/// How long after its first story an equivocator tells each node the other one: long enough
/// for a node to crash and come back in between.
const LATE_STORY_NS: std::ops::RangeInclusive<u64> = 20_000_000..=150_000_000;
/// Messages a replayer remembers, at most.
const REPLAY_MEMORY: usize = 256;
/// How far ahead of the real round a flooder's rounds start.
const FLOOD_AHEAD: u64 = 1_000;
/// Far-future copies a flooder adds to each vote or proposal.
const FLOOD_COPIES: u64 = 4;
/// Transactions in an oversized batch: beyond the limit every engine here is configured with.
const OVERSIZED_TXS: usize = 4_097;

/// The adversary that carries out `behaviour` for messages of type `M`.
pub fn adversary<M: Tamper>(behaviour: Behaviour) -> Box<dyn Adversary<M>> {
    match behaviour {
        Behaviour::Silent => Box::new(Silent),
        Behaviour::Garble => {
            Box::new(Mangler { garbler: Garbler { len_max: 512, keep_original: 1.0 } })
        }
        Behaviour::Replay => Box::new(Replayer { sent: VecDeque::new() }),
        Behaviour::StaleFork => Box::new(StaleForker::new()),
        other => Box::new(Rewriter { behaviour: other }),
    }
}

/// The upper half of the committee (by index), the side that gets the other story.
fn upper_half(env: &AdversaryEnv<'_>, to: NodeId) -> bool {
    to.index() * 2 >= env.committee.n()
}

/// A block that conflicts with `block`: same parent, round, height and proposer, with one
/// transaction fewer (or, when empty, a later timestamp).
pub fn sibling(block: &Block) -> Block {
    let h = block.header();
    let txs = block.batch().transactions();
    let (batch, stamp) = match txs.split_first() {
        Some((_, rest)) => (Batch::new(rest.to_vec()), h.created_at_ns),
        None => (Ok(Batch::empty()), h.created_at_ns + 1),
    };
    let batch = batch.expect("a sub-batch of a valid batch is valid");
    Block::new(h.parent, h.round, h.height, h.proposer, stamp, batch)
}

/// A value no honest node voted for, derived from `value`.
fn conflicting(value: &Digest) -> Digest {
    domain::BLOCK.hash(value.as_bytes())
}

/// The behaviours that rewrite typed messages.
struct Rewriter {
    behaviour: Behaviour,
}

impl<M: Tamper> Adversary<M> for Rewriter {
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    ) {
        let send =
            |out: &mut Vec<Emission<M>>, m: M| out.push(Emission::now(to, Payload::Message(m)));
        let (me, key) = (env.me, env.key);
        match self.behaviour {
            Behaviour::Equivocate => match message.proposed_block() {
                Some(block) if upper_half(env, to) => {
                    let other = message.repropose(sibling(block), me, key);
                    send(out, other.unwrap_or(message));
                }
                _ => send(out, message),
            },
            Behaviour::LateEquivocate => match message.proposed_block() {
                Some(block) => {
                    let other = message.repropose(sibling(block), me, key);
                    let (first, late) = match other {
                        Some(other) if upper_half(env, to) => (other, Some(message)),
                        Some(other) => (message, Some(other)),
                        None => (message, None),
                    };
                    send(out, first);
                    if let Some(late) = late {
                        let delay_ns = env.rng.random_range(LATE_STORY_NS);
                        out.push(Emission { to, payload: Payload::Message(late), delay_ns });
                    }
                }
                None => send(out, message),
            },
            Behaviour::DoubleVote => {
                let other = upper_half(env, to).then(|| conflicting_vote(&message, env)).flatten();
                send(out, other.unwrap_or(message));
            }
            Behaviour::ConflictingVotes => {
                let extra = conflicting_vote(&message, env);
                send(out, message);
                if let Some(extra) = extra {
                    send(out, extra);
                }
            }
            Behaviour::ExtendGenesis => match message.proposed_block() {
                Some(block) => {
                    let h = block.header();
                    let stale = Block::new(
                        Block::genesis().digest(),
                        h.round,
                        agora_types::Height(1),
                        h.proposer,
                        h.created_at_ns,
                        block.batch().clone(),
                    );
                    send(out, message.repropose(stale, me, key).unwrap_or(message));
                }
                None => send(out, message),
            },
            Behaviour::SelectiveLeader => {
                if message.proposed_block().is_none() || upper_half(env, to) {
                    send(out, message);
                }
            }
            Behaviour::Forge => {
                let forged = forge(env, &message);
                send(out, message);
                if let Some(forged) = forged {
                    send(out, forged);
                }
            }
            Behaviour::InvalidContent => {
                let invalid = invalid_content(env, &message);
                send(out, message);
                if let Some(payload) = invalid {
                    out.push(Emission::now(to, payload));
                }
            }
            Behaviour::Flood => {
                let copies: Vec<M> = (0..FLOOD_COPIES)
                    .filter_map(|k| {
                        let round = Round(message.round()?.0 + FLOOD_AHEAD + k);
                        far_future(&message, round, env)
                    })
                    .collect();
                send(out, message);
                for m in copies {
                    send(out, m);
                }
            }
            Behaviour::Silent | Behaviour::Garble | Behaviour::Replay | Behaviour::StaleFork => {
                send(out, message)
            }
        }
    }
}

/// `message` with the sender's vote replaced by its signed vote for a value no honest node voted
/// for, if the message carries the sender's vote.
fn conflicting_vote<M: Tamper>(message: &M, env: &AdversaryEnv<'_>) -> Option<M> {
    let mut s = message.own_vote()?.statement;
    s.value = conflicting(&s.value);
    message.with_vote(Vote::sign(s, env.me, env.key))
}

/// `message` moved to `round`, validly signed by the adversary.
fn far_future<M: Tamper>(message: &M, round: Round, env: &AdversaryEnv<'_>) -> Option<M> {
    if let Some(vote) = message.own_vote() {
        let mut s = vote.statement;
        s.round = round;
        return message.with_vote(Vote::sign(s, env.me, env.key));
    }
    let block = message.proposed_block()?;
    let h = block.header();
    let moved =
        Block::new(h.parent, round, h.height, h.proposer, h.created_at_ns, block.batch().clone());
    message.repropose(moved, env.me, env.key)
}

/// One forgery of `message`, if it carries something signed.
fn forge<M: Tamper>(env: &mut AdversaryEnv<'_>, message: &M) -> Option<M> {
    let n = env.committee.n() as u16;
    let someone_else = NodeId((env.me.0 + 1 + env.rng.random_range(0..n.max(2) - 1)) % n.max(1));
    if let Some(vote) = message.own_vote() {
        let forged = match env.rng.random_range(0..3u8) {
            // Claimed as another member's, signed with our key.
            0 => Vote { voter: someone_else, ..*vote },
            // The right key, the wrong domain.
            1 => Vote {
                signature: env.key.sign(&domain::PROPOSAL, vote.statement.value.as_bytes()),
                ..*vote
            },
            // Signed, then the value changed.
            _ => {
                let mut v = *vote;
                v.statement.value = conflicting(&v.statement.value);
                v
            }
        };
        return message.with_vote(forged);
    }
    let block = message.proposed_block()?;
    let h = block.header();
    let theirs = Block::new(
        h.parent,
        h.round,
        h.height,
        someone_else,
        h.created_at_ns,
        block.batch().clone(),
    );
    message.repropose(theirs, someone_else, env.key)
}

/// One invalid proposal made from `message`, if it is a proposal.
fn invalid_content<M: Tamper>(env: &mut AdversaryEnv<'_>, message: &M) -> Option<Payload<M>> {
    let block = message.proposed_block()?;
    let h = block.header();
    let rebuild = |batch: Batch| {
        Block::new(h.parent, h.round, h.height, h.proposer, h.created_at_ns + 1, batch)
    };
    // Made-up transactions in a member's name, with a signature that is not theirs (no signing
    // cost: one signature serves them all). Declared, so finalizing one is not a validity
    // violation; applying one must fail.
    let victim = PublicKeyBytes::from(env.committee.key(NodeId(0))?);
    let wrong = env.key.sign(&domain::TX_SIGNATURE, b"not this transaction");
    let base = env.rng.random::<u64>() >> 16;
    let made_up = |k: u64| {
        Transaction::from_parts(victim, base + k, Bytes::from_static(b"forged-order"), wrong)
    };
    let mut txs = block.batch().transactions().to_vec();
    match env.rng.random_range(0..4u8) {
        // The header's payload digest no longer matches the batch: only bytes can say that.
        0 => {
            let bytes = codec::encode(message).ok()?;
            let payload = block.header().payload;
            let at = bytes.windows(Digest::BYTES).position(|w| w == payload.as_bytes())?;
            let mut bytes = bytes.to_vec();
            bytes[at] ^= 1;
            return Some(Payload::Raw(Bytes::from(bytes)));
        }
        // A transaction whose signature is not its sender's.
        1 => txs.push(made_up(0).ok()?),
        // One transaction twice.
        2 => {
            let tx = txs.first().cloned().or_else(|| made_up(0).ok())?;
            txs.extend([tx.clone(), tx]);
        }
        // More transactions than any engine here accepts in a block.
        _ => txs.extend((0..OVERSIZED_TXS as u64).filter_map(|k| made_up(k).ok())),
    }
    for tx in &txs {
        env.declare_transaction(tx.clone());
    }
    let batch = Batch::new(txs).ok()?;
    message.repropose(rebuild(batch), env.me, env.key).map(Payload::Message)
}

/// Garbage beside every real message: random bytes, or the real encoding cut short or with a
/// bit flipped.
struct Mangler {
    garbler: Garbler,
}

impl<M: Tamper> Adversary<M> for Mangler {
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    ) {
        let encoded = codec::encode(&message).ok().filter(|b| !b.is_empty());
        match (env.rng.random_range(0..3u8), encoded) {
            (1, Some(bytes)) => {
                let cut = env.rng.random_range(0..bytes.len());
                out.push(Emission::now(to, Payload::Raw(bytes.slice(..cut))));
            }
            (2, Some(bytes)) => {
                let mut bytes = bytes.to_vec();
                let bit = env.rng.random_range(0..bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
                out.push(Emission::now(to, Payload::Raw(Bytes::from(bytes))));
            }
            _ => {
                // Random bytes, and the real message (keep_original is 1).
                self.garbler.on_send(env, to, message, out);
                return;
            }
        }
        out.push(Emission::now(to, Payload::Message(message)));
    }
}

/// Sends what its engine sends, and now and then an old message of its own again.
/// [`Behaviour::StaleFork`]: its previous proposal, and this round's stale block.
struct StaleForker<M> {
    /// Proposals seen lately, its own and those it received, by block, oldest first.
    seen: VecDeque<(Digest, M)>,
    /// Other messages it received lately, oldest first: what it builds proofs from.
    received: VecDeque<M>,
    /// The last proposal of an earlier round its engine sent.
    previous: Option<M>,
    /// The round being proposed in now.
    current: Option<StaleRound<M>>,
}

/// A stale forker's round as leader.
struct StaleRound<M> {
    /// Its engine's proposal.
    proposal: M,
    /// The stale block told the others instead, if one could be built.
    stale: Option<M>,
    /// Whether both wait for the proof the stale block lacks, and for whom the proposal was
    /// meant meanwhile.
    held: Option<Vec<NodeId>>,
}

/// Proposals, and other messages, a stale forker keeps to build from.
const STALE_MEMORY: usize = 64;
const STALE_RECEIVED: usize = 512;

impl<M: Tamper> StaleForker<M> {
    fn new() -> Self {
        StaleForker {
            seen: VecDeque::new(),
            received: VecDeque::new(),
            previous: None,
            current: None,
        }
    }

    fn remember(&mut self, message: &M) {
        let Some(digest) = message.proposed_block().map(Block::digest) else {
            if self.received.len() == STALE_RECEIVED {
                self.received.pop_front();
            }
            self.received.push_back(message.clone());
            return;
        };
        if self.seen.iter().any(|(d, _)| *d == digest) {
            return;
        }
        if self.seen.len() == STALE_MEMORY {
            self.seen.pop_front();
        }
        self.seen.push_back((digest, message.clone()));
    }

    fn proposal_of(&self, block: &Digest) -> Option<&M> {
        self.seen.iter().rev().find(|(d, _)| d == block).map(|(_, m)| m)
    }

    /// The proposal of `message`'s block's grandparent, if it passed by.
    fn grandparent(&self, message: &M) -> Option<&M> {
        let parent = self.proposal_of(&message.proposed_block()?.parent())?;
        self.proposal_of(&parent.proposed_block()?.parent())
    }

    /// The stale block with the proof of the round before, if the messages received make one.
    fn proven(&mut self, stale: &M, committee: &Committee) -> Option<M> {
        stale.with_round_skipped(self.received.make_contiguous(), committee)
    }

    /// Sends what a held round was waiting to send: the proposal to the one member, the
    /// (proven) stale block to the others.
    fn release(round: &mut StaleRound<M>, env: &AdversaryEnv<'_>, out: &mut Vec<Emission<M>>) {
        let Some(waiting) = round.held.take() else { return };
        for to in waiting {
            let message = match &round.stale {
                Some(stale) if to != told_the_truth(env) => stale.clone(),
                _ => round.proposal.clone(),
            };
            out.push(Emission::now(to, Payload::Message(message)));
        }
    }
}

/// The one member a stale forker tells its real block: the first other than itself.
fn told_the_truth(env: &AdversaryEnv<'_>) -> NodeId {
    NodeId(u16::from(env.me.0 == 0))
}

impl<M: Tamper> Adversary<M> for StaleForker<M> {
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    ) {
        let send =
            |out: &mut Vec<Emission<M>>, m: M| out.push(Emission::now(to, Payload::Message(m)));
        if message.proposed_block().is_some() {
            let round = message.round();
            if self.current.as_ref().is_none_or(|c| c.proposal.round() != round) {
                if let Some(mut done) = self.current.take() {
                    // A round that never got its proof: its proposal goes as it was.
                    done.stale = None;
                    Self::release(&mut done, env, out);
                    self.previous = Some(done.proposal);
                }
                let stale = self
                    .grandparent(&message)
                    .or(self.previous.as_ref())
                    .and_then(|earlier| message.repropose_beside(earlier, env.me, env.key));
                self.remember(&message);
                let (stale, held) = match stale {
                    Some(stale) => match self.proven(&stale, env.committee) {
                        Some(proven) => (Some(proven), None),
                        None => (Some(stale), Some(Vec::new())),
                    },
                    None => (None, None),
                };
                self.current = Some(StaleRound { proposal: message.clone(), stale, held });
            }
            let Some(current) = self.current.as_mut() else { return send(out, message) };
            if let Some(waiting) = current.held.as_mut() {
                waiting.push(to);
                return;
            }
            match &current.stale {
                Some(stale) if to != told_the_truth(env) => send(out, stale.clone()),
                _ => send(out, message),
            }
            return;
        }
        // Its vote in the round of the stale block goes to that block.
        let current = self.current.as_ref();
        let stale = current.and_then(|c| c.stale.as_ref());
        if let (Some(vote), Some(block)) =
            (message.own_vote(), stale.and_then(|s| s.proposed_block()))
            && vote.statement.round == block.round()
            && vote.statement.value != block.digest()
        {
            let mut s = vote.statement;
            s.value = block.digest();
            if let Some(moved) = message.with_vote(Vote::sign(s, env.me, env.key)) {
                return send(out, moved);
            }
        }
        // While it holds a round, the others hear nothing that could show them its block's
        // certificate.
        let holding = current.is_some_and(|c| c.held.is_some());
        if holding && message.own_vote().is_none() && to != told_the_truth(env) {
            return;
        }
        send(out, message)
    }

    fn on_receive(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        _from: NodeId,
        message: &M,
        out: &mut Vec<Emission<M>>,
    ) {
        self.remember(message);
        let held = self.current.as_ref().filter(|c| c.held.is_some());
        let Some(stale) = held.and_then(|c| c.stale.clone()) else { return };
        let Some(proven) = self.proven(&stale, env.committee) else { return };
        let Some(current) = self.current.as_mut() else { return };
        current.stale = Some(proven);
        Self::release(current, env, out);
    }
}

struct Replayer<M> {
    sent: VecDeque<M>,
}

impl<M: Tamper> Adversary<M> for Replayer<M> {
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    ) {
        if !self.sent.is_empty() && env.rng.random_bool(0.5) {
            let old = self.sent[env.rng.random_range(0..self.sent.len())].clone();
            let delay = env.rng.random_range(0..50_000_000);
            out.push(Emission { to, payload: Payload::Message(old), delay_ns: delay });
        }
        if self.sent.len() == REPLAY_MEMORY {
            self.sent.pop_front();
        }
        self.sent.push_back(message.clone());
        out.push(Emission::now(to, Payload::Message(message)));
    }
}
