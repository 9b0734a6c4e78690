//! What a member's network needs to know: who it is, who its peers are and where, and the bounds
//! of every queue and wait.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use agora_crypto::SecretKey;
use agora_types::{Committee, NodeId, codec};

/// The bounds of a network; every queue and every wait has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetLimits {
    /// The largest message a peer may send, in bytes; a longer one ends the link.
    pub message_bytes_max: usize,
    /// Messages waiting for one peer, at most. When full, a new message to that peer is dropped
    /// and counted: the engine never waits for a slow or absent peer.
    pub send_queue_messages: usize,
    /// Bytes of queued messages written to a peer in one go (one system call), at most.
    pub write_batch_bytes: usize,
    /// How long a received message waits for room in the node's inbox before it is dropped and
    /// counted. While it waits, the link reads nothing more: TCP pushes back on the sender.
    pub inbound_wait_max: Duration,
    /// Connecting, the Noise handshake and both hellos, at most.
    pub handshake_timeout: Duration,
    /// A write to a peer that takes longer ends the link (the peer stopped reading).
    pub write_timeout: Duration,
    /// The first wait before dialling a peer again; it doubles after each failure.
    pub backoff_min: Duration,
    /// The longest wait between two dials of one peer.
    pub backoff_max: Duration,
    /// Connections accepted from one IP address per second, on average.
    pub accepts_per_sec: u32,
    /// Connections accepted from one IP address in a burst.
    pub accept_burst: u32,
    /// Handshakes in progress at once; a connection beyond them is closed at once.
    pub pending_handshakes_max: usize,
    /// Threads of the network's runtime.
    pub threads: usize,
}

impl Default for NetLimits {
    /// Messages up to the codec's maximum, 8,192 queued per peer, 256 KiB per write, 1 s of
    /// inbound backpressure, 5 s for a handshake, 10 s for a write, backoff from 50 ms to 5 s,
    /// 20 accepts per second per address (bursts of 40), 64 handshakes at once, 2 threads.
    fn default() -> Self {
        Self {
            message_bytes_max: codec::MESSAGE_BYTES_MAX,
            send_queue_messages: 8_192,
            write_batch_bytes: 256 * 1024,
            inbound_wait_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            accepts_per_sec: 20,
            accept_burst: 40,
            pending_handshakes_max: 64,
            threads: 2,
        }
    }
}

/// One member's network: its identity, its committee, where its peers listen, and the bounds.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This member.
    pub me: NodeId,
    /// Its member key: it signs the hello that proves who it is on every link.
    pub key: SecretKey,
    /// The committee; only its members are peers, and a link is bound to it.
    pub committee: Committee,
    /// Where each peer listens. Of each pair, the member with the smaller id dials.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The bounds.
    pub limits: NetLimits,
}

/// A network configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `me` is not a member of the committee.
    #[error("node {0} is not a member of the committee")]
    NotAMember(NodeId),
    /// The key is not the committee's key for `me`.
    #[error("the key given is not the committee's key for node {0}")]
    WrongKey(NodeId),
    /// A peer is not a member of the committee, or is this member itself.
    #[error("peer {0} is not another member of the committee")]
    BadPeer(NodeId),
    /// A bound is zero, or inverted.
    #[error("limit {0} must be positive (and backoff_min at most backoff_max)")]
    Limit(&'static str),
}

impl NetConfig {
    /// Checks the configuration: `me` a member holding its own key, every peer another member,
    /// every bound positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.committee.contains(self.me) {
            return Err(ConfigError::NotAMember(self.me));
        }
        if self.committee.key(self.me) != Some(self.key.public_key()) {
            return Err(ConfigError::WrongKey(self.me));
        }
        if let Some(peer) =
            self.peers.keys().find(|p| **p == self.me || !self.committee.contains(**p))
        {
            return Err(ConfigError::BadPeer(*peer));
        }
        let l = &self.limits;
        let positive = [
            ("message_bytes_max", l.message_bytes_max > 0),
            ("send_queue_messages", l.send_queue_messages > 0),
            ("write_batch_bytes", l.write_batch_bytes > 0),
            ("handshake_timeout", !l.handshake_timeout.is_zero()),
            ("write_timeout", !l.write_timeout.is_zero()),
            ("backoff_min", !l.backoff_min.is_zero() && l.backoff_min <= l.backoff_max),
            ("accepts_per_sec", l.accepts_per_sec > 0),
            ("accept_burst", l.accept_burst > 0),
            ("pending_handshakes_max", l.pending_handshakes_max > 0),
            ("threads", l.threads > 0),
        ];
        match positive.iter().find(|(_, ok)| !ok) {
            Some((name, _)) => Err(ConfigError::Limit(name)),
            None => Ok(()),
        }
    }
}
