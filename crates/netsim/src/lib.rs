//! A deterministic discrete-event network simulator for agora's sans-IO consensus engines.
//!
//! A [`Simulation`] runs `n` copies of any [`agora_consensus::Protocol`] engine in virtual time.
//! Events (message arrivals, timers, client submissions, crashes) wait in one priority queue,
//! and ties are broken by insertion order. All randomness comes from a ChaCha RNG seeded from
//! [`SimConfig::seed`]. The same configuration and seed therefore give the bit-identical trace,
//! logs and report on any machine; only [`SimReport::speed`] (wall-clock) differs.
//!
//! - **Network** ([`NetworkConfig`]): per-link latency plus [`Jitter`] (none, uniform, or a
//!   Pareto heavy tail); per-node uplink bandwidth (a message's encoded size costs transmission
//!   time, one message after another); loss; duplication; optional reordering (links are FIFO
//!   otherwise); scheduled [`Partition`]s; and a [`Gst`] before which messages are held or
//!   delayed and after which they arrive within Δ.
//! - **Processing** ([`ProcessingConfig`]): a node handles one event at a time, and each handling
//!   costs simulated CPU time per event and per signature verification, so nodes saturate and
//!   queues form. Signatures are checked through [`MemoCheck`]: computed once per distinct
//!   signature across the whole simulation, charged to every node that asks.
//! - **Faults** ([`Fault`]): crash and restart at given times. A Byzantine node is a node with
//!   an [`Adversary`], which sees each message its engine sends, one recipient at a time. It may
//!   drop, delay, duplicate, rewrite or re-sign it, or inject raw bytes that the receiver must
//!   decode (and survive failing to decode).
//! - **Workload** ([`Workload`]): open-loop clients submitting signed transactions at Poisson
//!   times to chosen nodes. Latency is measured from submission.
//! - **Checks** ([`InvariantChecker`], independent of any engine): agreement (prefix-consistent
//!   logs), validity, no duplicates, gap-free heights, equal application states, and optionally
//!   liveness after GST. The first violation stops the run and is reported with the seed, the
//!   time and both logs.
//! - **Trace** ([`Trace`]): every event as data, with a digest for determinism tests, and
//!   JSON-lines output.
//!
//! ```
//! use agora_consensus::reference::{RefConfig, ReferenceEngine};
//! use agora_consensus::TxLog;
//! use agora_netsim::{SimConfig, Simulation, Targets, Workload};
//!
//! let mut config = SimConfig::new(4);
//! config.seed = 7;
//! config.workload = Some(Workload {
//!     rate_per_sec: 200.0,
//!     start_ns: 0,
//!     end_ns: 500_000_000,
//!     clients: 10,
//!     payload_bytes: 32,
//!     targets: Targets::Random,
//! });
//! let mut sim = Simulation::new(
//!     config,
//!     |_, _, _| ReferenceEngine::new(RefConfig::new(4)),
//!     |_| Box::new(TxLog::new(true)),
//! )
//! .unwrap();
//! let report = sim.run();
//! assert!(report.safety_ok);
//! assert_eq!(report.txs_finalized, report.submissions.accepted);
//! ```

mod adversary;
mod byzantine;
mod checker;
mod config;
pub mod flood;
mod memo;
mod report;
mod sim;
mod trace;

pub use adversary::{Adversary, AdversaryEnv, Emission, Garbler, Payload, Silent};
pub use byzantine::{Behaviour, UnknownBehaviour, adversary, sibling};
pub use checker::{InvariantChecker, Violation};
pub use config::{
    BeforeGst, ConfigError, Fault, FaultKind, Gst, Jitter, LivenessCheck, NetworkConfig, Partition,
    ProcessingConfig, SimConfig, Targets, TraceMode, Workload,
};
pub use memo::MemoCheck;
pub use report::{
    Drops, FinalizedBlock, FinalizedOrigins, LatencySummary, NodeDetail, SimReport, SimSpeed,
    Submissions, Traffic,
};
pub use sim::{ClientHook, SimError, Simulation};
pub use trace::{DropReason, Trace, TraceEvent};
