//! Three committee members on loopback: they link (each pair once, the smaller id dialling),
//! exchange a message each way, and refuse a dialler that signs its hello with another member's
//! key.
//!
//! ```sh
//! cargo run -p agora-net --example three_members
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agora_net::{Hello, Listener, NetConfig, NetLimits, Network, Side, probe};
use agora_types::{Committee, NodeId};
use bytes::Bytes;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (committee, keys) = Committee::deterministic(1, 3)?;
    // Port 0: the system picks free ports, learnt before the networks start.
    let listeners = (0..3)
        .map(|_| Listener::bind("127.0.0.1:0".parse()?).map_err(Into::into))
        .collect::<Result<Vec<Listener>, Box<dyn std::error::Error>>>()?;
    let addrs: Vec<SocketAddr> =
        listeners.iter().map(Listener::local_addr).collect::<Result<_, _>>()?;
    let mut members = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let peers: BTreeMap<NodeId, SocketAddr> =
            (0..3).filter(|j| *j != i).map(|j| (NodeId(j as u16), addrs[j])).collect();
        let config = NetConfig {
            me: NodeId(i as u16),
            key: keys[i].clone(),
            committee: committee.clone(),
            peers,
            limits: NetLimits::default(),
        };
        let (inbox_tx, inbox) = crossbeam_channel::bounded(1_024);
        members.push((Network::start(config, listener, inbox_tx)?, inbox));
    }
    for (i, (network, _)) in members.iter().enumerate() {
        network.sender().broadcast(Bytes::from(format!("hello from member {i}")));
    }
    for (i, (network, inbox)) in members.iter().enumerate() {
        for _ in 0..2 {
            let message = inbox.recv_timeout(Duration::from_secs(10))?;
            println!(
                "member {i} got {:?} from member {}",
                std::str::from_utf8(&message.bytes)?,
                message.from
            );
        }
        println!("member {i} is linked to {:?}", network.stats().connected);
    }
    // Member 0's id, member 2's key: refused, and counted by member 1.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut impostor = |hash: &[u8]| Hello::sign(NodeId(0), &keys[2], hash, Side::Dialler);
    let refused = runtime.block_on(probe(
        addrs[1],
        &committee,
        NodeId(1),
        &mut impostor,
        Duration::from_secs(5),
    ));
    println!("an impostor dialling member 1: {refused:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while members[1].0.stats().dropped("impersonation") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("member 1 counted: {:?}", members[1].0.stats().dropped);
    Ok(())
}
