//! Simplex in the deterministic simulator: four nodes, one-way delay δ = 10 ms, Δ = 50 ms,
//! round-robin leaders, and node 2 crashed from the start. The three healthy iterations of
//! every four take 2δ each and finalize their block 3δ after its proposal; the silent leader's
//! iteration waits for the 3Δ timer, its dummy block is notarized δ later, and the chain goes
//! on over it.
//!
//! `cargo run -p agora-simplex --example silent_leader`

use agora_consensus::{ChainView, TxLog};
use agora_netsim::{Fault, FaultKind, SimConfig, Simulation, Targets, Workload};
use agora_simplex::{LeaderRule, Simplex, SimplexConfig};
use agora_types::NodeId;

const MS: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut simplex = SimplexConfig::new(50 * MS);
    simplex.leader = LeaderRule::RoundRobin;
    // A bad setting is an error when the engine is built, not a panic later.
    simplex.validate()?;

    let mut config = SimConfig::new(4);
    config.seed = 5;
    config.network.latency_ns = 10 * MS;
    config.duration_ns = 2_000 * MS;
    config.faults = vec![Fault { at_ns: 0, node: NodeId(2), kind: FaultKind::Crash }];
    config.workload = Some(Workload {
        rate_per_sec: 200.0,
        start_ns: 0,
        end_ns: 1_500 * MS,
        clients: 8,
        payload_bytes: 32,
        targets: Targets::Random,
    });
    let mut sim = Simulation::new(
        config,
        |me, committee, key| {
            Simplex::new(simplex, committee.clone(), me, key.clone()).expect("validated above")
        },
        |_| Box::new(TxLog::new(true)),
    )?;
    let report = sim.run();
    let views = sim.engine(NodeId(0)).block_views();
    let finalized: Vec<_> = views.iter().filter(|v| v.finalized_at_ns.is_some()).collect();
    let healthy = finalized
        .iter()
        .filter(|v| v.round.0 > 0)
        .filter(|v| {
            v.finalized_at_ns.zip(Some(v.proposed_at_ns)).is_some_and(|(f, p)| f - p == 30 * MS)
        })
        .count();
    let stats = sim.engine(NodeId(0)).stats();
    println!(
        "safe {} | {} of {} transactions final | {} blocks final at node 0, {} of them 3δ after \
         their proposal | {} iterations skipped at the timer",
        report.safety_ok,
        report.txs_finalized,
        report.submissions.accepted,
        finalized.len() - 1,
        healthy,
        stats.skips_cast,
    );
    assert!(report.safety_ok);
    assert_eq!(report.txs_finalized, report.submissions.accepted);
    assert!(stats.skips_cast > 0 && healthy + 1 == finalized.len());
    Ok(())
}
