//! The API's front door on this machine: how many signed orders one node's HTTP API admits per
//! second (JSON decoded, signature verified, nonce checked, into a real mempool), against the
//! mempool's own admission rate and the signature-verification limit measured just before.
//!
//! The clients run in the same process, on the same cores, as they do in `agora load`: the
//! figure is what one machine does end to end, not the server alone.

use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agora_api::{Api, ApiLimits, ApiServer, MarketView, Metrics, NodeInfo, NodeLink, ViewLimits};
use agora_client::Client;
use agora_consensus::{InMemoryMempool, Mempool, MempoolLimits};
use agora_runtime::verify_rate;
use agora_types::Transaction;
use serde::Serialize;

use crate::agents::{self, AgentsConfig};

/// Requests in flight at once from the measuring clients.
const CONCURRENCY: usize = 64;

/// What the front-door measure found.
#[derive(Debug, Clone, Serialize)]
pub struct FrontDoorRecord {
    /// Orders POSTed.
    pub orders: u64,
    /// Orders the API admitted (202) per second, over HTTP/1.1 with keep-alive.
    pub http_admitted_per_sec: f64,
    /// Orders a mempool admits per second, inserted directly (no HTTP, no signature check).
    pub mempool_admitted_per_sec: f64,
    /// k256 verifications per second on one core, measured just before.
    pub limit_one_core: f64,
    /// On all cores at once.
    pub limit_all_cores: f64,
}

/// A node that is only a mempool.
struct MempoolNode(Mutex<InMemoryMempool>);

impl NodeLink for MempoolNode {
    fn submit(&self, tx: Transaction) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(tx).is_ok()
    }

    fn info(&self) -> NodeInfo {
        NodeInfo { protocol: "none".into(), members: 1, ..NodeInfo::default() }
    }
}

fn limits() -> MempoolLimits {
    MempoolLimits { txs_max: 10_000_000, bytes_max: 1 << 32, ..MempoolLimits::default() }
}

/// Measures with `orders` of the market agents' orders (seeded by `seed`).
pub fn measure(orders: usize, seed: u64) -> Result<FrontDoorRecord, String> {
    let traders = 32;
    let config = AgentsConfig {
        traders,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 1_000.0,
        quote_every_ns: 100_000_000,
        end_ns: (orders as f64 / traders as f64 / 1_000.0 * 1e9) as u64 + 1_000_000_000,
        large_orders: 0.0,
        frontrunner: false,
    };
    let (genesis, submissions, _) = agents::generate(&config, seed, 1);
    let txs: Vec<Transaction> = submissions.into_iter().take(orders).map(|s| s.tx).collect();
    if txs.len() < orders {
        return Err(format!("the agents made {} orders, not {orders}", txs.len()));
    }
    let (limit_one_core, limit_all_cores) = verify_rate(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        Duration::from_secs(1),
    );

    // The mempool alone.
    let mut mempool = InMemoryMempool::new(limits());
    let start = Instant::now();
    let admitted = txs.iter().filter(|tx| mempool.insert((*tx).clone()).is_ok()).count();
    let mempool_admitted_per_sec = admitted as f64 / start.elapsed().as_secs_f64();

    // The same orders through the API.
    let metrics = Arc::new(Metrics::new());
    let view = MarketView::new(&genesis, ViewLimits::default(), Arc::clone(&metrics));
    let node = Arc::new(MempoolNode(Mutex::new(InMemoryMempool::new(limits()))));
    let api = Api { view, node, metrics, limits: ApiLimits::default() };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let server = ApiServer::start(listener, api).map_err(|e| e.to_string())?;
    let client = Client::new(&server.addr().to_string()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let queue = Arc::new(Mutex::new(txs));
    let (admitted, seconds) = runtime.block_on(async {
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (client, queue) = (client.clone(), Arc::clone(&queue));
            workers.spawn(async move {
                let mut admitted = 0u64;
                loop {
                    let Some(tx) = queue.lock().unwrap_or_else(PoisonError::into_inner).pop()
                    else {
                        return admitted;
                    };
                    if client.submit(&tx).await.is_ok() {
                        admitted += 1;
                    }
                }
            });
        }
        let mut admitted = 0;
        while let Some(done) = workers.join_next().await {
            admitted += done.unwrap_or(0);
        }
        (admitted, start.elapsed().as_secs_f64())
    });
    server.stop();
    if admitted < orders as u64 {
        return Err(format!("the API admitted {admitted} of {orders} orders"));
    }
    Ok(FrontDoorRecord {
        orders: orders as u64,
        http_admitted_per_sec: admitted as f64 / seconds,
        mempool_admitted_per_sec,
        limit_one_core,
        limit_all_cores,
    })
}

/// The report's section.
pub(super) fn markdown(r: &FrontDoorRecord, s: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "\n## The API's front door\n");
    let _ = writeln!(
        s,
        "One node's HTTP API admitted {} signed orders at **{:.0} orders/s** (JSON decoded, signature verified, nonce checked, into a mempool; {} requests in flight from clients in the same process): {:.0}% of one core's verification limit ({:.0}/s) and {:.0}% of all cores' ({:.0}/s). A mempool alone admits {:.0} orders/s, so the front door costs {:.1} µs an order above it.",
        r.orders,
        r.http_admitted_per_sec,
        CONCURRENCY,
        100.0 * r.http_admitted_per_sec / r.limit_one_core,
        r.limit_one_core,
        100.0 * r.http_admitted_per_sec / r.limit_all_cores,
        r.limit_all_cores,
        r.mempool_admitted_per_sec,
        1e6 / r.http_admitted_per_sec - 1e6 / r.mempool_admitted_per_sec,
    );
    let _ = writeln!(
        s,
        "\nEnd-to-end finality through the API (POST to the block on the node's stream) is the `net` rows' p50 and p99: their orders enter as `agora load` sends them."
    );
}
