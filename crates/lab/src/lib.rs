//! agora's laboratory: everything that runs an experiment on the replicated market, and nothing a
//! replica needs.
//!
//! A node depends on [`agora_market`] and [`agora_engines`]; this crate sits above them and adds:
//! - [`agents`]: the order flow (random traders, market makers, a liquidator), each agent signing
//!   its own orders and submitting them to its local replica;
//! - [`frontrun`]: a Byzantine leader that front-runs large orders, to measure what each
//!   execution order lets it gain;
//! - [`fairness`]: front-runner profit, victims' slippage, lane latencies and block space of a
//!   market run, reduced from what the market application reports through its observer;
//! - [`spec`]: one description of a simulated run ([`spec::RunSpec`]: protocol and its
//!   configuration, committee, network, faults, workload, execution order and lanes), which
//!   `simulate`, the swarm and the benchmark's simulated rows all build, and the one function
//!   that runs it;
//! - [`simulate`]: run a protocol in the simulator from a few options (what `agora simulate`
//!   does), with a JSON-ready summary;
//! - [`swarm`]: randomized fault campaigns and Twins scenarios, with replayable seeds;
//! - [`bench`](mod@bench): protocol comparison reports (Markdown, JSON, SVG plots);
//! - [`replay`]: a replica's stored log replayed, every state digest checked (what `agora
//!   replay` does), and the simulator's stores written in the on-disk format;
//! - [`render`]: the block tree a node saw, as SVG or Graphviz DOT, and message sequence charts;
//! - [`walkthrough`]: one block's life through the foundation, with sizes and timings.

pub mod agents;
pub mod bench;
pub mod fairness;
pub mod frontrun;
pub mod load;
pub mod render;
pub mod replay;
pub mod simulate;
pub mod spec;
pub mod swarm;
pub mod testnet;
pub mod walkthrough;
