//! Four PBFT nodes on loopback, each with its own network and store directory: 1,000 signed
//! transactions submitted round-robin, each reported final by the node it entered, and the
//! state digests compared at the last common height.
//!
//! ```sh
//! cargo run -p agora-node --example four_nodes
//! ```

use std::time::{Duration, Instant};

use agora_crypto::SecretKey;
use agora_engines::EngineConfig;
use agora_market::StoredApplication;
use agora_net::{Listener, NetLimits};
use agora_node::{Node, NodeConfig};
use agora_pbft::PbftConfig;
use agora_runtime::{ReplicaEvent, ReplicaOptions};
use agora_types::{Committee, NodeId, Transaction};
use bytes::Bytes;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const N: usize = 4;
    let root = tempfile::tempdir()?;
    let (committee, keys) = Committee::deterministic(1, N)?;
    let listeners = (0..N)
        .map(|_| Listener::bind("127.0.0.1:0".parse().expect("an address")))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = listeners.iter().map(Listener::local_addr).collect::<Result<Vec<_>, _>>()?;
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let config = NodeConfig {
            me: NodeId(i as u16),
            key: keys[i].clone(),
            committee: committee.clone(),
            peers: (0..N).filter(|j| *j != i).map(|j| (NodeId(j as u16), addrs[j])).collect(),
            store: root.path().join(format!("node-{i}")),
            engine: EngineConfig::Pbft(PbftConfig::new(1_000_000_000)),
            application: StoredApplication::TxLog { verify_signatures: true },
            replica: ReplicaOptions::new(N),
            net: NetLimits::default(),
        };
        nodes.push(Node::start(config, listener)?);
    }
    let client = SecretKey::from_seed(9, 0);
    let start = Instant::now();
    for i in 0..1_000u64 {
        let tx = Transaction::new_signed(&client, i, Bytes::from(i.to_le_bytes().to_vec()))?;
        nodes[i as usize % N].submit(tx);
    }
    let (mut finals, mut digests) = (0, vec![std::collections::BTreeMap::new(); N]);
    let deadline = start + Duration::from_secs(60);
    while finals < 1_000 && Instant::now() < deadline {
        for (i, node) in nodes.iter().enumerate() {
            for event in node.events().try_iter() {
                match event {
                    ReplicaEvent::Final { .. } => finals += 1,
                    ReplicaEvent::Applied { height, state_digest } => {
                        digests[i].insert(height, state_digest);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{finals} of 1000 transactions final in {:.2?}", start.elapsed());
    let common = digests.iter().filter_map(|d| d.keys().next_back().copied()).min().unwrap_or(0);
    let agree = digests.iter().all(|d| d.get(&common) == digests[0].get(&common));
    println!("state digests at height {common} agree: {agree}");
    for node in nodes {
        let id = node.id();
        let stats = node.net_stats();
        let report = node.stop()?;
        println!(
            "node {id}: height {}, {} messages sent, {} received",
            report.height, stats.messages_sent, stats.messages_received
        );
    }
    Ok(())
}
