//! A small swarm campaign per protocol: seeded random scenarios (committee size, Byzantine and
//! crashed nodes, loss, partitions before GST) checked for safety always and liveness after GST,
//! then a deliberately broken PBFT that the campaign must catch.
//!
//! `cargo run -p agora-lab --example small_campaign`

use agora_lab::simulate::ProtocolChoice;
use agora_lab::swarm::{self, Budget, CampaignOptions, Weakening};

fn options(protocol: ProtocolChoice, weakening: Option<Weakening>) -> CampaignOptions {
    CampaignOptions {
        protocol,
        seeds: 12,
        first_seed: 0,
        nodes: Some(4),
        budget: Budget::Within,
        weakening,
        twins: false,
        stop_on_failure: false,
        chain: agora_hotstuff::ChainRule::Three,
    }
}

fn main() {
    for protocol in [ProtocolChoice::Streamlet, ProtocolChoice::Pbft] {
        let report = swarm::campaign(&options(protocol, None), |_| {});
        println!(
            "{:<9} {} scenarios ({} with a Byzantine node): {} safety and {} liveness failures",
            protocol.name(),
            report.runs,
            report.with_byzantine,
            report.safety_failures.len(),
            report.liveness_failures.len(),
        );
        assert!(report.passed(Budget::Within), "{protocol:?}: {report:?}");
    }
    // PBFT counting the primary's pre-prepare as one of the 2f prepares: its prepared
    // certificates are one prepare short, view changes refuse them, and the cluster stalls.
    let broken = options(ProtocolChoice::Pbft, Some(Weakening::PrePrepareCountsAsPrepare));
    let report = swarm::campaign(&CampaignOptions { seeds: 20, ..broken }, |_| {});
    let caught = report.safety_failures.iter().chain(&report.liveness_failures).next();
    match caught {
        Some(first) => println!("the broken PBFT is caught: {}", first.scenario),
        None => println!("the broken PBFT was not caught in 20 seeds"),
    }
    assert!(!report.passed(Budget::Within));
}
