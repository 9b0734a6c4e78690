//! Priority lanes and execution orders, end to end in the simulator: every mode keeps replicas
//! in agreement over both protocols, a front-runner earns from proposal order and not from a
//! batch auction, and lanes keep urgent orders fast under overload.

use agora_lab::simulate::{self, ProtocolChoice, SimulateOptions, WorkloadChoice};
use agora_market::ExecutionOrder;
use agora_market::priority::Priority;
use agora_types::NodeId;

fn market(protocol: ProtocolChoice, ordering: ExecutionOrder, seed: u64) -> SimulateOptions {
    SimulateOptions {
        protocol,
        seed,
        workload: WorkloadChoice::Market,
        duration_ms: 5_000.0,
        tx_rate: 400.0,
        ordering,
        priority: Some(Priority::default()),
        // Node 0 is PBFT's first primary; under Streamlet it leads a quarter of the epochs.
        frontrunner: Some(NodeId(0)),
        ..SimulateOptions::default()
    }
}

#[test]
fn every_mode_keeps_replicas_in_agreement_and_executes_every_final_transaction() {
    for protocol in [ProtocolChoice::Streamlet, ProtocolChoice::Pbft] {
        for ordering in ExecutionOrder::ALL {
            let s = simulate::run(&market(protocol, ordering, 7)).unwrap().summary;
            let what = format!("{} {}", protocol.name(), ordering.name());
            assert!(s.safety_ok, "{what}: {:?}", s.violations);
            assert_eq!(s.state_digest_agree, Some(true), "{what}");
            let f = s.fairness.expect("a market run measures fairness");
            assert!(f.frontrunner_attacks > 0, "{what}: the front-runner never struck");
            // Canonical order executes a block when its successor is final; the last one is
            // still executed (PBFT closes with an empty block).
            assert_eq!(f.block_txs, s.txs_finalized, "{what}: final but never executed");
            assert!(s.txs_finalized >= s.txs_submitted, "{what}: accepted but not final");
        }
    }
}

#[test]
fn a_frontrunner_earns_from_proposal_order_and_not_from_a_batch_auction() {
    for seed in [1, 2] {
        let run = |ordering| {
            let s = simulate::run(&market(ProtocolChoice::Pbft, ordering, seed)).unwrap().summary;
            s.fairness.unwrap()
        };
        let (proposal, canonical, auction) = (
            run(ExecutionOrder::Proposal),
            run(ExecutionOrder::Canonical),
            run(ExecutionOrder::BatchAuction),
        );
        assert!(proposal.frontrunner_profit > 50_000.0, "seed {seed}: {proposal:?}");
        assert!(
            canonical.frontrunner_profit < proposal.frontrunner_profit / 2.0,
            "seed {seed}: canonical {} against proposal {}",
            canonical.frontrunner_profit,
            proposal.frontrunner_profit
        );
        assert!(
            auction.frontrunner_profit.abs() < proposal.frontrunner_profit / 20.0,
            "seed {seed}: auction {} against proposal {}",
            auction.frontrunner_profit,
            proposal.frontrunner_profit
        );
        assert!(auction.victim_slippage_bps < proposal.victim_slippage_bps, "seed {seed}");
    }
}

#[test]
fn under_overload_lanes_keep_urgent_orders_fast_and_market_makers_in() {
    let overloaded = |priority: Option<Priority>| {
        let options = SimulateOptions {
            workload: WorkloadChoice::Market,
            duration_ms: 5_000.0,
            tx_rate: 2_000.0,
            batch_max: 100,
            priority,
            ..SimulateOptions::default()
        };
        simulate::run(&options).unwrap().summary.fairness.unwrap()
    };
    let (fifo, lanes) = (overloaded(None), overloaded(Some(Priority::default())));
    let p99 = |f: &agora_lab::fairness::Fairness, lane: &str| f.lane_latency_ms[lane].p99;
    let p50 = |f: &agora_lab::fairness::Fairness, lane: &str| f.lane_latency_ms[lane].p50;
    // Streamlet finalizes at most 100 transactions per 100 ms epoch: 2,000 per second is a
    // growing backlog. First come, first served, everyone waits for it.
    assert!(p50(&fifo, "cancels") > 1_000.0, "{fifo:?}");
    // With lanes, liquidations and cancels go into the next block; ordinary orders wait.
    for urgent in ["liquidations", "cancels", "high_value"] {
        assert!(p99(&lanes, urgent) < 500.0, "{urgent}: {lanes:?}");
        assert!(p99(&lanes, urgent) < p50(&lanes, "ordinary"), "{urgent}: {lanes:?}");
    }
    // Market makers (turn 2) get more of the block than first come, first served gave them.
    assert!(
        lanes.block_share["market_maker"] > 2.0 * fifo.block_share["market_maker"],
        "{:?} against {:?}",
        lanes.block_share,
        fifo.block_share
    );
}

#[test]
fn lanes_auctions_and_the_frontrunner_are_deterministic() {
    let options = market(ProtocolChoice::Streamlet, ExecutionOrder::BatchAuction, 3);
    let (a, b) = (simulate::run(&options).unwrap(), simulate::run(&options).unwrap());
    assert_eq!(a.report.trace_digest, b.report.trace_digest);
    assert_eq!(a.summary.fairness, b.summary.fairness);
}

#[test]
fn every_execution_order_keeps_agreement_through_faults() {
    for ordering in [ExecutionOrder::Canonical, ExecutionOrder::BatchAuction] {
        let faults: [(&str, SimulateOptions); 4] = [
            (
                "pbft primary crash",
                SimulateOptions {
                    crash_primary_of_view: vec![0],
                    frontrunner: None,
                    ..market(ProtocolChoice::Pbft, ordering, 4)
                },
            ),
            (
                "pbft partition",
                SimulateOptions {
                    partition_ms: Some((1_000.0, 2_000.0)),
                    ..market(ProtocolChoice::Pbft, ordering, 4)
                },
            ),
            (
                "streamlet partition",
                SimulateOptions {
                    partition_ms: Some((1_000.0, 2_000.0)),
                    ..market(ProtocolChoice::Streamlet, ordering, 4)
                },
            ),
            (
                "streamlet equivocator",
                SimulateOptions {
                    equivocator: true,
                    frontrunner: Some(NodeId(1)),
                    ..market(ProtocolChoice::Streamlet, ordering, 4)
                },
            ),
        ];
        for (what, options) in faults {
            let s = simulate::run(&options).unwrap().summary;
            assert!(s.safety_ok, "{what} {}: {:?}", ordering.name(), s.violations);
            assert_eq!(s.state_digest_agree, Some(true), "{what} {}", ordering.name());
            assert!(s.txs_finalized >= s.txs_submitted, "{what} {}", ordering.name());
        }
    }
}
