//! The sans-IO consensus interface of agora, and the pieces every protocol shares.
//!
//! An engine implements [`Protocol`]: it reacts to [`Protocol::on_start`],
//! [`Protocol::on_message`], [`Protocol::on_timer`] and [`Protocol::on_transaction`] by pushing
//! [`Action`]s (send, broadcast, set or cancel a timer, commit a final block) into the
//! [`Context`] a driver hands it. The context also gives the time, the node's [`Mempool`] and a
//! signature checker. The engine never touches clocks, threads, sockets or randomness, so the
//! same engine runs in the deterministic simulator (`agora-netsim`) and in real-time runtimes.
//!
//! The other seams are just as narrow:
//! - [`Mempool`]: the engine selects a batch within [`BatchLimits`] when it leads; committing
//!   removes the batch's transactions. [`InMemoryMempool`] is bounded, deduplicated and ordered
//!   by arrival, and returns [`MempoolError::Full`] instead of losing anything silently.
//! - [`Application`]: receives final blocks in order. [`TxLog`] is the simplest one.
//!
//! These are written once, for every protocol:
//! - [`VoteKeeper`]: distinct signers per statement, non-members and duplicates refused,
//!   equivocation caught with evidence (an equivocator's votes count for each value it signed),
//!   a certificate emitted exactly once at the quorum.
//! - [`LeaderElection`]: [`RoundRobin`] and [`HashedLeader`].
//! - [`ChainView`]: the block tree one node saw, protocol-neutral, for pictures and reports.
//!
//! [`reference::ReferenceEngine`] is a deliberately simple engine, not fault tolerant, that
//! tests drivers. Here it is driven by hand, the way a driver does it:
//!
//! ```
//! use agora_consensus::reference::{RefConfig, RefMessage, ReferenceEngine, Tick};
//! use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
//! use agora_crypto::{DirectCheck, SecretKey};
//! use agora_types::{NodeId, Transaction};
//! use bytes::Bytes;
//!
//! // Node 0 of 4 leads.
//! let mut engine = ReferenceEngine::new(RefConfig::new(4));
//! let mut mempool = InMemoryMempool::new(MempoolLimits::default());
//! let mut checker = DirectCheck;
//! let mut actions = Vec::new();
//!
//! // The driver starts the engine at t = 0: it asks for a tick.
//! let mut ctx = Context::new(0, NodeId(0), &mut actions, &mut mempool, &mut checker);
//! engine.on_start(&mut ctx);
//! assert!(matches!(actions.as_slice(), [Action::SetTimer { timer: Tick, .. }]));
//! actions.clear();
//!
//! // A client submits a transaction; at the next tick the leader proposes it.
//! let tx = Transaction::new_signed(&SecretKey::from_seed(1, 0), 0, Bytes::from_static(b"order")).unwrap();
//! let mut ctx = Context::new(5, NodeId(0), &mut actions, &mut mempool, &mut checker);
//! engine.on_transaction(&mut ctx, tx).unwrap();
//! engine.on_timer(&mut ctx, Tick);
//! let proposal = actions.iter().find_map(|a| match a {
//!     Action::Broadcast { message: RefMessage::Propose { block, .. } } => Some(block),
//!     _ => None,
//! });
//! assert_eq!(proposal.unwrap().batch().len(), 1);
//! ```

mod application;
mod chain;
mod config_error;
mod driver;
mod forward;
mod lanes;
mod leader;
mod measure;
mod mempool;
mod protocol;
mod recent;
pub mod reference;
mod tamper;
mod votes;

pub use application::{Application, Applied, TxLog};
pub use chain::{BlockStatus, BlockView, ChainView};
pub use config_error::{ConfigError, DURATION_MAX_NS};
pub use driver::{Driver, TimerTable, dispatch};
pub use forward::Forwarding;
pub use lanes::{Classifier, LanePolicy, LaneSpec, LanedMempool};
pub use leader::{HashedLeader, LeaderElection, LeaderRule, RoundRobin};
pub use measure::LatencySummary;
pub use mempool::{BatchLimits, InMemoryMempool, Mempool, MempoolError, MempoolLimits, Submitted};
pub use protocol::{Action, Context, Ctx, Message, Protocol, RestoreError, Timer, journal_of};
pub use recent::RecentIds;
pub use tamper::Tamper;
pub use votes::{Equivocation, VALUES_PER_SLOT_MAX, VoteKeeper, VoteOutcome};
