//! agora's front door on every node: an HTTP and WebSocket API over the finalized market, and
//! Prometheus metrics, on axum.
//!
//! - [`MarketView`] mirrors the finalized market: its observer runs on the replica's apply
//!   thread, so the API serves and streams only what consensus finalized.
//! - [`router`] builds the routes (the table is in [`server`]); [`ApiServer`] runs them on a
//!   runtime of their own, beside a node that is not async.
//! - [`Metrics`] are the node's metrics, served at `/metrics`.
//! - [`wire`] holds the JSON the API speaks, shared with `agora-client`: without the default
//!   `server` feature, the crate is just that (no axum, no tokio).
//!
//! The API knows nothing of engines or the network: the node gives it a [`NodeLink`] to submit
//! transactions and to report its links.

#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod view;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
#[cfg(feature = "server")]
use std::sync::Arc;

#[cfg(feature = "server")]
pub use metrics::Metrics;
#[cfg(feature = "server")]
pub use server::{ApiLimits, ApiServer, router};
#[cfg(feature = "server")]
pub use view::{Admission, MarketView, Published, ViewLimits};
pub use wire::{AccountView, BlockView, BookView, LevelChange, OpenOrderView, Outcome};

/// What the API needs of its node.
#[cfg(feature = "server")]
pub trait NodeLink: Send + Sync + 'static {
    /// Hands a client's transaction, whose signature the API verified, to the node's mempool;
    /// `false` if it has no room now.
    fn submit(&self, tx: agora_types::Transaction) -> bool;

    /// The node's identity and links, now.
    fn info(&self) -> NodeInfo;
}

/// A node's identity and links, as `GET /v1/status` and `/metrics` report them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Its member id.
    pub id: u16,
    /// Its protocol's name.
    pub protocol: String,
    /// The committee's size.
    pub members: usize,
    /// The peers linked now.
    pub connected: Vec<u16>,
    /// Consensus messages sent.
    pub messages_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Consensus messages received.
    pub messages_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// What the network dropped or refused, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Transactions pending in the mempool (one lane: the node's mempool has no lanes).
    pub mempool_pending: u64,
    /// Consensus messages by kind: `[sent, sent bytes, received, received bytes]`.
    pub traffic: BTreeMap<String, [u64; 4]>,
}

/// Everything the handlers share.
#[cfg(feature = "server")]
#[derive(Clone)]
pub struct Api {
    /// The finalized market.
    pub view: MarketView,
    /// The node.
    pub node: Arc<dyn NodeLink>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The bounds.
    pub limits: ApiLimits,
}

#[cfg(feature = "server")]
impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// Where a node's API listens by default: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
