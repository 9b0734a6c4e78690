//! agora's project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! Tasks are Rust, not shell scripts, so they run the same on every machine that has the Rust
//! toolchain and nothing else.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// agora's project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks, in order, stopping at the first failure: formatting, clippy with
    /// warnings denied, the whole test suite (doc tests included), the live page in headless
    /// Chromium (installed with apt-get when missing), every library crate's example, the docs
    /// with warnings denied, and `cargo package` of every library crate.
    Ci,
    /// Compare the protocols and write target/agora-report/ (report.md, report.json, SVG
    /// plots): `agora bench` built in release mode.
    Bench {
        /// The short matrix (under two minutes on this machine).
        #[arg(long)]
        quick: bool,
        /// Skip the wall-clock runs.
        #[arg(long)]
        no_wall: bool,
    },
    /// Swarm testing: seeded random fault scenarios checked for safety and liveness (`agora
    /// swarm` built in release mode; every option is passed on, see `agora swarm --help`).
    Swarm {
        /// Options for `agora swarm`, for example `--protocol pbft --seeds 1000`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `cargo package` for every library crate, each verified by building it from its packaged
    /// sources alone (agora's own crates resolved to this checkout, since they are not on
    /// crates.io).
    Package,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci => ci(),
        Task::Bench { quick, no_wall } => bench(quick, no_wall),
        Task::Swarm { args } => swarm(&args),
        Task::Package => run_steps(&[package_step()]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One step of a task: a cargo invocation with a name for the summary.
struct Step {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    /// What must hold before the cargo invocation (a tool installed); its failure fails the step.
    prepare: Option<fn() -> Result<()>>,
}

impl Step {
    fn new(name: &'static str, args: &[&'static str]) -> Self {
        let args = args.iter().map(|a| a.to_string()).collect();
        Self { name, args, env: Vec::new(), prepare: None }
    }

    fn prepare(mut self, prepare: fn() -> Result<()>) -> Self {
        self.prepare = Some(prepare);
        self
    }

    fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }
}

/// The library crates, by directory and package name.
const LIBRARIES: [(&str, &str); 19] = [
    ("crypto", "agora-crypto"),
    ("types", "agora-types"),
    ("store", "agora-store"),
    ("net", "agora-net"),
    ("consensus", "agora-consensus"),
    ("netsim", "agora-netsim"),
    ("streamlet", "agora-streamlet"),
    ("pbft", "agora-pbft"),
    ("simplex", "agora-simplex"),
    ("hotstuff", "agora-hotstuff"),
    ("orderbook", "agora-orderbook"),
    ("runtime", "agora-runtime"),
    ("market", "agora-market"),
    ("engines", "agora-engines"),
    ("api", "agora-api"),
    ("node", "agora-node"),
    ("client", "agora-client"),
    ("lab", "agora-lab"),
    ("agora", "agora"),
];

/// `cargo package` of every library crate. A packaged crate names its agora dependencies by
/// version, as crates.io would serve them; the patches point those at this checkout, so that
/// verification builds each crate from its package and nothing else of the workspace.
fn package_step() -> Step {
    let mut step = Step::new("package", &["package", "--allow-dirty"]);
    for (dir, name) in LIBRARIES {
        let patch = format!("patch.crates-io.{name}.path=\"crates/{dir}\"");
        step.args.extend(["--config".to_string(), patch, "-p".to_string(), name.to_string()]);
    }
    step
}

/// One example per library crate, with its arguments: `cargo xtask ci` runs them all.
const EXAMPLES: [(&str, &[&str]); 19] = [
    ("example: crypto", &["agora-crypto", "--example", "sign_and_verify"]),
    ("example: types", &["agora-types", "--example", "block_on_the_wire"]),
    ("example: consensus", &["agora-consensus", "--example", "votes_and_mempool"]),
    ("example: store", &["agora-store", "--example", "crash_and_recover"]),
    ("example: net", &["agora-net", "--example", "three_members"]),
    ("example: netsim", &["agora-netsim", "--example", "same_seed_same_run"]),
    ("example: streamlet", &["agora-streamlet", "--example", "crashed_leader"]),
    ("example: pbft", &["agora-pbft", "--example", "custom_app"]),
    ("example: simplex", &["agora-simplex", "--example", "silent_leader"]),
    ("example: hotstuff", &["agora-hotstuff", "--example", "two_or_three"]),
    ("example: engines", &["agora-engines", "--example", "swap_protocols"]),
    ("example: orderbook", &["agora-orderbook", "--example", "book_alone"]),
    ("example: market", &["agora-market", "--example", "two_replicas"]),
    ("example: runtime", &["agora-runtime", "--example", "wall", "--", "2000"]),
    ("example: api", &["agora-api", "--example", "serve_a_market"]),
    ("example: node", &["agora-node", "--example", "four_nodes"]),
    ("example: client", &["agora-client", "--example", "query_a_node"]),
    ("example: lab", &["agora-lab", "--example", "small_campaign"]),
    ("example: agora", &["agora", "--example", "quickstart"]),
];

fn ci() -> Result<()> {
    let mut steps = vec![
        Step::new("format", &["fmt", "--all", "--check"]),
        Step::new(
            "clippy",
            &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"],
        ),
    ];
    if has_nextest() {
        // nextest does not run doc tests; run them first so that the suite's summary is the
        // last test line of the log.
        steps.push(Step::new("doc tests", &["test", "--workspace", "--doc", "--locked"]));
        steps.push(Step::new("tests (nextest)", &["nextest", "run", "--workspace", "--locked"]));
    } else {
        steps.push(Step::new("tests", &["test", "--workspace", "--locked"]));
    }
    // The live page in headless Chromium: ignored by a plain `cargo test`, since it needs a
    // browser, which this step installs when it is missing.
    steps.push(
        Step::new(
            "dashboard",
            &["test", "--locked", "-p", "agora-node", "--test", "dashboard", "--", "--ignored"],
        )
        .prepare(ensure_chromium),
    );
    // The library crates' examples are what a new user runs first: they must run, not only
    // build. Each asserts what it shows, so a broken one fails the step.
    for (name, args) in EXAMPLES {
        let mut step = Step::new(name, &["run", "--locked", "-p"]);
        step.args.extend(args.iter().map(|a| a.to_string()));
        steps.push(step);
    }
    steps.push(
        Step::new("docs", &["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    );
    steps.push(package_step());
    run_steps(&steps)
}

fn bench(quick: bool, no_wall: bool) -> Result<()> {
    let mut args = vec![
        "run",
        "--release",
        "--locked",
        "-p",
        "agora-cli",
        "--",
        "bench",
        "--out",
        "target/agora-report",
    ];
    if quick {
        args.push("--quick");
    }
    if no_wall {
        args.push("--no-wall");
    }
    run_steps(&[Step::new("bench", &args)])
}

fn swarm(args: &[String]) -> Result<()> {
    let status = Command::new(cargo())
        .args(["run", "--release", "--locked", "-p", "agora-cli", "--", "swarm"])
        .args(args)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("the swarm campaign failed");
    }
    Ok(())
}

/// The names Chromium goes by.
const CHROMIUM: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

fn has_chromium() -> bool {
    CHROMIUM.iter().any(|name| {
        Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
    })
}

/// Makes sure headless Chromium is there for the dashboard test: installed with apt-get (as
/// root, or through `sudo -n`) when it is missing.
fn ensure_chromium() -> Result<()> {
    if has_chromium() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            command.args(["-n", "apt-get"]);
        }
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("could not run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    eprintln!("xtask: Chromium is missing; installing it with apt-get for the dashboard test");
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", "chromium"])?;
    if !has_chromium() {
        bail!("Chromium is still missing after apt-get install chromium");
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(cargo())
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs the steps in order, stops at the first failure, and prints a summary either way.
fn run_steps(steps: &[Step]) -> Result<()> {
    let mut done: Vec<(&str, Duration, bool)> = Vec::new();
    let mut failure = None;
    for step in steps {
        eprintln!("\n==> {}: cargo {}", step.name, step.args.join(" "));
        let start = Instant::now();
        if let Some(prepare) = step.prepare
            && let Err(error) = prepare()
        {
            eprintln!("xtask: {error:#}");
            done.push((step.name, start.elapsed(), false));
            failure = Some(step.name);
            break;
        }
        let status = Command::new(cargo())
            .args(&step.args)
            .envs(step.env.iter().copied())
            .status()
            .with_context(|| format!("could not start cargo for step `{}`", step.name))?;
        done.push((step.name, start.elapsed(), status.success()));
        if !status.success() {
            failure = Some(step.name);
            break;
        }
    }
    eprintln!("\nxtask summary:");
    for (name, elapsed, ok) in &done {
        eprintln!(
            "  {:<18} {:>7.1} s  {}",
            name,
            elapsed.as_secs_f64(),
            if *ok { "ok" } else { "FAILED" }
        );
    }
    for step in steps.iter().skip(done.len()) {
        eprintln!("  {:<18} {:>9}  skipped", step.name, "");
    }
    match failure {
        Some(name) => bail!("step `{name}` failed; fix it and run the task again"),
        None => {
            eprintln!("all {} steps passed", done.len());
            Ok(())
        }
    }
}
