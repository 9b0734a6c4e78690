//! Real processes: a four-node testnet of `agora node` processes on loopback under load, one
//! node killed with SIGKILL at drawn moments and started again from its configuration and
//! store. The victim catches up; every order the other nodes took is final exactly once in
//! every node's store; every store holds the same state digest at every height they share.
//!
//! The load goes to the three other nodes: what a killed node held only in its mempool dies
//! with it, as a client of a crashed server must resend (the API's acknowledgements will say
//! when an order is safe). The test starts only its own child processes, on 127.0.0.1 ports
//! it picks, and ends them by process id.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use agora::crypto::Digest;
use agora::market::agents::{AgentsConfig, generate_from};
use agora::node::client::{ClientRequest, ClientResponse, read_frame, write_frame};
use agora::testnet::{agree, client_addrs, spawn_node, status, terminate, wait_linked};
use agora_store::{BLOCKS_FILE, BlockStore, RedbBlockStore, SnapshotPolicy};
use agora_types::{Height, Transaction};

const N: usize = 4;
const RATE: f64 = 300.0;
const LOAD: Duration = Duration::from_secs(5);

fn agora(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_agora")).args(args).output().expect("runs");
    assert!(out.status.success(), "agora {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The node processes; whatever is still running at the end is killed, by process id.
struct Nodes {
    dir: std::path::PathBuf,
    children: Vec<Child>,
}

impl Nodes {
    /// Starts node `i`, its output in `node-<i>/run-<run>.log`.
    fn spawn(&self, i: usize, run: usize) -> Child {
        let node = self.dir.join(format!("node-{i}"));
        let log = node.join(format!("run-{run}.log"));
        spawn_node(Path::new(env!("CARGO_BIN_EXE_agora")), &node.join("config.toml"), &log).unwrap()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The node's ETH-USD book (bids, asks) as its API serves it, over plain HTTP/1.1.
fn book(api: SocketAddr) -> (serde_json::Value, serde_json::Value) {
    use std::io::{Read, Write};
    let mut socket = TcpStream::connect_timeout(&api, Duration::from_secs(5)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let path = "/v1/markets/ETH-USD/book?depth=1000";
    write!(socket, "GET {path} HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let book: serde_json::Value = serde_json::from_str(body).unwrap();
    (book["bids"].clone(), book["asks"].clone())
}

/// The last lines each run of node `i` logged.
fn log_tail(dir: &Path, i: usize) -> String {
    let mut out = String::new();
    for run in 0..3 {
        let path = dir.join(format!("node-{i}")).join(format!("run-{run}.log"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("run {run}:\n{}\n", lines[lines.len().saturating_sub(8)..].join("\n"));
        }
    }
    out
}

/// splitmix64, for the kill moments.
fn draw(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn killed_and_restarted(protocol: &str, victim: usize, seed: u64) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("testnet");
    let dir_arg = dir.to_str().unwrap();
    agora(&[
        "testnet",
        "init",
        "--nodes",
        "4",
        "--dir",
        dir_arg,
        "--base-port",
        "0",
        "--protocol",
        protocol,
    ]);
    if protocol == "streamlet" {
        // Epochs of a second: a victim down (and restarting) for less than three epochs misses
        // no block the others finalized, only the chain above it, which their resync sends
        // again. A Streamlet node that missed finalized blocks cannot fetch them yet (the
        // durable-storage issue's catch-up from peers' stores); with 50 ms epochs a restart
        // slowed by a loaded machine lost the race.
        for i in 0..N {
            let path = dir.join(format!("node-{i}")).join("config.toml");
            let mut file = agora::node::NodeFile::read(&path).unwrap();
            file.consensus.delta_ms = Some(500);
            file.write(&path).unwrap();
        }
    }
    let clients: Vec<SocketAddr> = client_addrs(&dir).unwrap();
    let mut nodes = Nodes { dir: dir.clone(), children: Vec::new() };
    for i in 0..N {
        let child = nodes.spawn(i, 0);
        nodes.children.push(child);
    }
    wait_linked(&clients, &mut nodes.children, Duration::from_secs(30)).unwrap();

    // The agents' orders (the testnet's genesis is theirs, seed 1), to the other three nodes.
    let config = AgentsConfig {
        traders: 32,
        market_makers: 2,
        liquidators: 1,
        trader_rate: RATE / 32.0,
        quote_every_ns: 100_000_000,
        end_ns: LOAD.as_nanos() as u64,
        large_orders: 0.0,
        frontrunner: false,
    };
    let (_, orders, _) = generate_from(&config, 1, N, 0);
    let others: Vec<usize> = (0..N).filter(|i| *i != victim).collect();
    let orders: Vec<(usize, Transaction)> =
        orders.into_iter().enumerate().map(|(k, o)| (others[k % others.len()], o.tx)).collect();
    let finals: Arc<Mutex<HashMap<Digest, u64>>> = Arc::default();
    let mut writers = HashMap::new();
    for &i in &others {
        let stream = TcpStream::connect(clients[i]).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let finals = finals.clone();
        thread::spawn(move || {
            let mut reader = reader;
            while let Ok(Some(response)) = read_frame::<ClientResponse>(&mut reader, 1 << 20) {
                if let ClientResponse::Final { tx, .. } = response {
                    *finals.lock().unwrap().entry(tx).or_default() += 1;
                }
            }
        });
        writers.insert(i, stream);
    }

    // Two kills at drawn moments of the load, each followed by a restart 200–700 ms later.
    let r = draw(seed);
    let kills =
        [Duration::from_millis(500 + r % 1_500), Duration::from_millis(2_500 + (r >> 20) % 1_500)];
    let downs = [
        Duration::from_millis(200 + (r >> 40) % 500),
        Duration::from_millis(200 + (r >> 50) % 500),
    ];
    let case =
        format!("{protocol}, victim {victim}, seed {seed}: kills at {kills:?}, down {downs:?}");
    let start = Instant::now();
    let mut next_kill = 0;
    let mut down_until: Option<Instant> = None;
    let submitted: HashSet<Digest> = orders.iter().map(|(_, tx)| tx.id()).collect();
    for (k, (node, tx)) in orders.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(k as f64 / RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if next_kill < kills.len() && start.elapsed() >= kills[next_kill] {
            // SIGKILL: no chance to sync anything.
            nodes.children[victim].kill().unwrap();
            nodes.children[victim].wait().unwrap();
            down_until = Some(Instant::now() + downs[next_kill]);
            next_kill += 1;
        }
        if down_until.is_some_and(|t| Instant::now() >= t) {
            nodes.children[victim] = nodes.spawn(victim, next_kill);
            down_until = None;
        }
        write_frame(writers.get_mut(&node).unwrap(), &ClientRequest::Submit(Box::new(tx))).unwrap();
    }
    if down_until.is_some() {
        thread::sleep(Duration::from_millis(300));
        nodes.children[victim] = nodes.spawn(victim, next_kill);
    }
    assert_eq!(next_kill, kills.len(), "{case}: the load ended before the kills");

    // Every order final at the node it entered, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while finals.lock().unwrap().len() < submitted.len() {
        let done = finals.lock().unwrap().len();
        assert!(Instant::now() < deadline, "{case}: {done} of {} final", submitted.len());
        thread::sleep(Duration::from_millis(100));
    }
    // The victim catches up with where the others were then (a chain that keeps growing, as
    // Streamlet's does with empty blocks, has no last height to wait for).
    let heights = |addrs: &[SocketAddr]| -> Vec<u64> {
        addrs.iter().map(|a| status(*a).map_or(0, |s| s.height)).collect()
    };
    let target = heights(&clients).into_iter().max().unwrap();
    loop {
        let now = heights(&clients);
        if now[victim] >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: heights {now:?}, the victim short of {target}; its log:\n{}",
            log_tail(&dir, victim)
        );
        thread::sleep(Duration::from_millis(100));
    }
    let statuses: Vec<_> = clients.iter().map(|a| status(*a).unwrap()).collect();
    let (agree, height) = agree(&statuses);
    let tips: Vec<u64> = statuses.iter().map(|s| s.height).collect();
    assert!(agree && height > 0, "{case}: digests at {height}, heights {tips:?}");
    assert!(
        finals.lock().unwrap().values().all(|count| *count == 1),
        "{case}: a final reported twice"
    );
    drop(writers);

    // Every node's API, the restarted one's included, serves the same book: its view came
    // back from the snapshot and the blocks replayed and fetched after it.
    let apis: Vec<SocketAddr> = (0..N)
        .map(|i| {
            let path = dir.join(format!("node-{i}")).join("config.toml");
            agora::node::NodeFile::read(&path).unwrap().api.expect("an [api] section").listen
        })
        .collect();
    loop {
        let books: Vec<_> = apis.iter().map(|a| book(*a)).collect();
        if books.iter().all(|b| *b == books[0]) {
            let levels = |side: &serde_json::Value| side.as_array().map_or(0, Vec::len);
            assert!(levels(&books[0].0) + levels(&books[0].1) > 0, "{case}: empty books");
            break;
        }
        assert!(Instant::now() < deadline, "{case}: the APIs' books differ: {books:?}");
        thread::sleep(Duration::from_millis(100));
    }

    // Stopped cleanly, every store holds each order exactly once and the same digests.
    for child in &nodes.children {
        terminate(child.id());
    }
    for (i, child) in nodes.children.iter_mut().enumerate() {
        let status = child.wait().unwrap();
        assert!(status.success(), "{case}: node {i} stopped with {status}");
    }
    let stores: Vec<RedbBlockStore> = (0..N)
        .map(|i| {
            let path = dir.join(format!("node-{i}")).join("store").join(BLOCKS_FILE);
            RedbBlockStore::open(path, SnapshotPolicy::default()).unwrap()
        })
        .collect();
    for (i, store) in stores.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut height = store.base().0.max(1);
        while height <= store.tip().0 {
            let blocks = store.blocks(Height(height), 256).unwrap();
            for block in &blocks {
                for tx in block.block.batch().transactions() {
                    assert!(seen.insert(tx.id()), "{case}: node {i} holds an order twice");
                }
            }
            height += blocks.len().max(1) as u64;
        }
        assert!(submitted.is_subset(&seen), "{case}: node {i}'s store lacks an order");
    }
    let tip = stores.iter().map(BlockStore::tip).min().unwrap();
    for h in 1..=tip.0 {
        let digests: Vec<_> = stores.iter().map(|s| s.state_digest(Height(h)).unwrap()).collect();
        assert!(digests.iter().all(|d| *d == digests[0]), "{case}: height {h} differs");
    }
}

#[test]
fn a_pbft_primary_killed_twice_under_load_restarts_and_nothing_is_lost() {
    killed_and_restarted("pbft", 0, 1);
}

#[test]
fn a_streamlet_leader_killed_twice_under_load_restarts_and_nothing_is_lost() {
    killed_and_restarted("streamlet", 1, 2);
}
