//! The replicated exchange ([`agora_market`], re-exported) and the agents that trade in it.
//!
//! [`agents`] makes the order flow: random traders, market makers and a liquidator, each signing
//! its own orders and submitting them to its local replica.

pub use agora_market::*;

pub mod agents;
