//! Streamlet in the deterministic simulator: four nodes, Δ = 50 ms, round-robin leaders, and
//! node 2 crashed from the start. Every fourth epoch has no proposal; finality needs three
//! notarized blocks of consecutive epochs, which the other three epochs of each four provide, so
//! the crashed leader costs one block in four and delays finality, and the chain goes on.
//!
//! `cargo run -p agora-streamlet --example crashed_leader`

use agora_consensus::{ChainView, TxLog};
use agora_netsim::{Fault, FaultKind, SimConfig, Simulation, Targets, Workload};
use agora_streamlet::{LeaderRule, Streamlet, StreamletConfig};
use agora_types::NodeId;

const MS: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut streamlet = StreamletConfig::new(50 * MS);
    streamlet.leader = LeaderRule::RoundRobin;
    // A bad setting is an error when the engine is built, not a panic later.
    streamlet.validate()?;

    let mut config = SimConfig::new(4);
    config.seed = 5;
    config.network.latency_ns = 10 * MS;
    config.duration_ns = 3_000 * MS;
    config.faults = vec![Fault { at_ns: 0, node: NodeId(2), kind: FaultKind::Crash }];
    config.workload = Some(Workload {
        rate_per_sec: 200.0,
        start_ns: 0,
        end_ns: 2_000 * MS,
        clients: 8,
        payload_bytes: 32,
        targets: Targets::Random,
    });
    let mut sim = Simulation::new(
        config,
        |me, committee, key| {
            Streamlet::new(streamlet, committee.clone(), me, key.clone()).expect("validated above")
        },
        |_| Box::new(TxLog::new(true)),
    )?;
    let report = sim.run();
    let views = sim.engine(NodeId(0)).block_views();
    let finalized = views.iter().filter(|v| v.finalized_at_ns.is_some()).count();
    println!(
        "safe {} | {} of {} transactions final | {} blocks final at node 0 | p50 finality {:.0} ms",
        report.safety_ok,
        report.txs_finalized,
        report.submissions.accepted,
        finalized,
        report.latency.p50_ns as f64 / 1e6,
    );
    assert!(report.safety_ok);
    assert!(report.txs_finalized > 0);
    Ok(())
}
