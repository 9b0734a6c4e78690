//! The `agora` binary as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn agora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora")).args(args).output().expect("the binary runs")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agora-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn simulate_json_has_the_documented_fields() {
    let out = agora(&[
        "simulate",
        "--protocol",
        "streamlet",
        "--nodes",
        "4",
        "--seed",
        "3",
        "--duration-ms",
        "1200",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "protocol",
        "nodes",
        "seed",
        "safety_ok",
        "violations",
        "txs_submitted",
        "txs_finalized",
        "tps_sim",
        "latency_ms",
        "messages",
        "nodes_detail",
        "finalized_blocks",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    assert_eq!(v["protocol"], "streamlet");
    assert_eq!(v["safety_ok"], true);
    assert_eq!(v["txs_submitted"], v["txs_finalized"]);
    for field in ["p50", "p99", "max"] {
        assert!(v["latency_ms"][field].is_number());
    }
    for field in ["total", "bytes", "by_kind"] {
        assert!(v["messages"].get(field).is_some());
    }
    let node = &v["nodes_detail"][0];
    for field in ["node", "honest", "finalized_height", "log_digest"] {
        assert!(node.get(field).is_some(), "nodes_detail lacks {field}");
    }
    let block = &v["finalized_blocks"][0];
    for field in [
        "height",
        "round",
        "proposer",
        "digest",
        "txs",
        "proposed_at_ms",
        "notarized_at_ms",
        "finalized_at_ms",
    ] {
        assert!(block.get(field).is_some(), "finalized_blocks lacks {field}");
    }
    // Ideal network, δ = 10 ms, Δ = 50 ms: the paper's timings.
    assert_eq!(block["notarized_at_ms"], 20.0);
    assert_eq!(block["finalized_at_ms"], 120.0);
}

#[test]
fn pbft_json_has_views_and_client_latency_and_a_sequence_chart() {
    let chart = temp("seq.svg");
    let out = agora(&[
        "simulate",
        "--protocol",
        "pbft",
        "--nodes",
        "4",
        "--duration-ms",
        "2000",
        "--view-timeout-ms",
        "200",
        "--checkpoint-interval",
        "8",
        "--crash-primary-of-view",
        "0",
        "--render-seq",
        "3",
        chart.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["protocol"], "pbft");
    assert_eq!(v["safety_ok"], true);
    assert_eq!(v["view_changes"], 1);
    assert!(v["latency_client_ms"]["p50"].is_number());
    let block = &v["finalized_blocks"][0];
    assert_eq!(block["height"], 1);
    assert_eq!(block["round"], 0, "the round of a PBFT block is its view");
    assert!(std::fs::read_to_string(chart).unwrap().contains("executed #3"));
    let out = agora(&["simulate", "--protocol", "pbft", "--render-seq", "x", "s.svg"]);
    assert!(!out.status.success());
}

#[test]
fn same_seed_same_json() {
    let args = ["simulate", "--seed", "9", "--duration-ms", "800", "--jitter-ms", "5", "--json"];
    assert_eq!(agora(&args).stdout, agora(&args).stdout);
}

#[test]
fn pictures_and_traces_are_written() {
    let (svg, dot, trace) = (temp("chain.svg"), temp("chain.dot"), temp("trace.jsonl"));
    let out = agora(&[
        "simulate",
        "--crash-leader-of-epoch",
        "5",
        "--duration-ms",
        "1400",
        "--render",
        svg.to_str().unwrap(),
        "--dot",
        dot.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("no block")
            && svg.contains("leader of epoch 5 down")
    );
    assert!(std::fs::read_to_string(dot).unwrap().starts_with("digraph"));
    let trace = std::fs::read_to_string(trace).unwrap();
    assert!(trace.lines().count() > 100);
    assert!(trace.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[test]
fn bad_options_give_one_line_and_a_non_zero_exit() {
    for args in [
        &["simulate", "--nodes", "0"][..],
        &["simulate", "--crash", "3"],
        &["simulate", "--crash", "9@10"],
        &["simulate", "--latency-ms", "-5"],
        &["simulate", "--protocol", "paxos"],
        &["simulate", "--bogus"],
        &["simulate", "--delta-ms", "abc"],
        &["simulate", "--render", "/nonexistent-dir/x.svg", "--duration-ms", "100"],
    ] {
        let out = agora(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("agora: "), "{args:?}: {stderr}");
    }
}

#[test]
fn a_field_the_library_refuses_is_named_by_the_flag_that_sets_it() {
    // The flags are derived from the lab's options: `crashes` is `--crash`, and the fields
    // the command line fills in itself keep their names in flag form.
    for (args, flag) in [
        (&["simulate", "--crash", "1@1e300"][..], "--crash "),
        (&["simulate", "--partition-ms", "200", "100"], "--partition-ms "),
        (&["simulate", "--large-orders", "2"], "--large-orders "),
        (&["simulate", "--frontrunner", "9", "--workload", "market"], "--frontrunner "),
    ] {
        let stderr = String::from_utf8(agora(args).stderr).unwrap();
        assert!(stderr.starts_with(&format!("agora: {flag}")), "{args:?}: {stderr}");
    }
}

#[test]
fn a_streamlet_delta_below_the_latency_is_warned() {
    let out = agora(&["simulate", "--delta-ms", "5", "--latency-ms", "10", "--duration-ms", "300"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("warning: ") && stderr.contains("finalize nothing"), "{stderr}");
    assert!(agora(&["simulate", "--duration-ms", "300"]).stderr.is_empty());
}

#[test]
fn help_and_walkthrough_work() {
    let out = agora(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("simulate"));
    let out = agora(&["walkthrough", "--txs", "20", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["all_signatures_valid"], true);
}

#[test]
fn book_applies_json_lines_and_reports_malformed_ones() {
    let input = temp("commands.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"cmd":"market","market":"ETH-USD","base":"ETH","quote":"USD","tick":1,"lot":1,"maker_fee_bps":0,"taker_fee_bps":10}"#,
            "\n",
            r#"{"cmd":"deposit","account":1,"asset":"USD","amount":1000000}"#,
            "\n",
            r#"{"cmd":"deposit","account":2,"asset":"ETH","amount":500}"#,
            "\n",
            r#"{"cmd":"place","account":2,"market":"ETH-USD","id":1,"side":"sell","type":"limit","tif":"gtc","price":2000,"qty":100}"#,
            "\n",
            "{not json\n",
            r#"{"cmd":"place","account":1,"market":"ETH-USD","id":7,"side":"buy","type":"limit","tif":"ioc","price":2001,"qty":40}"#,
            "\n",
            r#"{"cmd":"cancel_all","account":2}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = agora(&["book", "--input", input.to_str().unwrap(), "--state"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        [
            "market_opened",
            "deposited",
            "deposited",
            "accepted",
            "malformed",
            "accepted",
            "trade",
            "cancelled",
            "cancelled_all"
        ]
    );
    assert_eq!(lines[4]["line"], 5);
    let trade = &lines[6];
    assert_eq!(
        (trade["price"].as_u64(), trade["qty"].as_u64(), trade["taker_fee"].as_i64()),
        (Some(2000), Some(40), Some(80))
    );
    let state = lines.last().unwrap();
    assert_eq!(state["balances"]["1"]["ETH"]["available"], 40);
    assert_eq!(state["balances"]["2"]["ETH"]["held"], 0, "cancel_all released the hold");
    assert_eq!(state["depth"]["ETH-USD"]["asks"], serde_json::json!([]));
}

/// A reader that goes away (`agora simulate | head -n 1`) ends the command quietly: exit 0, no
/// panic text.
#[test]
fn a_closed_standard_output_ends_quietly() {
    for args in [
        &["simulate"][..],
        &["simulate", "--json"],
        &["walkthrough", "--txs", "10"],
        &["swarm", "--protocol", "pbft", "--seeds", "1"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // Close the reading end before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("the binary ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}, stderr {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
