//! The `agora` command.
//!
//! - `agora simulate …`: run a consensus protocol in the deterministic simulator, print a summary
//!   (or one JSON object with `--json`), and optionally draw the block tree.
//! - `agora book --input FILE.jsonl [--state]`: the order book alone, JSON lines in and out.
//! - `agora walkthrough …`: one block's life through the foundation, with sizes and timings.
//!
//! - `agora bench …`: the protocol comparison matrix and its report.
//! - `agora swarm --protocol P --seeds N …`: seeded random fault scenarios, checked for safety
//!   and liveness; a failure prints the command that reproduces it and writes its trace.
//!
//! With no subcommand it runs the short comparison: a 4-replica market over Streamlet and over
//! PBFT, in the simulator and in real time, printing the table and writing the report.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use agora::priority::Priority;
use agora::simulate::{self, ProtocolChoice, SimulateOptions};
use agora::walkthrough::{self, WalkthroughConfig, WalkthroughReport};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

/// agora: a market's orders, put in one agreed order by BFT consensus.
/// `println!` that returns an error for a closed standard output instead of panicking; `main`
/// ends quietly on it (`agora simulate | head -n 1`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns an error for a closed standard output (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[derive(Parser)]
#[command(name = "agora", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Logs (on standard error) as JSON lines instead of the human format; `RUST_LOG` filters
    /// them (default `info`).
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a consensus protocol in the deterministic network simulator and summarise the run.
    /// Unless options say otherwise the network is ideal (fixed latency, no jitter or loss,
    /// unlimited bandwidth, no processing cost), so results can be checked against the paper.
    Simulate(Box<SimulateArgs>),
    /// Compare the protocols: a matrix of simulated runs (n, scenarios) and wall-clock runs of
    /// the real-time cluster; writes report.md, report.json and SVG plots.
    Bench(BenchArgs),
    /// Run the order book alone: apply one JSON command per line, print one JSON event per
    /// line. Commands: market, deposit, withdraw, place, cancel, amend, cancel_all (see the
    /// README). A malformed line is reported with its line number and skipped.
    Book(BookArgs),
    /// Sign orders, batch them into a block, encode and decode it, verify every signature, and
    /// certify it with the committee's votes; print sizes and timings.
    Walkthrough(WalkthroughArgs),
    /// Swarm testing: run seeded random scenarios (Byzantine behaviours, crashes, partitions,
    /// loss, duplication, reordering, GST) and check safety always and liveness after GST.
    /// Exits non-zero if a scenario breaks what its fault budget promises.
    Swarm(SwarmArgs),
    /// Replay a replica's stored log (`--store DIR`, as `simulate --store-dir` writes it) from
    /// genesis or from a snapshot: recompute every state digest, compare each with the stored
    /// one and print the trades. Exits non-zero at the first height that differs, naming it.
    Replay(agora::replay::ReplayOptions),
    /// Write a fresh member key to `--out` (mode 0600; an existing file is never overwritten)
    /// and print its public key.
    Keygen(KeygenArgs),
    /// Run one node (`--config FILE`, as `agora testnet init` writes it) until SIGINT or
    /// SIGTERM, then stop it cleanly with its store synced.
    Node(NodeArgs),
    /// A local testnet of node processes on loopback.
    #[command(subcommand)]
    Testnet(TestnetCommand),
    /// Send the market's agents' orders to running nodes through their HTTP API, open loop,
    /// and measure throughput and end-to-end finality (POST to the block on the stream).
    Load(agora::load::LoadOptions),
}

#[derive(Args)]
struct KeygenArgs {
    /// Where the key goes.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct NodeArgs {
    /// The node's configuration file.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum TestnetCommand {
    /// Write the keys, the genesis and one configuration per node into `--dir`.
    Init(agora::testnet::InitOptions),
    /// Start the nodes of `--dir`, wait until they are linked, run the market's agents against
    /// them, stop them and print the summary of a wall run.
    Run(agora::testnet::RunOptions),
}

#[derive(Args)]
struct SwarmArgs {
    /// The protocol under test.
    #[arg(long, value_enum)]
    protocol: ProtocolChoice,
    /// How many scenarios.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first scenario's seed; the others follow.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// A fixed committee size (default: drawn from 4 to 7 per scenario, and one scenario in
    /// three is then the tightest in the budget: n = 7 with exactly f faulty nodes).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64), allow_negative_numbers = true)]
    nodes: Option<u16>,
    /// f + 1 faulty nodes: safety must hold if they only crash, and may fail if one is Byzantine.
    #[arg(long)]
    beyond_budget: bool,
    /// Run a deliberately broken engine (quorum-one-smaller, vote-extends-finalized,
    /// pre-prepare-counts-as-prepare, vote-before-durable, amnesia, finalize-after-skip,
    /// vote-unnotarized-chain, vote-without-lock, two-chain-commit-three-chain-lock): the
    /// campaign should fail.
    #[arg(long, value_parser = parse_weakening)]
    weaken: Option<agora::swarm::Weakening>,
    /// Twins scenarios: n = 4 plus a second instance of one member (two beyond the budget),
    /// with random partitions of the instances per round until GST.
    #[arg(long)]
    twins: bool,
    /// HotStuff's commit rule: a chain of 3 consecutive certified views (the paper's) or 2
    /// (Jolteon, HotStuff-2).
    #[arg(long, default_value_t = 3, value_name = "3|2",
          value_parser = clap::value_parser!(u8).range(2..=3))]
    chain: u8,
    /// Where failing scenarios' traces and pictures go.
    #[arg(long, default_value = "target/agora-swarm")]
    out: PathBuf,
}

fn parse_weakening(s: &str) -> Result<agora::swarm::Weakening, String> {
    agora::swarm::Weakening::parse(s).ok_or_else(|| {
        format!(
            "unknown weakening `{s}`: quorum-one-smaller, vote-extends-finalized, \
             pre-prepare-counts-as-prepare, vote-before-durable, amnesia, finalize-after-skip, \
             vote-unnotarized-chain, vote-without-lock or two-chain-commit-three-chain-lock"
        )
    })
}

#[derive(Args)]
struct BenchArgs {
    /// The short matrix (n = 4 and 7, shorter runs).
    #[arg(long)]
    quick: bool,
    /// Skip the wall-clock runs.
    #[arg(long)]
    no_wall: bool,
    /// Where the report goes.
    #[arg(long, default_value = "target/agora-report")]
    out: PathBuf,
    /// Seed of every simulated run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only the short comparison (n = 4, no faults, simulated and wall clock): what `agora` runs
    /// with no subcommand.
    #[arg(long)]
    main: bool,
    /// Keep every wall run's replica stores (synced to disk) in
    /// DIR/<protocol>-<scenario>-n<n>-r<k>/node-<i>, for `agora replay`.
    #[arg(long, value_name = "DIR")]
    store_dir: Option<PathBuf>,
}

#[derive(Args)]
struct BookArgs {
    /// The commands, one JSON object per line (`-` for standard input).
    #[arg(long, value_name = "FILE.jsonl")]
    input: PathBuf,
    /// At the end, print the balances, open orders and depth as one JSON object.
    #[arg(long)]
    state: bool,
    /// Price levels per side in the final depth.
    #[arg(long, default_value_t = 50)]
    depth: usize,
}

/// `agora simulate`: the lab's options, and what only the command line does with a run.
#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    run: SimulateOptions,
    /// Split the committee in two halves from FROM to TO (ms), then heal.
    #[arg(long = "partition-ms", num_args = 2, value_names = ["FROM", "TO"])]
    partition: Option<Vec<f64>>,
    /// Market, with --priority: new orders from this notional on (quote units) are high-value.
    #[arg(long, value_name = "QUOTE")]
    high_value_notional: Option<u64>,
    /// Market, with --priority: a market maker's turn inside a lane (others have 1).
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(u32).range(1..))]
    market_maker_weight: Option<u32>,
    /// Draw the message sequence chart of sequence number N (PBFT) as SVG.
    #[arg(long, num_args = 2, value_names = ["N", "FILE.svg"])]
    render_seq: Option<Vec<String>>,
    /// Draw the block tree of the first honest node as SVG.
    #[arg(long, value_name = "FILE.svg")]
    render: Option<PathBuf>,
    /// Write the block tree as Graphviz DOT.
    #[arg(long, value_name = "FILE.dot")]
    dot: Option<PathBuf>,
    /// Write every simulator event as JSON lines.
    #[arg(long, value_name = "FILE.jsonl")]
    trace: Option<PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct WalkthroughArgs {
    /// Seed for every key.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Committee size (1 to 1024).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    nodes: u16,
    /// Transactions in the block (1 to 16384).
    #[arg(long, default_value_t = 1_000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=16_384))]
    txs: u32,
    /// Distinct client accounts signing the transactions (1 to 16384; at most one per
    /// transaction is used).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=16_384))]
    clients: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let message = e.to_string();
            let first =
                message.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("agora: {first} (see `agora --help`)");
            return ExitCode::from(2);
        }
    };
    init_logs(cli.log_json);
    let result = match cli.command {
        Some(Command::Simulate(args)) => run_simulate(&args),
        Some(Command::Bench(args)) => run_bench(&args),
        Some(Command::Book(args)) => run_book(&args),
        Some(Command::Walkthrough(args)) => run_walkthrough(&args),
        Some(Command::Swarm(args)) => run_swarm(&args),
        Some(Command::Replay(args)) => run_replay(&args),
        Some(Command::Keygen(args)) => run_keygen(&args),
        Some(Command::Node(args)) => {
            agora::node::run_node(&args.config).map_err(anyhow::Error::msg)
        }
        Some(Command::Testnet(TestnetCommand::Init(options))) => run_testnet_init(&options),
        Some(Command::Testnet(TestnetCommand::Run(options))) => run_testnet(&options),
        Some(Command::Load(options)) => run_load(&options),
        None => run_bench(&BenchArgs {
            quick: true,
            no_wall: false,
            out: PathBuf::from("target/agora-report"),
            seed: 1,
            main: true,
            store_dir: None,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read the output stopped reading (`| head`): nothing is wrong.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs through `tracing`: `RUST_LOG` filters (default `info`), to standard error, human or
/// JSON.
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

fn run_keygen(args: &KeygenArgs) -> Result<()> {
    let public = agora::node::write_key(&args.out)?;
    outln!("{}", serde_json::to_value(public)?.as_str().unwrap_or_default())?;
    Ok(())
}

fn run_testnet_init(options: &agora::testnet::InitOptions) -> Result<()> {
    let configs = agora::testnet::init(options).map_err(anyhow::Error::msg)?;
    for config in configs {
        outln!("{}", config.display())?;
    }
    Ok(())
}

fn run_testnet(options: &agora::testnet::RunOptions) -> Result<()> {
    let exe = std::env::current_exe().context("where is this program?")?;
    let report = agora::testnet::run(options, &exe).map_err(anyhow::Error::msg)?;
    if options.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!("{}", report.summary())?;
    }
    if !report.state_digest_agree || report.txs_final + report.txs_busy < report.txs_submitted {
        anyhow::bail!("the testnet did not finish every order, or its nodes disagree");
    }
    Ok(())
}

fn run_load(options: &agora::load::LoadOptions) -> Result<()> {
    let orders = (options.rate * options.duration).round() as u64;
    let bar = if options.quiet || options.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(orders)
    };
    let report =
        agora::load::run(options, &|sent| bar.set_position(sent)).map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    if options.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!("{}", report.summary())?;
    }
    if report.txs_final < report.txs_accepted {
        anyhow::bail!("{} accepted orders were not final", report.txs_accepted - report.txs_final);
    }
    Ok(())
}

/// The priority settings: `--priority` with `--high-value-notional` and
/// `--market-maker-weight` on top.
fn priority_of(args: &SimulateArgs) -> Result<Option<Priority>> {
    let tuning = args.high_value_notional.is_some() || args.market_maker_weight.is_some();
    let Some(mut p) = args.run.priority.clone() else {
        if tuning {
            anyhow::bail!("--high-value-notional and --market-maker-weight need --priority");
        }
        return Ok(None);
    };
    if let Some(n) = args.high_value_notional {
        p.high_value_notional = n;
    }
    if let Some(w) = args.market_maker_weight {
        p.market_maker_weight = w;
    }
    Ok(Some(p))
}

fn run_simulate(args: &SimulateArgs) -> Result<()> {
    let render_seq = match &args.render_seq {
        Some(pair) => {
            let seq = pair[0].parse::<u64>().map_err(|_| {
                anyhow::anyhow!("--render-seq needs a sequence number, got `{}`", pair[0])
            })?;
            Some((seq, PathBuf::from(&pair[1])))
        }
        None => None,
    };
    let options = SimulateOptions {
        record_trace: args.trace.is_some() || render_seq.is_some(),
        partition_ms: args.partition.as_ref().map(|p| (p[0], p[1])),
        priority: priority_of(args)?,
        ..args.run.clone()
    };
    let run = simulate::run(&options).map_err(in_flags)?;
    for warning in &run.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&run.summary)?)?;
    } else {
        out!("{}", run.summary)?;
    }
    if let Some(path) = &args.render {
        fs::write(path, run.svg()).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            outln!("  picture         {} (view of node {})", path.display(), run.view_node)?;
        }
    }
    if let Some(path) = &args.dot {
        fs::write(path, run.dot()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(path), Some(trace)) = (&args.trace, run.trace_jsonl()) {
        fs::write(path, trace).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some((seq, path)) = &render_seq {
        let chart = run
            .sequence_chart(*seq)
            .with_context(|| format!("sequence number {seq} has no messages in this run"))?;
        fs::write(path, chart).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            outln!("  sequence chart  {} (sequence number {seq})", path.display())?;
        }
    }
    Ok(())
}

/// A library error about a field of the options, said in terms of the flag that sets it: the
/// flag derived from the field (`crashes` is `--crash`), or for a field the command line fills
/// in itself, the field's name in flag form (`partition_ms` is `--partition-ms`).
fn in_flags(e: simulate::SimulateError) -> anyhow::Error {
    match e {
        simulate::SimulateError::Field { field, reason } => {
            let command =
                <SimulateArgs as clap::Args>::augment_args(clap::Command::new("simulate"));
            let flag = command
                .get_arguments()
                .find(|a| a.get_id() == field)
                .and_then(|a| a.get_long().map(str::to_owned))
                .unwrap_or_else(|| field.replace('_', "-"));
            anyhow::anyhow!("--{flag} {reason}")
        }
        other => other.into(),
    }
}

fn run_replay(options: &agora::replay::ReplayOptions) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let summary = agora::replay::replay(options, &mut stdout)?;
    drop(stdout);
    if options.json {
        // The trades were the output; the summary goes where a person reads it.
        eprint!("{summary}");
    } else {
        out!("{summary}")?;
    }
    Ok(())
}

fn run_bench(args: &BenchArgs) -> Result<()> {
    use agora::bench;
    let options = bench::BenchOptions {
        quick: args.quick,
        wall: !args.no_wall,
        seed: args.seed,
        main: args.main,
        store_dir: args.store_dir.clone(),
        // The net rows run this very binary as their nodes.
        node_exe: (!args.no_wall).then(std::env::current_exe).transpose()?,
    };
    // Where the output goes is checked before the work starts, not after it.
    writable_dir(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    if let Some(dir) = &options.store_dir {
        writable_dir(dir).with_context(|| format!("--store-dir {}", dir.display()))?;
    }
    let plan = bench::plan(&options);
    eprintln!("measuring this machine's signature-verification limit…");
    let machine = bench::machine();
    let bar = indicatif::ProgressBar::new(plan.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut runs = Vec::new();
    for planned in &plan {
        bar.set_message(planned.label());
        runs.push(
            bench::run_one(planned, &options, &machine)
                .map_err(|e| anyhow::anyhow!("{}: {e}", planned.label()))?,
        );
        bar.inc(1);
    }
    let fairness_plan = bench::fairness_plan(&options);
    let mut outcomes = Vec::new();
    bar.set_length((plan.len() + fairness_plan.len()) as u64);
    for planned in &fairness_plan {
        bar.set_message(planned.label());
        outcomes.push(
            bench::run_fairness(planned, &options)
                .map_err(|e| anyhow::anyhow!("{}: {e}", planned.label()))?,
        );
        bar.inc(1);
    }
    // A replica's recovery: 100,000 orders replayed from a snapshot (20,000 in the quick
    // matrix), and the disk's syncs per second.
    let recovery = (options.wall && !options.main)
        .then(|| {
            bar.set_message("recovery");
            bench::measure_recovery(if args.quick { 20_000 } else { 100_000 }, args.seed)
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("recovery: {e}"))?;
    // The API's front door: 20,000 orders through HTTP (5,000 in the quick matrix).
    let front_door = (options.wall && !options.main)
        .then(|| {
            bar.set_message("front door");
            bench::measure_front_door(if args.quick { 5_000 } else { 20_000 }, args.seed)
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("front door: {e}"))?;
    bar.finish_and_clear();
    let report = bench::Report {
        machine,
        git_commit: bench::git_commit(),
        quick: args.quick,
        seed: args.seed,
        network: bench::network(args.quick),
        runs,
        fairness: (!outcomes.is_empty()).then(|| bench::summarise_fairness(&outcomes)),
        recovery,
        front_door,
    };
    let written = bench::write(&report, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    out!("{}", bench::markdown(&report))?;
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn run_swarm(args: &SwarmArgs) -> Result<()> {
    use agora::swarm::{self, Budget, CampaignOptions};
    let budget = if args.beyond_budget { Budget::Beyond } else { Budget::Within };
    let options = CampaignOptions {
        protocol: args.protocol,
        seeds: args.seeds,
        first_seed: args.first_seed,
        nodes: args.nodes.map(usize::from),
        budget,
        weakening: args.weaken,
        twins: args.twins,
        stop_on_failure: false,
        chain: agora::hotstuff::ChainRule::of_length(args.chain)
            .ok_or_else(|| anyhow::anyhow!("--chain is 3 or 2"))?,
    };
    options.check().map_err(|reason| anyhow::anyhow!(reason))?;
    let bar = indicatif::ProgressBar::new(args.seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failed = 0u64;
    let report = swarm::campaign(&options, |o| {
        bar.inc(1);
        if !o.ok() {
            failed += 1;
            bar.set_message(format!("{failed} failing"));
        }
    });
    bar.finish_and_clear();
    for (seed, error) in &report.errors {
        eprintln!("seed {seed}: could not run: {error}");
    }
    let failures = report.safety_failures.iter().chain(&report.liveness_failures);
    for outcome in failures {
        let s = &outcome.scenario;
        let what = if outcome.safety.is_empty() { "LIVENESS" } else { "SAFETY" };
        outln!("{what} FAILURE  {s}")?;
        for v in outcome.safety.iter().chain(&outcome.liveness) {
            outln!("    {v}")?;
        }
        if outcome.liveness_missed > outcome.liveness.len() {
            outln!("    … {} transactions missed their deadline in all", outcome.liveness_missed)?;
        }
        outln!("    reproduce: {}", s.reproduce())?;
        let dir = args.out.join(format!("{}-seed-{}", s.protocol.name(), s.seed));
        // The re-run records the trace; an engine that panicked panics again, and then there
        // is no trace to write, only the reproduce command.
        match swarm::run(s, true).map(|r| swarm::write_artifacts(&r, &dir)) {
            Ok(Ok(_)) => outln!("    trace and picture: {}", dir.display())?,
            Ok(Err(e)) => eprintln!("    cannot write {}: {e}", dir.display()),
            Err(e) => eprintln!("    cannot re-run ({e}): no trace to write"),
        }
    }
    let crash_only_safety =
        report.safety_failures.iter().filter(|o| !o.scenario.has_byzantine()).count();
    outln!(
        "{} {}: {} scenarios ({} with a Byzantine node), {} transactions final, {} restarts ({} from the journal, {} crashed mid-sync), {} undecodable messages dropped; {} safety failures ({} without a Byzantine node), {} liveness failures",
        options.protocol.name(),
        if args.beyond_budget { "beyond the fault budget" } else { "within the fault budget" },
        report.runs,
        report.with_byzantine,
        report.finalized,
        report.restarts.0,
        report.restarts.1,
        report.restarts.2,
        report.decode_errors,
        report.safety_failures.len(),
        crash_only_safety,
        report.liveness_failures.len(),
    )?;
    if report.passed(budget) {
        Ok(())
    } else {
        anyhow::bail!("the campaign found failures (see above)")
    }
}

/// The longest command line accepted; a longer one is reported and skipped.
const BOOK_LINE_BYTES_MAX: usize = 64 * 1024;

fn run_book(args: &BookArgs) -> Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let name = args.input.display().to_string();
    let reader: Box<dyn Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        if args.input.is_dir() {
            anyhow::bail!("cannot read {name}: it is a directory");
        }
        Box::new(fs::File::open(&args.input).with_context(|| format!("cannot open {name}"))?)
    };
    let mut reader = BufReader::new(reader);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut exchange: agora::orderbook::Exchange = agora::orderbook::Exchange::new();
    let mut events = Vec::new();
    let mut line = Vec::new();
    let reading = || format!("cannot read {name}");
    for number in 1.. {
        line.clear();
        // Read one line, but never keep more than the limit of it.
        let read = (&mut reader)
            .take(BOOK_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(reading)?;
        if read == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > BOOK_LINE_BYTES_MAX {
            skip_line(&mut reader).with_context(reading)?;
            malformed(&mut out, number, "line longer than 64 KiB")?;
            continue;
        }
        // A byte-order mark may open the input (some editors write one); nowhere else.
        let bytes = match number {
            1 => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&line),
            _ => &line,
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            malformed(&mut out, number, "not UTF-8")?;
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<agora::orderbook::Command>(text) {
            Ok(command) => {
                exchange.apply(&command, &mut events);
                for event in events.drain(..) {
                    serde_json::to_writer(&mut out, &event)?;
                    out.write_all(b"\n")?;
                }
            }
            Err(e) => malformed(&mut out, number, &e.to_string())?,
        }
    }
    if args.state {
        serde_json::to_writer(&mut out, &exchange.state_view(args.depth))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Makes `dir` if it is missing and checks that a file can be written in it.
fn writable_dir(dir: &std::path::Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".agora-probe-{}", std::process::id()));
    fs::write(&probe, b"")?;
    fs::remove_file(&probe)
}

/// Skips the rest of a line, never holding more than the reader's buffer of it.
fn skip_line(reader: &mut impl std::io::BufRead) -> std::io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = buffer.len();
                reader.consume(len);
            }
        }
    }
}

fn malformed(out: &mut impl std::io::Write, line: u64, error: &str) -> Result<()> {
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!({ "event": "malformed", "line": line, "error": error }),
    )?;
    out.write_all(b"\n")?;
    Ok(())
}

fn run_walkthrough(args: &WalkthroughArgs) -> Result<()> {
    let report = walkthrough::run(WalkthroughConfig {
        seed: args.seed,
        nodes: usize::from(args.nodes),
        txs: args.txs as usize,
        clients: args.clients as usize,
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_walkthrough(&report)?;
    }
    Ok(())
}

fn print_walkthrough(r: &WalkthroughReport) -> std::io::Result<()> {
    outln!("agora walkthrough: one block through the foundation")?;
    outln!()?;
    outln!("  committee      n = {}, tolerates f = {} Byzantine", r.nodes, r.f)?;
    outln!("  block          {} transactions, {} bytes encoded", r.txs, r.block_bytes)?;
    outln!("  block digest   {}", r.block_digest)?;
    outln!(
        "  signatures     {}",
        if r.all_signatures_valid { "all valid" } else { "SOME INVALID" }
    )?;
    outln!("  certificate    {} signers, {} bytes", r.certificate_signers, r.certificate_bytes)?;
    outln!()?;
    outln!("  {:<20} {:>7} {:>12} {:>12}", "step", "items", "total (µs)", "each (µs)")?;
    for t in &r.timings {
        outln!("  {:<20} {:>7} {:>12.1} {:>12.2}", t.step, t.items, t.total_us, t.per_item_us())?;
    }
    outln!()?;
    outln!(
        "  (one wall-clock run on this machine; `cargo bench -p agora-benches` measures properly)"
    )?;
    Ok(())
}

/// True when `error` comes from writing to a standard output whose reader has gone.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == broken
            // serde_json wraps the writer's error without exposing it as a source.
            || cause.downcast_ref::<serde_json::Error>().and_then(|e| e.io_error_kind()) == broken
    })
}
