//! Four nodes in one process, each with its own network on loopback and its own store
//! directory: what is submitted anywhere is final everywhere with the same state digests, and
//! a node stopped and started again from its directory replays, catches up and goes on.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use agora_crypto::{Digest, SecretKey};
use agora_engines::EngineConfig;
use agora_hotstuff::{ChainRule, HotStuffConfig};
use agora_market::StoredApplication;
use agora_net::{Listener, NetLimits};
use agora_node::{Node, NodeConfig};
use agora_pbft::PbftConfig;
use agora_runtime::{ReplicaEvent, ReplicaOptions};
use agora_simplex::SimplexConfig;
use agora_streamlet::StreamletConfig;
use agora_types::{Committee, NodeId, Transaction};
use bytes::Bytes;

const N: usize = 4;
const WAIT: Duration = Duration::from_secs(60);

struct Testnet {
    committee: Committee,
    keys: Vec<SecretKey>,
    addrs: Vec<SocketAddr>,
    engine: EngineConfig,
    nodes: Vec<Option<Node>>,
    /// Per node: its own transactions seen final, and the state digest of each applied height.
    finals: Vec<HashSet<Digest>>,
    digests: Vec<BTreeMap<u64, Digest>>,
}

impl Testnet {
    fn new(engine: EngineConfig, root: &Path) -> Self {
        let (committee, keys) = Committee::deterministic(5, N).unwrap();
        let listeners: Vec<Listener> =
            (0..N).map(|_| Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap()).collect();
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut net = Testnet {
            committee,
            keys,
            addrs,
            engine,
            nodes: Vec::new(),
            finals: vec![HashSet::new(); N],
            digests: vec![BTreeMap::new(); N],
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let node = Node::start(net.config(i, root), listener).unwrap();
            net.nodes.push(Some(node));
        }
        net
    }

    fn config(&self, i: usize, root: &Path) -> NodeConfig {
        NodeConfig {
            me: NodeId(i as u16),
            key: self.keys[i].clone(),
            committee: self.committee.clone(),
            peers: (0..N).filter(|j| *j != i).map(|j| (NodeId(j as u16), self.addrs[j])).collect(),
            store: root.join(format!("node-{i}")),
            engine: self.engine,
            application: StoredApplication::TxLog { verify_signatures: true },
            replica: ReplicaOptions::new(N),
            net: NetLimits { backoff_min: Duration::from_millis(20), ..NetLimits::default() },
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("running")
    }

    /// Reads every node's events.
    fn poll(&mut self) {
        for i in 0..N {
            let Some(node) = &self.nodes[i] else { continue };
            for event in node.events().try_iter() {
                match event {
                    ReplicaEvent::Final { tx, .. } => {
                        self.finals[i].insert(tx);
                    }
                    ReplicaEvent::Applied { height, state_digest } => {
                        self.digests[i].insert(height, state_digest);
                    }
                }
            }
        }
    }

    /// Waits until every node applied `height`; the digests there agree.
    fn wait_height(&mut self, height: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.poll();
            if (0..N).all(|i| self.digests[i].contains_key(&height)) {
                break;
            }
            assert!(Instant::now() < deadline, "height {height} not reached: {:?}", self.tips());
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = self.digests[0][&height];
        assert!((0..N).all(|i| self.digests[i][&height] == first), "digests differ at {height}");
    }

    fn tips(&self) -> Vec<Option<u64>> {
        self.digests.iter().map(|d| d.keys().next_back().copied()).collect()
    }

    fn tip(&self) -> u64 {
        self.tips().into_iter().map(|t| t.unwrap_or(0)).min().unwrap_or(0)
    }
}

fn txs(range: std::ops::Range<u64>) -> Vec<Transaction> {
    let client = SecretKey::from_seed(77, 0);
    range
        .map(|i| Transaction::new_signed(&client, i, Bytes::from(vec![i as u8; 32])).unwrap())
        .collect()
}

/// Submits `txs` round-robin to the nodes `to` and waits until each is final at the node it
/// entered.
fn submit_and_settle(net: &mut Testnet, to: &[usize], txs: &[Transaction]) {
    let mut entered = Vec::new();
    for (k, tx) in txs.iter().enumerate() {
        let i = to[k % to.len()];
        assert!(net.node(i).submit(tx.clone()), "node {i}'s inbox is full");
        entered.push((i, tx.id()));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        net.poll();
        let waiting = entered.iter().filter(|(i, id)| !net.finals[*i].contains(id)).count();
        if waiting == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} not final: tips {:?}", net.tips());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn a_testnet_agrees_and_a_restarted_node_catches_up(engine: EngineConfig) {
    let root = tempfile::tempdir().unwrap();
    let mut net = Testnet::new(engine, root.path());
    let all = [0, 1, 2, 3];
    submit_and_settle(&mut net, &all, &txs(0..400));
    let tip = net.tip();
    net.wait_height(tip);
    // Node 3 stops (its stores synced) and starts again from its directory, on its address.
    let report = net.nodes[3].take().unwrap().stop().unwrap();
    assert!(report.height >= tip, "{report:?}");
    // What the others finalize meanwhile, it must fetch from them.
    submit_and_settle(&mut net, &[0, 1, 2], &txs(400..600));
    let missed = net.tips()[0].unwrap();
    let listener = Listener::bind(net.addrs[3]).unwrap();
    let node = Node::start(net.config(3, root.path()), listener).unwrap();
    assert!(node.replayed_blocks() > 0, "the application came back from the block store");
    net.nodes[3] = Some(node);
    net.digests[3].clear();
    submit_and_settle(&mut net, &all, &txs(600..800));
    // Every node, node 3 included, applies the others' tip: past what it missed.
    let tip = net.tips()[0].unwrap();
    assert!(tip > missed);
    net.wait_height(tip);
    // Every link comes back: the dialling side retries with backoff, so allow it a while (a
    // responsive protocol can reach the tip before the backoff ends).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for i in 0..N {
        let mut stats = net.node(i).net_stats();
        while stats.connected.len() < N - 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            stats = net.node(i).net_stats();
        }
        assert_eq!(stats.connected.len(), N - 1, "node {i}: {stats:?}");
        assert_eq!(stats.dropped("impersonation"), 0);
    }
    for node in net.nodes.into_iter().flatten() {
        let report = node.stop().unwrap();
        assert!(report.store_error.is_none() && report.journal_error.is_none(), "{report:?}");
    }
}

#[test]
fn pbft_nodes_agree_over_loopback_and_a_restarted_node_catches_up() {
    let mut pbft = PbftConfig::new(1_000_000_000);
    pbft.batch.txs_max = 50;
    a_testnet_agrees_and_a_restarted_node_catches_up(EngineConfig::Pbft(pbft));
}

#[test]
fn streamlet_nodes_agree_over_loopback_and_a_restarted_node_catches_up() {
    let mut streamlet = StreamletConfig::new(50_000_000);
    streamlet.batch.txs_max = 50;
    a_testnet_agrees_and_a_restarted_node_catches_up(EngineConfig::Streamlet(streamlet));
}

#[test]
fn simplex_nodes_agree_over_loopback_and_a_restarted_node_catches_up() {
    let mut simplex = SimplexConfig::new(50_000_000);
    simplex.batch.txs_max = 50;
    simplex.empty_block_after_ns = simplex.delta_ns;
    a_testnet_agrees_and_a_restarted_node_catches_up(EngineConfig::Simplex(simplex));
}

#[test]
fn hotstuff_nodes_agree_over_loopback_and_a_restarted_node_catches_up() {
    let mut hotstuff = HotStuffConfig::new(50_000_000).with_chain(ChainRule::Two);
    hotstuff.batch.txs_max = 50;
    hotstuff.empty_block_after_ns = hotstuff.delta_ns;
    a_testnet_agrees_and_a_restarted_node_catches_up(EngineConfig::HotStuff(hotstuff));
}
