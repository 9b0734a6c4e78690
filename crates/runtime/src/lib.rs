//! A real-time cluster in one process: the same sans-IO engines the simulator drives, each replica
//! on its own thread with a real clock, linked by bounded crossbeam channels.
//!
//! - **Links.** Each replica has one bounded inbox. A message is encoded once with the project
//!   codec into [`bytes::Bytes`]; a broadcast hands every recipient a clone of the same buffer.
//!   A full inbox blocks the sender: backpressure, measured ([`ReplicaReport::send_blocked_ns`]).
//!   The wait is bounded ([`ClusterConfig::send_wait_max`]): two replicas each blocked on the
//!   other's full inbox would otherwise deadlock. A message still not taken then is dropped and
//!   counted ([`ReplicaReport::send_dropped`]), a loss the engines handle as network loss.
//!   The links are one [`Outbox`]; a replica run on its own ([`RunningReplica`], as a node
//!   runs it) takes another (the node's network), and reports [`ReplicaEvent`]s.
//! - **Time.** A replica sleeps in `recv_timeout` until its next timer or its next message; timers
//!   live in a per-replica deadline map. No busy-waiting.
//! - **Work.** Each replica runs its engine, its mempool and its own application, and therefore
//!   verifies every transaction it applies, inline by default (with parsed keys cached). With
//!   [`ClusterConfig::verify_ahead`] it moves that work off its critical path where it can: a
//!   transaction arriving at a replica (submitted, forwarded, or inside a proposal) goes to a
//!   pool of verifier threads, whose verdict waits in that replica's cache, keyed by key, domain,
//!   message and signature; applying the block then takes the verdict instead of verifying
//!   ([`ReplicaReport::verdict_hits`]). A full pool queue or a missing verdict means verifying
//!   inline, never blocking. Undecodable bytes are counted and dropped. With
//!   [`ClusterConfig::apply_thread`] final blocks are applied on a thread of their own per
//!   replica, fed through a bounded queue, so that consensus carries on while a block's
//!   signatures are verified.
//! - **Stores.** Each replica keeps its engine's journal and its block store ([`Storage`]: a
//!   temporary directory by default), its application in a [`Ledger`] over the block store;
//!   the blocks of a pass are stored before its journal sync. [`ClusterConfig::crashes`] kills
//!   a replica at a chosen journal sync and restarts it from its directory
//!   ([`ReplicaCrash`]).
//! - **Load.** [`Load`] submits pre-signed transactions (signing is done before the clock starts)
//!   open loop at a rate, or as fast as the cluster takes them (a bounded window of transactions in
//!   flight, counted until applied where they entered).
//! - **Measures.** [`WallReport`] gives wall-clock throughput (transactions applied at every
//!   replica per second, from the first submission to the last replica applying the last one),
//!   finality latency (submission to finalization at the replica it was submitted to), applied
//!   latency (to its execution there), messages and
//!   bytes, the process's CPU seconds, and replica-core capacity (finalized transactions per
//!   replica-CPU-second). [`verify_rate`] measures the physical limit they are compared with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use agora_consensus::{
    Application, InMemoryMempool, LatencySummary, MempoolLimits, Protocol, TimerTable,
};
use agora_crypto::{Digest, KeyCachingCheck, PublicKey, SecretKey, Signature, domain};
use agora_store::{
    BLOCKS_FILE, BlockStore, EngineJournal, FileJournal, FileJournalConfig, Height, Journal,
    Ledger, Lsn, MemBlockStore, MemJournal, RedbBlockStore, SnapshotPolicy,
};
use agora_types::{Committee, CommitteeError, NodeId, Transaction};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use rustc_hash::FxHashMap;
use serde::Serialize;

mod apply;
mod replica;
mod standalone;
mod verify;

use apply::{APPLY_QUEUE_BLOCKS, AppSide, Apply};
pub use replica::{Delivery, Input, KindTraffic, Outbox, ReplicaEvent, ReplicaLive};
use replica::{Replica, Shared};
pub use standalone::{
    ProofCallback, ProofSink, ReplicaOptions, RunningReplica, SyncCallback, SyncSink,
};
use verify::{Job, VerdictCheck, Verdicts, verifier};

/// Settings of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Replicas.
    pub nodes: usize,
    /// Seed of the replicas' keys.
    pub seed: u64,
    /// Messages an inbox holds at most.
    pub inbox_capacity: usize,
    /// Each replica's mempool bounds.
    pub mempool: MempoolLimits,
    /// The run gives up after this long (wall clock).
    pub timeout: Duration,
    /// Verify transaction signatures on arrival on a pool of verifier threads, so that applying a
    /// block finds the verdicts ready (see the crate docs for when this pays).
    pub verify_ahead: bool,
    /// How long a replica waits on a full inbox before dropping the message (see the crate
    /// docs): long enough that only a stuck peer hits it, short enough to end a deadlock.
    pub send_wait_max: Duration,
    /// Apply final blocks on a thread of their own per replica, so that consensus carries on
    /// while a block is applied (its signatures verified); otherwise on the replica's thread.
    pub apply_thread: bool,
    /// Where each replica keeps its journal and its block store (see [`Storage`]).
    pub storage: Storage,
    /// When each replica's block store snapshots its application, and how many it keeps.
    pub snapshots: SnapshotPolicy,
    /// Blocks each replica's block store keeps below its tip once a snapshot lets older ones
    /// go; `None` keeps every block on disk (to replay from genesis, or serve peers), and two
    /// snapshot intervals in memory.
    pub retained_blocks: Option<u64>,
    /// What the replicas' blocks are applied to, recorded in every new block store (opaque to
    /// the runtime: whoever replays the store reads it), if anything.
    pub application: Option<Bytes>,
    /// Replica crashes to inject, each followed by a restart from the replica's directory.
    /// They need stores on disk and blocks applied inline.
    pub crashes: Vec<ReplicaCrash>,
}

/// Where a cluster's replicas keep what they must not lose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Storage {
    /// Journals and block stores in memory: nothing survives the run, and nothing is synced.
    Memory,
    /// On disk, in a temporary directory of the run's own, removed when it ends.
    #[default]
    Temporary,
    /// On disk in `DIR/node-<i>/journal` (a [`FileJournal`] synced as the engine's durability
    /// rule asks) and `DIR/node-<i>/blocks.redb` (a [`RedbBlockStore`], one transaction per
    /// pass). The directories must hold no journal and no blocks yet, and are kept.
    Dir(PathBuf),
}

/// A replica stopped as a killed process would be, then started again from its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCrash {
    /// Which replica.
    pub node: NodeId,
    /// It stops when it is about to make this journal sync (counting from 1): what it appended
    /// since the sync before is lost, with its memory, its mempool and its timers.
    pub at_sync: u64,
    /// Whether the blocks it applied since its last pass are stored before it stops (the
    /// block store's transaction made it) or lost with the rest.
    pub blocks_stored: bool,
    /// How long it stays down; messages sent to it meanwhile are lost.
    pub down_for: Duration,
}

impl ClusterConfig {
    /// `nodes` replicas, seed 0, inboxes of 65,536 messages, default mempools, 60 s timeout,
    /// inline verification, sends that wait at most 1 s on a full inbox, stores on disk in a
    /// temporary directory (a snapshot every 1,000 blocks), no crashes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 0,
            inbox_capacity: 65_536,
            mempool: MempoolLimits::default(),
            timeout: Duration::from_secs(60),
            verify_ahead: false,
            send_wait_max: Duration::from_secs(1),
            apply_thread: false,
            storage: Storage::Temporary,
            snapshots: SnapshotPolicy::default(),
            retained_blocks: None,
            application: None,
            crashes: Vec::new(),
        }
    }
}

/// Transactions to submit, each to a replica, and how fast.
#[derive(Debug, Clone)]
pub struct Load {
    /// Pre-signed transactions and the replica each goes to, in submission order.
    pub txs: Vec<(NodeId, Transaction)>,
    /// Transactions per second (open loop); `None`: as fast as the cluster takes them.
    pub rate_per_sec: Option<f64>,
    /// With `rate_per_sec: None`: transactions submitted but not yet final at their replica, at most.
    pub window: u64,
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The committee could not be formed.
    #[error(transparent)]
    Committee(#[from] CommitteeError),
    /// Not every accepted transaction was final everywhere within the timeout.
    #[error("timed out after {0:?} with transactions still not final everywhere")]
    Timeout(Duration),
    /// A replica thread panicked.
    #[error("replica {0} stopped unexpectedly")]
    ReplicaPanicked(NodeId),
    /// The configuration asks for what cannot be done.
    #[error("invalid cluster configuration: {0}")]
    Config(&'static str),
    /// A replica's store could not be opened, or already holds a journal or blocks, or failed
    /// while the replica ran.
    #[error("replica {node}'s store: {reason}")]
    Store {
        /// Which replica.
        node: NodeId,
        /// What went wrong, naming the file.
        reason: String,
    },
    /// A replica's journal failed to append or sync: it stopped, since it could no longer
    /// keep what it said.
    #[error("replica {node} stopped: its journal failed: {reason}")]
    JournalFailed {
        /// Which replica.
        node: NodeId,
        /// The journal's error, naming the file.
        reason: String,
    },
}

/// What one replica did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaReport {
    /// Last finalized height.
    pub height: u64,
    /// Journal syncs (one per engine step that persisted something).
    pub journal_syncs: u64,
    /// Bytes its journal holds at the end (pruned at the engine's checkpoints).
    pub journal_bytes: u64,
    /// The journal error that stopped it, if one did.
    pub journal_error: Option<String>,
    /// The block store error that stopped it, if one did.
    pub store_error: Option<String>,
    /// Times it crashed and started again from its directory.
    pub restarts: u64,
    /// Blocks it replayed from its block store when it started again, all restarts together.
    pub replayed_blocks: u64,
    /// How long each restart took to reopen its stores, restore its engine and rebuild its
    /// application (not counting the time it was down), ns.
    pub recovery_ns: Vec<u64>,
    /// Its application's state digest.
    pub state_digest: Digest,
    /// State digests of its most recent heights, to compare replicas that stopped at different
    /// heights.
    #[serde(skip)]
    pub recent_digests: BTreeMap<u64, Digest>,
    /// Transactions finalized (in committed blocks).
    pub finalized_txs: u64,
    /// Messages sent.
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Messages sent by kind.
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// Time spent blocked on full inboxes (backpressure), in nanoseconds.
    pub send_blocked_ns: u64,
    /// Messages dropped after waiting `send_wait_max` on a full inbox.
    pub send_dropped: u64,
    /// Events for whoever runs the replica dropped because their queue was full.
    pub events_dropped: u64,
    /// Received bytes that did not decode.
    pub decode_errors: u64,
    /// Messages the engine asked to send that could not be encoded (over the message limit):
    /// counted, not sent.
    pub encode_errors: u64,
    /// Submissions its mempool refused as full.
    pub mempool_full: u64,
    /// Transaction signatures whose verdict was ready when the block was applied.
    pub verdict_hits: u64,
    /// Transaction signatures verified inline at apply time (no verdict ready).
    pub verdict_misses: u64,
    /// Finality latencies (submission → finalization here) of the transactions submitted here, ns.
    #[serde(skip)]
    pub latencies_ns: Vec<u64>,
    /// Submission → applied here (the order executed in this replica's book), ns.
    #[serde(skip)]
    pub applied_latencies_ns: Vec<u64>,
    /// When it applied its last block.
    #[serde(skip)]
    pub last_commit: Option<Instant>,
}

/// Everything a wall-clock run measured.
#[derive(Debug, Clone, Serialize)]
pub struct WallReport {
    /// Replicas.
    pub nodes: usize,
    /// Transactions accepted by a replica.
    pub txs_submitted: u64,
    /// Transactions finalized and applied at every replica.
    pub txs_finalized: u64,
    /// Seconds from the first submission to the last replica applying the last transaction.
    pub wall_seconds: f64,
    /// `txs_finalized / wall_seconds`.
    pub tps: f64,
    /// Finality latency, ms: p50.
    pub latency_ms_p50: f64,
    /// p99.
    pub latency_ms_p99: f64,
    /// Largest.
    pub latency_ms_max: f64,
    /// Submission → applied at the replica it was submitted to, ms: p50. Equal to finality
    /// when blocks are applied inline; with an apply thread, the wait in its queue is added.
    pub applied_latency_ms_p50: f64,
    /// p99.
    pub applied_latency_ms_p99: f64,
    /// Messages sent, all replicas.
    pub messages: u64,
    /// Bytes sent, all replicas.
    pub bytes: u64,
    /// CPU seconds the process used during the run (all threads), if the platform tells.
    pub cpu_seconds: Option<f64>,
    /// Finalized transactions ÷ (CPU seconds ÷ replicas): what one replica could sustain on one
    /// core of this machine.
    pub replica_core_tps: Option<f64>,
    /// Every replica had the same state digest at the highest height all of them reached.
    pub state_digests_agree: bool,
    /// Per replica.
    pub replicas: Vec<ReplicaReport>,
}

/// Runs a cluster of `config.nodes` replicas of engine `P` until every accepted transaction of
/// `load` is final at every replica (or the timeout), and reports.
///
/// In its parts: keys for the committee, the verifier pool, the replicas on their threads, the
/// load, the wait until everything accepted is final everywhere, and the report.
pub fn run<P>(
    config: ClusterConfig,
    engine: impl Fn(NodeId, &Committee, &SecretKey) -> P,
    app: impl Fn(NodeId) -> Box<dyn Application + Send>,
    load: Load,
) -> Result<WallReport, RuntimeError>
where
    P: Protocol + Send + 'static,
    P::Timer: Send,
{
    let (committee, keys) = Committee::deterministic(config.seed, config.nodes)?;
    if !config.crashes.is_empty() && (config.storage == Storage::Memory || config.apply_thread) {
        return Err(RuntimeError::Config("crashes need stores on disk and blocks applied inline"));
    }
    if config.crashes.iter().any(|c| c.node.index() >= config.nodes || c.at_sync == 0) {
        return Err(RuntimeError::Config("a crash names a replica outside the cluster or sync 0"));
    }
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..config.nodes).map(|_| bounded::<Input>(config.inbox_capacity)).unzip();
    let peers = Arc::new(senders);
    let shared = Arc::new(Shared::default());
    let finalized: Vec<Arc<AtomicU64>> =
        (0..config.nodes).map(|_| Arc::new(AtomicU64::new(0))).collect();
    // A temporary directory lives as long as the run.
    let temporary = match config.storage {
        Storage::Temporary => Some(tempfile::tempdir().map_err(|e| RuntimeError::Store {
            node: NodeId(0),
            reason: format!("cannot make a temporary directory: {e}"),
        })?),
        _ => None,
    };
    let root = match &config.storage {
        Storage::Memory => None,
        Storage::Temporary => temporary.as_ref().map(|t| t.path().to_path_buf()),
        Storage::Dir(dir) => Some(dir.clone()),
    };
    let stores = (0..config.nodes)
        .map(|i| {
            let me = NodeId(i as u16);
            let node_dir = root.as_ref().map(|r| r.join(format!("node-{i}")));
            let stores = open_stores(&config, node_dir.as_deref(), me, app(me))?;
            // What each crash of this replica restarts with: a fresh engine and application.
            let spares = config
                .crashes
                .iter()
                .filter(|c| c.node == me)
                .map(|c| (*c, engine(me, &committee, &keys[i]), app(me)))
                .collect();
            let retained_blocks = config.retained_blocks;
            Ok((stores, Restarts { dir: node_dir, retained_blocks, spares }))
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    let (jobs, workers) = spawn_verifiers(config.verify_ahead);
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let handles: Vec<_> = receivers
        .into_iter()
        .zip(stores)
        .enumerate()
        .map(|(i, (inbox, (stores, restarts)))| {
            let me = NodeId(i as u16);
            let wiring = Wiring {
                me,
                engine: engine(me, &committee, &keys[i]),
                outbox: Box::new(replica::ChannelOutbox {
                    peers: Arc::clone(&peers),
                    wait_max: config.send_wait_max,
                }),
                shared: Arc::clone(&shared),
                finalized: Arc::clone(&finalized[i]),
                jobs: config.verify_ahead.then(|| jobs.clone()),
                inbox,
                stores,
                restarts,
                events: None,
                proofs: None,
            };
            spawn_replica(&ReplicaSettings::of(&config), wiring, start)
        })
        .collect();
    let first_submission = Instant::now();
    let total = load.txs.len() as u64;
    submit(load, &peers, &shared, &config, first_submission);
    let timed_out = !settle(&shared, &finalized, total, first_submission + config.timeout);
    for p in peers.iter() {
        let _ = p.send(Input::Stop);
    }
    let mut replicas = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        replicas.push(h.join().map_err(|_| RuntimeError::ReplicaPanicked(NodeId(i as u16)))?);
    }
    let failed = replicas.iter().enumerate().find_map(|(i, r)| Some((i, r.journal_error.clone()?)));
    // The replicas held the last senders of the job queue: the workers now stop.
    drop(jobs);
    for w in workers {
        let _ = w.join();
    }
    if let Some((i, reason)) = failed {
        return Err(RuntimeError::JournalFailed { node: NodeId(i as u16), reason });
    }
    let store_failed =
        replicas.iter().enumerate().find_map(|(i, r)| Some((i, r.store_error.clone()?)));
    if let Some((i, reason)) = store_failed {
        return Err(RuntimeError::Store { node: NodeId(i as u16), reason });
    }
    if timed_out {
        return Err(RuntimeError::Timeout(config.timeout));
    }
    let cpu_seconds = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(report(&config, &shared, replicas, first_submission, cpu_seconds))
}

/// What a replica is built from: its engine, where its messages go, what it shares with
/// whoever runs it, its inbox and its stores.
pub(crate) struct Wiring<P> {
    pub(crate) me: NodeId,
    pub(crate) engine: P,
    pub(crate) outbox: Box<dyn Outbox>,
    pub(crate) shared: Arc<Shared>,
    /// Transactions applied at this replica, read by the end condition.
    pub(crate) finalized: Arc<AtomicU64>,
    pub(crate) jobs: Option<Sender<Job>>,
    pub(crate) inbox: Receiver<Input>,
    pub(crate) stores: ReplicaStores,
    pub(crate) restarts: Restarts<P>,
    pub(crate) events: Option<Sender<ReplicaEvent>>,
    pub(crate) proofs: Option<ProofSink>,
}

/// The settings a replica's thread needs, from a cluster's or a node's configuration.
pub(crate) struct ReplicaSettings {
    pub(crate) verify_ahead: bool,
    pub(crate) apply_thread: bool,
    pub(crate) mempool: MempoolLimits,
    pub(crate) members: usize,
}

impl ReplicaSettings {
    fn of(config: &ClusterConfig) -> Self {
        Self {
            verify_ahead: config.verify_ahead,
            apply_thread: config.apply_thread,
            mempool: config.mempool,
            members: config.nodes,
        }
    }
}

/// The verifier pool (one thread per core when verifying ahead, none otherwise) and the queue
/// that feeds it.
pub(crate) fn spawn_verifiers(verify_ahead: bool) -> (Sender<Job>, Vec<thread::JoinHandle<()>>) {
    let (jobs, job_queue) = bounded::<Job>(65_536);
    let pool =
        if verify_ahead { thread::available_parallelism().map_or(1, |n| n.get()) } else { 0 };
    let workers = (0..pool)
        .map(|w| {
            let queue = job_queue.clone();
            thread::Builder::new()
                .name(format!("verifier-{w}"))
                .spawn(move || verifier(queue))
                .expect("threads can be spawned")
        })
        .collect();
    (jobs, workers)
}

/// One replica on its thread (and its application on another, with
/// [`ClusterConfig::apply_thread`]).
pub(crate) fn spawn_replica<P>(
    config: &ReplicaSettings,
    wiring: Wiring<P>,
    start: Instant,
) -> thread::JoinHandle<ReplicaReport>
where
    P: Protocol + Send + 'static,
    P::Timer: Send,
{
    let Wiring {
        me,
        engine,
        outbox,
        shared,
        finalized,
        jobs,
        inbox,
        stores,
        restarts,
        events,
        proofs,
    } = wiring;
    let (journal, ledger) = stores;
    let verdicts = config.verify_ahead.then(|| Arc::new(Verdicts::default()));
    let side = AppSide {
        ledger,
        checker: VerdictCheck {
            verdicts: verdicts.clone(),
            inline: KeyCachingCheck::new(65_536),
            hits: 0,
            misses: 0,
        },
        finalized,
        height: 0,
        state_digest: Digest::ZERO,
        recent_digests: BTreeMap::new(),
        finalized_txs: 0,
        last_commit: None,
        shared: Arc::clone(&shared),
        applied_latencies_ns: Vec::new(),
        store_error: None,
        events: events.clone(),
        proofs,
    };
    let apply = if config.apply_thread {
        let (blocks, queue) = bounded::<apply::Final>(APPLY_QUEUE_BLOCKS);
        let handle = thread::Builder::new()
            .name(format!("apply-{}", me.0))
            .spawn(move || {
                let mut side = side;
                while let Ok(first) = queue.recv() {
                    side.apply_queued(first, &queue);
                }
                side
            })
            .expect("threads can be spawned");
        Apply::Thread { blocks, handle }
    } else {
        Apply::Inline(Box::new(side))
    };
    let replica = Replica {
        me,
        engine,
        mempool: InMemoryMempool::new(config.mempool),
        apply,
        outbox,
        members: config.members,
        start,
        timers: BTreeMap::new(),
        armed: TimerTable::default(),
        timer_seq: 0,
        submitted_at: FxHashMap::default(),
        shared,
        checker: KeyCachingCheck::new(4_096),
        verdicts,
        jobs,
        events,
        journal,
        restarts,
        crashed: false,
        mempool_limits: config.mempool,
        report: ReplicaReport::default(),
    };
    thread::Builder::new()
        .name(format!("replica-{}", me.0))
        .spawn(move || replica.run(inbox))
        .expect("threads can be spawned")
}

/// A replica's journal: on disk under the store directory, or in memory.
pub(crate) type ReplicaJournal = EngineJournal<Box<dyn Journal + Send>>;

/// A replica's application over its block store.
pub(crate) type ReplicaLedger = Ledger<Box<dyn Application + Send>, Box<dyn BlockStore + Send>>;

/// A replica's journal and ledger.
type ReplicaStores = (ReplicaJournal, ReplicaLedger);

/// What a replica needs to start again after each of its crashes.
pub(crate) struct Restarts<P> {
    /// Its directory (`None` in memory).
    pub(crate) dir: Option<PathBuf>,
    /// The blocks its store keeps ([`ClusterConfig::retained_blocks`]).
    pub(crate) retained_blocks: Option<u64>,
    /// Each crash, with the fresh engine and application it restarts with.
    pub(crate) spares: std::collections::VecDeque<(ReplicaCrash, P, Box<dyn Application + Send>)>,
}

/// Opens `node`'s stores: in `dir` (`journal` and `blocks.redb`, both new), or in memory.
fn open_stores(
    config: &ClusterConfig,
    dir: Option<&Path>,
    node: NodeId,
    app: Box<dyn Application + Send>,
) -> Result<ReplicaStores, RuntimeError> {
    let fail = |reason: String| RuntimeError::Store { node, reason };
    let Some(dir) = dir else {
        let store: Box<dyn BlockStore + Send> = Box::new(MemBlockStore::new(config.snapshots));
        // Bounded in memory: by default, the blocks since the snapshot before last.
        let retained = config.retained_blocks.unwrap_or(2 * config.snapshots.every.max(1));
        let ledger = open_ledger(store, app, node)?.0.with_retention(retained);
        return Ok((EngineJournal::new(Box::new(MemJournal::new())), ledger));
    };
    let (journal, blocks) = (dir.join("journal"), dir.join(BLOCKS_FILE));
    let (file, _) = FileJournal::open(&journal, FileJournalConfig::default())
        .map_err(|e| fail(e.to_string()))?;
    if file.next_lsn() > Lsn(0) {
        return Err(fail(format!("{} already holds a journal", journal.display())));
    }
    let mut store =
        RedbBlockStore::open(&blocks, config.snapshots).map_err(|e| fail(e.to_string()))?;
    if store.tip() > Height(0) {
        return Err(fail(format!("{} already holds blocks", blocks.display())));
    }
    if let Some(description) = &config.application {
        store.set_application(description).map_err(|e| fail(e.to_string()))?;
    }
    let ledger = retain(open_ledger(Box::new(store), app, node)?.0, config.retained_blocks);
    Ok((EngineJournal::new(Box::new(file)), ledger))
}

/// The stores in `dir`, opened as they are (new ones if there are none): the journal (a torn
/// tail cut), `engine` restored from its records, `app` rebuilt from the block store's newest
/// snapshot and the blocks after it. A new block store records `application` if given.
/// Returns the blocks replayed.
pub(crate) fn open_dir<P: Protocol>(
    dir: &Path,
    policy: SnapshotPolicy,
    retained: Option<u64>,
    application: Option<&Bytes>,
    engine: &mut P,
    app: Box<dyn Application + Send>,
    me: NodeId,
) -> Result<(ReplicaJournal, ReplicaLedger, u64), String> {
    let (file, _) = FileJournal::open(dir.join("journal"), FileJournalConfig::default())
        .map_err(|e| e.to_string())?;
    let mut journal = EngineJournal::new(Box::new(file) as Box<dyn Journal + Send>);
    let records = journal.records().map_err(|e| e.to_string())?;
    engine.restore(&records).map_err(|e| format!("the engine refused its journal: {e}"))?;
    let mut store =
        RedbBlockStore::open(dir.join(BLOCKS_FILE), policy).map_err(|e| e.to_string())?;
    if let Some(description) = application
        && store.application().map_err(|e| e.to_string())?.is_none()
    {
        store.set_application(description).map_err(|e| e.to_string())?;
    }
    let (ledger, replayed) = open_ledger(Box::new(store), app, me).map_err(|e| e.to_string())?;
    Ok((journal, retain(ledger, retained), replayed.blocks))
}

/// `ledger`, keeping `retained` blocks if that is set.
pub(crate) fn retain(ledger: ReplicaLedger, retained: Option<u64>) -> ReplicaLedger {
    match retained {
        Some(blocks) => ledger.with_retention(blocks),
        None => ledger,
    }
}

/// `app` over `store`: from the newest snapshot the store holds (restored into `app`, which is
/// at genesis) and the blocks after it.
pub(crate) fn open_ledger(
    store: Box<dyn BlockStore + Send>,
    mut app: Box<dyn Application + Send>,
    node: NodeId,
) -> Result<(ReplicaLedger, agora_store::Replayed), RuntimeError> {
    let restore = move |snapshot: Option<&agora_store::Snapshot>| {
        if let Some(snapshot) = snapshot {
            app.restore_snapshot(&snapshot.bytes, snapshot.state_digest)?;
        }
        Ok(app)
    };
    Ledger::open(store, restore, &mut KeyCachingCheck::new(4_096))
        .map_err(|e| RuntimeError::Store { node, reason: e.to_string() })
}

/// The load, open loop at its rate, or as fast as the window allows.
fn submit(
    load: Load,
    peers: &[Sender<Input>],
    shared: &Shared,
    config: &ClusterConfig,
    first_submission: Instant,
) {
    for (k, (node, tx)) in load.txs.into_iter().enumerate() {
        match load.rate_per_sec {
            Some(rate) => {
                let due = first_submission + Duration::from_secs_f64(k as f64 / rate.max(1e-9));
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
            }
            None => {
                while (k as u64).saturating_sub(shared.final_at_entry.load(Ordering::Relaxed))
                    > load.window.max(1)
                {
                    thread::sleep(Duration::from_micros(200));
                    if first_submission.elapsed() > config.timeout {
                        break;
                    }
                }
            }
        }
        let _ = peers[node.index() % config.nodes].send(Input::Submit {
            tx: Box::new(tx),
            at: Instant::now(),
            verified: false,
        });
    }
}

/// Waits until every one of the `total` submissions was handled and every accepted transaction
/// is final at every replica; false if `deadline` came first.
fn settle(shared: &Shared, finalized: &[Arc<AtomicU64>], total: u64, deadline: Instant) -> bool {
    loop {
        let handled = shared.handled.load(Ordering::Relaxed);
        let accepted = shared.accepted.load(Ordering::Relaxed);
        let settled = finalized.iter().all(|f| f.load(Ordering::Relaxed) >= accepted);
        if handled == total && settled {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// The cluster's figures from its replicas' reports.
fn report(
    config: &ClusterConfig,
    shared: &Shared,
    replicas: Vec<ReplicaReport>,
    first_submission: Instant,
    cpu_seconds: Option<f64>,
) -> WallReport {
    let end = replicas.iter().filter_map(|r| r.last_commit).max().unwrap_or_else(Instant::now);
    let wall_seconds = end.saturating_duration_since(first_submission).as_secs_f64();
    let txs_finalized = replicas.iter().map(|r| r.finalized_txs).min().unwrap_or(0);
    let summary = |of: fn(&ReplicaReport) -> &Vec<u64>| {
        let mut all: Vec<u64> = replicas.iter().flat_map(|r| of(r).iter().copied()).collect();
        LatencySummary::of(&mut all)
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let latencies = summary(|r| &r.latencies_ns);
    let applied = summary(|r| &r.applied_latencies_ns);
    // Replicas stop at slightly different heights: compare them at the highest height all reached.
    let common = replicas.iter().map(|r| r.height).min().unwrap_or(0);
    let at_common: Vec<Option<&Digest>> =
        replicas.iter().map(|r| r.recent_digests.get(&common)).collect();
    let state_digests_agree =
        common > 0 && at_common.iter().all(|d| d.is_some() && *d == at_common[0]);
    WallReport {
        nodes: config.nodes,
        txs_submitted: shared.accepted.load(Ordering::Relaxed),
        txs_finalized,
        wall_seconds,
        tps: if wall_seconds > 0.0 { txs_finalized as f64 / wall_seconds } else { 0.0 },
        latency_ms_p50: ms(latencies.p50_ns),
        latency_ms_p99: ms(latencies.p99_ns),
        latency_ms_max: ms(latencies.max_ns),
        applied_latency_ms_p50: ms(applied.p50_ns),
        applied_latency_ms_p99: ms(applied.p99_ns),
        messages: replicas.iter().map(|r| r.messages).sum(),
        bytes: replicas.iter().map(|r| r.bytes).sum(),
        cpu_seconds,
        replica_core_tps: cpu_seconds
            .filter(|c| *c > 0.0)
            .map(|c| txs_finalized as f64 / (c / config.nodes as f64)),
        state_digests_agree,
        replicas,
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` on Linux.
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("self")
}

/// CPU seconds (user and system) that process `pid` has used so far, read from `/proc`; `None`
/// if it has gone or the platform has no `/proc`.
pub fn process_cpu_seconds_of(pid: u32) -> Option<f64> {
    cpu_seconds_of(&pid.to_string())
}

fn cpu_seconds_of(process: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports them in USER_HZ, which is 100 on every mainstream configuration.
    Some((utime + stime) / 100.0)
}

/// Distinct signatures [`verify_rate`] cycles through.
const RATE_SIGNATURES: usize = 512;

/// k256 signature verifications per second on this machine: on one core, and on `threads`
/// cores at once (the physical limit wall-clock figures are compared with).
///
/// Each loop cycles through 512 distinct signatures by distinct keys over
/// distinct messages, as a stream of transactions presents them. Verifying one signature over
/// and over is about 7% faster on this machine and would overstate the limit: k256's
/// variable-time scalar multiplication then takes the same branches every time, which the
/// branch predictor most likely learns.
pub fn verify_rate(threads: usize, duration: Duration) -> (f64, f64) {
    let signed: Vec<(PublicKey, [u8; 32], Signature)> = (0..RATE_SIGNATURES as u64)
        .map(|i| {
            let key = SecretKey::from_seed(1, i);
            let mut message = [0u8; 32];
            message[..8].copy_from_slice(&i.to_le_bytes());
            let signature = key.sign(&domain::TX_SIGNATURE, &message);
            (*key.public_key(), message, signature)
        })
        .collect();
    let one = |d: Duration| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < d {
            for (public, message, signature) in
                signed.iter().skip(n as usize % RATE_SIGNATURES).take(16)
            {
                let _ =
                    std::hint::black_box(public.verify(&domain::TX_SIGNATURE, message, signature));
            }
            n += 16;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let single = one(duration);
    let all: f64 = thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(|| one(duration))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    (single, all)
}
