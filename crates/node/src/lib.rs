//! One agora replica as a network node: the engine its configuration names (through the one
//! engine factory, [`agora_engines::with_engine`]), its mempool, its application and its durable
//! stores, run by the same replica loop as the in-process cluster
//! ([`agora_runtime::RunningReplica`]: real clocks and timers, signatures verified ahead on a
//! worker pool, blocks applied on a thread of their own), and linked to the rest of its
//! committee over [`agora_net`].
//!
//! The node is glue, and deliberately thin:
//! - the network's received messages go straight into the replica's inbox ([`Inbox`] for it);
//! - the replica's messages go to the network's per-peer queues ([`Outbox`] for it), which
//!   drop and count rather than block the engine;
//! - clients' transactions enter with [`Node::submit`], and [`Node::events`] tells when each is
//!   final and what state every height left.
//!
//! A node restarts from its store directory: the engine from its journal, the application from
//! its newest snapshot and the blocks after it; what it missed while down comes from its peers
//! through the engine's own catch-up.
//!
//! No engine knows about the node or the network: both are drivers, like the simulator.

pub mod client;
mod files;
mod run;

pub use files::{
    ApiSection, ClientSection, ConsensusSection, FileError, GenesisFile, NetSection, NodeFile,
    NodeSection, PeerEntry, hotstuff_protocol_name, read_key, write_key,
};
pub use run::{market_genesis, proof_sink, run_node, sync_sink, wait_for_shutdown};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use agora_crypto::SecretKey;
use agora_engines::{Engine, EngineConfig, WithEngine, with_engine};
use agora_market::{MarketObserver, StoredApplication};
use agora_net::{
    Inbound, Inbox, Listener, NetConfig, NetLimits, NetSender, NetStats, Network, Offer,
};
use agora_runtime::{
    Delivery, Input, Outbox, ReplicaEvent, ReplicaLive, ReplicaOptions, ReplicaReport,
    RunningReplica,
};
use agora_types::{Committee, NodeId, Transaction};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Everything one node needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member.
    pub me: NodeId,
    /// Its member key.
    pub key: SecretKey,
    /// The committee (from the genesis every node shares).
    pub committee: Committee,
    /// Where each peer listens.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The directory of its journal and block store; it survives restarts.
    pub store: PathBuf,
    /// The protocol and its parameters.
    pub engine: EngineConfig,
    /// What the blocks are applied to (the market from its genesis, or a plain log).
    pub application: StoredApplication,
    /// The replica's settings (mempool, snapshots, verification, apply thread, queues).
    pub replica: ReplicaOptions,
    /// The network's bounds.
    pub net: NetLimits,
}

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The engine configuration is invalid.
    #[error("engine: {0}")]
    Engine(#[from] agora_consensus::ConfigError),
    /// The replica's stores or thread failed.
    #[error(transparent)]
    Replica(#[from] agora_runtime::RuntimeError),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] agora_net::NetError),
    /// The configuration is inconsistent.
    #[error("node configuration: {0}")]
    Config(String),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    me: NodeId,
    replica: RunningReplica,
    network: Network,
    inbox: Sender<Input>,
}

/// What clients' threads use of a node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    me: NodeId,
    inbox: Sender<Input>,
    events: Receiver<ReplicaEvent>,
    net: NetSender,
    live: ReplicaLive,
}

impl NodeHandle {
    /// The node's member id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Submits a client's transaction; `false` if the node's inbox is full (or it stopped).
    pub fn submit(&self, tx: Transaction) -> bool {
        submit(&self.inbox, tx, false)
    }

    /// [`NodeHandle::submit`] for a transaction whose signature the caller verified: the
    /// replica records the verdict instead of verifying again.
    pub fn submit_verified(&self, tx: Transaction) -> bool {
        submit(&self.inbox, tx, true)
    }

    /// The replica's events (one reader takes each).
    pub fn events(&self) -> Receiver<ReplicaEvent> {
        self.events.clone()
    }

    /// The network's counts.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats()
    }

    /// The replica's live figures: its mempool, its messages by kind.
    pub fn live(&self) -> ReplicaLive {
        self.live.clone()
    }
}

/// The API's link to the node: submit into its inbox, report its links.
#[derive(Debug, Clone)]
pub struct ApiLink {
    handle: NodeHandle,
    protocol: &'static str,
    members: usize,
}

impl ApiLink {
    /// The link for the node `handle` serves, running `protocol` in a committee of `members`.
    pub fn new(handle: NodeHandle, protocol: &'static str, members: usize) -> Self {
        Self { handle, protocol, members }
    }
}

impl agora_api::NodeLink for ApiLink {
    /// The API verified the signature before it submits.
    fn submit(&self, tx: Transaction) -> bool {
        self.handle.submit_verified(tx)
    }

    fn info(&self) -> agora_api::NodeInfo {
        let stats = self.handle.net_stats();
        let live = self.handle.live();
        agora_api::NodeInfo {
            id: self.handle.me.0,
            protocol: self.protocol.to_owned(),
            members: self.members,
            connected: stats.connected.iter().map(|n| n.0).collect(),
            messages_sent: stats.messages_sent,
            bytes_sent: stats.bytes_sent,
            messages_received: stats.messages_received,
            bytes_received: stats.bytes_received,
            dropped: stats.dropped.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            mempool_pending: live.mempool_pending(),
            traffic: live
                .traffic()
                .into_iter()
                .map(|(kind, t)| {
                    (kind.to_owned(), [t.sent, t.sent_bytes, t.received, t.received_bytes])
                })
                .collect(),
        }
    }
}

/// Hands a client's transaction to the replica's inbox without waiting; `false` if it is full
/// (or the replica stopped).
fn submit(inbox: &Sender<Input>, tx: Transaction, verified: bool) -> bool {
    inbox.try_send(Input::Submit { tx: Box::new(tx), at: Instant::now(), verified }).is_ok()
}

/// The replica's messages onto the network.
struct NetOutbox(NetSender);

impl Outbox for NetOutbox {
    fn deliver(&mut self, _from: NodeId, to: NodeId, bytes: Bytes) -> Delivery {
        if self.0.send(to, bytes) {
            Delivery::Sent { blocked_ns: 0 }
        } else {
            Delivery::Dropped { blocked_ns: 0 }
        }
    }
}

/// The network's messages into the replica's inbox.
struct ReplicaInbox(Sender<Input>);

impl Inbox for ReplicaInbox {
    fn offer(&self, message: Inbound) -> Offer {
        let Inbound { from, bytes } = message;
        match self.0.try_send(Input::Message { from, bytes }) {
            Ok(()) => Offer::Taken,
            Err(TrySendError::Full(Input::Message { from, bytes })) => {
                Offer::Full(Inbound { from, bytes })
            }
            Err(_) => Offer::Gone,
        }
    }
}

impl Node {
    /// Starts the node on `listener` (bound beforehand, so that a caller can bind port 0): its
    /// replica from the store directory, then its network.
    pub fn start(config: NodeConfig, listener: Listener) -> Result<Self, NodeError> {
        Self::start_observed(config, listener, None)
    }

    /// [`Node::start`], with `observer` told what the market does (the API's view of it). It
    /// is ignored when the application is not the market.
    pub fn start_observed(
        config: NodeConfig,
        listener: Listener,
        observer: Option<Box<dyn MarketObserver>>,
    ) -> Result<Self, NodeError> {
        if config.replica.members != config.committee.n() {
            return Err(NodeError::Config(format!(
                "the replica expects {} members and the committee has {}",
                config.replica.members,
                config.committee.n()
            )));
        }
        let mut options = config.replica.clone();
        options.application = Some(Bytes::from(config.application.encode()));
        // The replica's outbox needs the network's sender, and the network the replica's inbox:
        // the inbox is made first, then the network, then the replica reading it.
        let net_config = NetConfig {
            me: config.me,
            key: config.key.clone(),
            committee: config.committee.clone(),
            peers: config.peers.clone(),
            limits: config.net,
        };
        let (inbox, inbox_rx) = RunningReplica::inbox_channel(&options);
        let network = Network::start(net_config, listener, ReplicaInbox(inbox.clone()))?;
        let start = StartReplica {
            config: &config,
            options: &options,
            outbox: Box::new(NetOutbox(network.sender())),
            inbox: (inbox.clone(), inbox_rx),
            observer,
        };
        let replica = with_engine(config.engine, start)??;
        Ok(Self { me: config.me, replica, network, inbox })
    }

    /// This node's member id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// A handle for clients' threads: submit, read events, see the links; it does not keep the
    /// node from stopping.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            me: self.me,
            inbox: self.inbox.clone(),
            events: self.replica.events(),
            net: self.network.sender(),
            live: self.replica.live(),
        }
    }

    /// Submits a client's transaction; `false` if the node's inbox is full.
    pub fn submit(&self, tx: Transaction) -> bool {
        submit(&self.inbox, tx, false)
    }

    /// What the replica reports: each submitted transaction final, each height applied.
    pub fn events(&self) -> Receiver<ReplicaEvent> {
        self.replica.events()
    }

    /// The network's counts.
    pub fn net_stats(&self) -> NetStats {
        self.network.stats()
    }

    /// Blocks replayed into the application at start.
    pub fn replayed_blocks(&self) -> u64 {
        self.replica.replayed_blocks()
    }

    /// Whether the replica still runs (it stops by itself only if its stores fail).
    pub fn is_running(&self) -> bool {
        self.replica.is_running()
    }

    /// Stops the network, then the replica (its stores synced), and returns its report.
    pub fn stop(self) -> Result<ReplicaReport, NodeError> {
        self.network.shutdown();
        Ok(self.replica.stop()?)
    }
}

/// Builds this member's engine and starts its replica, whatever the protocol.
struct StartReplica<'a> {
    config: &'a NodeConfig,
    options: &'a ReplicaOptions,
    outbox: Box<dyn Outbox>,
    inbox: (Sender<Input>, Receiver<Input>),
    observer: Option<Box<dyn MarketObserver>>,
}

impl WithEngine for StartReplica<'_> {
    type Output = Result<RunningReplica, NodeError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy + 'static,
    ) -> Self::Output {
        let c = self.config;
        let engine = engine(c.me, &c.committee, &c.key);
        let app = c.application.at_genesis_observed(self.observer);
        let replica = RunningReplica::start(
            c.me,
            engine,
            app,
            &c.store,
            self.options,
            self.outbox,
            self.inbox,
        )?;
        Ok(replica)
    }
}
