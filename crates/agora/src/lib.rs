//! agora orders a market's actions with Byzantine-fault-tolerant consensus and applies the agreed
//! log to a replicated limit order book.
//!
//! This facade re-exports the layered crates, so that an application depends on one crate:
//!
//! - [`crypto`] (`agora-crypto`): domain-separated blake3 digests, secp256k1 signatures.
//! - [`types`] (`agora-types`): transactions, batches, blocks, votes, certificates, committee,
//!   and the canonical codec.
//! - [`consensus`] (`agora-consensus`): the sans-IO engine interface, mempool, application,
//!   vote keeper, leader election.
//! - [`netsim`] (`agora-netsim`): the deterministic network simulator.
//!
//! - [`streamlet`] (`agora-streamlet`): the Streamlet engine.
//! - [`pbft`] (`agora-pbft`): the PBFT engine.
//! - [`orderbook`] (`agora-orderbook`): the multi-market limit order book.
//!
//! The real-time runtimes join as they are built; see `docs/ARCHITECTURE.md`.
//!
//! On top of them the facade offers:
//! - [`bench`](mod@bench): protocol comparison reports (Markdown, JSON, SVG plots);
//! - [`market`]: the replicated exchange (order payloads, the market application with its
//!   execution orders, agents);
//! - [`priority`]: the market's priority lanes (liquidations, cancels, high-value, ordinary);
//! - [`fairness`]: front-runner profit, victims' slippage, lane latencies and block space of a
//!   market run;
//! - [`frontrun`]: a Byzantine leader that front-runs large orders, to measure what each
//!   execution order lets it gain;
//! - [`simulate`]: run a protocol in the simulator from a few options (what `agora simulate`
//!   does), with a JSON-ready summary;
//! - [`render`]: the block tree a node saw, as SVG or Graphviz DOT, and message sequence charts;
//! - [`walkthrough`]: one block's life through the foundation, with sizes and timings.

pub use agora_consensus as consensus;
pub use agora_crypto as crypto;
pub use agora_market::priority;
pub use agora_netsim as netsim;
pub use agora_orderbook as orderbook;
pub use agora_pbft as pbft;
pub use agora_runtime as runtime;
pub use agora_streamlet as streamlet;
pub use agora_types as types;

pub mod bench;
pub mod fairness;
pub mod frontrun;
pub mod market;
pub mod render;
pub mod simulate;
pub mod swarm;
pub mod walkthrough;
