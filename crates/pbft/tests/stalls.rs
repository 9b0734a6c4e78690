//! Liveness stalls found by the swarm, each reduced to the smallest committee and schedule that
//! shows it, with every delivery chosen by hand.
//!
//! All need a committee where exactly a quorum is up, so that one replica that falls out of a
//! view stalls everyone: n = 4 with replica 0 (the primary of view 0) crashed for good.
//!
//! - `a_pre_prepare_that_overtakes_its_new_view_is_not_lost` (swarm seed 83000554, n = 7): the
//!   new primary sends NEW-VIEW, then its first PRE-PREPARE; a backup that gets them in the
//!   other order used to drop the pre-prepare, and no primary sends one twice.
//! - `a_replica_restarted_in_a_view_change_rejoins_and_its_requests_are_final` (swarm seed
//!   93000047, n = 7): a replica that crashed while changing view, and missed the NEW-VIEW, used
//!   to restart with no timer armed, so it never asked again, and the requests only it held
//!   were never final.
//! - `replicas_split_across_two_view_changes_come_together` (swarm seed 660004073, n = 7): the
//!   replicas still up are split between two view changes, each too few for a quorum and the
//!   higher one too few to pull the others on; the view changes that got the leaders there were
//!   lost on the way to the others, and their senders crashed. Used to wait for good.
//! - `the_new_view_wait_stops_doubling_at_its_cap` (swarm seeds 680002041 and 680017641):
//!   failed view changes before GST doubled the NEW-VIEW wait without bound, so that when
//!   the next primary was the faulty one, the wait outlasted any deadline.

use std::collections::VecDeque;

use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::DirectCheck;
use agora_pbft::{Pbft, PbftConfig, PbftMessage, PbftTimer};
use agora_types::{Committee, NodeId, SecretKey, Transaction, View};
use bytes::Bytes;

const T: u64 = 1_000_000_000;
const N: usize = 4;

/// One message in flight.
struct Envelope {
    from: NodeId,
    to: NodeId,
    message: PbftMessage,
}

/// Four replicas and a network whose deliveries the test orders: messages wait in one FIFO
/// queue, a test may hold some back, and timers fire only when the test says so.
struct Cluster {
    engines: Vec<Pbft>,
    mempools: Vec<InMemoryMempool>,
    up: [bool; N],
    now: u64,
    queue: VecDeque<Envelope>,
    held: Vec<Envelope>,
    /// Armed timers per replica, in the order they were set.
    timers: Vec<Vec<(PbftTimer, u64)>>,
    commits: Vec<Vec<Transaction>>,
}

impl Cluster {
    /// Four replicas; replica `down` (if below `N`) is down from the start.
    fn new(down: usize) -> Self {
        Self::with_config(down, PbftConfig::new(T))
    }

    /// The same, every replica with `config`.
    fn with_config(down: usize, config: PbftConfig) -> Self {
        let (committee, keys): (Committee, Vec<SecretKey>) =
            Committee::deterministic(5, N).unwrap();
        let engines = (0..N)
            .map(|i| {
                let me = NodeId(i as u16);
                Pbft::new(config, committee.clone(), me, keys[i].clone())
                    .expect("a valid configuration")
            })
            .collect();
        let mut cluster = Self {
            engines,
            mempools: (0..N).map(|_| InMemoryMempool::new(MempoolLimits::default())).collect(),
            up: std::array::from_fn(|i| i != down),
            now: 0,
            queue: VecDeque::new(),
            held: Vec::new(),
            timers: vec![Vec::new(); N],
            commits: vec![Vec::new(); N],
        };
        for i in (0..N).filter(|&i| i != down) {
            cluster.with(i, |engine, ctx| engine.on_start(ctx));
        }
        cluster
    }

    /// Runs one handler of replica `i` and carries out what it asked for.
    fn with(
        &mut self,
        i: usize,
        handler: impl FnOnce(&mut Pbft, &mut agora_consensus::Ctx<'_, Pbft>),
    ) {
        let mut actions = Vec::new();
        let mut check = DirectCheck;
        let me = NodeId(i as u16);
        let mut ctx = Context::new(self.now, me, &mut actions, &mut self.mempools[i], &mut check);
        handler(&mut self.engines[i], &mut ctx);
        for action in actions {
            match action {
                Action::Send { to, message } => {
                    self.queue.push_back(Envelope { from: me, to, message })
                }
                Action::Broadcast { message } => {
                    for to in (0..N).filter(|&j| j != i) {
                        let to = NodeId(to as u16);
                        self.queue.push_back(Envelope { from: me, to, message: message.clone() });
                    }
                }
                Action::SetTimer { timer, after_ns } => {
                    self.timers[i].retain(|(t, _)| *t != timer);
                    self.timers[i].push((timer, self.now + after_ns));
                }
                Action::CancelTimer { timer } => self.timers[i].retain(|(t, _)| *t != timer),
                // This harness models stable storage of everything: records need no journal.
                Action::Persist { .. } => {}
                Action::Commit { block, .. } => {
                    self.commits[i].extend(block.batch().transactions().iter().cloned())
                }
            }
        }
    }

    fn submit(&mut self, i: usize, tx: Transaction) {
        self.with(i, |engine, ctx| {
            engine.on_transaction(ctx, tx).unwrap();
        });
    }

    /// Delivers queued messages until none is left, holding back those `hold` picks; messages
    /// to or from a replica that is down are lost.
    fn deliver(&mut self, hold: impl Fn(&Envelope) -> bool) {
        let mut budget = 100_000;
        while let Some(envelope) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the replicas never stop talking");
            let (from, to) = (envelope.from.0 as usize, envelope.to.0 as usize);
            if !self.up[from] || !self.up[to] {
                continue;
            }
            if hold(&envelope) {
                self.held.push(envelope);
                continue;
            }
            self.with(to, |engine, ctx| engine.on_message(ctx, envelope.from, envelope.message));
        }
    }

    /// Puts the held messages back in the queue, in the order they were held.
    fn release(&mut self) {
        self.queue.extend(self.held.drain(..));
    }

    /// Moves time to `t`: fires the armed timers of the replicas that are up, earliest first,
    /// until none is due by `t`, delivering what each one causes (with `hold` applied).
    fn advance_to(&mut self, t: u64, hold: impl Fn(&Envelope) -> bool + Copy) {
        loop {
            let next = (0..N)
                .filter(|&i| self.up[i])
                .flat_map(|i| self.timers[i].iter().map(move |(timer, at)| (*at, i, *timer)))
                .filter(|(at, _, _)| *at <= t)
                .min_by_key(|(at, i, _)| (*at, *i));
            let Some((at, i, timer)) = next else { break };
            self.timers[i].retain(|(t, _)| *t != timer);
            self.now = self.now.max(at);
            self.with(i, |engine, ctx| engine.on_timer(ctx, timer));
            self.deliver(hold);
        }
        self.now = self.now.max(t);
    }

    fn crash(&mut self, i: usize) {
        self.up[i] = false;
        self.timers[i].clear();
    }

    fn restart(&mut self, i: usize) {
        self.up[i] = true;
        self.with(i, |engine, ctx| engine.on_start(ctx));
    }

    /// True when every replica in `replicas` has committed `tx`.
    fn committed_at(&self, replicas: &[usize], tx: &Transaction) -> bool {
        replicas.iter().all(|&i| self.commits[i].iter().any(|c| c.id() == tx.id()))
    }
}

fn tx(nonce: u64) -> Transaction {
    Transaction::new_signed(&SecretKey::from_seed(91, 0), nonce, Bytes::from_static(b"order"))
        .unwrap()
}

fn is_new_view_to(envelope: &Envelope, to: u16) -> bool {
    envelope.to == NodeId(to) && matches!(envelope.message, PbftMessage::NewView(_))
}

fn is_forward(envelope: &Envelope) -> bool {
    matches!(envelope.message, PbftMessage::Forward(_))
}

#[test]
fn a_pre_prepare_that_overtakes_its_new_view_is_not_lost() {
    let mut cluster = Cluster::new(0);
    // A request reaches replica 2, whose forward to the crashed primary is lost. Its timer sends
    // the request to all and asks for view 1; replica 3 joins, and primary 1 has a quorum.
    let request = tx(0);
    cluster.submit(2, request.clone());
    cluster.deliver(|_| false);
    // Primary 1 sends NEW-VIEW(1) and then PRE-PREPARE(1, 1); replica 2 gets the pre-prepare
    // first.
    cluster.advance_to(2 * T, |e| is_new_view_to(e, 2));
    // (Replica 3 relays NEW-VIEW(1) too, when replica 2 asks for view 1 again: also held.)
    assert!(!cluster.held.is_empty(), "the NEW-VIEW to replica 2 is held back");
    assert!(cluster.engines[2].is_view_changing());
    cluster.release();
    cluster.deliver(|_| false);
    for i in 1..N {
        assert_eq!(cluster.engines[i].view(), View(1), "replica {i}");
        assert!(!cluster.engines[i].is_view_changing(), "replica {i}");
    }
    // With replicas 1, 2 and 3 exactly a quorum, the request is final with no further timeout.
    assert!(cluster.committed_at(&[1, 2, 3], &request), "commits: {:?}", cluster.commits);
}

#[test]
fn a_replica_restarted_in_a_view_change_rejoins_and_its_requests_are_final() {
    let mut cluster = Cluster::new(N);
    // Replicas 1 and 2 hold a request that primary 0 never gets; replica 3 holds one that only
    // it has.
    let shared = tx(0);
    let only_at_3 = tx(1);
    cluster.submit(1, shared.clone());
    cluster.submit(2, shared.clone());
    cluster.submit(3, only_at_3.clone());
    let lost = |e: &Envelope| {
        (is_forward(e) && (e.to == NodeId(0) || e.from == NodeId(3))) || e.to == NodeId(3)
    };
    // Replicas 1, 2 and 3 time out and ask for view 1; replica 0 joins them, and view 1 starts
    // without replica 3, which crashes before NEW-VIEW(1) reaches it.
    cluster.deliver(lost);
    cluster.advance_to(T, lost);
    cluster.crash(3);
    cluster.held.clear();
    cluster.deliver(|_| false);
    assert!(cluster.committed_at(&[0, 1, 2], &shared), "commits: {:?}", cluster.commits);
    assert_eq!(cluster.engines[3].view(), View(1));
    assert!(cluster.engines[3].is_view_changing(), "replica 3 missed NEW-VIEW(1)");
    // It restarts with the state it had and no timers; the others, with nothing pending, have
    // no reason to change view.
    cluster.advance_to(3 * T, |_| false);
    cluster.restart(3);
    cluster.deliver(|_| false);
    // It asked again, was sent the NEW-VIEW, and is in view 1; its request reached the primary.
    assert_eq!(cluster.engines[3].view(), View(1));
    assert!(!cluster.engines[3].is_view_changing(), "replica 3 still waits for NEW-VIEW(1)");
    cluster.advance_to(20 * T, |_| false);
    assert!(cluster.committed_at(&[0, 1, 2], &only_at_3), "commits: {:?}", cluster.commits);
}

fn is_view_change_lost(e: &Envelope) -> bool {
    // Before GST: replica 3's VIEW-CHANGE for view 1 reaches no one, and no VIEW-CHANGE for
    // view 2 reaches anyone.
    matches!(&e.message, PbftMessage::ViewChange(vc)
        if (e.from == NodeId(3) && vc.new_view == View(1)) || vc.new_view == View(2))
}

#[test]
fn replicas_split_across_two_view_changes_come_together() {
    let mut cluster = Cluster::new(0);
    let request = tx(0);
    for i in 1..N {
        cluster.submit(i, request.clone());
    }
    // Primary 0 is down: the request timers run out and replicas 1, 2 and 3 ask for view 1.
    // Replica 3 hears all three and waits for NEW-VIEW(1); primary 1 and replica 2 never hear
    // replica 3, so primary 1 has no quorum. Replica 3's NEW-VIEW timer runs out and it asks
    // for view 2, which no one hears either.
    cluster.deliver(is_view_change_lost);
    cluster.advance_to(4 * T, is_view_change_lost);
    assert_eq!(cluster.engines[3].view(), View(2));
    for i in 1..=2 {
        assert_eq!(cluster.engines[i].view(), View(1), "replica {i}");
        assert!(cluster.engines[i].is_view_changing(), "replica {i}");
    }
    // GST: nothing is lost from now on. Replicas 1 and 2 have two view changes for view 1
    // (short of a quorum) and one for view 2 (short of f + 1): only the view changes replica 3
    // holds, sent by replicas that may have crashed since, can bring them on.
    cluster.held.clear();
    cluster.advance_to(40 * T, |_| false);
    assert!(cluster.committed_at(&[1, 2, 3], &request), "commits: {:?}", cluster.commits);
}

fn is_new_view(envelope: &Envelope) -> bool {
    matches!(envelope.message, PbftMessage::NewView(_))
}

/// When `request`, submitted at time 0 to replicas 1 to 3 with primary 0 down, is final at all
/// three, when every NEW-VIEW sent before `gst` is lost: views 1 to 3 fail (their primaries
/// are up, but no one hears them), and view 4's primary is replica 0.
fn final_at(config: PbftConfig, gst: u64) -> Option<u64> {
    let mut cluster = Cluster::with_config(0, config);
    let request = tx(0);
    for i in 1..N {
        cluster.submit(i, request.clone());
    }
    cluster.deliver(is_new_view);
    let mut t = 0;
    while t < 200 * T {
        t += T / 4;
        let lost = t <= gst;
        cluster.advance_to(t, |e| lost && is_new_view(e));
        if !lost {
            cluster.held.clear();
        }
        if cluster.committed_at(&[1, 2, 3], &request) {
            return Some(t);
        }
    }
    None
}

#[test]
fn the_new_view_wait_stops_doubling_at_its_cap() {
    // Before GST the NEW-VIEWs of views 1, 2 and 3 are lost (T + 2T + 4T + 8T of waiting);
    // then view 4's primary is down. Uncapped, its wait is 16T and the next 32T; capped at
    // three doublings, 8T each.
    let gst = 15 * T;
    let capped = final_at(PbftConfig::new(T), gst).expect("final with the cap");
    let uncapped = PbftConfig { new_view_doublings_max: 20, ..PbftConfig::new(T) };
    let uncapped = final_at(uncapped, gst).expect("final without the cap, much later");
    eprintln!("final at {} T capped, {} T uncapped", capped / T, uncapped / T);
    assert!(capped + 8 * T <= uncapped, "capped at {capped}, uncapped at {uncapped}");
}
