//! Members linked over loopback: every message arrives from the member that sent it, links come
//! back after a restart, and what is not a member's own authenticated link is refused and
//! counted. Every test binds 127.0.0.1 port 0 and bounds its waits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agora_crypto::SecretKey;
use agora_net::{Hello, Inbound, Listener, NetConfig, NetLimits, NetStats, Network, Side, probe};
use agora_types::{Committee, NodeId};
use bytes::Bytes;
use crossbeam_channel::{Receiver, bounded};

const WAIT: Duration = Duration::from_secs(20);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Polls `done` until it holds or `WAIT` passes.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Member {
    network: Network,
    inbox: Receiver<Inbound>,
}

/// A committee of `n` on loopback, each member's network started with `limits`.
struct Cluster {
    committee: Committee,
    keys: Vec<SecretKey>,
    addrs: Vec<SocketAddr>,
    members: Vec<Option<Member>>,
}

impl Cluster {
    fn new(n: usize, limits: NetLimits) -> Self {
        let (committee, keys) = Committee::deterministic(7, n).unwrap();
        let listeners: Vec<Listener> =
            (0..n).map(|_| Listener::bind(loopback()).unwrap()).collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut cluster = Self { committee, keys, addrs, members: Vec::new() };
        for (i, listener) in listeners.into_iter().enumerate() {
            let member = cluster.start(i, listener, limits);
            cluster.members.push(Some(member));
        }
        cluster
    }

    fn config(&self, i: usize, limits: NetLimits) -> NetConfig {
        let peers: BTreeMap<NodeId, SocketAddr> = (0..self.addrs.len())
            .filter(|j| *j != i)
            .map(|j| (NodeId(j as u16), self.addrs[j]))
            .collect();
        NetConfig {
            me: NodeId(i as u16),
            key: self.keys[i].clone(),
            committee: self.committee.clone(),
            peers,
            limits,
        }
    }

    fn start(&self, i: usize, listener: Listener, limits: NetLimits) -> Member {
        let (tx, inbox) = bounded(100_000);
        let network = Network::start(self.config(i, limits), listener, tx).unwrap();
        Member { network, inbox }
    }

    fn member(&self, i: usize) -> &Member {
        self.members[i].as_ref().expect("running")
    }

    fn stats(&self, i: usize) -> NetStats {
        self.member(i).network.stats()
    }

    fn wait_linked(&self) {
        let n = self.addrs.len();
        wait_until("every link", || (0..n).all(|i| self.stats(i).connected.len() == n - 1));
    }

    /// Stops member `i` and starts it again on the same address.
    fn restart(&mut self, i: usize, limits: NetLimits) {
        self.members[i].take().unwrap().network.shutdown();
        let listener = Listener::bind(self.addrs[i]).unwrap();
        self.members[i] = Some(self.start(i, listener, limits));
    }
}

fn message(from: usize, to: usize, i: usize) -> Bytes {
    Bytes::from(format!("{from}->{to} #{i}").into_bytes())
}

#[test]
fn four_members_link_and_every_message_arrives_from_its_sender_in_order() {
    let cluster = Cluster::new(4, NetLimits::default());
    cluster.wait_linked();
    for from in 0..4 {
        let sender = cluster.member(from).network.sender();
        for to in (0..4).filter(|t| *t != from) {
            for i in 0..200 {
                assert!(sender.send(NodeId(to as u16), message(from, to, i)));
            }
        }
    }
    // One large message broadcast: it spans many Noise messages.
    let big = Bytes::from((0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    cluster.member(0).network.sender().broadcast(big.clone());
    for to in 0..4 {
        let inbox = &cluster.member(to).inbox;
        let expected = if to == 0 { 600 } else { 601 };
        let mut got: Vec<Inbound> = Vec::new();
        wait_until("the messages", || {
            got.extend(inbox.try_iter());
            got.len() >= expected
        });
        let mut next = [0usize; 4];
        for m in got {
            let from = m.from.index();
            if m.bytes.len() == big.len() {
                assert_eq!((from, &m.bytes), (0, &big));
                continue;
            }
            // Per sender, in the order sent.
            assert_eq!(m.bytes, message(from, to, next[from]), "at {to}");
            next[from] += 1;
        }
    }
    let stats = cluster.stats(1);
    assert!(stats.dropped.is_empty(), "{stats:?}");
    assert_eq!(stats.messages_received, 601);
}

#[test]
fn a_restarted_member_is_linked_again_whichever_side_dials() {
    let limits = NetLimits { backoff_min: Duration::from_millis(20), ..NetLimits::default() };
    let mut cluster = Cluster::new(3, limits);
    cluster.wait_linked();
    // Member 0 dials both others; member 2 is dialled by both.
    for victim in [0, 2] {
        cluster.restart(victim, limits);
        cluster.wait_linked();
        for from in 0..3 {
            let to = (from + 1) % 3;
            cluster.member(from).network.sender().send(NodeId(to as u16), message(from, to, 9));
            let inbox = &cluster.member(to).inbox;
            let mut seen = false;
            wait_until("a message after the restart", || {
                seen |= inbox.try_iter().any(|m| m.bytes == message(from, to, 9));
                seen
            });
        }
    }
}

#[test]
fn a_member_that_never_answers_fills_its_queue_and_the_rest_is_dropped_and_counted() {
    let (committee, keys) = Committee::deterministic(7, 2).unwrap();
    // Member 1's address is bound by a listener that never accepts: member 0 never links.
    let silent = std::net::TcpListener::bind(loopback()).unwrap();
    let limits = NetLimits { send_queue_messages: 4, ..NetLimits::default() };
    let config = NetConfig {
        me: NodeId(0),
        key: keys[0].clone(),
        committee,
        peers: BTreeMap::from([(NodeId(1), silent.local_addr().unwrap())]),
        limits,
    };
    let (tx, _inbox) = bounded(16);
    let network = Network::start(config, Listener::bind(loopback()).unwrap(), tx).unwrap();
    let sender = network.sender();
    let sent = (0..10).filter(|i| sender.send(NodeId(1), message(0, 1, *i))).count();
    assert_eq!(sent, 4);
    assert_eq!(network.stats().dropped("peer queue full"), 6);
    assert!(!sender.send(NodeId(5), message(0, 5, 0)), "not a peer");
    assert_eq!(network.stats().dropped("send to a non-peer"), 1);
}

#[test]
fn a_message_over_the_receivers_bound_ends_the_link_and_the_link_comes_back() {
    let limits = NetLimits { backoff_min: Duration::from_millis(20), ..NetLimits::default() };
    let mut cluster = Cluster::new(2, limits);
    let small = NetLimits { message_bytes_max: 1_024, ..limits };
    cluster.restart(1, small);
    cluster.wait_linked();
    let sender = cluster.member(0).network.sender();
    sender.send(NodeId(1), Bytes::from(vec![7u8; 4_096]));
    wait_until("the oversized message counted", || {
        cluster.stats(1).dropped("oversized message") == 1
    });
    cluster.wait_linked();
    let inbox = &cluster.member(1).inbox;
    let mut seen = false;
    wait_until("a message on the new link", || {
        sender.send(NodeId(1), message(0, 1, 1));
        std::thread::sleep(Duration::from_millis(20));
        seen |= inbox.try_iter().any(|m| m.bytes == message(0, 1, 1));
        seen
    });
}

/// One member (replica 1 of 4) listening, and a runtime to probe it from.
struct Target {
    cluster: Cluster,
    runtime: tokio::runtime::Runtime,
}

impl Target {
    fn new(limits: NetLimits) -> Self {
        let cluster = Cluster::new(4, limits);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { cluster, runtime }
    }

    fn probe(&self, hello: &mut (dyn FnMut(&[u8]) -> Hello + Send)) -> Result<(), String> {
        let addr = self.cluster.addrs[1];
        let committee = &self.cluster.committee;
        self.runtime
            .block_on(probe(addr, committee, NodeId(1), hello, Duration::from_secs(5)))
            .map_err(|e| e.to_string())
    }

    fn dropped(&self, reason: &str) -> u64 {
        self.cluster.stats(1).dropped(reason)
    }
}

#[test]
fn only_a_member_with_its_own_key_dialling_from_its_side_is_linked() {
    let target = Target::new(NetLimits::default());
    let keys = target.cluster.keys.clone();
    // Member 0 with its own key: linked (and member 1 answers as itself).
    let own = |hash: &[u8]| Hello::sign(NodeId(0), &keys[0], hash, Side::Dialler);
    assert_eq!(target.probe(&mut { own }), Ok(()));
    // Member 0's id with member 2's key: an impersonation.
    let impostor = |hash: &[u8]| Hello::sign(NodeId(0), &keys[2], hash, Side::Dialler);
    assert!(target.probe(&mut { impostor }).is_err());
    wait_until("the impersonation counted", || target.dropped("impersonation") == 1);
    // A key outside the committee, claiming a member's id or an id outside it.
    let outsider = SecretKey::from_seed(99, 0);
    let claims_member = |hash: &[u8]| Hello::sign(NodeId(0), &outsider, hash, Side::Dialler);
    assert!(target.probe(&mut { claims_member }).is_err());
    let claims_other = |hash: &[u8]| Hello::sign(NodeId(9), &outsider, hash, Side::Dialler);
    assert!(target.probe(&mut { claims_other }).is_err());
    wait_until("the outsiders counted", || {
        target.dropped("impersonation") == 2 && target.dropped("hello from a non-member") == 1
    });
    // Member 3 with its own key, but 1 < 3: member 1 dials it, not the other way round.
    let wrong_side = |hash: &[u8]| Hello::sign(NodeId(3), &keys[3], hash, Side::Dialler);
    assert!(target.probe(&mut { wrong_side }).is_err());
    // A hello signed for the listener's side, reflected.
    let reflected = |hash: &[u8]| Hello::sign(NodeId(0), &keys[0], hash, Side::Listener);
    assert!(target.probe(&mut { reflected }).is_err());
    wait_until("the wrong side and the reflection counted", || {
        target.dropped("dialled by the wrong side") == 1 && target.dropped("impersonation") == 3
    });
}

#[test]
fn a_hello_replayed_from_an_earlier_session_is_refused() {
    let target = Target::new(NetLimits::default());
    let key = target.cluster.keys[0].clone();
    let mut recorded = None;
    let mut record = |hash: &[u8]| {
        let hello = Hello::sign(NodeId(0), &key, hash, Side::Dialler);
        recorded = Some(hello.clone());
        hello
    };
    assert_eq!(target.probe(&mut record), Ok(()));
    let recorded = recorded.expect("a hello was made");
    let mut replay = |_: &[u8]| recorded.clone();
    assert!(target.probe(&mut replay).is_err());
    wait_until("the replay counted", || target.dropped("impersonation") == 1);
}

#[test]
fn bytes_that_are_not_a_handshake_and_silence_are_refused() {
    use std::io::Write;
    let limits =
        NetLimits { handshake_timeout: Duration::from_millis(300), ..NetLimits::default() };
    let target = Target::new(limits);
    let addr = target.cluster.addrs[1];
    // A frame header claiming more than a Noise message.
    let mut oversized = std::net::TcpStream::connect(addr).unwrap();
    oversized.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    // A frame of the right size that is not a Noise handshake message.
    let mut garbage = std::net::TcpStream::connect(addr).unwrap();
    garbage.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).unwrap();
    // Nothing at all.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    wait_until("the three refused", || {
        target.dropped("oversized frame") == 1
            && target.dropped("noise handshake failed") == 1
            && target.dropped("handshake timed out") == 1
    });
    // None of them reached the node, and the members' links are untouched.
    assert_eq!(target.cluster.stats(1).connected.len(), 3);
}

#[test]
fn a_member_that_keeps_reconnecting_is_rate_limited() {
    let limits = NetLimits { accepts_per_sec: 1, accept_burst: 5, ..NetLimits::default() };
    let target = Target::new(limits);
    target.cluster.wait_linked();
    let addr = target.cluster.addrs[1];
    let streams: Vec<_> = (0..20).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    // The three members' own links took three of the burst of five; the probes had two.
    wait_until("the rate limit", || target.dropped("connection rate limited") >= 15);
    drop(streams);
}
