//! agora orders a market's actions with Byzantine-fault-tolerant consensus and applies the agreed
//! log to a replicated limit order book.
//!
//! This facade re-exports the layered crates, so that an application depends on one crate. It
//! holds nothing of its own.
//!
//! The foundation:
//! - [`crypto`] (`agora-crypto`): domain-separated blake3 digests, secp256k1 signatures.
//! - [`types`] (`agora-types`): transactions, batches, blocks, votes, certificates, committee,
//!   and the canonical codec.
//! - [`consensus`] (`agora-consensus`): the sans-IO engine interface, mempool, application,
//!   vote keeper, leader election.
//!
//! The engines and their drivers:
//! - [`streamlet`] (`agora-streamlet`): the Streamlet engine.
//! - [`pbft`] (`agora-pbft`): the PBFT engine.
//! - [`simplex`] (`agora-simplex`): the Simplex engine.
//! - [`hotstuff`] (`agora-hotstuff`): the HotStuff engine, three- or two-chain.
//! - [`engines`] (`agora-engines`): every protocol's configuration and the one engine factory.
//! - [`netsim`] (`agora-netsim`): the deterministic network simulator.
//! - [`runtime`] (`agora-runtime`): the in-process threaded cluster on real clocks.
//!
//! The market:
//! - [`orderbook`] (`agora-orderbook`): the multi-market limit order book.
//! - [`market`] (`agora-market`, with the lab's [`agents`](market::agents)): the replicated
//!   exchange (order payloads, the market application with its execution orders).
//! - [`priority`]: the market's priority lanes (liquidations, cancels, high-value, ordinary).
//!
//! The laboratory (`agora-lab`), which runs experiments:
//! - [`simulate`], [`swarm`], [`bench`](mod@bench), [`fairness`], [`frontrun`], [`render`] and
//!   [`walkthrough`].
//!
//! [`prelude`] names what most programs need. `docs/ARCHITECTURE.md` maps the crates and says
//! where a reader starts.

pub use agora_consensus as consensus;
pub use agora_crypto as crypto;
pub use agora_engines as engines;
pub use agora_hotstuff as hotstuff;
pub use agora_lab::{
    bench, fairness, frontrun, load, render, replay, simulate, swarm, testnet, walkthrough,
};
pub use agora_market::priority;
pub use agora_net as net;
pub use agora_netsim as netsim;
pub use agora_node as node;
pub use agora_orderbook as orderbook;
pub use agora_pbft as pbft;
pub use agora_runtime as runtime;
pub use agora_simplex as simplex;
pub use agora_streamlet as streamlet;
pub use agora_types as types;

/// The replicated exchange ([`agora_market`]) and the agents that trade in it
/// ([`agora_lab::agents`]).
pub mod market {
    pub use agora_lab::agents;
    pub use agora_market::*;
}

/// What most programs built on agora name: the values consensus agrees on, the engine seam and
/// the engine factory, the simulator, and the order book's commands.
///
/// ```
/// use agora::prelude::*;
///
/// let (committee, _keys) = Committee::deterministic(1, 4).unwrap();
/// let engine = EngineConfig::Pbft(PbftConfig::new(500_000_000));
/// assert!(engine.validate().is_ok());
/// assert_eq!(committee.byzantine_quorum(), 3);
/// ```
pub mod prelude {
    pub use agora_consensus::{Application, Applied, ChainView, Protocol, TxLog};
    pub use agora_crypto::{Digest, SecretKey};
    pub use agora_engines::{
        ConfigError, Engine, EngineConfig, ProtocolChoice, WithEngine, with_engine,
    };
    pub use agora_hotstuff::{ChainRule, HotStuff, HotStuffConfig};
    pub use agora_netsim::{SimConfig, SimReport, Simulation, Targets, Workload};
    pub use agora_orderbook::{AccountId, Command, Event, Exchange, MarketSpec, NewOrder, Side};
    pub use agora_pbft::{Pbft, PbftConfig};
    pub use agora_simplex::{Simplex, SimplexConfig};
    pub use agora_streamlet::{Streamlet, StreamletConfig};
    pub use agora_types::{Block, Committee, Height, NodeId, Round, Transaction};
}
