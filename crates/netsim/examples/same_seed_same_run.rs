//! The deterministic simulator with an engine of the workspace's simplest kind (the reference
//! engine: a fixed leader, acknowledgements, resends) on a network that loses, duplicates and
//! reorders messages. The invariant checker watches every commit, and the same seed gives the
//! same run, down to the digest of its trace; another seed gives another run.
//!
//! `cargo run -p agora-netsim --example same_seed_same_run`

use agora_consensus::TxLog;
use agora_consensus::reference::{RefConfig, ReferenceEngine};
use agora_netsim::{Jitter, SimConfig, SimReport, Simulation, Targets, TraceMode, Workload};

fn run(seed: u64) -> Result<SimReport, agora_netsim::SimError> {
    let mut config = SimConfig::new(4);
    config.seed = seed;
    config.duration_ns = 2_000_000_000;
    config.network.jitter = Jitter::Uniform { max_ns: 5_000_000 };
    config.network.loss = 0.05;
    config.network.duplicate = 0.02;
    config.network.reorder_ns = Some(3_000_000);
    config.trace = TraceMode::Digest;
    config.workload = Some(Workload {
        rate_per_sec: 500.0,
        start_ns: 0,
        end_ns: 1_000_000_000,
        clients: 16,
        payload_bytes: 32,
        targets: Targets::Random,
    });
    let mut sim = Simulation::new(
        config,
        |_, _, _| ReferenceEngine::new(RefConfig::new(4)),
        |_| Box::new(TxLog::new(true)),
    )?;
    Ok(sim.run())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let first = run(11)?;
    let again = run(11)?;
    let other = run(12)?;
    for (name, r) in [("seed 11", &first), ("seed 11 again", &again), ("seed 12", &other)] {
        println!(
            "{name:<14} safe {} | {} of {} final | {} messages, {} lost | p50 {:.1} ms | trace {}",
            r.safety_ok,
            r.txs_finalized,
            r.submissions.accepted,
            r.messages.messages,
            r.dropped.loss,
            r.latency.p50_ns as f64 / 1e6,
            r.trace_digest.short(),
        );
    }
    assert!(first.safety_ok && other.safety_ok);
    assert_eq!(first.trace_digest, again.trace_digest);
    assert_ne!(first.trace_digest, other.trace_digest);
    Ok(())
}
