//! What a network counts: traffic, and everything it dropped or refused, by reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_types::NodeId;

/// The counters the network's tasks share.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) links_opened: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    connected: Mutex<BTreeSet<NodeId>>,
}

impl Counters {
    /// Counts one thing dropped or refused for `reason`.
    pub(crate) fn count_drop(&self, reason: &'static str) {
        self.count_drops(reason, 1);
    }

    pub(crate) fn count_drops(&self, reason: &'static str, count: u64) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        *dropped.entry(reason).or_default() += count;
    }

    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn set_connected(&self, peer: NodeId, up: bool) {
        let mut connected = self.connected.lock().unwrap_or_else(|e| e.into_inner());
        if up {
            connected.insert(peer);
        } else {
            connected.remove(&peer);
        }
    }

    pub(crate) fn snapshot(&self) -> NetStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStats {
            messages_sent: load(&self.messages_sent),
            bytes_sent: load(&self.bytes_sent),
            messages_received: load(&self.messages_received),
            bytes_received: load(&self.bytes_received),
            links_opened: load(&self.links_opened),
            dropped: self.dropped.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            connected: self.connected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// A network's counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages written to peers.
    pub messages_sent: u64,
    /// Their bytes (before framing and encryption).
    pub bytes_sent: u64,
    /// Messages received from peers and handed to the node.
    pub messages_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Authenticated links opened (a reconnection opens another).
    pub links_opened: u64,
    /// What was dropped or refused, by reason: messages to a peer whose queue was full, messages
    /// the node's inbox had no room for, handshakes that failed (and why), links that ended on a
    /// bad frame, connections refused by the rate limit.
    pub dropped: BTreeMap<&'static str, u64>,
    /// The peers linked now.
    pub connected: BTreeSet<NodeId>,
}

impl NetStats {
    /// How many were dropped or refused for `reason`.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}
