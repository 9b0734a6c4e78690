//! PBFT ordering transactions for an application of your own: a replicated counter that adds
//! up the first byte of every valid transaction's payload. The same engine and application run
//! first in the deterministic simulator, then in the real-time cluster of threads.
//!
//! `cargo run -p agora-pbft --example custom_app`
//!
//! In the simulator, `Simulation::with_apps` keeps the application's type, so each replica's
//! counter is read back as it is (no downcast). The cluster owns its applications boxed, so the
//! counter there shares its total through an atomic the example keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_consensus::{Application, Applied};
use agora_crypto::{Digest, SignatureCheck, domain};
use agora_netsim::{SimConfig, Simulation, Workload};
use agora_pbft::{Pbft, PbftConfig};
use agora_runtime::{ClusterConfig, Load};
use agora_types::bytes::Bytes;
use agora_types::{Block, Height, NodeId, SecretKey, Transaction};

/// The replicated state: a running total, and a digest of every total it passed through.
#[derive(Debug, Default)]
struct Counter {
    total: u64,
    height: Height,
    digest: Digest,
    /// Where the cluster reads the total (the simulator reads `total` directly).
    shared: Option<Arc<AtomicU64>>,
}

impl Application for Counter {
    fn apply(&mut self, block: &Block, checker: &mut dyn SignatureCheck) -> Applied {
        let (mut executed, mut rejected) = (0, 0);
        for tx in block.batch().transactions() {
            // Only what its signer signed counts; a forged transaction changes nothing.
            if tx.verify_with(checker).is_err() {
                rejected += 1;
                continue;
            }
            self.total += u64::from(tx.payload().first().copied().unwrap_or(0));
            executed += 1;
        }
        self.height = block.height();
        self.digest = domain::STATE
            .hasher()
            .update_digest(&self.digest)
            .update(&self.total.to_le_bytes())
            .finalize();
        if let Some(shared) = &self.shared {
            shared.store(self.total, Ordering::Relaxed);
        }
        Applied { executed, rejected, state_digest: self.digest }
    }

    fn state_digest(&self) -> Digest {
        self.digest
    }

    fn height(&self) -> Height {
        self.height
    }
}

fn main() {
    // The simulator: four replicas, 200 transactions over a second, a second to finish.
    let mut config = SimConfig::new(4);
    config.seed = 7;
    config.duration_ns = 2_000_000_000;
    config.workload = Some(Workload {
        rate_per_sec: 200.0,
        start_ns: 0,
        end_ns: 1_000_000_000,
        clients: 8,
        payload_bytes: 16,
        targets: agora_netsim::Targets::Random,
    });
    let pbft = PbftConfig::new(200_000_000);
    let engine = |me, committee: &agora_types::Committee, key: &SecretKey| {
        Pbft::new(pbft, committee.clone(), me, key.clone()).expect("a valid configuration")
    };
    let mut sim =
        Simulation::with_apps(config, engine, |_| Counter::default()).expect("a valid config");
    let report = sim.run();
    let totals: Vec<u64> = (0..4).map(|i| sim.app(NodeId(i)).total).collect();
    println!(
        "simulator: {} transactions final, totals {totals:?}, safe {}",
        report.txs_finalized, report.safety_ok
    );
    assert!(report.safety_ok && totals.iter().all(|t| *t == totals[0]));

    // The cluster: the same engine on four threads, 400 transactions as fast as it takes them.
    let clients: Vec<SecretKey> = (0..8).map(|i| SecretKey::from_seed(5, i)).collect();
    let txs = (0..400usize)
        .map(|i| {
            let payload = Bytes::from(vec![(i % 7) as u8 + 1; 16]);
            let tx =
                Transaction::new_signed(&clients[i % 8], (i / 8) as u64, payload).expect("small");
            (NodeId((i % 4) as u16), tx)
        })
        .collect();
    let load = Load { txs, rate_per_sec: None, window: 200 };
    let shared: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let apps = |node: NodeId| {
        let counter =
            Counter { shared: Some(Arc::clone(&shared[node.index()])), ..Counter::default() };
        Box::new(counter) as Box<dyn Application + Send>
    };
    let report =
        agora_runtime::run(ClusterConfig::new(4), engine, apps, load).expect("the cluster runs");
    let totals: Vec<u64> = shared.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    println!(
        "cluster: {} transactions final at every replica, totals {totals:?}, digests agree {}",
        report.txs_finalized, report.state_digests_agree
    );
    assert!(report.state_digests_agree && totals.iter().all(|t| *t == totals[0]));
}
