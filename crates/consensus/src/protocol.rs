//! The interface every consensus engine implements, and the context a driver hands it.

use std::fmt::Debug;
use std::hash::Hash;

use agora_crypto::SignatureCheck;
use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, NodeId, Transaction, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::mempool::{Mempool, MempoolError, Submitted};

/// A protocol's wire message: encodable with the project codec, with a size and a kind label.
pub trait Message: Clone + Debug + Serialize + DeserializeOwned + 'static {
    /// A short label for per-kind metrics (`"vote"`, `"pre-prepare"`, …).
    fn kind(&self) -> &'static str;

    /// Bytes this message occupies on the wire. The default encodes nothing: it sizes the
    /// canonical encoding.
    fn encoded_len(&self) -> usize {
        codec::encoded_len(self)
    }

    /// The protocol instance this message belongs to (a PBFT sequence number, say), if any: traces
    /// carry it, so that one instance's messages can be drawn on their own.
    fn instance(&self) -> Option<u64> {
        None
    }

    /// The client transactions this message carries (in a proposal, a forward, …). A driver may
    /// verify their signatures on arrival, off the engine's critical path, so that applying the
    /// block later finds the verdicts ready. Nothing by default.
    fn transactions(&self) -> &[Transaction] {
        &[]
    }
}

/// A protocol's timer identifier. Setting a timer that is already set moves it.
pub trait Timer: Clone + Debug + Eq + Hash + 'static {}

impl<T: Clone + Debug + Eq + Hash + 'static> Timer for T {}

/// A sans-IO consensus engine: a state machine that reacts to its start, to messages and to its
/// timers by pushing [`Action`]s into the [`Context`] it is handed. It never reads a clock (it
/// reads [`Context::now_ns`]), sleeps, spawns, touches a socket or draws randomness, so the
/// simulator and the real-time runtimes drive the same code and it cannot tell them apart.
pub trait Protocol {
    /// What replicas send each other.
    type Message: Message;
    /// The engine's timer identifiers.
    type Timer: Timer;

    /// The node starts, or restarts after a crash (on an engine [`Protocol::restore`]d from its
    /// journal, or, in a simulation that models stable storage of everything, with the state it
    /// had).
    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>);

    /// A freshly built engine of a node that crashed is handed the records it persisted, oldest
    /// first, from its latest checkpoint on, before [`Protocol::on_start`]. An engine that
    /// persists nothing keeps the default, which restores nothing.
    fn restore(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        let _ = records;
        Ok(())
    }

    /// A message from `from` arrived. `from` is authenticated by the transport (the link it came
    /// on), not by the message's content, which may come from a Byzantine node.
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: Self::Message);

    /// A timer the engine set has fired.
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: Self::Timer);

    /// A client submitted `tx` to this node. It goes into the mempool and, if it is new there,
    /// to [`Protocol::on_accepted`]. The transaction is well-formed; the driver may or may not
    /// have verified its signature yet.
    fn on_transaction(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        tx: Transaction,
    ) -> Result<Submitted, MempoolError> {
        let outcome = ctx.mempool().insert(tx.clone())?;
        if outcome == Submitted::Accepted {
            self.on_accepted(ctx, tx);
        }
        Ok(outcome)
    }

    /// A transaction submitted to this node entered its mempool (it was not there before).
    /// The default does nothing more; engines forward it towards a leader, or propose.
    fn on_accepted(&mut self, ctx: &mut Ctx<'_, Self>, tx: Transaction) {
        let _ = (ctx, tx);
    }
}

/// The context type an engine `P` is handed.
pub type Ctx<'a, P> = Context<'a, <P as Protocol>::Message, <P as Protocol>::Timer>;

/// What an engine asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<M, T> {
    /// Send `message` to one node.
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        message: M,
    },
    /// Send `message` to every other member (not to the sender itself).
    Broadcast {
        /// The message.
        message: M,
    },
    /// Fire `timer` after `after_ns` nanoseconds, replacing any pending timer with the same id.
    SetTimer {
        /// Which timer.
        timer: T,
        /// Delay from now.
        after_ns: u64,
    },
    /// Forget a pending timer (no effect if it is not set).
    CancelTimer {
        /// Which timer.
        timer: T,
    },
    /// `block` is final. Commits come in log order, each block exactly once, heights
    /// consecutive from 1.
    Commit {
        /// The finalized block.
        block: Block,
        /// The certificates that prove it final, as the engine defines them (see
        /// [`Context::commit_proven`]); empty when the engine has none at hand.
        proof: Vec<Certificate>,
    },
    /// Append `record` to the node's journal. The driver makes it durable before any message
    /// emitted after it leaves the node, and before any commit emitted after it is applied (see
    /// [`dispatch`](crate::dispatch)), so an engine persists its safety state (a vote, a lock)
    /// and then sends the message, or commits the block, that depends on it.
    Persist {
        /// The engine's own encoding of what it must not forget.
        record: Bytes,
        /// `Some(keep)`: the record is a checkpoint that stands for every record before it but
        /// the last `keep` (which it still needs). Once it is durable the driver may prune the
        /// others, and a restart replays from the latest checkpoint's kept records on.
        checkpoint: Option<u64>,
    },
}

/// The records `actions` persisted, from the latest checkpoint on (with the records it
/// kept): what a driver's journal hands the engine when it restarts after these actions. For
/// tests and tools that drive an engine by hand.
pub fn journal_of<M, T>(actions: &[Action<M, T>]) -> Vec<Bytes> {
    let mut journal: Vec<Bytes> = Vec::new();
    for action in actions {
        if let Action::Persist { record, checkpoint } = action {
            if let Some(keep) = *checkpoint {
                let keep = usize::try_from(keep).unwrap_or(usize::MAX).min(journal.len());
                journal.drain(..journal.len() - keep);
            }
            journal.push(record.clone());
        }
    }
    journal
}

/// A journal record an engine could not restore from: the node must not start, for it would
/// run without the safety state the record held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal record {index} does not restore: {reason}")]
pub struct RestoreError {
    /// Its position among the records handed to [`Protocol::restore`].
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// What a driver hands an engine for one event: the time, the node's identity, its mempool, a
/// signature checker, and a place to put actions.
pub struct Context<'a, M, T> {
    now_ns: u64,
    me: NodeId,
    actions: &'a mut Vec<Action<M, T>>,
    mempool: &'a mut dyn Mempool,
    checker: &'a mut dyn SignatureCheck,
}

impl<'a, M, T> Context<'a, M, T> {
    /// A context for one event at `now_ns` on node `me`. `actions` receives what the engine does.
    pub fn new(
        now_ns: u64,
        me: NodeId,
        actions: &'a mut Vec<Action<M, T>>,
        mempool: &'a mut dyn Mempool,
        checker: &'a mut dyn SignatureCheck,
    ) -> Self {
        Self { now_ns, me, actions, mempool, checker }
    }

    /// The driver's clock, in nanoseconds (simulated or real).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// This node's mempool.
    pub fn mempool(&mut self) -> &mut dyn Mempool {
        self.mempool
    }

    /// The signature checker to verify with (`vote.verify_with(&committee, ctx.checker())`).
    pub fn checker(&mut self) -> &mut dyn SignatureCheck {
        self.checker
    }

    /// Sends `message` to `to`.
    pub fn send(&mut self, to: NodeId, message: M) {
        self.actions.push(Action::Send { to, message });
    }

    /// Sends `message` to every other member.
    pub fn broadcast(&mut self, message: M) {
        self.actions.push(Action::Broadcast { message });
    }

    /// Sets (or moves) `timer` to fire `after_ns` from now.
    pub fn set_timer(&mut self, timer: T, after_ns: u64) {
        self.actions.push(Action::SetTimer { timer, after_ns });
    }

    /// Cancels `timer`.
    pub fn cancel_timer(&mut self, timer: T) {
        self.actions.push(Action::CancelTimer { timer });
    }

    /// Appends `record` to the journal: durable before any message sent after it leaves, and
    /// any block committed after it is applied.
    pub fn persist(&mut self, record: Bytes) {
        self.actions.push(Action::Persist { record, checkpoint: None });
    }

    /// Appends `record`, which stands for every record before it, to the journal.
    pub fn checkpoint(&mut self, record: Bytes) {
        self.checkpoint_keeping(record, 0);
    }

    /// Appends `record`, which stands for every record before it but the last `keep` it still
    /// needs (records it refers to rather than copies), to the journal. A restart hands the
    /// engine those `keep` records, then this one, then what followed.
    pub fn checkpoint_keeping(&mut self, record: Bytes, keep: u64) {
        self.actions.push(Action::Persist { record, checkpoint: Some(keep) });
    }

    /// Reports `block` as final (in log order, exactly once). Its transactions leave the mempool
    /// at once, so nothing committed can be selected for a proposal again.
    pub fn commit(&mut self, block: Block) {
        self.commit_proven(block, Vec::new());
    }

    /// [`Context::commit`], with the certificates that prove `block` final, which the driver
    /// stores beside it (PBFT: the commit certificate of its sequence number; Streamlet: the
    /// notarization of the block, the later notarizations of its finalizing chain being stored
    /// at their own heights).
    pub fn commit_proven(&mut self, block: Block, proof: Vec<Certificate>) {
        self.mempool.remove_committed(block.batch().transactions());
        self.actions.push(Action::Commit { block, proof });
    }
}
