//! A real-time cluster in one process: the same sans-IO engines the simulator drives, each replica
//! on its own thread with a real clock, linked by bounded crossbeam channels.
//!
//! - **Links.** Each replica has one bounded inbox. A message is encoded once with the project
//!   codec into [`bytes::Bytes`]; a broadcast hands every recipient a clone of the same buffer.
//!   A full inbox blocks the sender: backpressure, measured ([`ReplicaReport::send_blocked_ns`]).
//!   The wait is bounded ([`ClusterConfig::send_wait_max`]): two replicas each blocked on the
//!   other's full inbox would otherwise deadlock. A message still not taken then is dropped and
//!   counted ([`ReplicaReport::send_dropped`]), a loss the engines handle as network loss.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use agora_consensus::{
    Action, Application, Context, InMemoryMempool, LatencySummary, MempoolLimits, Message,
    Protocol, Submitted,
};
use agora_crypto::{
    Digest, Domain, KeyCachingCheck, PublicKey, PublicKeyBytes, SecretKey, Signature,
    SignatureCheck, SignatureError, check_id, domain,
};
use agora_types::{Block, Committee, CommitteeError, NodeId, Transaction, codec};
use bytes::Bytes;
use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError, bounded,
};
use rustc_hash::FxHashMap;
use serde::Serialize;

/// Settings of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl ClusterConfig {
    /// `nodes` replicas, seed 0, inboxes of 65,536 messages, default mempools, 60 s timeout,
    /// inline verification, sends that wait at most 1 s on a full inbox.
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
}

/// What one replica did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaReport {
    /// Last finalized height.
    pub height: u64,
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

enum Input {
    Message { from: NodeId, bytes: Bytes },
    Submit { tx: Box<Transaction>, at: Instant },
    Stop,
}

/// Verdicts computed ahead of time lie in a replica's cache at most this many.
const VERDICTS_MAX: usize = 1 << 20;

fn verdict_key(
    key: &PublicKeyBytes,
    domain: &Domain,
    message: &[u8],
    signature: &Signature,
) -> [u8; 32] {
    *check_id(key.as_bytes(), domain, message, signature).as_bytes()
}

/// One replica's verdicts: `None` while a worker has it, then the result.
#[derive(Default)]
struct Verdicts(Mutex<FxHashMap<[u8; 32], Option<bool>>>);

impl Verdicts {
    /// Claims `key` for a worker; false if it is already claimed or known.
    fn claim(&self, key: [u8; 32]) -> bool {
        let Ok(mut map) = self.0.lock() else { return false };
        if map.len() >= VERDICTS_MAX {
            map.clear();
        }
        map.insert(key, None).is_none()
    }

    fn record(&self, key: [u8; 32], valid: bool) {
        if let Ok(mut map) = self.0.lock()
            && let Some(entry) = map.get_mut(&key)
        {
            *entry = Some(valid);
        }
    }

    /// The verdict, if a worker finished it; otherwise the claim is withdrawn (the caller
    /// verifies now, and the worker will skip it). Either way the entry is forgotten: a block is
    /// applied once.
    fn take(&self, key: &[u8; 32]) -> Option<bool> {
        self.0.lock().ok()?.remove(key).flatten()
    }

    /// True while a claimed job is still wanted (not done, not withdrawn).
    fn wanted(&self, key: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|map| matches!(map.get(key), Some(None)))
    }
}

/// A replica's checker: transaction signatures from the verdict cache when ready, anything else
/// (and misses) verified here, with parsed keys cached.
struct VerdictCheck {
    /// `None` when verify-ahead is off: nothing to look up, so no per-transaction key hash.
    verdicts: Option<Arc<Verdicts>>,
    inline: KeyCachingCheck,
    hits: u64,
    misses: u64,
}

impl SignatureCheck for VerdictCheck {
    fn check(
        &mut self,
        key: &PublicKey,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.inline.check(key, domain, message, signature)
    }

    fn check_bytes(
        &mut self,
        key: &PublicKeyBytes,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let Some(verdicts) = &self.verdicts else {
            return self.inline.check_bytes(key, domain, message, signature);
        };
        match verdicts.take(&verdict_key(key, domain, message, signature)) {
            Some(valid) => {
                self.hits += 1;
                if valid { Ok(()) } else { Err(SignatureError::Invalid) }
            }
            None => {
                self.misses += 1;
                self.inline.check_bytes(key, domain, message, signature)
            }
        }
    }
}

/// A transaction to verify ahead of time for one replica.
struct Job {
    verdicts: Arc<Verdicts>,
    key: [u8; 32],
    tx: Transaction,
}

/// A verifier thread: verifies what replicas hand it and leaves the verdicts in their caches.
fn verifier(jobs: Receiver<Job>) {
    let mut check = KeyCachingCheck::new(65_536);
    while let Ok(job) = jobs.recv() {
        // The replica may have needed it already and verified it itself.
        if !job.verdicts.wanted(&job.key) {
            continue;
        }
        let valid = job.tx.verify_with(&mut check).is_ok();
        job.verdicts.record(job.key, valid);
    }
}

/// Final blocks queued for a replica's apply thread at most.
const APPLY_QUEUE_BLOCKS: usize = 256;

/// The application side of a replica: it applies final blocks in order, verifying their
/// transactions, and keeps what the report needs.
struct AppSide {
    app: Box<dyn Application + Send>,
    checker: VerdictCheck,
    /// Transactions applied, read by the run's end condition.
    finalized: Arc<AtomicU64>,
    height: u64,
    state_digest: Digest,
    recent_digests: BTreeMap<u64, Digest>,
    finalized_txs: u64,
    last_commit: Option<Instant>,
    shared: Arc<Shared>,
    /// Submission → applied here, for transactions submitted here, ns.
    applied_latencies_ns: Vec<u64>,
}

impl AppSide {
    /// Applies `block`, of which the transactions submitted at `mine` were submitted here.
    fn apply(&mut self, block: &Block, mine: &[Instant]) {
        let applied = self.app.apply(block, &mut self.checker);
        let now = Instant::now();
        for t0 in mine {
            self.applied_latencies_ns.push(now.saturating_duration_since(*t0).as_nanos() as u64);
        }
        // The load's window counts transactions until they are applied where they entered.
        self.shared.final_at_entry.fetch_add(mine.len() as u64, Ordering::Relaxed);
        let txs = block.batch().len() as u64;
        self.height = block.height().0;
        self.state_digest = applied.state_digest;
        self.recent_digests.insert(self.height, applied.state_digest);
        while self.recent_digests.len() > 4_096 {
            self.recent_digests.pop_first();
        }
        self.finalized_txs += txs;
        self.last_commit = Some(Instant::now());
        self.finalized.fetch_add(txs, Ordering::Relaxed);
    }

    fn fill(self, report: &mut ReplicaReport) {
        report.height = self.height;
        report.state_digest = self.state_digest;
        report.recent_digests = self.recent_digests;
        report.finalized_txs = self.finalized_txs;
        report.last_commit = self.last_commit;
        report.verdict_hits = self.checker.hits;
        report.verdict_misses = self.checker.misses;
        report.applied_latencies_ns = self.applied_latencies_ns;
    }
}

/// Where a replica applies final blocks.
enum Apply {
    /// On its own thread, between consensus events.
    Inline(AppSide),
    /// On a thread of its own, fed through a bounded queue.
    Thread { blocks: Sender<(Block, Vec<Instant>)>, handle: thread::JoinHandle<AppSide> },
}

/// Counters the load generator and the run's end condition read.
#[derive(Default)]
struct Shared {
    /// Submissions a replica has handled (accepted, duplicate or refused).
    handled: AtomicU64,
    /// Of those, accepted.
    accepted: AtomicU64,
    /// Accepted transactions final at the replica they were submitted to.
    final_at_entry: AtomicU64,
}

struct Replica<P: Protocol> {
    me: NodeId,
    engine: P,
    mempool: InMemoryMempool,
    /// Where final blocks are applied.
    apply: Apply,
    peers: Arc<Vec<Sender<Input>>>,
    start: Instant,
    timers: BTreeMap<(Instant, u64), P::Timer>,
    armed: FxHashMap<P::Timer, (Instant, u64)>,
    timer_seq: u64,
    submitted_at: FxHashMap<Digest, Instant>,
    shared: Arc<Shared>,
    /// The engine's signature checks (votes, proposals).
    checker: KeyCachingCheck,
    /// Verdicts computed ahead, shared with the application side.
    verdicts: Option<Arc<Verdicts>>,
    /// Where transactions go to be verified ahead of time, if they do.
    jobs: Option<Sender<Job>>,
    /// The longest wait on a full inbox.
    send_wait_max: Duration,
    report: ReplicaReport,
}

impl<P: Protocol> Replica<P> {
    /// Hands transactions to the verifier pool (once each); a full queue just means verifying
    /// them inline later.
    fn verify_ahead(&self, txs: &[Transaction]) {
        let (Some(jobs), Some(verdicts)) = (&self.jobs, &self.verdicts) else { return };
        for tx in txs {
            let key =
                verdict_key(tx.sender(), &domain::TX_SIGNATURE, tx.id().as_bytes(), tx.signature());
            if verdicts.claim(key) {
                let job = Job { verdicts: Arc::clone(verdicts), key, tx: tx.clone() };
                if jobs.try_send(job).is_err()
                    && let Ok(mut map) = verdicts.0.lock()
                {
                    map.remove(&key);
                }
            }
        }
    }

    fn now_ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn run(mut self, inbox: Receiver<Input>) -> ReplicaReport {
        self.step(Instant::now(), |engine, ctx| engine.on_start(ctx));
        loop {
            let now = Instant::now();
            self.fire_timers(now);
            let wait = self
                .timers
                .keys()
                .next()
                .map_or(Duration::from_millis(100), |(d, _)| d.saturating_duration_since(now));
            match inbox.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => {
                    if !self.handle(input) {
                        break;
                    }
                    // Drain what is already waiting before looking at the clock again.
                    while let Ok(input) = inbox.try_recv() {
                        if !self.handle(input) {
                            return self.finish();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.finish()
    }

    /// The report, with the application side's part (waiting for its thread to apply what is
    /// queued, if it has one).
    fn finish(self) -> ReplicaReport {
        let mut report = self.report;
        let side = match self.apply {
            Apply::Inline(side) => side,
            Apply::Thread { blocks, handle } => {
                drop(blocks);
                match handle.join() {
                    Ok(side) => side,
                    Err(_) => return report,
                }
            }
        };
        side.fill(&mut report);
        report
    }

    /// Handles one input; `false` to stop.
    fn handle(&mut self, input: Input) -> bool {
        let now = Instant::now();
        match input {
            Input::Stop => return false,
            Input::Message { from, bytes } => match codec::decode::<P::Message>(&bytes) {
                Ok(message) => {
                    self.verify_ahead(message.transactions());
                    self.step(now, |engine, ctx| engine.on_message(ctx, from, message))
                }
                Err(_) => self.report.decode_errors += 1,
            },
            Input::Submit { tx, at } => {
                self.verify_ahead(std::slice::from_ref(&tx));
                let id = tx.id();
                let mut outcome = None;
                self.step(now, |engine, ctx| outcome = Some(engine.on_transaction(ctx, *tx)));
                self.shared.handled.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Some(Ok(Submitted::Accepted)) => {
                        self.submitted_at.insert(id, at);
                        self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(_)) => self.report.mempool_full += 1,
                    _ => {}
                }
            }
        }
        true
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((&(deadline, seq), _)) = self.timers.first_key_value() {
            if deadline > now {
                break;
            }
            let timer = self.timers.remove(&(deadline, seq)).expect("just seen");
            if self.armed.get(&timer) == Some(&(deadline, seq)) {
                self.armed.remove(&timer);
                self.step(now, |engine, ctx| engine.on_timer(ctx, timer));
            }
        }
    }

    /// Runs one engine handler, then carries out its actions.
    fn step(&mut self, now: Instant, f: impl FnOnce(&mut P, &mut agora_consensus::Ctx<'_, P>)) {
        let mut actions = Vec::new();
        let now_ns = self.now_ns(now);
        let mut ctx =
            Context::new(now_ns, self.me, &mut actions, &mut self.mempool, &mut self.checker);
        f(&mut self.engine, &mut ctx);
        for action in actions {
            match action {
                Action::Send { to, message } => self.send(&[to], &message),
                Action::Broadcast { message } => {
                    let all: Vec<NodeId> = (0..self.peers.len() as u16)
                        .map(NodeId)
                        .filter(|n| *n != self.me)
                        .collect();
                    self.send(&all, &message);
                }
                Action::SetTimer { timer, after_ns } => {
                    let deadline = now + Duration::from_nanos(after_ns);
                    self.timer_seq += 1;
                    if let Some(old) = self.armed.insert(timer.clone(), (deadline, self.timer_seq))
                    {
                        self.timers.remove(&old);
                    }
                    self.timers.insert((deadline, self.timer_seq), timer);
                }
                Action::CancelTimer { timer } => {
                    if let Some(old) = self.armed.remove(&timer) {
                        self.timers.remove(&old);
                    }
                }
                Action::Commit { block } => {
                    let at = Instant::now();
                    // The submission times of this replica's clients' transactions, for the
                    // applied latency.
                    let mut mine = Vec::new();
                    for tx in block.batch().transactions() {
                        if let Some(t0) = self.submitted_at.remove(&tx.id()) {
                            self.report
                                .latencies_ns
                                .push(at.saturating_duration_since(t0).as_nanos() as u64);
                            mine.push(t0);
                        }
                    }
                    match &mut self.apply {
                        Apply::Inline(side) => side.apply(&block, &mine),
                        // A full queue holds consensus back: the backlog stays bounded.
                        Apply::Thread { blocks, .. } => {
                            let _ = blocks.send((block, mine));
                        }
                    }
                }
            }
        }
    }

    /// Encodes once and hands every recipient the same buffer; a full inbox blocks (measured),
    /// for at most `send_wait_max`, then the message to it is dropped (counted).
    fn send(&mut self, to: &[NodeId], message: &P::Message) {
        let Ok(bytes) = codec::encode(message) else {
            self.report.encode_errors += 1;
            return;
        };
        let kind = message.kind();
        for recipient in to {
            let input = Input::Message { from: self.me, bytes: bytes.clone() };
            let link = &self.peers[recipient.index()];
            match link.try_send(input) {
                Ok(()) => {}
                Err(TrySendError::Full(input)) => {
                    let t0 = Instant::now();
                    let sent = link.send_timeout(input, self.send_wait_max);
                    self.report.send_blocked_ns += t0.elapsed().as_nanos() as u64;
                    match sent {
                        Ok(()) => {}
                        Err(SendTimeoutError::Timeout(_)) => {
                            self.report.send_dropped += 1;
                            continue;
                        }
                        Err(SendTimeoutError::Disconnected(_)) => continue,
                    }
                }
                Err(TrySendError::Disconnected(_)) => continue,
            }
            self.report.messages += 1;
            self.report.bytes += bytes.len() as u64;
            let k = self.report.by_kind.entry(kind).or_default();
            k.0 += 1;
            k.1 += bytes.len() as u64;
        }
    }
}

/// Runs a cluster of `config.nodes` replicas of engine `P` until every accepted transaction of
/// `load` is final at every replica (or the timeout), and reports.
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
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..config.nodes).map(|_| bounded::<Input>(config.inbox_capacity)).unzip();
    let peers = Arc::new(senders);
    let shared = Arc::new(Shared::default());
    let finalized: Vec<Arc<AtomicU64>> =
        (0..config.nodes).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let (jobs, job_queue) = bounded::<Job>(65_536);
    let pool = if config.verify_ahead {
        thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        0
    };
    let workers: Vec<_> = (0..pool)
        .map(|w| {
            let queue = job_queue.clone();
            thread::Builder::new()
                .name(format!("verifier-{w}"))
                .spawn(move || verifier(queue))
                .expect("threads can be spawned")
        })
        .collect();
    drop(job_queue);
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let mut handles = Vec::new();
    for (i, inbox) in receivers.into_iter().enumerate() {
        let me = NodeId(i as u16);
        let verdicts = config.verify_ahead.then(|| Arc::new(Verdicts::default()));
        let side = AppSide {
            app: app(me),
            checker: VerdictCheck {
                verdicts: verdicts.clone(),
                inline: KeyCachingCheck::new(65_536),
                hits: 0,
                misses: 0,
            },
            finalized: Arc::clone(&finalized[i]),
            height: 0,
            state_digest: Digest::ZERO,
            recent_digests: BTreeMap::new(),
            finalized_txs: 0,
            last_commit: None,
            shared: Arc::clone(&shared),
            applied_latencies_ns: Vec::new(),
        };
        let apply = if config.apply_thread {
            let (blocks, queue) = bounded::<(Block, Vec<Instant>)>(APPLY_QUEUE_BLOCKS);
            let handle = thread::Builder::new()
                .name(format!("apply-{i}"))
                .spawn(move || {
                    let mut side = side;
                    while let Ok((block, mine)) = queue.recv() {
                        side.apply(&block, &mine);
                    }
                    side
                })
                .expect("threads can be spawned");
            Apply::Thread { blocks, handle }
        } else {
            Apply::Inline(side)
        };
        let replica = Replica {
            me,
            engine: engine(me, &committee, &keys[i]),
            mempool: InMemoryMempool::new(config.mempool),
            apply,
            peers: Arc::clone(&peers),
            start,
            timers: BTreeMap::new(),
            armed: FxHashMap::default(),
            timer_seq: 0,
            submitted_at: FxHashMap::default(),
            shared: Arc::clone(&shared),
            checker: KeyCachingCheck::new(4_096),
            verdicts,
            jobs: config.verify_ahead.then(|| jobs.clone()),
            send_wait_max: config.send_wait_max,
            report: ReplicaReport::default(),
        };
        let handle = thread::Builder::new()
            .name(format!("replica-{i}"))
            .spawn(move || replica.run(inbox))
            .expect("threads can be spawned");
        handles.push(handle);
    }
    // The load, open loop at its rate, or as fast as the window allows.
    let first_submission = Instant::now();
    let total = load.txs.len() as u64;
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
        let _ = peers[node.index() % config.nodes]
            .send(Input::Submit { tx: Box::new(tx), at: Instant::now() });
    }
    // Wait until every accepted transaction is final at every replica.
    let deadline = first_submission + config.timeout;
    let mut timed_out = false;
    loop {
        let handled = shared.handled.load(Ordering::Relaxed);
        let accepted = shared.accepted.load(Ordering::Relaxed);
        let settled = finalized.iter().all(|f| f.load(Ordering::Relaxed) >= accepted);
        if handled == total && settled {
            break;
        }
        if Instant::now() > deadline {
            timed_out = true;
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    for p in peers.iter() {
        let _ = p.send(Input::Stop);
    }
    let mut replicas = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        replicas.push(h.join().map_err(|_| RuntimeError::ReplicaPanicked(NodeId(i as u16)))?);
    }
    // The replicas held the last senders of the job queue: the workers now stop.
    drop(jobs);
    for w in workers {
        let _ = w.join();
    }
    if timed_out {
        return Err(RuntimeError::Timeout(config.timeout));
    }
    let cpu_seconds = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
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
    Ok(WallReport {
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
    })
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` on Linux.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
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
