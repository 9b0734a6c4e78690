//! A local testnet of real node processes: `agora testnet init` writes the keys, the genesis and
//! one configuration per node; `agora testnet run` starts the nodes, waits until they are
//! linked, runs the market's agents against them through each node's submission port, stops
//! them, and reports as a wall run does.
//!
//! Like narwhal's `fab local` and commonware alto's `deploy local`: everything on loopback,
//! every process started here ended here, by its process id.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use agora_client::Client;
use agora_crypto::Digest;
use agora_engines::ProtocolChoice;
use agora_market::{ExecutionOrder, StoredApplication};
use agora_node::client::{ClientRequest, ClientResponse, NodeStatus, read_frame, write_frame};

use crate::load::{self, Order, Schedule};
use agora_node::{
    ApiSection, ClientSection, ConsensusSection, GenesisFile, NetSection, NodeFile, NodeSection,
    PeerEntry, write_key,
};
use agora_types::{NodeId, Transaction};
use serde::{Deserialize, Serialize};

use crate::agents::{self, AgentsConfig};

/// The testnet's own file: what `run` needs to regenerate the agents' orders.
const MANIFEST: &str = "testnet.toml";
/// Nodes in a testnet at most.
pub const NODES_MAX: usize = 64;
/// Traders, market makers and liquidators of the testnet's market.
const TRADERS: usize = 32;
const MAKERS: usize = 2;
const LIQUIDATORS: usize = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    nodes: usize,
    protocol: String,
    seed: u64,
    /// Runs started so far: run k signs its orders from nonce k << 32, so that every run's
    /// orders are new to the market.
    #[serde(default)]
    runs: u64,
}

/// `agora testnet init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitOptions {
    /// Nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=NODES_MAX as i64))]
    pub nodes: u16,
    /// Where the testnet's files go (created; must not hold a testnet yet).
    #[arg(long)]
    pub dir: PathBuf,
    /// The protocol.
    #[arg(long, value_enum, default_value_t = ProtocolChoice::Pbft)]
    pub protocol: ProtocolChoice,
    /// The first port: node i listens for peers on PORT + i, for clients on PORT + N + i, and
    /// serves its HTTP API on PORT + 2N + i. 0 picks free ports now.
    #[arg(long, default_value_t = 26_600)]
    pub base_port: u16,
    /// Seed of the market's agents (their keys, funded in the genesis, and their orders).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `agora testnet run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// The testnet's directory, as `init` wrote it.
    #[arg(long)]
    pub dir: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Orders per second, open loop.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The testnet market's agents, sending `rate` orders per second for `duration_s` seconds.
pub(crate) fn market_agents(duration_s: f64, rate: f64) -> AgentsConfig {
    AgentsConfig {
        traders: TRADERS,
        market_makers: MAKERS,
        liquidators: LIQUIDATORS,
        trader_rate: rate / TRADERS as f64,
        quote_every_ns: 100_000_000,
        end_ns: (duration_s * 1e9) as u64,
        large_orders: 0.0,
        frontrunner: false,
    }
}

/// `n` ports: `base..base + n`, or free ones picked now when `base` is 0.
fn ports(base: u16, n: usize) -> Result<Vec<u16>, String> {
    if base != 0 {
        let last = base as usize + n - 1;
        if last > u16::MAX as usize {
            return Err(format!("--base-port {base}: the ports would pass 65535"));
        }
        return Ok((0..n).map(|i| base + i as u16).collect());
    }
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// Writes a testnet: `DIR/testnet.toml`, `DIR/genesis.json`, and per node `DIR/node-<i>/`
/// with `key.toml` (mode 0600), `config.toml` and its store directory. Returns the
/// configuration paths.
pub fn init(options: &InitOptions) -> Result<Vec<PathBuf>, String> {
    let consensus = ConsensusSection {
        protocol: options.protocol.name().to_string(),
        view_timeout_ms: (options.protocol == ProtocolChoice::Pbft).then_some(1_000),
        delta_ms: (options.protocol != ProtocolChoice::Pbft).then_some(50),
        batch_txs_max: Some(500),
    };
    init_with(&options.dir, options.nodes as usize, &consensus, options.seed, options.base_port)
}

/// [`init`] with the protocol's section given whole: `n` nodes in `dir`, the market's agents
/// from `seed`, ports from `base_port` (0: free ones).
pub fn init_with(
    dir: &Path,
    n: usize,
    consensus: &ConsensusSection,
    seed: u64,
    base_port: u16,
) -> Result<Vec<PathBuf>, String> {
    if dir.join(MANIFEST).exists() {
        return Err(format!("{} already holds a testnet", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let all = ports(base_port, 3 * n)?;
    let (peer_ports, rest) = all.split_at(n);
    let (client_ports, api_ports) = rest.split_at(n);
    let mut keys = Vec::new();
    for i in 0..n {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        keys.push(write_key(&node_dir.join("key.toml")).map_err(|e| e.to_string())?);
    }
    let (genesis, _, _) = agents::generate(&market_agents(0.0, 1.0), seed, n);
    let genesis = GenesisFile {
        committee: keys.clone(),
        application: StoredApplication::Market { genesis, order: ExecutionOrder::default() },
    };
    genesis.write(&dir.join("genesis.json")).map_err(|e| e.to_string())?;
    let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut configs = Vec::new();
    for i in 0..n {
        let consensus = consensus.clone();
        let file = NodeFile {
            node: NodeSection {
                id: i as u16,
                key_file: "key.toml".into(),
                genesis: "../genesis.json".into(),
                store: "store".into(),
            },
            net: NetSection { listen: address(peer_ports[i]) },
            client: ClientSection { listen: address(client_ports[i]) },
            api: Some(ApiSection { listen: address(api_ports[i]) }),
            consensus,
            peers: (0..n)
                .filter(|j| *j != i)
                .map(|j| PeerEntry {
                    id: j as u16,
                    address: address(peer_ports[j]),
                    public_key: keys[j],
                })
                .collect(),
        };
        let path = dir.join(format!("node-{i}")).join("config.toml");
        file.write(&path).map_err(|e| e.to_string())?;
        configs.push(path);
    }
    let manifest = Manifest { nodes: n, protocol: consensus.protocol.clone(), seed, runs: 0 };
    write_manifest(dir, &manifest)?;
    Ok(configs)
}

/// What a testnet run measured.
#[derive(Debug, Clone, Serialize)]
pub struct TestnetReport {
    /// Nodes.
    pub nodes: usize,
    /// The protocol.
    pub protocol: String,
    /// Orders submitted.
    pub txs_submitted: u64,
    /// Of those, reported final by the node they entered.
    pub txs_final: u64,
    /// Orders a node refused as busy.
    pub txs_busy: u64,
    /// From the first submission until every node had applied the last final height, in
    /// seconds.
    pub wall_seconds: f64,
    /// Final orders per second over that time: final and applied everywhere, as in a wall
    /// run.
    pub tps: f64,
    /// Submission to final report, median, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// Whether every node had the same state digest at the highest height all reported.
    pub state_digest_agree: bool,
    /// That height.
    pub common_height: u64,
    /// Each node's last applied height.
    pub heights: Vec<u64>,
    /// Messages the nodes sent each other.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// CPU seconds the node processes used, all together (from `/proc`, where there is one).
    pub cpu_seconds: Option<f64>,
}

/// How a run paces its orders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop, this many per second.
    Rate(f64),
    /// As fast as the nodes take them: at most this many submitted and not yet final.
    Window(u64),
}

/// The node processes of a run; each is ended by its process id when this is dropped.
struct Processes(Vec<Child>);

impl Processes {
    /// SIGTERM to each, then up to 10 s to stop cleanly, then SIGKILL.
    fn stop(&mut self) -> Vec<Option<i32>> {
        for child in &self.0 {
            terminate(child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        self.0
            .iter_mut()
            .map(|child| {
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break status.code(),
                        Ok(None) if Instant::now() < deadline => {
                            thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break None;
                        }
                    }
                }
            })
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// SIGTERM to process `pid` (one this program started), through `kill(1)`: the workspace
/// forbids `unsafe`, which a direct system call needs.
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts node `config` as a child process of `exe` (the `agora` binary), its output to `log`.
pub fn spawn_node(exe: &Path, config: &Path, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(exe)
        .arg("node")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))
}

/// Asks the node at `addr` for its status.
pub fn status(addr: SocketAddr) -> Result<NodeStatus, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write_frame(&mut stream, &ClientRequest::Status).map_err(|e| e.to_string())?;
    match read_frame::<ClientResponse>(&mut stream, 1 << 20).map_err(|e| e.to_string())? {
        Some(ClientResponse::Status(status)) => Ok(status),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// An error naming the first node process that has already exited, if one has.
fn exited_early(processes: &mut [Child]) -> Result<(), String> {
    for (i, child) in processes.iter_mut().enumerate() {
        if let Ok(Some(code)) = child.try_wait() {
            return Err(format!("node {i} exited early ({code}); see its node.log"));
        }
    }
    Ok(())
}

/// Waits until every node answers its status with all its peers linked.
pub fn wait_linked(
    clients: &[SocketAddr],
    processes: &mut [Child],
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let n = clients.len();
    loop {
        exited_early(processes)?;
        let linked =
            clients.iter().all(|addr| status(*addr).is_ok_and(|s| s.connected.len() == n - 1));
        if linked {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the nodes were not all linked within {within:?}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let text = toml::to_string(manifest).map_err(|e| e.to_string())?;
    let path = dir.join(MANIFEST);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The client address of each node of the testnet in `dir`.
pub fn client_addrs(dir: &Path) -> Result<Vec<SocketAddr>, String> {
    let manifest = read_manifest(dir)?;
    (0..manifest.nodes)
        .map(|i| {
            let path = dir.join(format!("node-{i}")).join("config.toml");
            NodeFile::read(&path).map(|f| f.client.listen).map_err(|e| e.to_string())
        })
        .collect()
}

/// The most orders one `run` generates: each is signed, and held, before the load starts.
pub const RUN_ORDERS_MAX: f64 = 1_000_000.0;

/// Runs the testnet in `dir` with the `agora` binary `exe`: starts its nodes, waits until they
/// are linked, submits the agents' orders at the rate for the duration, waits for them to be
/// final (at most 30 s more), compares the nodes' state digests, and stops the nodes.
pub fn run(options: &RunOptions, exe: &Path) -> Result<TestnetReport, String> {
    if !(options.duration > 0.0 && options.duration <= 3_600.0) {
        return Err("--duration: from 0 to 3600 seconds".into());
    }
    if !(options.rate >= 1.0 && options.rate <= 100_000.0) {
        return Err("--rate: from 1 to 100,000 orders per second".into());
    }
    // Every order is generated and signed before the load starts, as in `agora simulate`.
    if options.rate * options.duration > RUN_ORDERS_MAX {
        return Err(format!(
            "--rate × --duration: {:.0} orders, above the bound of {RUN_ORDERS_MAX:.0} a run",
            options.rate * options.duration
        ));
    }
    let mut manifest = read_manifest(&options.dir)?;
    let first_nonce = manifest.runs << 32;
    manifest.runs += 1;
    write_manifest(&options.dir, &manifest)?;
    let config = market_agents(options.duration, options.rate);
    let (_, orders, _) = agents::generate_from(&config, manifest.seed, manifest.nodes, first_nonce);
    let orders: Vec<(NodeId, Transaction)> = orders.into_iter().map(|o| (o.node, o.tx)).collect();
    run_orders(&options.dir, exe, orders, Pace::Rate(options.rate))
}

/// The API address of each node of the testnet in `dir`.
pub fn api_addrs(dir: &Path) -> Result<Vec<SocketAddr>, String> {
    let manifest = read_manifest(dir)?;
    (0..manifest.nodes)
        .map(|i| {
            let path = dir.join(format!("node-{i}")).join("config.toml");
            let file = NodeFile::read(&path).map_err(|e| e.to_string())?;
            let api = file.api.ok_or_else(|| format!("{}: no [api] section", path.display()))?;
            Ok(api.listen)
        })
        .collect()
}

/// Starts the nodes of the testnet in `dir` with the `agora` binary `exe`, waits until they are
/// linked, sends `orders` (each to its node) through the nodes' APIs at `pace` (with
/// [`load::drive`], as `agora load` does), waits for them to be final (at most 30 s more) and
/// applied everywhere, compares the nodes' state digests, and stops the nodes.
pub fn run_orders(
    dir: &Path,
    exe: &Path,
    orders: Vec<(NodeId, Transaction)>,
    pace: Pace,
) -> Result<TestnetReport, String> {
    let manifest = read_manifest(dir)?;
    let n = manifest.nodes;
    let apis = api_addrs(dir)?;
    let mut processes = Processes(Vec::new());
    for i in 0..n {
        let node_dir = dir.join(format!("node-{i}"));
        processes.0.push(spawn_node(
            exe,
            &node_dir.join("config.toml"),
            &node_dir.join("node.log"),
        )?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let clients = apis
        .iter()
        .map(|a| Client::new(&format!("http://{a}")).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let measured = runtime.block_on(async {
        wait_linked_api(&clients, &mut processes.0, Duration::from_secs(30)).await?;
        let (schedule, at) = match pace {
            Pace::Rate(rate) => (Schedule::AtTimes, 1e9 / rate),
            Pace::Window(window) => (Schedule::Window(window), 0.0),
        };
        let orders = orders
            .into_iter()
            .enumerate()
            .map(|(k, (node, tx))| Order {
                node: node.index() % n,
                at_ns: (k as f64 * at) as u64,
                tx,
            })
            .collect();
        let driven = load::drive(&clients, orders, schedule, &|_| {}).await?;
        // Final is not applied everywhere: the run lasts until every node has applied the last
        // final height (at most 30 s more), as a wall run does.
        let deadline = Instant::now() + Duration::from_secs(30);
        let statuses = loop {
            let mut statuses = Vec::new();
            for client in &clients {
                statuses.push(client.status().await.map_err(|e| e.to_string())?);
            }
            if statuses.iter().all(|s| s.height >= driven.final_height) || Instant::now() > deadline
            {
                break statuses;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let applied = Instant::now();
        let (state_digest_agree, common_height) = agree_api(&clients, &statuses).await;
        Ok::<_, String>((driven, statuses, applied, state_digest_agree, common_height))
    });
    let cpu_seconds = processes
        .0
        .iter()
        .map(|c| agora_runtime::process_cpu_seconds_of(c.id()))
        .sum::<Option<f64>>();
    processes.stop();
    let (driven, statuses, applied, state_digest_agree, common_height) = measured?;
    let load = driven.report;
    let wall_seconds = match load.txs_final {
        0 => 0.0,
        _ => applied.duration_since(driven.start).as_secs_f64(),
    };
    Ok(TestnetReport {
        nodes: n,
        protocol: manifest.protocol,
        txs_submitted: load.txs_submitted,
        txs_final: load.txs_final,
        txs_busy: load.refused.values().sum(),
        wall_seconds,
        tps: if wall_seconds > 0.0 { load.txs_final as f64 / wall_seconds } else { 0.0 },
        latency_ms_p50: load.latency_ms_p50,
        latency_ms_p99: load.latency_ms_p99,
        state_digest_agree,
        common_height,
        heights: statuses.iter().map(|s| s.height).collect(),
        messages: statuses.iter().map(|s| s.messages_sent).sum(),
        bytes: statuses.iter().map(|s| s.bytes_sent).sum(),
        cpu_seconds,
    })
}

/// Waits until every node's API answers with all its peers linked.
async fn wait_linked_api(
    clients: &[Client],
    processes: &mut [Child],
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let n = clients.len();
    loop {
        exited_early(processes)?;
        let mut linked = true;
        for client in clients {
            linked &= client.status().await.is_ok_and(|s| s.connected_peers.len() == n - 1);
        }
        if linked {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the nodes were not all linked within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the nodes' state digests agree at the lowest height they all applied, and that
/// height (0 and false if there is none, or a node's API no longer holds that block).
async fn agree_api(clients: &[Client], statuses: &[agora_client::Status]) -> (bool, u64) {
    let Some(common) = statuses.iter().map(|s| s.height).min().filter(|h| *h > 0) else {
        return (false, 0);
    };
    let mut digests = Vec::new();
    for client in clients {
        match client.block(common).await {
            Ok(block) => digests.push(block.state_digest),
            Err(_) => return (false, common),
        }
    }
    (digests.iter().all(|d| *d == digests[0]), common)
}

/// Whether the nodes agree at the highest height every one reported a digest for, and that
/// height (0 and false if there is none).
pub fn agree(statuses: &[NodeStatus]) -> (bool, u64) {
    let maps: Vec<HashMap<u64, Digest>> =
        statuses.iter().map(|s| s.recent_digests.iter().copied().collect()).collect();
    let common = statuses
        .first()
        .into_iter()
        .flat_map(|s| s.recent_digests.iter().map(|(h, _)| *h))
        .filter(|h| maps.iter().all(|m| m.contains_key(h)))
        .max();
    match common {
        Some(h) => (maps.iter().all(|m| m[&h] == maps[0][&h]), h),
        None => (false, 0),
    }
}

impl TestnetReport {
    /// The human summary, as a wall run prints it.
    pub fn summary(&self) -> String {
        format!(
            "testnet: {} {} nodes, {} orders submitted, {} final ({} busy)\n\
             throughput: {:.0} orders/s over {:.2} s\n\
             finality: p50 {:.1} ms, p99 {:.1} ms\n\
             state digests agree at height {}: {}\n\
             heights: {:?}",
            self.nodes,
            self.protocol,
            self.txs_submitted,
            self.txs_final,
            self.txs_busy,
            self.tps,
            self.wall_seconds,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.common_height,
            if self.state_digest_agree { "yes" } else { "NO" },
            self.heights,
        )
    }
}
