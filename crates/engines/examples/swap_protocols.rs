//! One simulation written once and run with each protocol: the engine is chosen by the
//! `EngineConfig` value alone, so swapping PBFT for Streamlet or Simplex is one line.
//!
//! `cargo run -p agora-engines --example swap_protocols`

use agora_consensus::TxLog;
use agora_engines::{Engine, EngineConfig, WithEngine, with_engine};
use agora_hotstuff::HotStuffConfig;
use agora_netsim::{SimConfig, SimReport, Simulation, Targets, Workload};
use agora_pbft::PbftConfig;
use agora_simplex::SimplexConfig;
use agora_streamlet::StreamletConfig;
use agora_types::{Committee, NodeId, SecretKey};

const MS: u64 = 1_000_000;

/// The run, for whichever engine the factory builds.
struct Run(SimConfig);

impl WithEngine for Run {
    type Output = Result<(&'static str, SimReport), agora_netsim::SimError>;

    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy + 'static,
    ) -> Self::Output {
        let mut sim = Simulation::new(self.0, engine, |_| Box::new(TxLog::new(true)))?;
        Ok((P::PROTOCOL.name(), sim.run()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = SimConfig::new(4);
    config.duration_ns = 2_000 * MS;
    config.workload = Some(Workload {
        rate_per_sec: 500.0,
        start_ns: 0,
        end_ns: 1_000 * MS,
        clients: 16,
        payload_bytes: 32,
        targets: Targets::Random,
    });
    let engines = [
        EngineConfig::Streamlet(StreamletConfig::new(20 * MS)),
        EngineConfig::Pbft(PbftConfig::new(500 * MS)),
        EngineConfig::Simplex(SimplexConfig::new(20 * MS)),
        EngineConfig::HotStuff(HotStuffConfig::new(20 * MS)),
    ];
    for engine in engines {
        let (name, r) = with_engine(engine, Run(config.clone()))??;
        println!(
            "{name:<9} safe {} | {} of {} final | {} messages | p50 {:.0} ms, p99 {:.0} ms",
            r.safety_ok,
            r.txs_finalized,
            r.submissions.accepted,
            r.messages.messages,
            r.latency.p50_ns as f64 / 1e6,
            r.latency.p99_ns as f64 / 1e6,
        );
        assert!(r.safety_ok && r.txs_finalized > 0);
    }

    // A setting an engine cannot run with is refused by the factory, naming the field.
    let mut bad = PbftConfig::new(500 * MS);
    bad.checkpoint_interval = 0;
    let refused = with_engine(EngineConfig::Pbft(bad), Run(config)).map(|_| ());
    println!("refused: {}", refused.as_ref().unwrap_err());
    assert!(refused.is_err());
    Ok(())
}
