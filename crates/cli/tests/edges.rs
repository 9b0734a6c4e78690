//! The command line's edges, each as a new user or a hostile one met it: a reader that goes
//! away, options at and past their bounds, a seed range that overflows, hostile JSON lines,
//! and the counts of what Byzantine nodes put in the log.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn agora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora")).args(args).output().expect("the binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agora-edges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `agora ARGS`, its standard output and error piped.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// `agora ARGS` with a standard output whose reader has already gone.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = spawn(args);
    drop(child.stdout.take());
    child.wait_with_output().expect("the binary ends")
}

/// `agora ARGS | head -n 1`: the first line is read, then the reader goes.
fn first_line_only(args: &[&str]) -> Output {
    let mut child = spawn(args);
    let mut stdout = child.stdout.take().expect("piped");
    let mut byte = [0u8; 1];
    while std::io::Read::read(&mut stdout, &mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {}
    drop(stdout);
    child.wait_with_output().expect("the binary ends")
}

fn quiet_end(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0, or 141 for a process that SIGPIPE ended.
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(141), "{args:?}: {:?}, stderr {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes() {
    let book = scratch("pipe.jsonl");
    let mut lines = String::new();
    for account in 1..=200 {
        lines.push_str(&format!(
            "{{\"cmd\":\"deposit\",\"account\":{account},\"asset\":\"USD\",\"amount\":5}}\n"
        ));
    }
    std::fs::write(&book, lines).unwrap();
    let book = book.to_str().unwrap().to_owned();
    let stores = scratch("pipe-stores");
    let _ = std::fs::remove_dir_all(&stores);
    let stores = stores.to_str().unwrap().to_owned();
    let made = agora(&[
        "simulate",
        "--workload",
        "market",
        "--duration-ms",
        "800",
        "--store-dir",
        &stores,
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let store = format!("{stores}/node-0");
    let bench_out = scratch("pipe-bench");
    let bench_out = bench_out.to_str().unwrap().to_owned();
    let swarm_out = scratch("pipe-swarm");
    let swarm_out = swarm_out.to_str().unwrap().to_owned();
    let commands: Vec<Vec<&str>> = vec![
        vec!["simulate"],
        vec!["simulate", "--json"],
        vec!["walkthrough", "--txs", "10"],
        vec!["walkthrough", "--txs", "10", "--json"],
        vec!["swarm", "--protocol", "pbft", "--seeds", "2", "--out", &swarm_out],
        // A failing campaign: a broken engine.
        vec![
            "swarm",
            "--protocol",
            "pbft",
            "--seeds",
            "3",
            "--weaken",
            "quorum-one-smaller",
            "--out",
            &swarm_out,
        ],
        vec!["book", "--input", &book],
        vec!["book", "--input", &book, "--state"],
        vec!["replay", "--store", &store],
        vec!["replay", "--store", &store, "--json"],
        vec!["bench", "--main", "--no-wall", "--out", &bench_out],
        vec!["--help"],
    ];
    for args in &commands {
        quiet_end(args, &with_closed_stdout(args));
        quiet_end(args, &first_line_only(args));
    }
    // The commands that write files print where they went: a fresh place each time, since
    // neither overwrites.
    let fresh = |name: &str, k: usize| {
        let path = scratch(&format!("pipe-{name}-{k}"));
        let _ = std::fs::remove_dir_all(&path);
        path.to_str().unwrap().to_owned()
    };
    for k in 0..2 {
        let key = fresh("key", k);
        let dir = fresh("testnet", k);
        for args in [
            vec!["keygen", "--out", &key],
            vec!["testnet", "init", "--nodes", "4", "--base-port", "0", "--dir", &dir],
        ] {
            let out = if k == 0 { with_closed_stdout(&args) } else { first_line_only(&args) };
            quiet_end(&args, &out);
        }
    }
}

#[test]
fn options_past_their_bounds_get_one_line_naming_the_bound() {
    for (args, says) in [
        (&["walkthrough", "--clients", "4294967295"][..], "1..=16384"),
        (&["simulate", "--nodes", "1024"], "from 1 to 128"),
        (&["simulate", "--nodes", "-1"], "from 1 to 128"),
        (&["simulate", "--nodes=-1"], "from 1 to 128"),
        (&["simulate", "--nodes", "100"], "message deliveries, above the bound"),
        (&["simulate", "--delta-ms", "1e-6"], "--delta-ms must be from 1 to 60000"),
        (
            &[
                "simulate",
                "--protocol",
                "pbft",
                "--view-timeout-ms",
                "1e-6",
                "--crash-primary-of-view",
                "0",
            ],
            "--view-timeout-ms must be from 1",
        ),
        (&["simulate", "--tx-rate", "1e9"], "--tx-rate must be from 0 to 100000"),
        (
            &["simulate", "--tx-rate", "50000", "--duration-ms", "600000"],
            "above the bound of 1000000",
        ),
        (&["simulate", "--duration-ms", "1e300"], "--duration-ms must be from 0 to 600000"),
        (&["swarm", "--protocol", "pbft", "--nodes", "-1"], "1..=64"),
        (
            &[
                "swarm",
                "--protocol",
                "pbft",
                "--first-seed",
                "18446744073709551615",
                "--seeds",
                "5",
            ],
            "past the largest seed",
        ),
        (&["swarm", "--protocol", "pbft", "--seeds", "0"], "--seeds must be at least 1"),
        (
            &["swarm", "--protocol", "pbft", "--twins", "--nodes", "7"],
            "--nodes must be 4 or left out",
        ),
        (&["book", "--input", "/"], "/: it is a directory"),
        (&["testnet", "init", "--nodes", "65", "--dir", "/nonexistent"], "1..=64"),
        (&["testnet", "run", "--dir", "/nonexistent", "--duration", "0"], "--duration: from 0"),
        (&["testnet", "run", "--dir", "/nonexistent", "--rate", "1e9"], "--rate: from 1"),
        (
            &["testnet", "run", "--dir", "/nonexistent", "--rate", "100000", "--duration", "60"],
            "above the bound of 1000000",
        ),
    ] {
        let out = agora(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("agora: ") && stderr.contains(says), "{args:?}: {stderr}");
    }
    // The largest committee the bound allows runs, for a protocol whose messages allow it.
    let out = agora(&["simulate", "--protocol", "pbft", "--nodes", "128", "--duration-ms", "300"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn where_output_goes_is_checked_before_the_work_starts() {
    let out = agora(&["bench", "--out", "/proc/agora-cannot-write-here"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("agora: --out /proc/agora-cannot-write-here"), "{stderr}");
    // Nothing was measured: the first step of a bench announces itself.
    assert!(!stderr.contains("measuring"), "{stderr}");
}

/// Runs `agora book` over `input` and returns its output lines as JSON.
fn book(input: &[u8]) -> Vec<serde_json::Value> {
    let path = scratch(&format!("book-{}.jsonl", input.len()));
    std::fs::File::create(&path).unwrap().write_all(input).unwrap();
    let out = agora(&["book", "--input", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn hostile_json_lines_are_malformed_or_rejected_with_a_reason() {
    let mut input = Vec::new();
    // A byte-order mark may open the input.
    input.extend_from_slice(b"\xEF\xBB\xBF");
    input.extend_from_slice(br#"{"cmd":"market","market":"ETH-USD","base":"ETH","quote":"USD","tick":1,"lot":1,"maker_fee_bps":0,"taker_fee_bps":0}"#);
    input.push(b'\n');
    // Invalid UTF-8 inside a string.
    input.extend_from_slice(
        b"{\"cmd\":\"deposit\",\"account\":1,\"asset\":\"US\xffD\",\"amount\":5}\n",
    );
    // Names that are not names.
    for asset in [
        r#""""#,
        r#""   ""#,
        r#""US\u0000D""#,
        r#""US\nD""#,
        r#""0123456789012345678901234567890123""#,
    ] {
        input.extend_from_slice(
            format!(r#"{{"cmd":"deposit","account":1,"asset":{asset},"amount":5}}"#).as_bytes(),
        );
        input.push(b'\n');
    }
    // A typo is not a default.
    input.extend_from_slice(
        br#"{"cmd":"place","account":1,"market":"ETH-USD","id":1,"side":"buy","price":1,"qyt":2}"#,
    );
    input.push(b'\n');
    // An oversized line (200 KiB), then a good one after it.
    input.extend_from_slice(&vec![b'x'; 200 * 1024]);
    input.push(b'\n');
    input.extend_from_slice(br#"{"cmd":"deposit","account":1,"asset":"USD","amount":5}"#);
    input.push(b'\n');
    // A byte-order mark anywhere else is not whitespace.
    input.extend_from_slice(b"\xEF\xBB\xBF");
    input.extend_from_slice(br#"{"cmd":"deposit","account":1,"asset":"USD","amount":5}"#);
    input.push(b'\n');
    // Nothing to cancel still gets an answer.
    input.extend_from_slice(br#"{"cmd":"cancel_all","account":1}"#);
    input.push(b'\n');
    let out = book(&input);
    let kinds: Vec<&str> = out.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "market_opened",
            "malformed",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "malformed",
            "malformed",
            "deposited",
            "malformed",
            "cancelled_all"
        ],
        "{out:?}"
    );
    assert_eq!(out[1]["error"], "not UTF-8");
    assert!(out[2..7].iter().all(|e| e["reason"] == "bad_name"), "{out:?}");
    assert!(out[7]["error"].as_str().unwrap().contains("unknown field `qyt`"), "{out:?}");
    assert_eq!(out[8]["error"], "line longer than 64 KiB");
    assert_eq!((out[8]["line"].as_u64(), out[10]["line"].as_u64()), (Some(9), Some(11)));
    assert_eq!(out[11]["count"], 0);
}

#[test]
fn what_byzantine_nodes_and_clients_put_in_the_log_is_counted_apart() {
    let run = |args: &[&str]| -> serde_json::Value {
        let out = agora(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let honest = run(&["simulate", "--json"]);
    assert_eq!(honest["txs_injected"]["total"], 0);
    assert_eq!(honest["txs_finalized"], honest["txs_finalized_submitted"]);
    // The equivocator receives a quarter of the clients' transactions and proposes them.
    let equivocator = run(&["simulate", "--equivocator", "--json"]);
    // The front-runner trades from its own account.
    let frontrunner = run(&[
        "simulate",
        "--workload",
        "market",
        "--frontrunner",
        "0",
        "--protocol",
        "pbft",
        "--json",
    ]);
    for (what, v, origin) in [
        ("equivocator", &equivocator, "via_byzantine_node"),
        ("front-runner", &frontrunner, "byzantine_client"),
    ] {
        assert_eq!(v["safety_ok"], true, "{what}");
        let injected = &v["txs_injected"];
        assert!(injected[origin].as_u64().unwrap() > 0, "{what}: {injected}");
        assert_eq!(injected["invalid_signature"], 0, "{what}");
        let finalized = v["txs_finalized"].as_u64().unwrap();
        let submitted = v["txs_submitted"].as_u64().unwrap();
        let from_submitted = v["txs_finalized_submitted"].as_u64().unwrap();
        assert!(from_submitted <= submitted, "{what}: {from_submitted} of {submitted}");
        assert_eq!(finalized, from_submitted + injected["total"].as_u64().unwrap(), "{what}");
    }
}
