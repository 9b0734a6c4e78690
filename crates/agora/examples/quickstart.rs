//! The shortest way in: one simulated run of each protocol through the facade, as
//! `agora simulate` does it, printing the summary the command prints.
//!
//! `cargo run -p agora --example quickstart`

use agora::prelude::ProtocolChoice;
use agora::simulate::{self, SimulateOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for protocol in [ProtocolChoice::Streamlet, ProtocolChoice::Pbft] {
        let options =
            SimulateOptions { protocol, duration_ms: 2_000.0, ..SimulateOptions::default() };
        let run = simulate::run(&options)?;
        for warning in &run.warnings {
            eprintln!("warning: {warning}");
        }
        print!("{}", run.summary);
        assert!(run.summary.safety_ok);
    }
    Ok(())
}
