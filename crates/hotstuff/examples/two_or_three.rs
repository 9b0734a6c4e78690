//! Three-chain against two-chain HotStuff in the deterministic simulator: four nodes, one-way
//! delay δ = 10 ms, Δ = 50 ms, round-robin leaders. On a healthy network a block is proposed
//! every 2δ and the first node commits it 6δ (three chains) or 4δ (two chains) after its
//! proposal. With node 3 crashed, only three leaders in a row are live: two chains still
//! commit, three never do (four live leaders in a row are needed), though they stay safe.
//!
//! `cargo run -p agora-hotstuff --example two_or_three`

use agora_consensus::TxLog;
use agora_hotstuff::{ChainRule, HotStuff, HotStuffConfig, LeaderRule};
use agora_netsim::{Fault, FaultKind, SimConfig, SimReport, Simulation, Targets, Workload};
use agora_types::NodeId;

const MS: u64 = 1_000_000;

fn run(chain: ChainRule, crashed: bool) -> Result<SimReport, Box<dyn std::error::Error>> {
    let mut hotstuff = HotStuffConfig::new(50 * MS).with_chain(chain);
    hotstuff.leader = LeaderRule::RoundRobin;
    // A bad setting is an error when the engine is built, not a panic later.
    hotstuff.validate()?;
    let mut config = SimConfig::new(4);
    config.seed = 5;
    config.network.latency_ns = 10 * MS;
    config.duration_ns = 4_000 * MS;
    if crashed {
        config.faults = vec![Fault { at_ns: 0, node: NodeId(3), kind: FaultKind::Crash }];
    }
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
            HotStuff::new(hotstuff, committee.clone(), me, key.clone()).expect("validated above")
        },
        |_| Box::new(TxLog::new(true)),
    )?;
    Ok(sim.run())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for chain in [ChainRule::Three, ChainRule::Two] {
        for crashed in [false, true] {
            let report = run(chain, crashed)?;
            let gaps: Vec<u64> = report
                .finalized_blocks
                .iter()
                .map(|b| b.finalized_at_ns - b.proposed_at_ns)
                .collect();
            let typical = gaps.iter().min().map_or(0, |g| g / MS);
            println!(
                "{}-chain, {:<16} safe {} | {:>3} of {:>3} transactions final | {:>2} blocks | \
                 fastest commit {typical} ms after proposal",
                chain.length(),
                if crashed { "node 3 crashed:" } else { "healthy:" },
                report.safety_ok,
                report.txs_finalized,
                report.submissions.accepted,
                report.finalized_blocks.len(),
            );
            assert!(report.safety_ok);
            match (chain, crashed) {
                (ChainRule::Three, true) => assert_eq!(report.txs_finalized, 0),
                _ => assert_eq!(report.txs_finalized, report.submissions.accepted),
            }
        }
    }
    Ok(())
}
