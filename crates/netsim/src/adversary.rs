//! Byzantine nodes: an adversary sees every message its node's engine sends and decides what
//! actually goes on the wire.

use agora_crypto::SecretKey;
use agora_types::{Committee, NodeId, Transaction};
use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// What travels on a simulated link: a typed message, or raw bytes that the receiver must decode
/// (and may fail to).
#[derive(Debug, Clone)]
pub enum Payload<M> {
    /// A message, as the sender's engine produced it (or as the adversary rewrote it).
    Message(M),
    /// Bytes, decoded at the receiver with the project codec; an error there is counted, never
    /// a panic.
    Raw(Bytes),
}

/// One thing an adversary puts on the wire.
#[derive(Debug, Clone)]
pub struct Emission<M> {
    /// The recipient.
    pub to: NodeId,
    /// What it receives.
    pub payload: Payload<M>,
    /// Extra delay before the message leaves, beyond the network's own.
    pub delay_ns: u64,
}

impl<M> Emission<M> {
    /// `payload` to `to`, without extra delay.
    pub fn now(to: NodeId, payload: Payload<M>) -> Self {
        Self { to, payload, delay_ns: 0 }
    }
}

/// What an adversary may use: its node's identity and secret key (to sign rewritten messages),
/// the committee, the time, and a deterministic RNG owned by the simulator.
pub struct AdversaryEnv<'a> {
    /// Current simulated time.
    pub now_ns: u64,
    /// The Byzantine node.
    pub me: NodeId,
    /// Its secret key.
    pub key: &'a SecretKey,
    /// The committee.
    pub committee: &'a Committee,
    /// Randomness, derived from the run's seed.
    pub rng: &'a mut ChaCha8Rng,
    pub(crate) declared: &'a mut Vec<Transaction>,
}

impl AdversaryEnv<'_> {
    /// Declares a transaction the adversary made up, so that the invariant checker accepts it
    /// as submitted if it is ever finalized.
    pub fn declare_transaction(&mut self, tx: Transaction) {
        self.declared.push(tx);
    }
}

/// Rewrites a Byzantine node's outgoing messages. Broadcasts reach it one recipient at a time,
/// so it can tell different peers different things. Emitting nothing drops the message;
/// emitting it twice duplicates it; emitting [`Payload::Raw`] injects bytes. It also sees
/// what its node receives, as a Byzantine node would, to build its lies from.
pub trait Adversary<M> {
    /// The engine of `env.me` sends `message` to `to`; push what should really be sent.
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    );

    /// The node is handed `message` from `from` (after the network, before its engine sees
    /// it); what it pushes leaves with the sends of the node's handling of that message.
    /// Nothing by default.
    fn on_receive(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        from: NodeId,
        message: &M,
        out: &mut Vec<Emission<M>>,
    ) {
        let _ = (env, from, message, out);
    }
}

/// Any closure with the right shape is an adversary.
impl<M, F> Adversary<M> for F
where
    F: FnMut(&mut AdversaryEnv<'_>, NodeId, M, &mut Vec<Emission<M>>),
{
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    ) {
        self(env, to, message, out)
    }
}

/// Sends nothing at all (a node that is up but silent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl<M> Adversary<M> for Silent {
    fn on_send(&mut self, _: &mut AdversaryEnv<'_>, _: NodeId, _: M, _: &mut Vec<Emission<M>>) {}
}

/// Replaces every message with random bytes of random length (up to `len_max`), and with
/// probability `keep_original` also sends the real message.
#[derive(Debug, Clone, Copy)]
pub struct Garbler {
    /// Longest garbage, in bytes.
    pub len_max: usize,
    /// Probability of also sending the real message.
    pub keep_original: f64,
}

impl<M> Adversary<M> for Garbler {
    fn on_send(
        &mut self,
        env: &mut AdversaryEnv<'_>,
        to: NodeId,
        message: M,
        out: &mut Vec<Emission<M>>,
    ) {
        let len = env.rng.random_range(0..=self.len_max);
        let bytes: Vec<u8> = (0..len).map(|_| env.rng.random::<u8>()).collect();
        out.push(Emission::now(to, Payload::Raw(Bytes::from(bytes))));
        if env.rng.random_bool(self.keep_original.clamp(0.0, 1.0)) {
            out.push(Emission::now(to, Payload::Message(message)));
        }
    }
}
