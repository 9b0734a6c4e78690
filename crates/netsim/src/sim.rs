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
use agora_types::{Block, Committee, CommitteeError, NodeId, Transaction, codec};
use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::adversary::{Adversary, AdversaryEnv, Emission, Payload};
use crate::checker::InvariantChecker;
use crate::config::{BeforeGst, ConfigError, Fault, FaultKind, Jitter, SimConfig, Targets};
use crate::memo::MemoCheck;
use crate::report::{
    Drops, FinalizedBlock, LatencySummary, NodeDetail, SimReport, SimSpeed, Submissions, Traffic,
};
use crate::trace::{DropReason, Trace, TraceEvent};

/// Seeds of the derived random streams, so the workload does not shift when the network draws
/// more or fewer numbers.
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
}

struct LatencyClasses {
    names: Vec<String>,
    classify: Box<dyn Fn(&Transaction) -> usize>,
    samples: Vec<Vec<u64>>,
}

struct Node<P: Protocol, A> {
    engine: P,
    mempool: Box<dyn Mempool>,
    app: A,
    honest: bool,
    up: bool,
    /// Pending timers: timer id → the id of its scheduled event (older events are stale).
    timers: TimerTable<P::Timer>,
    busy_until: u64,
    inbox: VecDeque<Input<P::Message, P::Timer>>,
    wake_pending: bool,
    uplink_free_at: u64,
    log: DomainHasher,
    finalized_height: u64,
    state: Digest,
    sent: Traffic,
    decode_errors: u64,
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
                app: app(id),
                honest: true,
                up: true,
                timers: TimerTable::default(),
                busy_until: 0,
                inbox: VecDeque::new(),
                wake_pending: false,
                uplink_free_at: 0,
                log: domain::STATE.hasher(),
                finalized_height: 0,
                state: Digest::ZERO,
                sent: Traffic::default(),
                decode_errors: 0,
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
        &self.nodes[node.index()].app
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
        let n = &mut self.nodes[node.index()];
        match fault.kind {
            FaultKind::Crash if n.up => {
                n.up = false;
                n.timers.clear();
                n.inbox.clear();
                n.busy_until = self.now;
                if self.trace.enabled() {
                    self.trace.push(TraceEvent::Crash { t_ns: self.now, node });
                }
            }
            FaultKind::Restart if !n.up => {
                n.up = true;
                n.busy_until = self.now;
                if self.trace.enabled() {
                    self.trace.push(TraceEvent::Restart { t_ns: self.now, node });
                }
                self.offer(node, Input::Start);
            }
            _ => {}
        }
    }

    /// Runs one input through the node's engine, then carries out what the engine asked for.
    fn handle(&mut self, node: NodeId, input: Input<P::Message, P::Timer>) {
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
    }

    fn carry_out(
        &mut self,
        node: NodeId,
        actions: &mut Vec<Action<P::Message, P::Timer>>,
        depart: u64,
    ) {
        dispatch(actions.drain(..), &mut NodeDriver { sim: self, node, depart });
    }

    /// `node`'s engine sends `message` to member `to`: to each of its instances the network
    /// lets through (one without twins; to itself, this instance).
    fn send_to_member(&mut self, node: NodeId, to: NodeId, message: P::Message, depart: u64) {
        let (kind, bytes) = self.size(&message);
        let me = self.identity(node);
        if self.config.twins.is_empty() || to == me {
            let to = if to == me { node } else { to };
            self.send(node, to, message, kind, bytes, depart);
            return;
        }
        let mut instances: Vec<NodeId> = self.instances_of(to).collect();
        if let Some(last) = instances.pop() {
            for instance in instances {
                self.send(node, instance, message.clone(), kind, bytes, depart);
            }
            self.send(node, last, message, kind, bytes, depart);
        }
    }

    /// `node`'s engine sends `message` to every instance of every other member.
    fn broadcast_from(&mut self, node: NodeId, message: P::Message, depart: u64) {
        let (kind, bytes) = self.size(&message);
        let me = self.identity(node);
        let n = self.nodes.len() as u16;
        for to in (0..n).map(NodeId) {
            if self.identity(to) != me {
                self.send(node, to, message.clone(), kind, bytes, depart);
            }
        }
    }

    fn size(&self, message: &P::Message) -> (&'static str, u64) {
        (message.kind(), message.encoded_len() as u64)
    }

    /// A message from `from`'s engine to `to`: through the adversary if `from` has one.
    fn send(
        &mut self,
        from: NodeId,
        to: NodeId,
        message: P::Message,
        kind: &'static str,
        bytes: u64,
        depart: u64,
    ) {
        let me = self.identity(from);
        let Some(adversary) = self.adversaries[from.index()].as_mut() else {
            let payload = if self.config.encode_messages {
                Payload::Raw(
                    codec::encode(&message).expect("engine messages encode within the limit"),
                )
            } else {
                Payload::Message(message)
            };
            self.transmit(from, to, payload, kind, bytes, depart);
            return;
        };
        let mut env = AdversaryEnv {
            now_ns: depart,
            me,
            key: &self.secrets[me.index()],
            committee: &self.committee,
            rng: &mut self.adversary_rng,
            declared: &mut self.declared,
        };
        let mut out = std::mem::take(&mut self.emissions);
        adversary.on_send(&mut env, to, message, &mut out);
        for tx in std::mem::take(&mut self.declared) {
            self.checker.submitted(tx.id());
        }
        for emission in out.drain(..) {
            let (kind, bytes) = match &emission.payload {
                Payload::Message(m) => self.size(m),
                Payload::Raw(b) => ("raw", b.len() as u64),
            };
            self.transmit(
                from,
                emission.to,
                emission.payload,
                kind,
                bytes,
                depart.saturating_add(emission.delay_ns),
            );
        }
        self.emissions = out;
    }

    /// Puts a payload on the link `from → to`: loss, partitions, uplink bandwidth, latency,
    /// jitter, GST, ordering and duplication, in that order.
    fn transmit(
        &mut self,
        from: NodeId,
        to: NodeId,
        payload: Payload<P::Message>,
        kind: &'static str,
        bytes: u64,
        depart: u64,
    ) {
        self.traffic.add(bytes);
        self.by_kind.entry(kind).or_default().add(bytes);
        self.nodes[from.index()].sent.add(bytes);
        if self.trace.enabled() {
            let instance = match &payload {
                Payload::Message(m) => m.instance(),
                Payload::Raw(_) => None,
            };
            self.trace.push(TraceEvent::Send { t_ns: depart, from, to, kind, bytes, instance });
        }
        if from == to {
            self.schedule(depart, Event::Arrive { to, from, payload, sent_ns: depart });
            return;
        }
        let net = &self.config.network;
        let (gst, loss, bandwidth_bps, latency_ns) =
            (net.gst, net.loss, net.bandwidth_bps, net.latency_ns);
        let synchronous = gst.is_some_and(|g| depart >= g.at_ns);
        let partitioned =
            !synchronous && net.partitions.iter().any(|p| p.separates(from, to, depart));
        if !synchronous {
            if partitioned {
                self.dropped.partition += 1;
                self.trace_drop(from, to, DropReason::Partition);
                return;
            }
            if loss > 0.0 && self.rng.random_bool(loss) {
                self.dropped.loss += 1;
                self.trace_drop(from, to, DropReason::Loss);
                return;
            }
        }
        // The sender's uplink sends one message after another.
        let sender = &mut self.nodes[from.index()];
        let start = depart.max(sender.uplink_free_at);
        let transmission = match bandwidth_bps {
            Some(bps) => (u128::from(bytes) * 8 * 1_000_000_000).div_ceil(u128::from(bps)) as u64,
            None => 0,
        };
        sender.uplink_free_at = start + transmission;
        let left = start + transmission;
        let mut delay = latency_ns + self.jitter();
        let mut arrival = left + delay;
        if let Some(gst) = gst {
            delay = delay.min(gst.delta_ns);
            arrival = if synchronous {
                left + delay
            } else {
                match gst.before {
                    BeforeGst::Hold => left.max(gst.at_ns) + delay,
                    BeforeGst::Delay { max_ns } => {
                        let extra = self.rng.random_range(0..=max_ns);
                        // Partial synchrony: sent before GST, delivered by GST + Δ.
                        (left + delay + extra).min(left.max(gst.at_ns) + gst.delta_ns)
                    }
                }
            };
        }
        let link = from.index() * self.nodes.len() + to.index();
        match self.config.network.reorder_ns {
            Some(max_ns) => arrival += self.rng.random_range(0..=max_ns),
            None => {
                arrival = arrival.max(self.link_last_arrival[link]);
                self.link_last_arrival[link] = arrival;
            }
        }
        let duplicate = self.config.network.duplicate;
        if duplicate > 0.0 && self.rng.random_bool(duplicate) {
            let later = arrival + self.rng.random_range(0..=self.config.network.latency_ns);
            self.schedule(
                later,
                Event::Arrive { to, from, payload: payload.clone(), sent_ns: depart },
            );
        }
        self.schedule(arrival, Event::Arrive { to, from, payload, sent_ns: depart });
    }

    fn jitter(&mut self) -> u64 {
        match self.config.network.jitter {
            Jitter::None => 0,
            Jitter::Uniform { max_ns } => self.rng.random_range(0..=max_ns),
            Jitter::Pareto { scale_ns, cap_ns } => {
                // Inverse transform: scale · (U^(-1/α) − 1), α = 1.5, U in (0, 1].
                let u = 1.0 - self.rng.random::<f64>();
                let extra = scale_ns as f64 * (u.powf(-1.0 / 1.5) - 1.0);
                (extra.min(cap_ns as f64)) as u64
            }
        }
    }

    fn trace_drop(&mut self, from: NodeId, to: NodeId, reason: DropReason) {
        if self.trace.enabled() {
            self.trace.push(TraceEvent::Drop { t_ns: self.now, from, to, reason });
        }
    }

    fn commit(&mut self, node: NodeId, block: Block, at: u64) {
        let n = &mut self.nodes[node.index()];
        let applied = n.app.apply(&block, &mut self.memo);
        n.finalized_height = block.height().0;
        n.state = applied.state_digest;
        n.log.update_digest(&block.digest());
        let honest = n.honest;
        if self.trace.enabled() {
            self.trace.push(TraceEvent::Commit {
                t_ns: at,
                node,
                height: block.height().0,
                digest: block.digest(),
                txs: block.batch().len() as u64,
            });
        }
        if !honest {
            return;
        }
        if let Some(hook) = self.client_hook.as_mut() {
            let mut out = std::mem::take(&mut self.hook_out);
            hook.on_commit(at, node, &block, &self.nodes[node.index()].app, &mut out);
            for (when, to, tx) in out.drain(..) {
                if to.index() < self.nodes.len() {
                    self.submit_at(when.max(at), to, tx);
                }
            }
            self.hook_out = out;
        }
        let first_at_height = self.checker.canonical().count() < block.height().0 as usize;
        self.checker.on_commit(at, node, &block, applied.state_digest);
        if first_at_height && self.checker.violations().is_empty() {
            let h = block.header();
            self.finalized_blocks.push(FinalizedBlock {
                height: h.height.0,
                round: h.round.0,
                proposer: h.proposer,
                digest: block.digest(),
                txs: block.batch().len() as u64,
                proposed_at_ns: h.created_at_ns,
                finalized_at_ns: at,
            });
        }
        for tx in block.batch().transactions() {
            if let Some((submitted, to)) = self.accepted.get(&tx.id())
                && *to == node
            {
                let latency = at.saturating_sub(*submitted);
                self.latencies.push(latency);
                if let Some(c) = self.latency_classes.as_mut() {
                    let class = (c.classify)(tx).min(c.samples.len() - 1);
                    c.samples[class].push(latency);
                }
            }
        }
    }

    fn generate_workload(&mut self) {
        let Some(w) = self.config.workload.clone() else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ WORKLOAD_STREAM);
        let keys: Vec<SecretKey> = (0..w.clients as u64)
            .map(|i| SecretKey::from_seed(self.config.seed ^ CLIENT_KEYS, i))
            .collect();
        let mut nonces = vec![0u64; w.clients];
        let mut t = w.start_ns as f64;
        let mean_gap_ns = 1e9 / w.rate_per_sec;
        loop {
            // Exponential inter-arrival times: a Poisson process.
            let u = 1.0 - rng.random::<f64>();
            t += -u.ln() * mean_gap_ns;
            if t >= w.end_ns as f64 || t >= self.config.duration_ns as f64 {
                break;
            }
            let client = rng.random_range(0..w.clients);
            let node = match &w.targets {
                Targets::Random => NodeId(rng.random_range(0..self.config.nodes as u16)),
                Targets::Nodes(list) => list[rng.random_range(0..list.len())],
            };
            let payload: Vec<u8> = (0..w.payload_bytes).map(|_| rng.random::<u8>()).collect();
            let tx = Transaction::new_signed(&keys[client], nonces[client], Bytes::from(payload))
                .expect("payload size was validated");
            nonces[client] += 1;
            self.submit_at(t as u64, node, tx);
        }
    }

    /// Ends the run: checks liveness if asked, and reports.
    pub fn finish(&mut self) -> SimReport {
        if let Some(live) = self.config.liveness {
            let gst = self.config.network.gst.map_or(0, |g| g.at_ns);
            // A node that is down at the end may have taken its transactions with it: only
            // those accepted by nodes still up are promised.
            let nodes = &self.nodes;
            let mut accepted: Vec<(Digest, u64)> = self
                .accepted
                .iter()
                .filter(|(_, (_, node))| nodes[node.index()].up)
                .map(|(tx, (t, _))| (*tx, *t))
                .collect();
            accepted.sort_unstable_by_key(|(tx, t)| (*t, *tx));
            self.checker.check_liveness(accepted.into_iter(), gst, live.bound_ns, self.now);
        }
        let longest_stall_ns = self
            .finalized_blocks
            .windows(2)
            .map(|w| w[1].finalized_at_ns.saturating_sub(w[0].finalized_at_ns))
            .max()
            .unwrap_or(0);
        let txs_finalized = self.checker.finalized_count() as u64;
        let seconds = self.now as f64 / 1e9;
        let nodes_detail = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeDetail {
                node: NodeId(i as u16),
                honest: n.honest,
                up: n.up,
                finalized_height: n.finalized_height,
                log_digest: n.log.finalize(),
                state_digest: n.state,
                sent: n.sent,
                decode_errors: n.decode_errors,
            })
            .collect();
        let violations = self.checker.violations().to_vec();
        SimReport {
            nodes: self.config.nodes,
            seed: self.config.seed,
            end_ns: self.now,
            safety_ok: violations.is_empty(),
            violations,
            submissions: self.submissions,
            txs_finalized,
            tps_sim: if seconds > 0.0 { txs_finalized as f64 / seconds } else { 0.0 },
            latency: LatencySummary::of(&mut self.latencies.clone()),
            latency_by_class: self.latency_classes.as_ref().map_or_else(Vec::new, |c| {
                c.names
                    .iter()
                    .zip(&c.samples)
                    .map(|(name, s)| (name.clone(), LatencySummary::of(&mut s.clone())))
                    .collect()
            }),
            messages: self.traffic,
            by_kind: self.by_kind.clone(),
            dropped: self.dropped,
            finalized_blocks: self.finalized_blocks.clone(),
            nodes_detail,
            longest_stall_ns,
            events: self.events,
            deliveries: self.deliveries,
            signature_checks: (self.memo.calls(), self.memo.computed()),
            trace_digest: self.trace.digest(),
            speed: SimSpeed {
                wall_seconds: self.wall_seconds,
                events_per_sec: self.events as f64 / self.wall_seconds.max(1e-9),
                deliveries_per_sec: self.deliveries as f64 / self.wall_seconds.max(1e-9),
            },
        }
    }
}

/// One node's actions, carried out in the simulator: messages leave when the node's handling
/// ends (`depart`), timers are events in the one queue.
struct NodeDriver<'a, P: Protocol, A: Application> {
    sim: &'a mut Simulation<P, A>,
    node: NodeId,
    depart: u64,
}

impl<P: Protocol, A: Application> Driver<P::Message, P::Timer> for NodeDriver<'_, P, A> {
    fn send(&mut self, to: NodeId, message: P::Message) {
        self.sim.send_to_member(self.node, to, message, self.depart);
    }

    fn broadcast(&mut self, message: P::Message) {
        self.sim.broadcast_from(self.node, message, self.depart);
    }

    fn set_timer(&mut self, timer: P::Timer, after_ns: u64) {
        let at = self.sim.now.saturating_add(after_ns);
        let input = Input::Timer { timer: timer.clone(), id: self.sim.seq };
        let id = self.sim.schedule(at, Event::Input { node: self.node, input });
        self.sim.nodes[self.node.index()].timers.arm(timer, id);
    }

    fn cancel_timer(&mut self, timer: P::Timer) {
        self.sim.nodes[self.node.index()].timers.cancel(&timer);
    }

    fn commit(&mut self, block: Block) {
        self.sim.commit(self.node, block, self.depart);
    }
}
