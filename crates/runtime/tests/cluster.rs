//! Real-time clusters of the same engines the simulator drives: every transaction final at every
//! replica, equal state digests. (Behaviour only: no timing thresholds; speed is for benches.)

use agora_consensus::TxLog;
use agora_crypto::SecretKey;
use agora_hotstuff::{ChainRule, HotStuff, HotStuffConfig};
use agora_pbft::{Pbft, PbftConfig};
use agora_runtime::{ClusterConfig, Load, Storage, WallReport, run, verify_rate};
use agora_simplex::{Simplex, SimplexConfig};
use agora_streamlet::{Streamlet, StreamletConfig};
use agora_types::{NodeId, Transaction};
use bytes::Bytes;

fn load(txs: usize, nodes: usize, rate: Option<f64>) -> Load {
    let clients: Vec<SecretKey> = (0..16).map(|i| SecretKey::from_seed(3, i)).collect();
    let txs = (0..txs)
        .map(|i| {
            let tx = Transaction::new_signed(
                &clients[i % 16],
                (i / 16) as u64,
                Bytes::from(vec![i as u8; 40]),
            )
            .unwrap();
            (NodeId((i % nodes) as u16), tx)
        })
        .collect();
    Load { txs, rate_per_sec: rate, window: 2_000 }
}

/// A Streamlet cluster (Δ = 20 ms) over transaction logs.
fn streamlet(cluster: ClusterConfig, load: Load) -> WallReport {
    let config = StreamletConfig::new(20_000_000);
    let engine = |me, committee: &agora_types::Committee, key: &SecretKey| {
        Streamlet::new(config, committee.clone(), me, key.clone()).expect("a valid configuration")
    };
    run(cluster, engine, |_| Box::new(TxLog::new(true)), load).expect("the cluster runs")
}

#[test]
fn a_streamlet_cluster_finalizes_everything_everywhere() {
    let report = streamlet(ClusterConfig::new(4), load(400, 4, Some(2_000.0)));
    assert_eq!(report.txs_submitted, 400);
    assert_eq!(report.txs_finalized, 400);
    assert!(report.state_digests_agree, "{report:?}");
    assert!(report.messages > 0 && report.bytes > 0);
    assert!(report.replicas.iter().all(|r| r.decode_errors == 0));
}

#[test]
fn a_simplex_cluster_finalizes_everything_everywhere() {
    let mut config = SimplexConfig::new(20_000_000);
    config.empty_block_after_ns = config.delta_ns;
    let mut cluster = ClusterConfig::new(4);
    cluster.apply_thread = true;
    cluster.verify_ahead = true;
    let report = run(
        cluster,
        |me, committee, key| {
            Simplex::new(config, committee.clone(), me, key.clone()).expect("a valid configuration")
        },
        |_| Box::new(TxLog::new(true)),
        load(2_000, 4, None),
    )
    .expect("the cluster runs");
    assert_eq!(report.txs_finalized, 2_000);
    assert!(report.state_digests_agree, "{report:?}");
    assert!(report.replicas.iter().all(|r| r.decode_errors == 0));
}

#[test]
fn a_hotstuff_cluster_finalizes_everything_everywhere_under_either_commit_rule() {
    for chain in [ChainRule::Three, ChainRule::Two] {
        let mut config = HotStuffConfig::new(20_000_000).with_chain(chain);
        config.empty_block_after_ns = config.delta_ns;
        let mut cluster = ClusterConfig::new(4);
        cluster.apply_thread = true;
        cluster.verify_ahead = true;
        let report = run(
            cluster,
            |me, committee, key| {
                HotStuff::new(config, committee.clone(), me, key.clone())
                    .expect("a valid configuration")
            },
            |_| Box::new(TxLog::new(true)),
            load(2_000, 4, None),
        )
        .expect("the cluster runs");
        assert_eq!(report.txs_finalized, 2_000, "{chain:?}");
        assert!(report.state_digests_agree, "{chain:?}: {report:?}");
        assert!(report.replicas.iter().all(|r| r.decode_errors == 0));
    }
}

#[test]
fn with_apply_threads_every_block_is_still_applied_everywhere_in_order() {
    let mut cluster = ClusterConfig::new(4);
    cluster.apply_thread = true;
    cluster.verify_ahead = true;
    let report = streamlet(cluster, load(2_000, 4, None));
    assert_eq!(report.txs_finalized, 2_000);
    assert!(report.state_digests_agree, "{report:?}");
    // Applied no earlier than final, for the transactions submitted at each replica.
    assert!(report.applied_latency_ms_p50 >= report.latency_ms_p50, "{report:?}");
    let checked: u64 = report.replicas.iter().map(|r| r.verdict_hits + r.verdict_misses).sum();
    assert_eq!(checked, 4 * 2_000, "every replica checked every transaction once");
}

#[test]
fn a_pbft_cluster_finalizes_everything_everywhere_as_fast_as_it_can() {
    let config = PbftConfig::new(1_000_000_000);
    let mut cluster = ClusterConfig::new(4);
    cluster.verify_ahead = true;
    let report = run(
        cluster,
        |me, committee, key| {
            Pbft::new(config, committee.clone(), me, key.clone()).expect("a valid configuration")
        },
        |_| Box::new(TxLog::new(true)),
        load(2_000, 4, None),
    )
    .unwrap();
    assert_eq!(report.txs_finalized, 2_000);
    assert!(report.state_digests_agree, "{report:?}");
    assert!(report.tps > 0.0 && report.latency_ms_p50 > 0.0);
    assert!(report.cpu_seconds.is_some_and(|c| c > 0.0));
    // Signatures were verified ahead of time by the pool; apply found their verdicts.
    let hits: u64 = report.replicas.iter().map(|r| r.verdict_hits).sum();
    let misses: u64 = report.replicas.iter().map(|r| r.verdict_misses).sum();
    assert_eq!(hits + misses, 4 * 2_000, "every replica checked every transaction once");
    assert!(hits > 0, "{hits} hits, {misses} misses");
}

#[test]
fn replicas_with_tiny_inboxes_cannot_deadlock_on_each_other() {
    // Inboxes of 16 messages: broadcasts fill them at once, and replicas block on each other.
    // With unbounded waits this run hangs for good (seen: every replica blocked in send). Waits
    // are bounded, so full inboxes cost dropped messages (network loss), never a hang, and
    // later epochs still finalize everything.
    let mut cluster = ClusterConfig::new(4);
    cluster.inbox_capacity = 16;
    cluster.send_wait_max = std::time::Duration::from_millis(2);
    let report = streamlet(cluster, load(400, 4, None));
    assert_eq!(report.txs_finalized, 400, "{report:?}");
    assert!(report.state_digests_agree, "{report:?}");
}

#[test]
fn the_verification_limit_is_measured() {
    let (one, all) = verify_rate(2, std::time::Duration::from_millis(50));
    assert!(one > 0.0 && all > 0.0);
}

/// A directory of this test process's own, removed when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("agora-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn replicas_journal_to_disk_and_refuse_a_directory_that_holds_a_journal() {
    let scratch = ScratchDir::new("cluster-journal");
    let mut cluster = ClusterConfig::new(4);
    cluster.storage = Storage::Dir(scratch.0.clone());
    let pbft = PbftConfig::new(2_000_000_000);
    let engine = |me, committee: &agora_types::Committee, key: &SecretKey| {
        Pbft::new(pbft, committee.clone(), me, key.clone()).expect("a valid configuration")
    };
    let apps = |_| Box::new(TxLog::new(true)) as Box<dyn agora_consensus::Application + Send>;
    let report = run(cluster.clone(), engine, apps, load(400, 4, None)).expect("the cluster runs");
    assert_eq!(report.txs_finalized, 400);
    assert!(report.state_digests_agree, "{report:?}");
    for (i, r) in report.replicas.iter().enumerate() {
        assert!(r.journal_syncs > 0 && r.journal_bytes > 0, "replica {i}: {r:?}");
        assert!(scratch.0.join(format!("node-{i}/journal")).is_dir());
    }
    // The journals are still there: a second cluster on them is refused, naming the file.
    let err = run(cluster, engine, apps, load(4, 4, None)).unwrap_err();
    assert!(err.to_string().contains("already holds a journal"), "{err}");
}
