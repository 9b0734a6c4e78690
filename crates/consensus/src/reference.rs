//! A reference engine: one fixed leader commits each of its proposals once every other node has
//! acknowledged it. It is **not fault tolerant** (a crashed node or leader stops it), and exists
//! to test drivers and to show, in little code, how an engine meets the interface.
//!
//! The rules:
//! 1. A follower forwards every transaction a client gives it to the leader, and forwards the
//!    ones still pending again on every tick (a forward may be lost).
//! 2. On a tick with nothing in flight, the leader proposes a block of pending transactions at
//!    the next height. While a proposal is in flight it resends it, on each tick, to the
//!    followers that have not acknowledged it.
//! 3. A follower stores a proposal from the leader at the next heights and acknowledges it.
//! 4. With every follower's acknowledgement the leader commits the block and broadcasts COMMIT.
//! 5. A follower commits its stored blocks, in height order, up to the highest committed height
//!    it has heard of (from COMMIT, or from the `committed` field of a proposal). A follower
//!    with stored, uncommitted blocks acknowledges its highest again on each tick, and the leader
//!    answers an acknowledgement of a committed height with COMMIT, so a lost COMMIT heals.

use std::collections::{BTreeMap, BTreeSet};

use agora_crypto::Digest;
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};
use serde::{Deserialize, Serialize};

use crate::mempool::BatchLimits;
use crate::protocol::{Ctx, Message, Protocol};

/// The reference engine's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RefMessage {
    /// A client's transaction, on its way to the leader.
    Forward(Transaction),
    /// The leader's proposal, with the highest height the leader has committed.
    Propose {
        /// The proposed block.
        block: Block,
        /// The leader's committed height.
        committed: Height,
    },
    /// A follower has stored the block at `height` with `digest`.
    Ack {
        /// Height acknowledged.
        height: Height,
        /// Its digest.
        digest: Digest,
    },
    /// The leader committed everything up to `height`.
    Commit {
        /// Committed height.
        height: Height,
    },
}

impl Message for RefMessage {
    fn kind(&self) -> &'static str {
        match self {
            RefMessage::Forward(_) => "forward",
            RefMessage::Propose { .. } => "propose",
            RefMessage::Ack { .. } => "ack",
            RefMessage::Commit { .. } => "commit",
        }
    }
}

/// The reference engine's only timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tick;

/// Settings of the reference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefConfig {
    /// Committee size.
    pub n: u16,
    /// The fixed leader.
    pub leader: NodeId,
    /// Tick period in nanoseconds: proposals, resends and re-forwards happen on ticks.
    pub tick_ns: u64,
    /// Batch bounds for proposals (and for re-forwarding per tick).
    pub batch: BatchLimits,
    /// Blocks a follower stores ahead of its committed height at most.
    pub pending_blocks_max: usize,
}

impl RefConfig {
    /// `n` nodes, node 0 leads, ticks every 10 ms, default batch limits, 64 pending blocks.
    pub fn new(n: u16) -> Self {
        Self {
            n,
            leader: NodeId(0),
            tick_ns: 10_000_000,
            batch: BatchLimits::default(),
            pending_blocks_max: 64,
        }
    }
}

/// The reference engine; see the module docs.
#[derive(Debug, Clone)]
pub struct ReferenceEngine {
    config: RefConfig,
    committed: Height,
    tip: Digest,
    /// Leader: the block in flight and who has acknowledged it.
    in_flight: Option<(Block, BTreeSet<NodeId>)>,
    /// Follower: stored blocks above `committed`.
    stored: BTreeMap<Height, Block>,
    /// Follower: the highest height the leader said is committed.
    known_committed: Height,
}

impl ReferenceEngine {
    /// A node of the reference protocol.
    pub fn new(config: RefConfig) -> Self {
        Self {
            config,
            committed: Height(0),
            tip: Block::genesis().digest(),
            in_flight: None,
            stored: BTreeMap::new(),
            known_committed: Height(0),
        }
    }

    /// Height of the last committed block.
    pub fn committed_height(&self) -> Height {
        self.committed
    }

    fn is_leader(&self, ctx: &Ctx<'_, Self>) -> bool {
        ctx.me() == self.config.leader
    }

    fn followers(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.config.n).map(NodeId).filter(|n| *n != self.config.leader)
    }

    fn leader_tick(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let Some((block, acks)) = &self.in_flight {
            let missing: Vec<NodeId> = self.followers().filter(|n| !acks.contains(n)).collect();
            for to in missing {
                ctx.send(
                    to,
                    RefMessage::Propose { block: block.clone(), committed: self.committed },
                );
            }
            return;
        }
        let txs = ctx.mempool().select(&self.config.batch, &|_| false);
        if txs.is_empty() {
            return;
        }
        let height = Height(self.committed.0 + 1);
        let batch = Batch::new(txs).expect("batch limits are within the type's limits");
        let block = Block::new(self.tip, Round(0), height, ctx.me(), ctx.now_ns(), batch);
        ctx.broadcast(RefMessage::Propose { block: block.clone(), committed: self.committed });
        self.in_flight = Some((block, BTreeSet::new()));
        self.try_commit_in_flight(ctx);
    }

    fn try_commit_in_flight(&mut self, ctx: &mut Ctx<'_, Self>) {
        let followers = usize::from(self.config.n) - 1;
        if self.in_flight.as_ref().is_some_and(|(_, acks)| acks.len() >= followers) {
            let (block, _) = self.in_flight.take().expect("checked just above");
            self.committed = block.height();
            self.tip = block.digest();
            ctx.commit(block);
            ctx.broadcast(RefMessage::Commit { height: self.committed });
        }
    }

    fn follower_commit(&mut self, ctx: &mut Ctx<'_, Self>) {
        while self.committed < self.known_committed {
            let next = Height(self.committed.0 + 1);
            let Some(block) = self.stored.remove(&next) else {
                break;
            };
            self.committed = next;
            self.tip = block.digest();
            ctx.commit(block);
        }
    }
}

impl Protocol for ReferenceEngine {
    type Message = RefMessage;
    type Timer = Tick;

    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.set_timer(Tick, self.config.tick_ns);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: RefMessage) {
        let leader = self.config.leader;
        match message {
            RefMessage::Forward(tx) if self.is_leader(ctx) => {
                // A full mempool drops the forward; the follower forwards it again later.
                let _ = ctx.mempool().insert(tx);
            }
            RefMessage::Propose { block, committed } if from == leader && !self.is_leader(ctx) => {
                let height = block.height();
                let ahead = height.0.saturating_sub(self.committed.0) as usize;
                if height > self.committed && ahead <= self.config.pending_blocks_max {
                    ctx.send(leader, RefMessage::Ack { height, digest: block.digest() });
                    self.stored.insert(height, block);
                }
                self.known_committed = self.known_committed.max(committed);
                self.follower_commit(ctx);
            }
            RefMessage::Ack { height, digest } if self.is_leader(ctx) => {
                if height <= self.committed {
                    ctx.send(from, RefMessage::Commit { height: self.committed });
                    return;
                }
                if let Some((block, acks)) = &mut self.in_flight
                    && block.height() == height
                    && block.digest() == digest
                {
                    acks.insert(from);
                }
                self.try_commit_in_flight(ctx);
            }
            RefMessage::Commit { height } if from == leader => {
                self.known_committed = self.known_committed.max(height);
                self.follower_commit(ctx);
            }
            // Anything else (a follower proposing, a forward to a follower, …) is ignored.
            _ => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _timer: Tick) {
        ctx.set_timer(Tick, self.config.tick_ns);
        if self.is_leader(ctx) {
            self.leader_tick(ctx);
            return;
        }
        let pending = ctx.mempool().select(&self.config.batch, &|_| false);
        for tx in pending {
            ctx.send(self.config.leader, RefMessage::Forward(tx));
        }
        if let Some((height, block)) = self.stored.last_key_value() {
            ctx.send(
                self.config.leader,
                RefMessage::Ack { height: *height, digest: block.digest() },
            );
        }
    }

    fn on_accepted(&mut self, ctx: &mut Ctx<'_, Self>, tx: Transaction) {
        if !self.is_leader(ctx) {
            ctx.send(self.config.leader, RefMessage::Forward(tx));
        }
    }
}
