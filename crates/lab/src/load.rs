//! `agora load`: the market's agents against running nodes, through their HTTP API.
//!
//! Every order is generated and signed before the clock starts. The load is open loop: the
//! orders for one node due within 5 ms of each other go in one batch request
//! (`POST /v1/orders/batch`, a lone order to `POST /v1/orders`), sent when the last of them is
//! due, whatever the answers to the ones before, with at most [`IN_FLIGHT_MAX`] requests
//! outstanding (an order due while that many wait is counted late and sent when there is
//! room). Latency is end to end: from the POST to the block that holds the order appearing on
//! the `blocks` stream of the node it was sent to.
//!
//! The agents are those `agora testnet init` funds in the genesis for the same seed and
//! committee size; each run signs from a nonce above every account's window, as the node
//! reports it, so that its orders are new to the market.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agora_client::{Client, ClientError};
use agora_consensus::LatencySummary;
use agora_crypto::Digest;
use agora_market::NONCE_WINDOW;
use agora_types::Transaction;
use serde::Serialize;

use crate::agents;
use crate::testnet::market_agents;

/// Requests outstanding at once, at most.
pub const IN_FLIGHT_MAX: usize = 4_096;
/// The most orders one load generates: each is signed, and held, before it starts.
pub const LOAD_ORDERS_MAX: f64 = 1_000_000.0;
/// How long the load waits, after the last order, for the outstanding ones to be final.
const SETTLE: Duration = Duration::from_secs(30);
/// A closed-loop load stops waiting for room in its window after this long.
const WINDOW_GIVE_UP: Duration = Duration::from_secs(600);

/// `agora load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// The nodes' API addresses, comma-separated (`http://127.0.0.1:26608,…`); each agent's
    /// orders go to one of them.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Orders per second, open loop.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// What to send: `market`, the testnet's trading agents.
    #[arg(long, default_value = "market", value_parser = ["market"])]
    pub workload: String,
    /// The seed the testnet was initialised with (its agents' keys).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What a load measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Nodes sent to.
    pub nodes: usize,
    /// Orders sent.
    pub txs_submitted: u64,
    /// Of those, taken by a node (202).
    pub txs_accepted: u64,
    /// Of those, seen final on the node's stream.
    pub txs_final: u64,
    /// Refused, by the node's reason (`mempool_full`, `stale_nonce`, …, or `transport`).
    pub refused: BTreeMap<String, u64>,
    /// Orders sent later than due because [`IN_FLIGHT_MAX`] requests were outstanding.
    pub late: u64,
    /// From the first order until the last final one, in seconds.
    pub wall_seconds: f64,
    /// Final orders per second over that time.
    pub tps: f64,
    /// POST to final on the stream, median, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// Largest.
    pub latency_ms_max: f64,
}

impl LoadReport {
    /// The human summary.
    pub fn summary(&self) -> String {
        format!(
            "load: {} nodes, {} orders sent, {} accepted, {} final, refused {:?}, {} late\n\
             throughput: {:.0} orders/s over {:.2} s\n\
             finality (POST to the block on the stream): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.nodes,
            self.txs_submitted,
            self.txs_accepted,
            self.txs_final,
            self.refused,
            self.late,
            self.tps,
            self.wall_seconds,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_max,
        )
    }
}

/// What the stream readers and the senders share.
#[derive(Default)]
struct Tally {
    /// Orders sent and not yet seen final, by the node they went to.
    sent_at: Vec<HashMap<Digest, Instant>>,
    latencies_ns: Vec<u64>,
    accepted: u64,
    refused: BTreeMap<String, u64>,
    last_final: Option<Instant>,
    final_height: u64,
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the load; `progress` is told each order sent.
pub fn run(options: &LoadOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<LoadReport, String> {
    if !(options.duration > 0.0 && options.duration <= 3_600.0) {
        return Err("--duration: from 0 to 3600 seconds".into());
    }
    if !(options.rate >= 1.0 && options.rate <= 100_000.0) {
        return Err("--rate: from 1 to 100,000 orders per second".into());
    }
    if options.rate * options.duration > LOAD_ORDERS_MAX {
        return Err(format!(
            "--rate × --duration: {:.0} orders, above the bound of {LOAD_ORDERS_MAX:.0} a load",
            options.rate * options.duration
        ));
    }
    let clients = options
        .nodes
        .iter()
        .map(|url| Client::new(url).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(load(options, clients, progress))
}

async fn load(
    options: &LoadOptions,
    clients: Vec<Client>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LoadReport, String> {
    let fail = |e: ClientError| e.to_string();
    // The committee's size and the accounts' nonce windows, from the first node.
    let status = clients[0].status().await.map_err(fail)?;
    let config = market_agents(options.duration, options.rate);
    let (genesis, _, _) = agents::generate(&config, options.seed, status.members);
    let mut floor = 0;
    for account in &genesis.accounts {
        let view = clients[0].account(account.account).await.map_err(fail)?;
        floor = floor.max(view.nonce_floor);
    }
    // Above every window: a nonce taken above an account's floor is at most a window higher.
    let first_nonce = floor + NONCE_WINDOW + 1;
    let (_, orders, _) = agents::generate_from(&config, options.seed, status.members, first_nonce);
    let orders = orders
        .into_iter()
        .map(|o| Order { node: o.node.index() % clients.len(), at_ns: o.at_ns, tx: o.tx })
        .collect();
    Ok(drive(&clients, orders, Schedule::AtTimes, progress).await?.report)
}

/// One order of a load: where it goes, when it is due (from the start), and the transaction.
#[derive(Debug, Clone)]
pub struct Order {
    /// The index of the client (node) it goes to.
    pub node: usize,
    /// When it is due, in nanoseconds from the start, under [`Schedule::AtTimes`].
    pub at_ns: u64,
    /// The signed transaction.
    pub tx: Transaction,
}

/// How a load paces its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Open loop: each order when it is due.
    AtTimes,
    /// Closed loop, as fast as the nodes take them: at most this many sent and not yet final
    /// (or refused).
    Window(u64),
}

/// Orders due within this long of the first of them, to one node, go in one batch request.
const BATCH_TICK_NS: u64 = 5_000_000;
/// Orders one batch request holds at most (a node takes up to 1,000).
const BATCH_MAX: usize = 500;

/// Orders for one node, sent in one request when the last of them is due.
struct Batch {
    node: usize,
    due_ns: u64,
    txs: Vec<Transaction>,
}

/// The orders grouped per node into batches of orders due within [`BATCH_TICK_NS`] of the
/// batch's first, in the order they are due.
fn batches_by_time(orders: Vec<Order>, nodes: usize) -> Vec<Batch> {
    let mut open: Vec<Option<Batch>> = (0..nodes).map(|_| None).collect();
    let mut done = Vec::new();
    let mut firsts = vec![0u64; nodes];
    for Order { node, at_ns, tx } in orders {
        let fits = open[node]
            .as_ref()
            .is_some_and(|b| at_ns < firsts[node] + BATCH_TICK_NS && b.txs.len() < BATCH_MAX);
        if !fits {
            done.extend(open[node].take());
            firsts[node] = at_ns;
        }
        let batch =
            open[node].get_or_insert_with(|| Batch { node, due_ns: at_ns, txs: Vec::new() });
        batch.due_ns = batch.due_ns.max(at_ns);
        batch.txs.push(tx);
    }
    done.extend(open.into_iter().flatten());
    done.sort_by_key(|b| b.due_ns);
    done
}

/// The orders grouped per node, in order, at most [`BATCH_MAX`] a batch.
fn batches_by_node(orders: Vec<Order>, nodes: usize) -> Vec<Batch> {
    let mut per_node: Vec<Vec<Transaction>> = vec![Vec::new(); nodes];
    for order in orders {
        per_node[order.node].push(order.tx);
    }
    per_node
        .into_iter()
        .enumerate()
        .flat_map(|(node, txs)| {
            let chunks: Vec<Vec<Transaction>> = txs.chunks(BATCH_MAX).map(<[_]>::to_vec).collect();
            chunks.into_iter().map(move |txs| Batch { node, due_ns: 0, txs })
        })
        .collect()
}

/// Sends one batch and notes each order's answer.
async fn submit(client: &Client, batch: Batch, tally: &Mutex<Tally>) {
    let ids: Vec<Digest> = batch.txs.iter().map(Transaction::id).collect();
    {
        // Noted before the POST: a block may reach the stream before the answer.
        let now = Instant::now();
        let mut t = lock(tally);
        for id in &ids {
            t.sent_at[batch.node].insert(*id, now);
        }
    }
    let answers = match batch.txs.as_slice() {
        [one] => {
            vec![client.submit(one).await.map_err(|e| e.reason().unwrap_or("transport").to_owned())]
        }
        txs => match client.submit_batch(txs).await {
            Ok(results) => results.into_iter().map(|r| r.map_err(|e| e.error)).collect(),
            Err(error) => {
                let reason = error.reason().unwrap_or("transport").to_owned();
                vec![Err(reason); txs.len()]
            }
        },
    };
    let mut t = lock(tally);
    for (id, answer) in ids.iter().zip(answers) {
        match answer {
            Ok(_) => t.accepted += 1,
            Err(reason) => {
                t.sent_at[batch.node].remove(id);
                *t.refused.entry(reason).or_default() += 1;
            }
        }
    }
}

/// What [`drive`] measured.
#[derive(Debug, Clone)]
pub struct Driven {
    /// The report.
    pub report: LoadReport,
    /// The highest height an order was seen final at.
    pub final_height: u64,
    /// When the first order was due.
    pub start: Instant,
}

/// Sends `orders` to `clients` on `schedule`, waits (at most 30 s) for the accepted ones
/// to appear final on the streams, and reports.
pub async fn drive(
    clients: &[Client],
    orders: Vec<Order>,
    schedule: Schedule,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Driven, String> {
    let tally = Arc::new(Mutex::new(Tally {
        sent_at: vec![HashMap::new(); clients.len()],
        ..Tally::default()
    }));
    // Every node's block stream, open before the first order.
    let mut readers = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let mut stream = client.stream(&["blocks"]).await.map_err(|e| e.to_string())?;
        let tally = Arc::clone(&tally);
        readers.push(tokio::spawn(async move {
            while let Ok(Some(message)) = stream.next().await {
                let Some(txs) = message["data"]["txs"].as_array() else { continue };
                let height = message["data"]["height"].as_u64().unwrap_or(0);
                let now = Instant::now();
                let mut t = lock(&tally);
                for id in txs.iter().filter_map(|v| v.as_str()?.parse::<Digest>().ok()) {
                    if let Some(at) = t.sent_at[i].remove(&id) {
                        t.latencies_ns.push(now.saturating_duration_since(at).as_nanos() as u64);
                        t.last_final = Some(now);
                        t.final_height = t.final_height.max(height);
                    }
                }
            }
        }));
    }

    let total = orders.len() as u64;
    let room = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
    let (late, sent) = (Cell::new(0u64), Cell::new(0u64));
    let start = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    let send = async |batch: Batch, sends: &mut tokio::task::JoinSet<()>| {
        let permit = match Arc::clone(&room).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                late.set(late.get() + batch.txs.len() as u64);
                Arc::clone(&room).acquire_owned().await.map_err(|e| e.to_string())?
            }
        };
        sent.set(sent.get() + batch.txs.len() as u64);
        let client = clients[batch.node].clone();
        let tally = Arc::clone(&tally);
        sends.spawn(async move {
            submit(&client, batch, &tally).await;
            drop(permit);
        });
        while sends.try_join_next().is_some() {}
        progress(sent.get());
        Ok::<(), String>(())
    };
    match schedule {
        Schedule::AtTimes => {
            for batch in batches_by_time(orders, clients.len()) {
                tokio::time::sleep_until((start + Duration::from_nanos(batch.due_ns)).into()).await;
                send(batch, &mut sends).await?;
            }
        }
        Schedule::Window(window) => {
            let mut orders = orders.into_iter().peekable();
            while orders.peek().is_some() {
                let open = {
                    let t = lock(&tally);
                    let closed = t.latencies_ns.len() as u64 + t.refused.values().sum::<u64>();
                    sent.get().saturating_sub(closed)
                };
                let room = window.max(1).saturating_sub(open) as usize;
                if room == 0 && start.elapsed() < WINDOW_GIVE_UP {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    continue;
                }
                let take: Vec<Order> =
                    orders.by_ref().take(room.clamp(1, BATCH_MAX * clients.len())).collect();
                for batch in batches_by_node(take, clients.len()) {
                    send(batch, &mut sends).await?;
                }
            }
        }
    }
    while sends.join_next().await.is_some() {}
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline && lock(&tally).sent_at.iter().any(|m| !m.is_empty()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for reader in &readers {
        reader.abort();
    }
    let mut t = lock(&tally);
    let txs_final = t.latencies_ns.len() as u64;
    let wall_seconds = t.last_final.map_or(0.0, |end| end.duration_since(start).as_secs_f64());
    let latency = LatencySummary::of(&mut t.latencies_ns);
    let report = LoadReport {
        nodes: clients.len(),
        txs_submitted: total,
        txs_accepted: t.accepted,
        txs_final,
        refused: std::mem::take(&mut t.refused),
        late: late.get(),
        wall_seconds,
        tps: if wall_seconds > 0.0 { txs_final as f64 / wall_seconds } else { 0.0 },
        latency_ms_p50: latency.p50_ns as f64 / 1e6,
        latency_ms_p99: latency.p99_ns as f64 / 1e6,
        latency_ms_max: latency.max_ns as f64 / 1e6,
    };
    Ok(Driven { report, final_height: t.final_height, start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::SecretKey;

    fn orders(times_ms: &[(usize, u64)]) -> Vec<Order> {
        let key = SecretKey::from_seed(5, 5);
        times_ms
            .iter()
            .enumerate()
            .map(|(k, (node, ms))| Order {
                node: *node,
                at_ns: ms * 1_000_000,
                tx: Transaction::new_signed(&key, k as u64, bytes::Bytes::from_static(b"o"))
                    .unwrap(),
            })
            .collect()
    }

    #[test]
    fn batches_hold_one_nodes_orders_due_within_a_tick_and_are_sent_when_their_last_is_due() {
        let list = orders(&[(0, 0), (1, 1), (0, 3), (0, 6), (1, 9), (0, 7)]);
        let ids: Vec<Digest> = list.iter().map(|o| o.tx.id()).collect();
        let batches = batches_by_time(list, 2);
        let shape: Vec<(usize, u64, usize)> =
            batches.iter().map(|b| (b.node, b.due_ns / 1_000_000, b.txs.len())).collect();
        // Node 0: 0 and 3 ms together (due at 3), then 6 and 7 ms (due at 7); node 1: 1, then 9.
        assert_eq!(shape, [(1, 1, 1), (0, 3, 2), (0, 7, 2), (1, 9, 1)]);
        let mut seen: Vec<Digest> =
            batches.iter().flat_map(|b| b.txs.iter().map(Transaction::id)).collect();
        seen.sort();
        let mut want = ids;
        want.sort();
        assert_eq!(seen, want, "every order once");
        let by_node = batches_by_node(orders(&[(0, 0), (1, 0), (0, 0)]), 2);
        assert_eq!(
            by_node.iter().map(|b| (b.node, b.txs.len())).collect::<Vec<_>>(),
            [(0, 2), (1, 1)]
        );
    }
}
