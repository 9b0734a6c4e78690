//! What the transport costs per message, against the floor of plain TCP on loopback:
//!
//! - `tcp_loopback`: 1,000 messages of 200 bytes (a transaction's size), length-prefixed, in
//!   one write over a plain loopback socket and read back: system calls and copies only;
//! - `agora_net`: the same 1,000 messages through `agora-net` between two members, from
//!   `NetSender::send` to the receiver's inbox: queues, framing, ChaCha20-Poly1305 both ways,
//!   the tasks' wake-ups.
//!
//! Each reads as messages per second; `agora_net` over `tcp_loopback` is what framing,
//! encryption and the runtime cost on top of the kernel.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use agora_net::{Listener, NetConfig, NetLimits, Network};
use agora_types::{Committee, NodeId};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MESSAGES: usize = 1_000;
const BYTES: usize = 200;

fn net(c: &mut Criterion) {
    let mut g = c.benchmark_group("net");
    g.sample_size(30);
    g.throughput(Throughput::Elements(MESSAGES as u64));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut reader, _) = listener.accept().unwrap();
    writer.set_nodelay(true).unwrap();
    let mut frames = Vec::with_capacity(MESSAGES * (BYTES + 4));
    for _ in 0..MESSAGES {
        frames.extend_from_slice(&(BYTES as u32).to_le_bytes());
        frames.extend_from_slice(&[7u8; BYTES]);
    }
    let mut sink = vec![0u8; frames.len()];
    g.bench_function("tcp_loopback", |b| {
        b.iter(|| {
            writer.write_all(&frames).unwrap();
            reader.read_exact(&mut sink).unwrap();
        })
    });

    let (committee, keys) = Committee::deterministic(3, 2).unwrap();
    let listeners = [
        Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    ];
    let addrs = [listeners[0].local_addr().unwrap(), listeners[1].local_addr().unwrap()];
    let mut inboxes = Vec::new();
    let mut networks = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let config = NetConfig {
            me: NodeId(i as u16),
            key: keys[i].clone(),
            committee: committee.clone(),
            peers: BTreeMap::from([(NodeId(1 - i as u16), addrs[1 - i])]),
            limits: NetLimits::default(),
        };
        let (tx, rx) = crossbeam_channel::bounded(65_536);
        networks.push(Network::start(config, listener, tx).unwrap());
        inboxes.push(rx);
    }
    while networks[0].stats().connected.is_empty() || networks[1].stats().connected.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sender = networks[0].sender();
    let message = Bytes::from(vec![7u8; BYTES]);
    g.bench_function("agora_net", |b| {
        b.iter(|| {
            for _ in 0..MESSAGES {
                sender.send(NodeId(1), message.clone());
            }
            for _ in 0..MESSAGES {
                inboxes[1].recv_timeout(Duration::from_secs(10)).expect("delivered");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, net);
criterion_main!(benches);
