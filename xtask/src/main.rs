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
    /// warnings denied, the whole test suite (doc tests included), and the docs with warnings
    /// denied.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci => ci(),
        Task::Bench { quick, no_wall } => bench(quick, no_wall),
        Task::Swarm { args } => swarm(&args),
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
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

impl Step {
    fn new(name: &'static str, args: &[&'static str]) -> Self {
        Self { name, args: args.to_vec(), env: Vec::new() }
    }

    fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }
}

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
    // The library crates' examples are what a new user runs first: they must run, not only
    // build.
    steps.push(Step::new(
        "examples",
        &["run", "--locked", "-p", "agora-pbft", "--example", "custom_app"],
    ));
    steps.push(
        Step::new("docs", &["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    );
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
