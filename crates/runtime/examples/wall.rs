//! Wall-clock runs of a 4-replica cluster, Streamlet and PBFT, as fast as the cluster takes
//! transactions, beside this machine's signature-verification limit:
//! `cargo run --release -p agora-runtime --example wall [TXS] [streamlet|pbft]`.
//! `AGORA_WINDOW=N` sets how many transactions may be in flight (8,000 by default);
//! `AGORA_VERIFY_AHEAD=1` turns verify-ahead on (and prints how many verdicts were ready).
//! For Streamlet, `AGORA_DELTA_MS` sets Δ (20 ms) and `AGORA_BATCH` the batch bound (2,000);
//! for PBFT, `AGORA_PBFT_BATCH` (500). `AGORA_APPLY_THREAD=1` applies blocks on a thread of
//! their own per replica. `AGORA_KINDS=1` prints messages by kind. `AGORA_STORE_DIR=DIR` runs
//! each protocol twice, with its stores in memory and then on disk (each replica in
//! `DIR/<protocol>/node-<i>/`, its `journal` and `blocks.redb`, which must not exist yet), and
//! prints the durable run's TPS as a share of the in-memory one's; `agora replay --store
//! DIR/<protocol>/node-<i>` then replays each replica's log.

use std::time::Duration;

use agora_consensus::TxLog;
use agora_crypto::SecretKey;
use agora_engines::{Engine, EngineConfig, WithEngine, with_engine};
use agora_hotstuff::HotStuffConfig;
use agora_market::StoredApplication;
use agora_pbft::PbftConfig;
use agora_runtime::{ClusterConfig, Load, RuntimeError, Storage, WallReport, run, verify_rate};
use agora_simplex::SimplexConfig;
use agora_streamlet::StreamletConfig;
use agora_types::{Committee, NodeId, Transaction};

/// One cluster run, for whichever engine the factory builds.
struct Cluster {
    config: ClusterConfig,
    load: Load,
}

impl WithEngine for Cluster {
    type Output = Result<WallReport, RuntimeError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy,
    ) -> Self::Output {
        run(self.config, engine, |_| Box::new(TxLog::new(true)), self.load)
    }
}
use bytes::Bytes;

fn load(txs: usize, nodes: usize) -> Load {
    let clients: Vec<SecretKey> = (0..64).map(|i| SecretKey::from_seed(3, i)).collect();
    let txs = (0..txs)
        .map(|i| {
            let tx = Transaction::new_signed(
                &clients[i % 64],
                (i / 64) as u64,
                Bytes::from(vec![7; 48]),
            )
            .expect("small");
            (NodeId((i % nodes) as u16), tx)
        })
        .collect();
    Load {
        txs,
        rate_per_sec: None,
        window: std::env::var("AGORA_WINDOW").ok().and_then(|w| w.parse().ok()).unwrap_or(8_000),
    }
}

fn print(name: &str, r: &WallReport, limit_one: f64, limit_all: f64) {
    println!(
        "{name:<10} n={} tps {:>8.0} (limit {:>6.0}, {:>4.0}%)  p50 {:>7.1} ms  p99 {:>7.1} ms  replica-core {:>8.0} tx/s ({:>4.0}% of {:.0})  msgs/tx {:.1}  agree {}",
        r.nodes,
        r.tps,
        limit_all / r.nodes as f64,
        100.0 * r.tps / (limit_all / r.nodes as f64),
        r.latency_ms_p50,
        r.latency_ms_p99,
        r.replica_core_tps.unwrap_or(0.0),
        100.0 * r.replica_core_tps.unwrap_or(0.0) / limit_one,
        limit_one,
        r.messages as f64 / r.txs_finalized.max(1) as f64,
        r.state_digests_agree
    );
    println!(
        "           applied at entry: p50 {:.1} ms, p99 {:.1} ms",
        r.applied_latency_ms_p50, r.applied_latency_ms_p99
    );
    // Where the rest of the limit went: idle cores (ramp-up, drain, replicas finishing apart)
    // or work beside verification.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let finished: Vec<_> = r.replicas.iter().filter_map(|x| x.last_commit).collect();
    let spread = match (finished.iter().min(), finished.iter().max()) {
        (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64() * 1e3,
        _ => 0.0,
    };
    println!(
        "           cores busy {:.1}% of the run; replicas finished within {spread:.0} ms",
        100.0 * r.cpu_seconds.unwrap_or(0.0) / (r.wall_seconds * cores)
    );
    if std::env::var("AGORA_KINDS").is_ok() {
        let mut kinds = std::collections::BTreeMap::new();
        for x in &r.replicas {
            for (k, (m, b)) in &x.by_kind {
                let e = kinds.entry(*k).or_insert((0u64, 0u64));
                e.0 += m;
                e.1 += b;
            }
        }
        println!("           messages by kind: {kinds:?}");
    }
    let (hits, misses) =
        r.replicas.iter().fold((0, 0), |(h, m), x| (h + x.verdict_hits, m + x.verdict_misses));
    if hits + misses > 0 {
        println!("           verdicts ready when applied: {hits}, verified then: {misses}");
    }
}

fn main() {
    let txs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, all) = verify_rate(cores, Duration::from_millis(500));
    println!("k256 verifications/s: one core {one:.0}, all {cores} cores {all:.0}");
    let mut config = ClusterConfig::new(4);
    // In memory: the durable run beside it (AGORA_STORE_DIR) is compared with this one.
    config.storage = Storage::Memory;
    config.timeout = Duration::from_secs(300);
    config.verify_ahead = std::env::var("AGORA_VERIFY_AHEAD").is_ok();
    config.apply_thread = std::env::var("AGORA_APPLY_THREAD").is_ok();
    let only = std::env::args().nth(2);
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let env = |name: &str, default: u64| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let mut streamlet = StreamletConfig::new(env("AGORA_DELTA_MS", 20) * 1_000_000);
    streamlet.batch.txs_max = env("AGORA_BATCH", 2_000) as usize;
    let mut pbft = PbftConfig::new(2_000_000_000);
    pbft.batch.txs_max = env("AGORA_PBFT_BATCH", 500) as usize;
    let mut simplex = SimplexConfig::new(env("AGORA_DELTA_MS", 20) * 1_000_000);
    simplex.batch.txs_max = env("AGORA_BATCH", 2_000) as usize;
    simplex.empty_block_after_ns = simplex.delta_ns;
    let mut hotstuff = HotStuffConfig::new(env("AGORA_DELTA_MS", 20) * 1_000_000);
    hotstuff.batch.txs_max = env("AGORA_BATCH", 2_000) as usize;
    hotstuff.empty_block_after_ns = hotstuff.delta_ns;
    let engines = [
        EngineConfig::Streamlet(streamlet),
        EngineConfig::Pbft(pbft),
        EngineConfig::Simplex(simplex),
        EngineConfig::HotStuff(hotstuff),
    ];
    for engine in engines {
        let name = engine.protocol().name();
        if !wants(name) {
            continue;
        }
        let run = |config: ClusterConfig| {
            with_engine(engine, Cluster { config, load: load(txs, 4) })
                .expect("a valid configuration")
                .unwrap_or_else(|e| panic!("{name} run: {e}"))
        };
        let report = run(config.clone());
        print(name, &report, one, all);
        let Some(dir) = std::env::var_os("AGORA_STORE_DIR") else { continue };
        let mut durable = config.clone();
        durable.storage = Storage::Dir(std::path::PathBuf::from(dir).join(name));
        // So that `agora replay --store DIR/<protocol>/node-<i>` can rebuild each log.
        let application = StoredApplication::TxLog { verify_signatures: true };
        durable.application = Some(application.encode().into());
        let on_disk = run(durable);
        print(&format!("{name}+disk"), &on_disk, one, all);
        let syncs: u64 = on_disk.replicas.iter().map(|r| r.journal_syncs).sum();
        let bytes: u64 = on_disk.replicas.iter().map(|r| r.journal_bytes).sum();
        println!(
            "           durable: {:.0}% of the in-memory TPS; {:.1} syncs per block per replica, \
             {syncs} syncs, {bytes} journal bytes held at the end",
            100.0 * on_disk.tps / report.tps,
            syncs as f64
                / (on_disk.replicas.len() as f64 * on_disk.replicas[0].height.max(1) as f64),
        );
    }
}
