//! One replica: its engine, mempool and timers on a thread, its actions carried out on real
//! clocks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_consensus::{
    Context, Driver, InMemoryMempool, Mempool, MempoolLimits, Message, Protocol, Submitted,
    TimerTable, TxLog, dispatch,
};
use agora_crypto::{Digest, KeyCachingCheck, domain};
use agora_store::{BlockStore, EngineJournal, Journal, MemBlockStore, MemJournal};
use agora_types::{Block, Certificate, NodeId, Transaction, codec};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};
use rustc_hash::FxHashMap;

use crate::apply::{Apply, Final};
use crate::verify::{Job, Verdicts, verdict_key};
use crate::{ReplicaReport, Restarts, open_dir, open_ledger};

/// What reaches a replica's inbox.
#[derive(Debug)]
pub enum Input {
    /// A peer's encoded message.
    Message {
        /// The peer (authenticated by whatever carried the bytes).
        from: NodeId,
        /// The message as the peer's engine encoded it.
        bytes: Bytes,
    },
    /// A client's transaction, submitted at `at`.
    Submit {
        /// The transaction.
        tx: Box<Transaction>,
        /// When the client submitted it (finality latency is measured from here).
        at: Instant,
        /// Its signature was verified already by whoever submits it (the node's API): the
        /// verdict is recorded, not computed again.
        verified: bool,
    },
    /// Stop: the replica ends its loop and reports.
    Stop,
}

/// What a replica reports as it happens, to whoever runs it (a node answering its clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// A transaction submitted to this replica is final, in the block at `height`.
    Final {
        /// The transaction's id.
        tx: Digest,
        /// The height of its block.
        height: u64,
    },
    /// The block at `height` was applied here, leaving the application at `state_digest`.
    Applied {
        /// The block's height.
        height: u64,
        /// The application's state digest after it.
        state_digest: Digest,
    },
}

/// How handing a message to a peer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// On its way, after waiting this long for room.
    Sent {
        /// Nanoseconds spent waiting for room.
        blocked_ns: u64,
    },
    /// Dropped (no room in time, or a full queue), after waiting this long.
    Dropped {
        /// Nanoseconds spent waiting for room.
        blocked_ns: u64,
    },
    /// The peer is gone for good (its end of the channel closed).
    Gone,
}

/// Where a replica's encoded messages go: the peers' inboxes in one process, or a network.
pub trait Outbox: Send {
    /// Hands `bytes`, a message of replica `from`, to replica `to`.
    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: Bytes) -> Delivery;
}

/// The in-process cluster's links: every replica's bounded inbox. A full inbox blocks the
/// sender (backpressure) for at most `wait_max`, then the message is dropped.
pub(crate) struct ChannelOutbox {
    pub(crate) peers: Arc<Vec<Sender<Input>>>,
    pub(crate) wait_max: Duration,
}

impl Outbox for ChannelOutbox {
    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: Bytes) -> Delivery {
        let Some(link) = self.peers.get(to.index()) else { return Delivery::Gone };
        match link.try_send(Input::Message { from, bytes }) {
            Ok(()) => Delivery::Sent { blocked_ns: 0 },
            Err(TrySendError::Full(input)) => {
                let t0 = Instant::now();
                let sent = link.send_timeout(input, self.wait_max);
                let blocked_ns = t0.elapsed().as_nanos() as u64;
                match sent {
                    Ok(()) => Delivery::Sent { blocked_ns },
                    Err(SendTimeoutError::Timeout(_)) => Delivery::Dropped { blocked_ns },
                    Err(SendTimeoutError::Disconnected(_)) => Delivery::Gone,
                }
            }
            Err(TrySendError::Disconnected(_)) => Delivery::Gone,
        }
    }
}

/// Counters the load generator and the run's end condition read.
#[derive(Default, Debug)]
pub(crate) struct Shared {
    /// Submissions a replica has handled (accepted, duplicate or refused).
    pub(crate) handled: AtomicU64,
    /// Of those, accepted.
    pub(crate) accepted: AtomicU64,
    /// Accepted transactions final at the replica they were submitted to.
    pub(crate) final_at_entry: AtomicU64,
    /// Transactions pending in the mempool after the replica's last input.
    pub(crate) mempool_pending: AtomicU64,
    /// Consensus messages by kind, sent and received.
    pub(crate) traffic: Mutex<BTreeMap<&'static str, KindTraffic>>,
    /// Told how long each store sync took, if anyone is.
    pub(crate) syncs: Option<crate::SyncSink>,
}

/// One kind of consensus message: how many were sent and received, and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTraffic {
    /// Messages handed to peers.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Messages received and decoded.
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
}

/// A running replica's live figures, readable while it runs (a node's metrics).
#[derive(Debug, Clone)]
pub struct ReplicaLive(pub(crate) Arc<Shared>);

impl ReplicaLive {
    /// Transactions pending in its mempool.
    pub fn mempool_pending(&self) -> u64 {
        self.0.mempool_pending.load(Ordering::Relaxed)
    }

    /// Its consensus messages by kind.
    pub fn traffic(&self) -> BTreeMap<&'static str, KindTraffic> {
        self.0.traffic.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Shared {
    /// Tells the sync sink, if any, that a sync of `store` took `took`.
    pub(crate) fn synced(&self, store: &'static str, took: Duration) {
        if let Some(sink) = &self.syncs {
            (sink.0)(store, took);
        }
    }
}

pub(crate) struct Replica<P: Protocol> {
    pub(crate) me: NodeId,
    pub(crate) engine: P,
    pub(crate) mempool: InMemoryMempool,
    /// Where final blocks are applied.
    pub(crate) apply: Apply,
    /// Where its messages go.
    pub(crate) outbox: Box<dyn Outbox>,
    /// The committee's size: a broadcast goes to every other member.
    pub(crate) members: usize,
    pub(crate) start: Instant,
    pub(crate) timers: BTreeMap<(Instant, u64), P::Timer>,
    pub(crate) armed: TimerTable<P::Timer, (Instant, u64)>,
    pub(crate) timer_seq: u64,
    pub(crate) submitted_at: FxHashMap<Digest, Instant>,
    pub(crate) shared: Arc<Shared>,
    /// The engine's signature checks (votes, proposals).
    pub(crate) checker: KeyCachingCheck,
    /// Verdicts computed ahead, shared with the application side.
    pub(crate) verdicts: Option<Arc<Verdicts>>,
    /// Where transactions go to be verified ahead of time, if they do.
    pub(crate) jobs: Option<Sender<Job>>,
    pub(crate) report: ReplicaReport,
    /// What the engine persisted: on disk with a store directory, else in memory.
    pub(crate) journal: EngineJournal<Box<dyn Journal + Send>>,
    /// Its directory, and the crashes to come with what each restarts with.
    pub(crate) restarts: Restarts<P>,
    /// It crashed in the pass being carried out: the rest of the pass never happens.
    pub(crate) crashed: bool,
    /// Its mempool's bounds, for the one it restarts with.
    pub(crate) mempool_limits: MempoolLimits,
    /// Where it reports what happens, if anywhere (full: dropped, counted).
    pub(crate) events: Option<Sender<ReplicaEvent>>,
}

impl<P: Protocol> Replica<P> {
    /// Hands transactions to the verifier pool (once each); a full queue just means verifying
    /// them inline later.
    pub(crate) fn verify_ahead(&self, txs: &[Transaction]) {
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

    /// Records that `tx`'s signature is valid, as the one who submitted it verified.
    fn record_verified(&self, tx: &Transaction) {
        let Some(verdicts) = &self.verdicts else { return };
        let key =
            verdict_key(tx.sender(), &domain::TX_SIGNATURE, tx.id().as_bytes(), tx.signature());
        verdicts.known(key, true);
    }

    pub(crate) fn now_ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub(crate) fn run(mut self, inbox: Receiver<Input>) -> ReplicaReport {
        self.step(Instant::now(), |engine, ctx| engine.on_start(ctx));
        loop {
            if self.crashed && !self.restart(&inbox) {
                break;
            }
            let now = Instant::now();
            self.fire_timers(now);
            let wait = self
                .timers
                .keys()
                .next()
                .map_or(Duration::from_millis(100), |(d, _)| d.saturating_duration_since(now));
            if self.report.journal_error.is_some() {
                break;
            }
            match inbox.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => {
                    if !self.handle(input) {
                        break;
                    }
                    // Drain what is already waiting before looking at the clock again.
                    while !self.crashed
                        && let Ok(input) = inbox.try_recv()
                    {
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

    /// The replica crashed: it loses its memory, its mempool, its timers, the journal records it
    /// had not synced and the blocks it had not stored, stays down for the crash's time (what
    /// reaches it meanwhile is lost), then starts again from its directory: a fresh engine
    /// restored from its journal, a fresh application rebuilt from its block store. `false`
    /// to stop (the run ended while it was down, or its stores failed).
    fn restart(&mut self, inbox: &Receiver<Input>) -> bool {
        self.crashed = false;
        let Some((crash, mut engine, app)) = self.restarts.spares.pop_front() else {
            return false;
        };
        let Apply::Inline(side) = &mut self.apply else {
            unreachable!("crashes are refused with an apply thread");
        };
        let dir = self.restarts.dir.clone().expect("crashes are refused with stores in memory");
        let policy = side.ledger.store().policy();
        // The process is gone: the journal's buffered records and the ledger's pending blocks
        // with it (the placeholders below hold nothing).
        drop(std::mem::replace(&mut self.journal, EngineJournal::new(Box::new(MemJournal::new()))));
        let placeholder: Box<dyn BlockStore + Send> = Box::new(MemBlockStore::default());
        let placeholder = open_ledger(placeholder, Box::new(TxLog::new(false)), self.me)
            .expect("an empty store opens")
            .0;
        drop(std::mem::replace(&mut side.ledger, placeholder).crash());
        self.timers.clear();
        self.armed = TimerTable::default();
        self.mempool = InMemoryMempool::new(self.mempool_limits);
        self.submitted_at.clear();
        let up_at = Instant::now() + crash.down_for;
        loop {
            match inbox.recv_deadline(up_at) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
                // A submission to a down replica is refused: handled, never accepted.
                Ok(Input::Submit { .. }) => {
                    self.shared.handled.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Input::Message { .. }) => {}
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        let started = Instant::now();
        match open_dir(&dir, policy, self.restarts.retained_blocks, None, &mut engine, app, self.me)
        {
            Ok((journal, ledger, replayed)) => {
                self.journal = journal;
                if let Apply::Inline(side) = &mut self.apply {
                    side.ledger = ledger;
                }
                self.engine = engine;
                self.report.restarts += 1;
                self.report.replayed_blocks += replayed;
                self.report.recovery_ns.push(started.elapsed().as_nanos() as u64);
            }
            Err(reason) => {
                self.report.store_error.get_or_insert(reason);
                return false;
            }
        }
        self.step(Instant::now(), |engine, ctx| engine.on_start(ctx));
        true
    }

    /// The report, with the application side's part (waiting for its thread to apply what is
    /// queued, if it has one).
    pub(crate) fn finish(self) -> ReplicaReport {
        let mut report = self.report;
        report.journal_bytes = self.journal.journal().size_bytes();
        let side = match self.apply {
            Apply::Inline(side) => *side,
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
    pub(crate) fn handle(&mut self, input: Input) -> bool {
        let now = Instant::now();
        match input {
            Input::Stop => return false,
            Input::Message { from, bytes } => match codec::decode::<P::Message>(&bytes) {
                Ok(message) => {
                    if let Ok(mut traffic) = self.shared.traffic.lock() {
                        let kind = traffic.entry(message.kind()).or_default();
                        kind.received += 1;
                        kind.received_bytes += bytes.len() as u64;
                    }
                    self.verify_ahead(message.transactions());
                    self.step(now, |engine, ctx| engine.on_message(ctx, from, message))
                }
                Err(_) => self.report.decode_errors += 1,
            },
            Input::Submit { tx, at, verified } => {
                if verified {
                    self.record_verified(&tx);
                } else {
                    self.verify_ahead(std::slice::from_ref(&tx));
                }
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
        self.shared.mempool_pending.store(self.mempool.len() as u64, Ordering::Relaxed);
        true
    }

    pub(crate) fn fire_timers(&mut self, now: Instant) {
        while let Some((&(deadline, seq), _)) = self.timers.first_key_value() {
            if deadline > now {
                break;
            }
            let timer = self.timers.remove(&(deadline, seq)).expect("just seen");
            if self.armed.fire(&timer, (deadline, seq)) {
                self.step(now, |engine, ctx| engine.on_timer(ctx, timer));
            }
        }
    }

    /// Runs one engine handler, then carries out its actions, and stores the blocks it
    /// applied (inline) at the end of the pass if no journal sync stored them before.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut P, &mut agora_consensus::Ctx<'_, P>),
    ) {
        if self.crashed {
            return;
        }
        let mut actions = Vec::new();
        let now_ns = self.now_ns(now);
        let mut ctx =
            Context::new(now_ns, self.me, &mut actions, &mut self.mempool, &mut self.checker);
        f(&mut self.engine, &mut ctx);
        dispatch(actions, &mut ReplicaDriver { replica: self, now });
        if !self.crashed
            && let Apply::Inline(side) = &mut self.apply
        {
            side.flush();
        }
    }

    /// Before a journal sync: the blocks applied inline are stored first, so that the block
    /// store is never behind what the journal says was committed. `false` if the replica
    /// crashes here instead, as [`ReplicaCrash`] asked.
    fn before_sync(&mut self) -> bool {
        let next = self.report.journal_syncs + 1;
        let crash = self.restarts.spares.front().map(|(c, ..)| *c).filter(|c| c.at_sync == next);
        if crash.is_none_or(|c| c.blocks_stored)
            && let Apply::Inline(side) = &mut self.apply
        {
            side.flush();
        }
        if crash.is_some() {
            self.crashed = true;
            return false;
        }
        true
    }

    /// The submission times of this replica's clients' transactions in a final block (each
    /// recorded as a finality latency), then the block to its application side.
    pub(crate) fn commit(&mut self, block: Block, proof: Vec<Certificate>) {
        let at = Instant::now();
        let mut mine = Vec::new();
        for tx in block.batch().transactions() {
            if let Some(t0) = self.submitted_at.remove(&tx.id()) {
                self.report.latencies_ns.push(at.saturating_duration_since(t0).as_nanos() as u64);
                mine.push(t0);
                let event = ReplicaEvent::Final { tx: tx.id(), height: block.height().0 };
                if let Some(events) = &self.events
                    && events.try_send(event).is_err()
                {
                    self.report.events_dropped += 1;
                }
            }
        }
        match &mut self.apply {
            Apply::Inline(side) => side.apply(&block, proof, &mine),
            // A full queue holds consensus back: the backlog stays bounded.
            Apply::Thread { blocks, .. } => {
                let _ = blocks.send(Final { block, proof, mine });
            }
        }
    }

    /// Encodes once and hands every recipient the same buffer through the outbox; the time it
    /// waited for room is measured, and what it dropped is counted.
    pub(crate) fn send(&mut self, to: &[NodeId], message: &P::Message) {
        let Ok(bytes) = codec::encode(message) else {
            self.report.encode_errors += 1;
            return;
        };
        let kind = message.kind();
        for recipient in to {
            match self.outbox.deliver(self.me, *recipient, bytes.clone()) {
                Delivery::Sent { blocked_ns } => self.report.send_blocked_ns += blocked_ns,
                Delivery::Dropped { blocked_ns } => {
                    self.report.send_blocked_ns += blocked_ns;
                    self.report.send_dropped += 1;
                    continue;
                }
                Delivery::Gone => continue,
            }
            self.report.messages += 1;
            self.report.bytes += bytes.len() as u64;
            let k = self.report.by_kind.entry(kind).or_default();
            k.0 += 1;
            k.1 += bytes.len() as u64;
            if let Ok(mut traffic) = self.shared.traffic.lock() {
                let live = traffic.entry(kind).or_default();
                live.sent += 1;
                live.sent_bytes += bytes.len() as u64;
            }
        }
    }
}

/// One replica's actions, carried out on real clocks: timers are deadlines in the replica's own
/// map, messages go straight to the peers' inboxes.
pub(crate) struct ReplicaDriver<'a, P: Protocol> {
    pub(crate) replica: &'a mut Replica<P>,
    pub(crate) now: Instant,
}

impl<P: Protocol> ReplicaDriver<'_, P> {
    /// The replica says nothing more once its journal failed (it could not keep what it said)
    /// or it crashed.
    fn silent(&self) -> bool {
        self.replica.report.journal_error.is_some() || self.replica.crashed
    }
}

impl<P: Protocol> Driver<P::Message, P::Timer> for ReplicaDriver<'_, P> {
    fn send(&mut self, to: NodeId, message: P::Message) {
        if !self.silent() {
            self.replica.send(&[to], &message);
        }
    }

    fn broadcast(&mut self, message: P::Message) {
        if self.silent() {
            return;
        }
        let me = self.replica.me;
        let all: Vec<NodeId> =
            (0..self.replica.members as u16).map(NodeId).filter(|n| *n != me).collect();
        self.replica.send(&all, &message);
    }

    fn set_timer(&mut self, timer: P::Timer, after_ns: u64) {
        if self.replica.crashed {
            return;
        }
        let r = &mut *self.replica;
        let deadline = self.now + Duration::from_nanos(after_ns);
        r.timer_seq += 1;
        if let Some(old) = r.armed.arm(timer.clone(), (deadline, r.timer_seq)) {
            r.timers.remove(&old);
        }
        r.timers.insert((deadline, r.timer_seq), timer);
    }

    fn cancel_timer(&mut self, timer: P::Timer) {
        if let Some(old) = self.replica.armed.cancel(&timer) {
            self.replica.timers.remove(&old);
        }
    }

    fn commit(&mut self, block: Block, proof: Vec<Certificate>) {
        if !self.replica.crashed {
            self.replica.commit(block, proof);
        }
    }

    fn persist(&mut self, record: Bytes, checkpoint: Option<u64>) {
        if self.replica.crashed {
            return;
        }
        if let Err(e) = self.replica.journal.persist(&record, checkpoint) {
            self.replica.report.journal_error.get_or_insert(e.to_string());
        }
    }

    fn sync(&mut self) {
        if self.replica.crashed || !self.replica.before_sync() {
            return;
        }
        self.replica.report.journal_syncs += 1;
        let started = Instant::now();
        if let Err(e) = self.replica.journal.sync() {
            self.replica.report.journal_error.get_or_insert(e.to_string());
        }
        self.replica.shared.synced("journal", started.elapsed());
    }
}
