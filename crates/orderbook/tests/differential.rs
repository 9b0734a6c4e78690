//! The fast book against the naive reference over seeded random command streams: identical
//! events and identical state, command by command. Along the way, properties that must always
//! hold: money is conserved per asset (fees included), no book is crossed after matching, and
//! every index and hold agrees with the orders.
//!
//! Reproduce a failure with `AGORA_SEED=<seed> cargo test -p agora-orderbook --test differential`.

use std::collections::BTreeMap;

use agora_orderbook::{
    AccountId, Book, Command, Exchange, FastBook, MarketSpec, NaiveBook, NewOrder, OrderType,
    Resting, SelfTrade, Side, TimeInForce,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MARKETS: [&str; 2] = ["ETH-USD", "BTC-USD"];

fn market(name: &str, base: &str, maker: i64, taker: i64) -> Command {
    Command::Market(MarketSpec {
        market: name.into(),
        base: base.into(),
        quote: "USD".into(),
        tick: 5,
        lot: 10,
        maker_fee_bps: maker,
        taker_fee_bps: taker,
    })
}

/// A random command from a small world, so that orders cross, collide and get amended often.
fn random_command(rng: &mut ChaCha8Rng) -> Command {
    let account = AccountId(rng.random_range(1..=8));
    let market = MARKETS[rng.random_range(0..2)].to_owned();
    let id = rng.random_range(0..300);
    match rng.random_range(0..100) {
        0..=54 => {
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            let mid = 1_000;
            let price = match side {
                Side::Buy => mid - 8 + rng.random_range(0..12),
                Side::Sell => mid - 4 + rng.random_range(0..12),
            };
            let market_order = rng.random_range(0..10) == 0;
            Command::Place(NewOrder {
                account,
                market,
                id,
                side,
                order_type: if market_order { OrderType::Market } else { OrderType::Limit },
                tif: [
                    TimeInForce::Gtc,
                    TimeInForce::Gtc,
                    TimeInForce::Ioc,
                    TimeInForce::Fok,
                    TimeInForce::PostOnly,
                ][rng.random_range(0..5)],
                price: if market_order && rng.random_bool(0.5) { None } else { Some(price) },
                qty: rng.random_range(0..20),
                budget: (market_order && rng.random_bool(0.5))
                    .then(|| rng.random_range(0..200_000)),
                stp: [
                    SelfTrade::CancelResting,
                    SelfTrade::CancelIncoming,
                    SelfTrade::CancelBoth,
                    SelfTrade::DecrementBoth,
                ][rng.random_range(0..4)],
            })
        }
        55..=66 => Command::Cancel { account, market, id },
        67..=91 => Command::Amend {
            account,
            market,
            id,
            price: rng.random_bool(0.5).then(|| 990 + rng.random_range(0..20)),
            qty: rng.random_bool(0.6).then(|| rng.random_range(0..25)),
        },
        92..=93 => Command::CancelAll { account, market: rng.random_bool(0.5).then_some(market) },
        94..=96 => Command::Deposit {
            account,
            asset: ["USD", "ETH", "BTC"][rng.random_range(0..3)].into(),
            amount: rng.random_range(0..500_000),
        },
        _ => Command::Withdraw {
            account,
            asset: ["USD", "ETH", "BTC"][rng.random_range(0..3)].into(),
            amount: rng.random_range(0..300_000),
        },
    }
}

/// The borrowed view a replica hashes encodes to the snapshot's exact bytes.
fn assert_view_encodes_as_snapshot(ex: &Exchange<FastBook>, seed: u64, i: usize) {
    let view = postcard::to_stdvec(&ex.snapshot_view()).unwrap();
    let built = postcard::to_stdvec(&ex.snapshot()).unwrap();
    assert_eq!(view, built, "seed {seed}, command {i}");
}

/// Each level's orders as last seen, by market, side and price, with the version they had.
type SeenLevels = BTreeMap<(String, bool, u64), (u64, Vec<Resting>)>;

/// The book's level versions keep their promise: a level whose version did not change since
/// it was last seen holds the same orders, and the levels together are the whole book.
fn assert_level_versions_hold(ex: &Exchange<FastBook>, seen: &mut SeenLevels, seed: u64, i: usize) {
    for (spec, book) in ex.books() {
        for side in [Side::Buy, Side::Sell] {
            let mut total = 0;
            for level in book.levels(side) {
                let orders: Vec<Resting> = book.level_orders(side, level.price).cloned().collect();
                assert!(orders.iter().all(|o| o.price == level.price && o.side == side));
                total += orders.len();
                let key = (spec.market.clone(), side == Side::Buy, level.price);
                if let Some((version, before)) = seen.get(&key)
                    && *version == level.version
                {
                    assert_eq!(
                        before, &orders,
                        "seed {seed}, command {i}: {key:?} changed silently"
                    );
                }
                seen.insert(key, (level.version, orders));
            }
            let walked: Vec<&Resting> = book.walk(side).collect();
            assert_eq!(total, walked.len(), "seed {seed}, command {i}");
        }
    }
}

fn run(seed: u64, commands: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fast: Exchange<FastBook> = Exchange::new();
    let mut naive: Exchange<NaiveBook> = Exchange::default();
    let (mut ef, mut en) = (Vec::new(), Vec::new());
    let mut setup = vec![market("ETH-USD", "ETH", -2, 5), market("BTC-USD", "BTC", 3, 8)];
    for a in 1..=8 {
        for asset in ["USD", "ETH", "BTC"] {
            setup.push(Command::Deposit {
                account: AccountId(a),
                asset: asset.into(),
                amount: 5_000_000,
            });
        }
    }
    let mut trades = 0usize;
    let mut levels = SeenLevels::new();
    for (i, command) in
        setup.into_iter().chain((0..commands).map(|_| random_command(&mut rng))).enumerate()
    {
        fast.apply(&command, &mut ef);
        naive.apply(&command, &mut en);
        assert_eq!(ef, en, "seed {seed}, command {i}: {command:?}");
        if i < 3_000 {
            assert_level_versions_hold(&fast, &mut levels, seed, i);
        }
        trades += ef.iter().filter(|e| matches!(e, agora_orderbook::Event::Trade { .. })).count();
        ef.clear();
        en.clear();
        for (asset, (supply, total)) in fast.conservation() {
            assert_eq!(supply, total, "seed {seed}, command {i}: {asset} not conserved");
        }
        for m in MARKETS {
            if let Some(agora_orderbook::Bbo { bid: Some((bid, _)), ask: Some((ask, _)) }) =
                fast.bbo(m)
            {
                assert!(bid < ask, "seed {seed}, command {i}: {m} crossed ({bid} ≥ {ask})");
            }
        }
        if i % 500 == 0 {
            fast.check_integrity().unwrap_or_else(|e| panic!("seed {seed}, command {i}: {e}"));
            assert_eq!(fast.snapshot(), naive.snapshot(), "seed {seed}, command {i}");
            assert_view_encodes_as_snapshot(&fast, seed, i);
        }
    }
    fast.check_integrity().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(fast.snapshot(), naive.snapshot(), "seed {seed}");
    assert_view_encodes_as_snapshot(&fast, seed, commands);
    assert!(trades > commands / 40, "seed {seed}: only {trades} trades; the stream is too tame");
    if std::env::var("AGORA_VERBOSE").is_ok() {
        eprintln!("seed {seed}: {trades} trades, {} open orders at the end", fast.open_orders());
    }
    // Snapshot and restore give the same state back.
    let restored: Exchange<FastBook> = Exchange::restore(&fast.snapshot()).unwrap();
    assert_eq!(restored.snapshot(), fast.snapshot(), "seed {seed}");
    restored.check_integrity().unwrap();
}

#[test]
fn fast_book_matches_the_reference_over_100_000_commands() {
    match std::env::var("AGORA_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => run(seed, 100_000),
        None => {
            for seed in 1..=4 {
                run(seed, 25_000);
            }
        }
    }
}

#[test]
fn identical_streams_give_identical_events_and_state() {
    let stream: Vec<Command> = {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let mut v = vec![market("ETH-USD", "ETH", 0, 10), market("BTC-USD", "BTC", 0, 10)];
        for a in 1..=8 {
            v.push(Command::Deposit {
                account: AccountId(a),
                asset: "USD".into(),
                amount: 1_000_000,
            });
            v.push(Command::Deposit {
                account: AccountId(a),
                asset: "ETH".into(),
                amount: 1_000_000,
            });
        }
        v.extend((0..5_000).map(|_| random_command(&mut rng)));
        v
    };
    let run = || {
        let mut ex: Exchange = Exchange::new();
        let mut events = Vec::new();
        for c in &stream {
            ex.apply(c, &mut events);
        }
        (serde_json::to_string(&events).unwrap(), ex.snapshot())
    };
    assert_eq!(run(), run());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Conservation, an uncrossed book, intact indexes and agreement with the reference, for
    /// arbitrary seeds (proptest prints the failing seed), in continuous trading and in batch
    /// auctions.
    #[test]
    fn properties_hold_for_any_seed(seed in proptest::prelude::any::<u64>()) {
        run(seed, 2_000);
        run_auctions(seed, 2_000);
    }
}

/// The same random streams cleared as batch auctions: new orders are gathered into batches of
/// 1 to 30 (other commands apply one by one, between batches). Both books must agree, money is
/// conserved, no book stays crossed, and every batch trades at one price per market.
fn run_auctions(seed: u64, commands: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fast: Exchange<FastBook> = Exchange::new();
    let mut naive: Exchange<NaiveBook> = Exchange::default();
    let (mut ef, mut en) = (Vec::new(), Vec::new());
    for c in [market("ETH-USD", "ETH", -2, 5), market("BTC-USD", "BTC", 3, 8)] {
        fast.apply(&c, &mut ef);
        naive.apply(&c, &mut en);
    }
    for a in 1..=8 {
        for asset in ["USD", "ETH", "BTC"] {
            let c =
                Command::Deposit { account: AccountId(a), asset: asset.into(), amount: 5_000_000 };
            fast.apply(&c, &mut ef);
            naive.apply(&c, &mut en);
        }
    }
    let (mut done, mut trades) = (0, 0);
    while done < commands {
        let size = rng.random_range(1..=30);
        let mut batch = Vec::new();
        while batch.len() < size && done < commands {
            done += 1;
            match random_command(&mut rng) {
                Command::Place(o) => batch.push(o),
                other => {
                    fast.apply(&other, &mut ef);
                    naive.apply(&other, &mut en);
                }
            }
        }
        ef.clear();
        en.clear();
        fast.apply_auction(&batch, &mut ef);
        naive.apply_auction(&batch, &mut en);
        assert_eq!(ef, en, "seed {seed}, after {done} commands");
        if let Err(e) = fast.check_integrity() {
            panic!("seed {seed}, after {done}: {e}\nbatch {batch:#?}\nevents {ef:#?}");
        }
        for m in MARKETS {
            let prices: std::collections::BTreeSet<u64> = ef
                .iter()
                .filter_map(|e| match e {
                    agora_orderbook::Event::Trade { market, price, .. } if &**market == m => {
                        Some(*price)
                    }
                    _ => None,
                })
                .collect();
            trades += prices.len();
            // Fill-or-kill and budget buys trade continuously after the uncross.
            let continuous = batch.iter().any(|o| {
                let limit = o.order_type == OrderType::Limit;
                o.market == m
                    && ((limit && o.tif == TimeInForce::Fok)
                        || (!limit && o.side == Side::Buy && o.budget.is_some()))
            });
            assert!(continuous || prices.len() <= 1, "seed {seed}: {m} traded at {prices:?}");
            if let Some(agora_orderbook::Bbo { bid: Some((bid, _)), ask: Some((ask, _)) }) =
                fast.bbo(m)
            {
                assert!(bid < ask, "seed {seed}, after {done}: {m} crossed ({bid} ≥ {ask})");
            }
        }
        for (asset, (supply, total)) in fast.conservation() {
            assert_eq!(supply, total, "seed {seed}, after {done}: {asset} not conserved");
        }
    }
    fast.check_integrity().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(fast.snapshot(), naive.snapshot(), "seed {seed}");
    assert!(trades > commands / 200, "seed {seed}: only {trades} clearing prices");
}

#[test]
fn batch_auctions_keep_every_property_over_40_000_commands() {
    match std::env::var("AGORA_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => run_auctions(seed, 40_000),
        None => {
            for seed in 1..=4 {
                run_auctions(seed, 10_000);
            }
        }
    }
}
