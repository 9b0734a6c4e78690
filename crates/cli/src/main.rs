//! The `agora` command.
//!
//! With no subcommand it runs the default job. Until the simulator exists that is
//! `agora walkthrough`: one block's life through agora's foundation, with sizes and timings.

use std::process::ExitCode;

use agora::walkthrough::{self, WalkthroughConfig, WalkthroughReport};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// agora: a market's orders, put in one agreed order by BFT consensus.
#[derive(Parser)]
#[command(name = "agora", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Sign orders, batch them into a block, encode and decode it, verify every signature, and
    /// certify it with the committee's votes; print sizes and timings.
    Walkthrough(WalkthroughArgs),
}

#[derive(Args)]
struct WalkthroughArgs {
    /// Seed for every key.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Committee size (1 to 1024).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    nodes: u16,
    /// Transactions in the block (1 to 16384).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=16_384))]
    txs: u32,
    /// Distinct client accounts signing the transactions.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

impl Default for WalkthroughArgs {
    fn default() -> Self {
        let d = WalkthroughConfig::default();
        Self {
            seed: d.seed,
            nodes: d.nodes as u16,
            txs: d.txs as u32,
            clients: d.clients as u32,
            json: false,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Walkthrough(args)) => run_walkthrough(&args),
        None => run_walkthrough(&WalkthroughArgs::default()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_walkthrough(args: &WalkthroughArgs) -> Result<()> {
    let report = walkthrough::run(WalkthroughConfig {
        seed: args.seed,
        nodes: usize::from(args.nodes),
        txs: args.txs as usize,
        clients: args.clients as usize,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_walkthrough(&report);
    }
    Ok(())
}

fn print_walkthrough(r: &WalkthroughReport) {
    println!("agora walkthrough: one block through the foundation");
    println!();
    println!("  committee      n = {}, tolerates f = {} Byzantine", r.nodes, r.f);
    println!("  block          {} transactions, {} bytes encoded", r.txs, r.block_bytes);
    println!("  block digest   {}", r.block_digest);
    println!(
        "  signatures     {}",
        if r.all_signatures_valid { "all valid" } else { "SOME INVALID" }
    );
    println!("  certificate    {} signers, {} bytes", r.certificate_signers, r.certificate_bytes);
    println!();
    println!("  {:<20} {:>7} {:>12} {:>12}", "step", "items", "total (µs)", "each (µs)");
    for t in &r.timings {
        println!("  {:<20} {:>7} {:>12.1} {:>12.2}", t.step, t.items, t.total_us, t.per_item_us());
    }
    println!();
    println!(
        "  (one wall-clock run on this machine; `cargo bench -p agora-benches` measures properly)"
    );
}
