//! Reference outputs: what fixed runs of the `agora` binary print, byte for byte.
//!
//! The simulator is deterministic, so a change that only moves code (a crate split, a shared
//! driver loop, a factory in place of a `match`) must leave these outputs exactly as they are.
//! Each case runs the binary and compares its output with `tests/reference/<name>`. A change
//! that is meant to alter behaviour rewrites them with `AGORA_BLESS=1 cargo test -p agora-cli
//! --test reference`, and the diff goes into review with the reason.
//!
//! The cases: `simulate --json` for both protocols; the market workload under each execution
//! order, with lanes and with a front-runner; crashes, an equivocator and a partition in both
//! engines (the equivocator's outputs were recorded once it was the adversary library's); one
//! swarm summary per protocol (Twins too); and the simulated rows of `bench --quick`, without
//! the machine's own figures (CPU name, verification speed, commit).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `simulate` runs: a name, then the arguments after `simulate` (`--json` is added).
const SIMULATE: &[(&str, &[&str])] = &[
    ("simulate-streamlet", &[]),
    ("simulate-pbft", &["--protocol", "pbft", "--duration-ms", "1000"]),
    ("market-proposal", &["--workload", "market"]),
    ("market-canonical", &["--workload", "market", "--ordering", "canonical"]),
    ("market-batch-auction", &["--workload", "market", "--ordering", "batch-auction"]),
    ("market-pbft", &["--protocol", "pbft", "--workload", "market", "--duration-ms", "700"]),
    ("market-lanes", &["--workload", "market", "--priority", "default"]),
    ("market-frontrunner", &["--workload", "market", "--frontrunner", "1"]),
    ("crash-streamlet", &["--nodes", "7", "--crash", "2@500", "--crash-leader-of-epoch", "6"]),
    ("crash-pbft", &["--protocol", "pbft", "--crash-primary-of-view", "0", "--tx-rate", "30"]),
    ("equivocator-streamlet", &["--equivocator"]),
    ("equivocator-pbft", &["--protocol", "pbft", "--equivocator", "--duration-ms", "1000"]),
    ("partition-streamlet", &["--partition-ms", "300", "900", "--jitter-ms", "5"]),
    ("partition-pbft", &["--protocol", "pbft", "--partition-ms", "300", "900", "--tx-rate", "30"]),
];

/// `swarm` runs: a name, then the arguments after `swarm` (its summary line is compared).
const SWARM: &[(&str, &[&str])] = &[
    ("swarm-streamlet", &["--protocol", "streamlet", "--first-seed", "40", "--seeds", "6"]),
    ("swarm-pbft", &["--protocol", "pbft", "--first-seed", "40", "--seeds", "6"]),
    ("swarm-twins", &["--protocol", "pbft", "--twins", "--first-seed", "3", "--seeds", "4"]),
];

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agora-reference-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn agora(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .current_dir(scratch())
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "agora {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Compares `actual` with the reference `name`, or writes it under `AGORA_BLESS`. Returns a
/// description of the difference, if any.
fn check(name: &str, actual: &str) -> Option<String> {
    let path = reference_dir().join(name);
    if std::env::var_os("AGORA_BLESS").is_some() {
        std::fs::create_dir_all(reference_dir()).expect("the reference directory");
        std::fs::write(&path, actual).expect("the reference is written");
        return None;
    }
    let expected = match std::fs::read_to_string(&path) {
        Ok(expected) => expected,
        Err(e) => return Some(format!("{name}: no reference at {} ({e})", path.display())),
    };
    if expected == actual {
        return None;
    }
    let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
    let at = line.unwrap_or(expected.lines().count().min(actual.lines().count()));
    let show = |s: &str| s.lines().nth(at).unwrap_or("<end>").to_string();
    Some(format!(
        "{name}: differs at line {}: expected {:?}, got {:?}",
        at + 1,
        show(&expected),
        show(actual)
    ))
}

fn assert_all(differences: Vec<Option<String>>) {
    let differences: Vec<String> = differences.into_iter().flatten().collect();
    assert!(differences.is_empty(), "outputs changed:\n{}", differences.join("\n"));
}

#[test]
fn simulate_outputs_are_unchanged() {
    let differences = SIMULATE.iter().map(|(name, args)| {
        let mut full = vec!["simulate", "--json"];
        full.extend_from_slice(args);
        check(&format!("{name}.json"), &agora(&full))
    });
    assert_all(differences.collect());
}

#[test]
fn swarm_summaries_are_unchanged() {
    let out = scratch().join("swarm");
    let out = out.to_str().expect("a UTF-8 path");
    let differences = SWARM.iter().map(|(name, args)| {
        let mut full = vec!["swarm", "--out", out];
        full.extend_from_slice(args);
        check(&format!("{name}.txt"), &agora(&full))
    });
    assert_all(differences.collect());
}

#[test]
fn simulated_bench_rows_are_unchanged() {
    let out = scratch().join("bench");
    agora(&["bench", "--quick", "--no-wall", "--out", out.to_str().expect("a UTF-8 path")]);
    let report = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    let mut report: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    let fields = report.as_object_mut().expect("an object");
    // What the machine measured of itself, and where the checkout is: not behaviour.
    fields.remove("machine");
    fields.remove("git_commit");
    let text = serde_json::to_string_pretty(&report).expect("JSON") + "\n";
    assert_all(vec![check("bench-quick-sim.json", &text)]);
}
