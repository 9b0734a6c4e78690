//! The simulator: one event queue in virtual time, the network and processing models, faults,
//! adversaries, the workload, metrics, the trace and the invariant checker.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Instant;

use agora_consensus::{
    Action, Application, Context, Driver, InMemoryMempool, Mempool, Message as _, Protocol,
    Submitted, TimerTable, dispatch,
};
use agora_crypto::{Digest, DomainHasher, PublicKeyBytes, SecretKey, domain};
use agora_store::{EngineJournal, Ledger, MemBlockStore, MemJournal, Snapshot};
use agora_types::{Block, Certificate, Committee, CommitteeError, NodeId, Transaction, codec};
use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::adversary::{Adversary, AdversaryEnv, Emission, Payload};
use crate::checker::InvariantChecker;
use crate::config::{BeforeGst, ConfigError, Fault, FaultKind, Jitter, SimConfig, Targets};
use crate::memo::MemoCheck;
use crate::report::{
    Drops, FinalizedBlock, FinalizedOrigins, LatencySummary, NodeDetail, SimReport, SimSpeed,
    Submissions, Traffic,
};
use crate::trace::{DropReason, Trace, TraceEvent};

/// Seeds of the derived random streams, so the workload does not shift when the network draws
/// more or fewer numbers.
mod commit;
mod network;

const WORKLOAD_STREAM: u64 = 0x776f_726b_6c6f_6164; // "workload"
const CLIENT_KEYS: u64 = 0x636c_6965_6e74; // "client"
const ADVERSARY_STREAM: u64 = 0x6164_7665_7273; // "advers"

/// Clients outside the replicas that react to what a replica finalizes: after each final block
/// at an honest replica, the hook sees the block and the replica's application, and may submit
/// new transactions (each with the time it is submitted, never before now, and the replica it goes
/// to). Market makers re-quoting after fills are built this way; they see only finalized state.
pub trait ClientHook<A: ?Sized = Box<dyn Application>> {
    /// `node` finalized `block` at `now_ns`, leaving `app` in its new state.
    fn on_commit(
        &mut self,
        now_ns: u64,
        node: NodeId,
        block: &Block,
        app: &A,
        submit: &mut Vec<(u64, NodeId, Transaction)>,
    );
}

/// Builds member `node`'s engine afresh: see [`Simulation::set_rebuild`].
pub(crate) type Rebuild<P> = Box<dyn FnMut(NodeId, &Committee, &SecretKey) -> P>;

/// Builds member `node`'s application afresh, from a snapshot or from genesis: see
/// [`Simulation::set_restore_app`].
pub(crate) type RestoreApp<A> = Box<dyn FnMut(NodeId, Option<&Snapshot>) -> Result<A, String>>;

/// Why a simulation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The committee could not be formed.
    #[error(transparent)]
    Committee(#[from] CommitteeError),
}

/// Something for a node's engine to handle.
#[derive(Debug)]
enum Input<M, T> {
    Start,
    Message { from: NodeId, message: M, sent_ns: u64 },
    Raw { from: NodeId, bytes: Bytes, sent_ns: u64 },
    Timer { timer: T, id: u64 },
    Submit { tx: Box<Transaction> },
}

#[derive(Debug)]
enum Event<M, T> {
    /// A message reaches a node's network interface.
    Arrive { to: NodeId, from: NodeId, payload: Payload<M>, sent_ns: u64 },
    /// Something for the node itself (a timer, a submission, its start).
    Input { node: NodeId, input: Input<M, T> },
    /// A busy node is free again: handle the next input in its inbox.
    Wake { node: NodeId },
    /// A crash or restart.
    Fault(Fault),
    /// A node's journal sync (the `seq`-th it began) ends: its records are durable, and the
    /// messages its pass sent after them leave.
    Synced { node: NodeId, seq: u64 },
    /// A node goes down halfway through a journal sync ([`FaultKind::CrashInSync`]), unless its
    /// restart came first.
    CrashInSync { node: NodeId },
}

/// A message a pass sent, or a block it committed, after persisting records: it waits for
/// their sync, and is lost if the node crashes before the sync ends.
enum Held<M> {
    To(NodeId, M),
    All(M),
    Commit(Block, Vec<Certificate>),
}

struct LatencyClasses {
    names: Vec<String>,
    classify: Box<dyn Fn(&Transaction) -> usize>,
    samples: Vec<Vec<u64>>,
}

struct Node<P: Protocol, A> {
    engine: P,
    mempool: Box<dyn Mempool>,
    /// The application with its block store, which (like a redb commit) is durable at once.
    ledger: Ledger<A, MemBlockStore>,
    honest: bool,
    up: bool,
    /// Pending timers: timer id → the id of its scheduled event (older events are stale).
    timers: TimerTable<P::Timer>,
    busy_until: u64,
    inbox: VecDeque<Input<P::Message, P::Timer>>,
    wake_pending: bool,
    uplink_free_at: u64,
    log: DomainHasher,
    sent: Traffic,
    decode_errors: u64,
    /// What the engine persisted, with a disk's durability.
    journal: EngineJournal<MemJournal>,
    /// When the sync in flight ends: until then, a crash loses what it was syncing and the
    /// messages held behind it.
    sync_until: Option<u64>,
    held: Vec<Held<P::Message>>,
    /// Commits held behind the sync a crash cut short: lost with a rebuilt engine, applied when
    /// the engine comes back with its memory (it remembers committing them).
    held_at_crash: Vec<(Block, Vec<Certificate>)>,
    /// A [`FaultKind::CrashInSync`] is waiting for the node's next sync.
    crash_in_sync: bool,
    /// The crash `crash_in_sync` asked for is scheduled, halfway through a sync.
    sync_crash_scheduled: bool,
    /// The records the sync that crashes was writing: a torn write keeps a prefix of those,
    /// never one appended after it began (the pass that appended them was waiting on it).
    crash_covers: usize,
    /// Records appended before the first commit held behind the syncs in flight: if a crash
    /// loses that commit, no record appended after it survives (the real pass would not have
    /// got past it).
    held_commit_mark: Option<usize>,
    syncs: u64,
    restarts: u64,
    recoveries: u64,
    /// Restarts that rebuilt the application from the block store.
    app_recoveries: u64,
    crashes_mid_sync: u64,
}

/// A deterministic simulation of `n` nodes running engine `P`.
///
/// Build it with [`Simulation::new`], optionally add adversaries and submissions, then
/// [`run`](Simulation::run). The same configuration and seed give the same report, trace digest
/// and logs on any machine (the wall-clock speed aside).
pub struct Simulation<P: Protocol, A: Application = Box<dyn Application>> {
    config: SimConfig,
    committee: Committee,
    secrets: Vec<SecretKey>,
    nodes: Vec<Node<P, A>>,
    adversaries: Vec<Option<Box<dyn Adversary<P::Message>>>>,
    queue: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<Event<P::Message, P::Timer>>>,
    free_slots: Vec<u32>,
    seq: u64,
    now: u64,
    started: bool,
    rng: ChaCha8Rng,
    adversary_rng: ChaCha8Rng,
    checker: InvariantChecker,
    memo: MemoCheck,
    trace: Trace,
    actions: Vec<Action<P::Message, P::Timer>>,
    emissions: Vec<Emission<P::Message>>,
    declared: Vec<Transaction>,
    link_last_arrival: Vec<u64>,
    accepted: FxHashMap<Digest, (u64, NodeId)>,
    client_hook: Option<Box<dyn ClientHook<A>>>,
    /// Builds a fresh engine for a node that restarts as a new process would.
    rebuild: Option<Rebuild<P>>,
    /// Builds a fresh application for such a node, from its store's snapshot.
    restore_app: Option<RestoreApp<A>>,
    hook_out: Vec<(u64, NodeId, Transaction)>,
    latencies: Vec<u64>,
    /// Latency classes: names, the classifier, and each class's samples.
    latency_classes: Option<LatencyClasses>,
    finalized_blocks: Vec<FinalizedBlock>,
    traffic: Traffic,
    by_kind: BTreeMap<&'static str, Traffic>,
    dropped: Drops,
    submissions: Submissions,
    events: u64,
    deliveries: u64,
    wall_seconds: f64,
}

impl<P: Protocol> Simulation<P> {
    /// A simulation of `config.nodes` nodes. `engine(node, committee, key)` builds each node's
    /// engine and `app(node)` its application, boxed, so that one simulation may mix
    /// applications. Keys derive from the seed. [`Simulation::with_apps`] keeps the
    /// application's type, so that [`Simulation::app`] returns it as it is.
    pub fn new(
        config: SimConfig,
        engine: impl FnMut(NodeId, &Committee, &SecretKey) -> P,
        app: impl FnMut(NodeId) -> Box<dyn Application>,
    ) -> Result<Self, SimError> {
        Self::with_apps(config, engine, app)
    }
}

impl<P: Protocol, A: Application> Simulation<P, A> {
    /// A simulation of `config.nodes` nodes whose applications are all of type `A`:
    /// `engine(node, committee, key)` builds each node's engine and `app(node)` its
    /// application. Keys derive from the seed.
    pub fn with_apps(
        config: SimConfig,
        mut engine: impl FnMut(NodeId, &Committee, &SecretKey) -> P,
        mut app: impl FnMut(NodeId) -> A,
    ) -> Result<Self, SimError> {
        config.validate()?;
        let n = config.nodes;
        let (committee, secrets) = Committee::deterministic(config.seed, n)?;
        let instances = n + config.twins.len();
        let nodes = committee
            .members()
            .chain(config.twins.iter().copied())
            .map(|id| Node {
                engine: engine(id, &committee, &secrets[id.index()]),
                mempool: Box::new(InMemoryMempool::new(config.mempool)),
                ledger: fresh_ledger(app(id), &config),
                honest: true,
                up: true,
                timers: TimerTable::default(),
                busy_until: 0,
                inbox: VecDeque::new(),
                wake_pending: false,
                uplink_free_at: 0,
                log: domain::STATE.hasher(),
                sent: Traffic::default(),
                decode_errors: 0,
                journal: EngineJournal::default(),
                sync_until: None,
                held: Vec::new(),
                held_at_crash: Vec::new(),
                crash_in_sync: false,
                sync_crash_scheduled: false,
                crash_covers: 0,
                held_commit_mark: None,
                syncs: 0,
                restarts: 0,
                recoveries: 0,
                app_recoveries: 0,
                crashes_mid_sync: 0,
            })
            .collect();
        let mut sim = Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            adversary_rng: ChaCha8Rng::seed_from_u64(config.seed ^ ADVERSARY_STREAM),
            checker: InvariantChecker::new(n),
            trace: Trace::new(config.trace),
            adversaries: (0..instances).map(|_| None).collect(),
            link_last_arrival: vec![0; instances * instances],
            config,
            committee,
            secrets,
            nodes,
            queue: BinaryHeap::new(),
            slab: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            now: 0,
            started: false,
            memo: MemoCheck::default(),
            actions: Vec::new(),
            emissions: Vec::new(),
            declared: Vec::new(),
            accepted: FxHashMap::default(),
            client_hook: None,
            rebuild: None,
            restore_app: None,
            hook_out: Vec::new(),
            latencies: Vec::new(),
            latency_classes: None,
            finalized_blocks: Vec::new(),
            traffic: Traffic::default(),
            by_kind: BTreeMap::new(),
            dropped: Drops::default(),
            submissions: Submissions::default(),
            events: 0,
            deliveries: 0,
            wall_seconds: 0.0,
        };
        for twin in sim.config.twins.clone() {
            sim.nodes[twin.index()].honest = false;
        }
        for i in n..instances {
            sim.nodes[i].honest = false;
        }
        for fault in sim.config.faults.clone() {
            sim.schedule(fault.at_ns, Event::Fault(fault));
        }
        sim.generate_workload();
        Ok(sim)
    }

    /// Makes `node` Byzantine: everything its engine sends goes through `adversary`. Its commits
    /// are no longer checked, and it no longer counts as honest.
    pub fn set_adversary(&mut self, node: NodeId, adversary: Box<dyn Adversary<P::Message>>) {
        self.nodes[node.index()].honest = false;
        self.adversaries[node.index()] = Some(adversary);
    }

    /// Replaces `node`'s mempool (before the run), for example with a
    /// [`LanedMempool`](agora_consensus::LanedMempool). Its transactions so far are dropped.
    pub fn set_mempool(&mut self, node: NodeId, mempool: Box<dyn Mempool>) {
        self.nodes[node.index()].mempool = mempool;
    }

    /// Also reports latency per class of transaction (for example per priority lane):
    /// `classify` maps a transaction to an index into `names` (out of range: the last).
    pub fn set_latency_classes(
        &mut self,
        names: Vec<String>,
        classify: Box<dyn Fn(&Transaction) -> usize>,
    ) {
        if !names.is_empty() {
            let samples = vec![Vec::new(); names.len()];
            self.latency_classes = Some(LatencyClasses { names, classify, samples });
        }
    }

    /// A Byzantine node trades from the account of `client` and may put that account's
    /// transactions straight into its blocks: the checker does not count them as unsubmitted.
    pub fn declare_byzantine_client(&mut self, client: PublicKeyBytes) {
        self.checker.byzantine_client(client);
    }

    /// `node`'s application, to read its state after a run.
    pub fn app(&self, node: NodeId) -> &A {
        self.nodes[node.index()].ledger.app()
    }

    /// `node`'s block store: its finalized blocks with the state digest after each, and its
    /// snapshots ([`SimConfig::snapshots`], [`SimConfig::retained_blocks`]).
    pub fn block_store(&self, node: NodeId) -> &MemBlockStore {
        self.nodes[node.index()].ledger.store()
    }

    /// How a node that restarts with [`FaultKind::Recover`] or [`FaultKind::Amnesia`] gets a
    /// fresh application: `restore(node, None)` in its genesis state, `restore(node,
    /// Some(snapshot))` from a snapshot of its block store (checking the snapshot's digest).
    /// The node then replays the blocks its store holds after the snapshot, and each replayed
    /// state digest must equal the stored one. Without it, the application survives a restart
    /// in memory.
    pub fn set_restore_app(
        &mut self,
        restore: impl FnMut(NodeId, Option<&Snapshot>) -> Result<A, String> + 'static,
    ) {
        self.restore_app = Some(Box::new(restore));
    }

    /// How a node that restarts with [`FaultKind::Recover`] or [`FaultKind::Amnesia`] gets a
    /// fresh engine: `rebuild(node, committee, key)`, usually the factory that built the first.
    pub fn set_rebuild(
        &mut self,
        rebuild: impl FnMut(NodeId, &Committee, &SecretKey) -> P + 'static,
    ) {
        self.rebuild = Some(Box::new(rebuild));
    }

    /// Installs clients that react to finalized blocks (see [`ClientHook`]).
    pub fn set_client_hook(&mut self, hook: Box<dyn ClientHook<A>>) {
        self.client_hook = Some(hook);
    }

    /// A client submits `tx` to `node` at `at_ns`.
    pub fn submit_at(&mut self, at_ns: u64, node: NodeId, tx: Transaction) {
        self.checker.submitted(tx.id());
        self.schedule(at_ns, Event::Input { node, input: Input::Submit { tx: Box::new(tx) } });
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The secret key of `node` (for tests and adversaries that need it).
    pub fn secret_key(&self, node: NodeId) -> &SecretKey {
        &self.secrets[node.index()]
    }

    /// The member an instance is (itself, or for twin `j`, instance `n + j`, the twinned member).
    fn identity(&self, instance: NodeId) -> NodeId {
        match instance.index().checked_sub(self.config.nodes) {
            Some(j) => self.config.twins[j],
            None => instance,
        }
    }

    /// The instances of member `member`: itself, and its twin if it has one.
    fn instances_of(&self, member: NodeId) -> impl Iterator<Item = NodeId> + use<P, A> {
        let n = self.config.nodes;
        let twin =
            self.config.twins.iter().position(|t| *t == member).map(|j| NodeId((n + j) as u16));
        std::iter::once(member).filter(move |m| m.index() < n).chain(twin)
    }

    /// The engine of `node` (an instance: twin `j` is `n + j`), to inspect its state.
    pub fn engine(&self, node: NodeId) -> &P {
        &self.nodes[node.index()].engine
    }

    /// The nodes without an adversary, in order.
    pub fn honest_nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].honest).map(|i| NodeId(i as u16)).collect()
    }

    /// The current simulated time.
    pub fn now_ns(&self) -> u64 {
        self.now
    }

    /// The invariant checker, with the logs it has seen.
    pub fn checker(&self) -> &InvariantChecker {
        &self.checker
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Runs to the configured duration (or the first violation) and reports.
    pub fn run(&mut self) -> SimReport {
        self.run_until(self.config.duration_ns);
        self.finish()
    }

    /// Runs until simulated time `until_ns` (inclusive), the first violation, or the event limit.
    /// Returns whether the run may go on (no violation, limit not reached).
    pub fn run_until(&mut self, until_ns: u64) -> bool {
        let wall = Instant::now();
        if !self.started {
            self.started = true;
            for node in (0..self.nodes.len() as u16).map(NodeId) {
                self.schedule(0, Event::Input { node, input: Input::Start });
            }
        }
        let mut ok = true;
        while let Some(&Reverse((t, _, slot))) = self.queue.peek() {
            if t > until_ns {
                break;
            }
            if self.events >= self.config.events_max {
                ok = false;
                break;
            }
            self.queue.pop();
            let event = self.slab[slot as usize].take().expect("every queued slot holds an event");
            self.free_slots.push(slot);
            self.now = t;
            self.events += 1;
            self.dispatch(event);
            if !self.checker.violations().is_empty() {
                ok = false;
                break;
            }
        }
        if ok {
            self.now = self.now.max(until_ns);
        }
        self.wall_seconds += wall.elapsed().as_secs_f64();
        ok
    }

    fn schedule(&mut self, at_ns: u64, event: Event<P::Message, P::Timer>) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        self.queue.push(Reverse((at_ns, seq, slot)));
        seq
    }

    fn dispatch(&mut self, event: Event<P::Message, P::Timer>) {
        match event {
            Event::Arrive { to, from, payload, sent_ns } => {
                if !self.nodes[to.index()].up {
                    self.dropped.receiver_down += 1;
                    self.trace_drop(from, to, DropReason::ReceiverDown);
                    return;
                }
                // The engine sees members, not instances: a twin's messages come from its member.
                let from = self.identity(from);
                let input = match payload {
                    Payload::Message(message) => Input::Message { from, message, sent_ns },
                    Payload::Raw(bytes) => Input::Raw { from, bytes, sent_ns },
                };
                self.offer(to, input);
            }
            Event::Input { node, input } => {
                if let Input::Timer { timer, id } = &input
                    && !self.nodes[node.index()].timers.is_current(timer, *id)
                {
                    return; // cancelled or moved
                }
                if let Input::Submit { tx } = &input
                    && !self.nodes[node.index()].up
                {
                    self.submissions.rejected_down += 1;
                    if self.trace.enabled() {
                        let event = TraceEvent::Submit {
                            t_ns: self.now,
                            node,
                            tx: tx.id(),
                            accepted: false,
                        };
                        self.trace.push(event);
                    }
                    return;
                }
                if !self.nodes[node.index()].up {
                    return;
                }
                self.offer(node, input);
            }
            Event::Wake { node } => {
                let n = &mut self.nodes[node.index()];
                n.wake_pending = false;
                if !n.up {
                    return;
                }
                if let Some(input) = n.inbox.pop_front() {
                    self.handle(node, input);
                }
                let n = &mut self.nodes[node.index()];
                if !n.inbox.is_empty() && !n.wake_pending {
                    n.wake_pending = true;
                    let at = n.busy_until;
                    self.schedule(at, Event::Wake { node });
                }
            }
            Event::Fault(fault) => self.fault(fault),
            Event::Synced { node, seq } => {
                if self.nodes[node.index()].syncs == seq {
                    self.settle_journal(node);
                }
            }
            Event::CrashInSync { node } => {
                let n = &mut self.nodes[node.index()];
                if n.up && std::mem::take(&mut n.sync_crash_scheduled) {
                    self.crash(node);
                }
            }
        }
    }

    /// Hands `input` to `node` now, or queues it behind the node's current work.
    fn offer(&mut self, node: NodeId, input: Input<P::Message, P::Timer>) {
        let now = self.now;
        let n = &mut self.nodes[node.index()];
        if n.busy_until <= now && n.inbox.is_empty() {
            self.handle(node, input);
            return;
        }
        n.inbox.push_back(input);
        if !n.wake_pending {
            n.wake_pending = true;
            let at = n.busy_until.max(now);
            self.schedule(at, Event::Wake { node });
        }
    }

    fn fault(&mut self, fault: Fault) {
        let node = fault.node;
        let up = self.nodes[node.index()].up;
        match fault.kind {
            FaultKind::Crash if up => self.crash(node),
            FaultKind::CrashInSync if up => self.nodes[node.index()].crash_in_sync = true,
            FaultKind::Restart if !up => self.restart(node),
            FaultKind::Recover | FaultKind::Amnesia if !up => {
                self.rebuild(node, fault.kind == FaultKind::Amnesia);
                self.restart(node);
            }
            // A restart due while a crash still waits for a sync (or for the middle of the
            // sync it began): the crash never came.
            FaultKind::Restart | FaultKind::Recover | FaultKind::Amnesia => {
                let n = &mut self.nodes[node.index()];
                n.crash_in_sync = false;
                n.sync_crash_scheduled = false;
            }
            _ => {}
        }
    }

    fn crash(&mut self, node: NodeId) {
        self.settle_journal(node);
        let n = &mut self.nodes[node.index()];
        if n.sync_until.take().is_some() {
            // The sync in flight did not finish: a prefix of what it was writing made it, and
            // nothing the pass sent after it left.
            n.held_at_crash = std::mem::take(&mut n.held)
                .into_iter()
                .filter_map(|h| match h {
                    Held::Commit(block, proof) => Some((block, proof)),
                    _ => None,
                })
                .collect();
            let unsynced = n.journal.journal().unsynced();
            let mut covered = std::mem::take(&mut n.crash_covers).min(unsynced);
            if let Some(mark) = n.held_commit_mark.take() {
                covered = covered.min(mark);
            }
            let kept = self.rng.random_range(0..=covered);
            n.journal.journal_mut().crash(kept);
            n.crashes_mid_sync += 1;
        }
        n.up = false;
        n.crash_in_sync = false;
        n.sync_crash_scheduled = false;
        n.timers.clear();
        n.inbox.clear();
        n.busy_until = self.now;
        if self.trace.enabled() {
            self.trace.push(TraceEvent::Crash { t_ns: self.now, node });
        }
    }

    fn restart(&mut self, node: NodeId) {
        let now = self.now;
        for (block, proof) in std::mem::take(&mut self.nodes[node.index()].held_at_crash) {
            self.commit(node, block, proof, now);
        }
        let n = &mut self.nodes[node.index()];
        n.up = true;
        n.restarts += 1;
        n.busy_until = self.now;
        if self.trace.enabled() {
            self.trace.push(TraceEvent::Restart { t_ns: self.now, node });
        }
        self.offer(node, Input::Start);
    }

    /// A fresh engine for `node`, restored from its journal (or from nothing, with amnesia).
    fn rebuild(&mut self, node: NodeId, amnesia: bool) {
        let me = self.identity(node);
        let rebuild = self.rebuild.as_mut().expect(
            "a Recover or Amnesia fault needs Simulation::set_rebuild, which builds the fresh engine",
        );
        let mut engine = rebuild(me, &self.committee, &self.secrets[me.index()]);
        let n = &mut self.nodes[node.index()];
        n.held_at_crash.clear();
        if amnesia {
            n.journal = EngineJournal::default();
        }
        let records = n.journal.records().expect("an in-memory journal reads back what it holds");
        // An engine that cannot read its own records would run without its safety state.
        engine.restore(&records).expect("an engine restores from the records it wrote");
        n.engine = engine;
        n.recoveries += u64::from(!amnesia);
        // The application, rebuilt from the store's newest snapshot and the blocks after it.
        if let Some(restore) = self.restore_app.as_mut() {
            let restore = |snapshot: Option<&Snapshot>| restore(me, snapshot);
            let replayed = n.ledger.reopen(restore, &mut self.memo);
            replayed.expect("a node's application replays its own store to the same digests");
            n.app_recoveries += 1;
        }
    }

    /// A sync that has ended makes its records durable and lets the messages and commits held
    /// behind it go, in the order the engine emitted them.
    fn settle_journal(&mut self, node: NodeId) {
        let now = self.now;
        let n = &mut self.nodes[node.index()];
        if n.sync_until.is_none_or(|until| until > now) {
            return;
        }
        n.sync_until = None;
        n.held_commit_mark = None;
        n.journal.sync().expect("an in-memory journal always syncs");
        for held in std::mem::take(&mut n.held) {
            match held {
                Held::To(to, message) => self.send_to_member(node, to, message, now),
                Held::All(message) => self.broadcast_from(node, message, now),
                Held::Commit(block, proof) => self.commit(node, block, proof, now),
            }
        }
    }

    /// Runs one input through the node's engine, then carries out what the engine asked for.
    fn handle(&mut self, node: NodeId, input: Input<P::Message, P::Timer>) {
        self.settle_journal(node);
        let now = self.now;
        let checks_before = self.memo.calls();
        let mut actions = std::mem::take(&mut self.actions);
        let me = self.identity(node);
        let n = &mut self.nodes[node.index()];
        let mut ctx = Context::new(now, me, &mut actions, n.mempool.as_mut(), &mut self.memo);
        // A message, typed or decoded from raw bytes, is delivered the same way below.
        let mut delivery = None;
        match input {
            Input::Start => n.engine.on_start(&mut ctx),
            Input::Message { from, message, sent_ns } => delivery = Some((from, message, sent_ns)),
            Input::Raw { from, bytes, sent_ns } => match codec::decode::<P::Message>(&bytes) {
                Ok(message) => delivery = Some((from, message, sent_ns)),
                Err(_) => {
                    n.decode_errors += 1;
                    self.dropped.decode_error += 1;
                    if self.trace.enabled() {
                        let event = TraceEvent::DecodeError {
                            t_ns: now,
                            from,
                            to: node,
                            bytes: bytes.len() as u64,
                        };
                        self.trace.push(event);
                    }
                }
            },
            Input::Timer { timer, id } => {
                if !n.timers.fire(&timer, id) {
                    self.actions = actions;
                    return;
                }
                if self.trace.enabled() {
                    self.trace.push(TraceEvent::Timer { t_ns: now, node });
                }
                n.engine.on_timer(&mut ctx, timer);
            }
            Input::Submit { tx } => {
                let id = tx.id();
                let outcome = n.engine.on_transaction(&mut ctx, *tx);
                let accepted = matches!(outcome, Ok(Submitted::Accepted));
                match (n.honest, outcome) {
                    (false, _) => self.submissions.to_byzantine += 1,
                    (true, Ok(Submitted::Accepted)) => {
                        self.submissions.accepted += 1;
                        self.accepted.entry(id).or_insert((now, node));
                    }
                    (true, Ok(Submitted::Duplicate)) => self.submissions.duplicate += 1,
                    (true, Err(_)) => self.submissions.rejected_full += 1,
                }
                if self.trace.enabled() {
                    self.trace.push(TraceEvent::Submit { t_ns: now, node, tx: id, accepted });
                }
            }
        }
        if let Some((from, message, sent_ns)) = delivery {
            self.deliveries += 1;
            if self.trace.enabled() {
                let (kind, instance) = (message.kind(), message.instance());
                self.trace.push(TraceEvent::Deliver {
                    t_ns: now,
                    from,
                    to: node,
                    kind,
                    sent_ns,
                    instance,
                });
            }
            if let Some(adversary) = self.adversaries[node.index()].as_mut() {
                let mut env = AdversaryEnv {
                    now_ns: now,
                    me,
                    key: &self.secrets[me.index()],
                    committee: &self.committee,
                    rng: &mut self.adversary_rng,
                    declared: &mut self.declared,
                };
                adversary.on_receive(&mut env, from, &message, &mut self.emissions);
            }
            n.engine.on_message(&mut ctx, from, message);
        }
        let p = self.config.processing;
        let checks = self.memo.calls() - checks_before;
        let cost = p.per_event_ns.saturating_add(checks.saturating_mul(p.per_verify_ns));
        let done = now.saturating_add(cost);
        self.nodes[node.index()].busy_until = done;
        self.carry_out(node, &mut actions, done);
        actions.clear();
        self.actions = actions;
        // What the node's adversary sent on receiving the message leaves with its other sends.
        if !self.emissions.is_empty() {
            let mut out = std::mem::take(&mut self.emissions);
            self.emit(node, &mut out, done);
            self.emissions = out;
        }
    }
}

/// A node's ledger at genesis: `app` over an empty in-memory block store.
fn fresh_ledger<A: Application>(app: A, config: &SimConfig) -> Ledger<A, MemBlockStore> {
    let store = MemBlockStore::new(config.snapshots);
    let (ledger, _) = Ledger::open(store, |_| Ok(app), &mut agora_crypto::DirectCheck)
        .expect("an empty store opens");
    match config.retained_blocks {
        Some(blocks) => ledger.with_retention(blocks),
        None => ledger,
    }
}
