//! Hostile input for the decoders above agora-types: every engine's wire messages (captured from
//! real runs, view changes included), market order payloads and the order book's JSON command
//! lines. Random bytes, truncations and bit flips give errors or canonical values, never
//! panics; and any sequence of decodable commands leaves the exchange standing.
//!
//! The same decoders have cargo-fuzz targets in `fuzz/`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

use agora_consensus::{Message, Protocol, TxLog};
use agora_hotstuff::{HotStuff, HotStuffConfig, HotStuffMessage};
use agora_market::OrderAction;
use agora_netsim::{
    AdversaryEnv, Emission, Fault, FaultKind, Payload, SimConfig, Simulation, Targets, Workload,
};
use agora_orderbook::{Command, Exchange, FastBook, OrderType, SelfTrade, Side, TimeInForce};
use agora_pbft::{Pbft, PbftConfig, PbftMessage};
use agora_simplex::{Simplex, SimplexConfig, SimplexMessage};
use agora_streamlet::{Streamlet, StreamletConfig, StreamletMessage};
use agora_types::{NodeId, codec};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

const MS: u64 = 1_000_000;

/// Messages node 1 sends (at most 50 of each kind) in a 4-node run with load, where node 0
/// (PBFT's first primary) crashes at 600 ms: node 1 then sends a VIEW-CHANGE and, as the next
/// primary, a NEW-VIEW.
fn capture<P: Protocol>(
    engine: impl Fn(NodeId, &agora_types::Committee, &agora_types::SecretKey) -> P,
) -> Vec<P::Message> {
    let mut config = SimConfig::new(4);
    config.seed = 5;
    config.duration_ns = 2_000 * MS;
    config.faults = vec![Fault { at_ns: 600 * MS, node: NodeId(0), kind: FaultKind::Crash }];
    config.workload = Some(Workload {
        rate_per_sec: 200.0,
        start_ns: 0,
        end_ns: 1_500 * MS,
        clients: 4,
        payload_bytes: 24,
        targets: Targets::Random,
    });
    let seen: Rc<RefCell<Vec<P::Message>>> = Rc::default();
    let mut sim = Simulation::new(config, engine, |_| Box::new(TxLog::new(true))).unwrap();
    let keep = Rc::clone(&seen);
    sim.set_adversary(
        NodeId(1),
        Box::new(
            move |_: &mut AdversaryEnv<'_>,
                  to,
                  m: P::Message,
                  out: &mut Vec<Emission<P::Message>>| {
                let same_kind = keep.borrow().iter().filter(|k| k.kind() == m.kind()).count();
                if same_kind < 50 {
                    keep.borrow_mut().push(m.clone());
                }
                out.push(Emission::now(to, Payload::Message(m)));
            },
        ),
    );
    sim.run();
    seen.borrow().clone()
}

fn encoded<M: Serialize>(messages: &[M]) -> Vec<Vec<u8>> {
    messages.iter().map(|m| codec::encode(m).unwrap().to_vec()).collect()
}

fn streamlet_wire() -> &'static Vec<Vec<u8>> {
    static WIRE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    WIRE.get_or_init(|| {
        encoded(&capture(|me, c, k| {
            Streamlet::new(StreamletConfig::new(50 * MS), c.clone(), me, k.clone())
                .expect("a valid configuration")
        }))
    })
}

fn simplex_wire() -> &'static Vec<Vec<u8>> {
    static WIRE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    WIRE.get_or_init(|| {
        let messages = capture(|me, c, k| {
            Simplex::new(SimplexConfig::new(50 * MS), c.clone(), me, k.clone())
                .expect("a valid configuration")
        });
        let kinds: std::collections::BTreeSet<&str> = messages.iter().map(Message::kind).collect();
        assert!(kinds.contains("skip") && kinds.contains("finalize"), "captured {kinds:?}");
        encoded(&messages)
    })
}

fn hotstuff_wire() -> &'static Vec<Vec<u8>> {
    static WIRE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    WIRE.get_or_init(|| {
        let messages = capture(|me, c, k| {
            HotStuff::new(HotStuffConfig::new(50 * MS), c.clone(), me, k.clone())
                .expect("a valid configuration")
        });
        let kinds: std::collections::BTreeSet<&str> = messages.iter().map(Message::kind).collect();
        assert!(kinds.contains("timeout") && kinds.contains("tc"), "captured {kinds:?}");
        encoded(&messages)
    })
}

fn pbft_wire() -> &'static Vec<Vec<u8>> {
    static WIRE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    WIRE.get_or_init(|| {
        let messages = capture(|me, c, k| {
            Pbft::new(PbftConfig::new(300 * MS), c.clone(), me, k.clone())
                .expect("a valid configuration")
        });
        let kinds: std::collections::BTreeSet<&str> = messages.iter().map(Message::kind).collect();
        assert!(kinds.contains("view-change") && kinds.contains("new-view"), "captured {kinds:?}");
        encoded(&messages)
    })
}

fn order_payloads() -> Vec<Vec<u8>> {
    let actions = [
        OrderAction::Place {
            market: "BTC-USD".into(),
            id: 7,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Some(100),
            qty: 5,
            budget: None,
            stp: SelfTrade::CancelResting,
        },
        OrderAction::Cancel { market: "BTC-USD".into(), id: 7 },
    ];
    actions.iter().map(|a| a.encode().to_vec()).collect()
}

/// Decoding never panics; whatever decodes is canonical (re-encodes to the same bytes).
fn canonical<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = codec::decode::<T>(bytes) {
        prop_assert_eq!(&codec::encode(&value).unwrap()[..], bytes);
    }
    Ok(())
}

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    canonical::<StreamletMessage>(bytes)?;
    canonical::<PbftMessage>(bytes)?;
    canonical::<SimplexMessage>(bytes)?;
    canonical::<HotStuffMessage>(bytes)?;
    canonical::<OrderAction>(bytes)?;
    Ok(())
}

fn mangle(bytes: &[u8], cut: prop::sample::Index, bit: prop::sample::Index) -> (Vec<u8>, Vec<u8>) {
    let cut = cut.index(bytes.len().max(1)).min(bytes.len());
    let mut flipped = bytes.to_vec();
    if !flipped.is_empty() {
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
    }
    (bytes[..cut].to_vec(), flipped)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_all(&bytes)?;
    }

    #[test]
    fn truncated_and_flipped_streamlet_messages(which: prop::sample::Index, cut: prop::sample::Index, bit: prop::sample::Index) {
        let wire = streamlet_wire();
        let bytes = &wire[which.index(wire.len())];
        let (short, flipped) = mangle(bytes, cut, bit);
        prop_assert!(codec::decode::<StreamletMessage>(&short).is_err(), "a strict prefix decoded");
        check_all(&short)?;
        check_all(&flipped)?;
    }

    #[test]
    fn truncated_and_flipped_pbft_messages(which: prop::sample::Index, cut: prop::sample::Index, bit: prop::sample::Index) {
        let wire = pbft_wire();
        let bytes = &wire[which.index(wire.len())];
        let (short, flipped) = mangle(bytes, cut, bit);
        prop_assert!(codec::decode::<PbftMessage>(&short).is_err(), "a strict prefix decoded");
        check_all(&short)?;
        check_all(&flipped)?;
    }

    #[test]
    fn truncated_and_flipped_simplex_messages(which: prop::sample::Index, cut: prop::sample::Index, bit: prop::sample::Index) {
        let wire = simplex_wire();
        let bytes = &wire[which.index(wire.len())];
        let (short, flipped) = mangle(bytes, cut, bit);
        prop_assert!(codec::decode::<SimplexMessage>(&short).is_err(), "a strict prefix decoded");
        check_all(&short)?;
        check_all(&flipped)?;
    }

    #[test]
    fn truncated_and_flipped_hotstuff_messages(which: prop::sample::Index, cut: prop::sample::Index, bit: prop::sample::Index) {
        let wire = hotstuff_wire();
        let bytes = &wire[which.index(wire.len())];
        let (short, flipped) = mangle(bytes, cut, bit);
        prop_assert!(codec::decode::<HotStuffMessage>(&short).is_err(), "a strict prefix decoded");
        check_all(&short)?;
        check_all(&flipped)?;
    }

    #[test]
    fn truncated_and_flipped_order_payloads(which in 0usize..2, cut: prop::sample::Index, bit: prop::sample::Index) {
        let payloads = order_payloads();
        let (short, flipped) = mangle(&payloads[which], cut, bit);
        check_all(&short)?;
        check_all(&flipped)?;
    }

    #[test]
    fn json_command_lines_never_break_the_exchange(lines in proptest::collection::vec(json_line(), 0..40)) {
        let mut exchange = Exchange::<FastBook>::new();
        let mut events = Vec::new();
        for line in &lines {
            if let Ok(command) = serde_json::from_str::<Command>(line) {
                exchange.apply(&command, &mut events);
            }
        }
    }
}

/// Lines that are often valid commands with hostile values (zero, one, the largest numbers,
/// negative ones that must not parse), and sometimes garbage.
fn json_line() -> impl Strategy<Value = String> {
    let number =
        || prop_oneof![Just(0i128), Just(1), Just(u64::MAX as i128), Just(-1), 0i128..100_000];
    let account = 0u64..4;
    prop_oneof![
        Just(r#"{"cmd":"market","market":"X-Y","base":"X","quote":"Y","tick":1,"lot":1,"maker_fee_bps":-1,"taker_fee_bps":5}"#.to_owned()),
        (account.clone(), number()).prop_map(|(a, n)| format!(r#"{{"cmd":"deposit","account":{a},"asset":"Y","amount":{n}}}"#)),
        (account.clone(), number()).prop_map(|(a, n)| format!(r#"{{"cmd":"deposit","account":{a},"asset":"X","amount":{n}}}"#)),
        (account.clone(), 0u64..50, number(), number(), any::<bool>(), prop::sample::select(vec!["gtc", "ioc", "fok", "post_only"]), prop::sample::select(vec!["limit", "market"])).prop_map(
            |(a, id, p, q, buy, tif, kind)| format!(
                r#"{{"cmd":"place","account":{a},"market":"X-Y","id":{id},"side":"{}","type":"{kind}","tif":"{tif}","price":{p},"qty":{q}}}"#,
                if buy { "buy" } else { "sell" }
            )
        ),
        (account.clone(), 0u64..50, number()).prop_map(|(a, id, p)| format!(r#"{{"cmd":"amend","account":{a},"market":"X-Y","id":{id},"price":{p}}}"#)),
        (account.clone(), 0u64..50).prop_map(|(a, id)| format!(r#"{{"cmd":"cancel","account":{a},"market":"X-Y","id":{id}}}"#)),
        (account.clone(), number()).prop_map(|(a, n)| format!(r#"{{"cmd":"withdraw","account":{a},"asset":"Y","amount":{n}}}"#)),
        account.prop_map(|a| format!(r#"{{"cmd":"cancel_all","account":{a}}}"#)),
        "\\PC{0,60}",
    ]
}

#[test]
fn most_generated_lines_are_commands() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let lines: Vec<String> =
        (0..400).map(|_| json_line().new_tree(&mut runner).unwrap().current()).collect();
    let commands = lines.iter().filter(|l| serde_json::from_str::<Command>(l).is_ok()).count();
    assert!(commands * 2 > lines.len(), "only {commands} of {} lines parse", lines.len());
}
