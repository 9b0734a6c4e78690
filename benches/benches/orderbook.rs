//! The order book on one core: a mixed workload (mostly amends and placements, some cancels, a
//! few takers) against a warmed book of about 10,000 resting orders, in operations per second.
//! Target: 5 million per second.

use std::hint::black_box;

use agora_orderbook::{AccountId, Command, Exchange, MarketSpec, NewOrder, Side, TimeInForce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACCOUNTS: u64 = 1_000;
const MID: u64 = 100_000;

fn place(account: u64, id: u64, side: Side, price: u64, qty: u64, tif: TimeInForce) -> Command {
    Command::Place(NewOrder {
        tif,
        ..NewOrder::limit(AccountId(account), "ETH-USD", id, side, price, qty)
    })
}

/// A warmed exchange and a stream of `ops` mixed commands.
fn workload(ops: usize) -> (Exchange, Vec<Command>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut ex: Exchange = Exchange::new();
    let mut events = Vec::new();
    ex.apply(
        &Command::Market(MarketSpec {
            maker_fee_bps: -1,
            taker_fee_bps: 5,
            ..MarketSpec::new("ETH-USD", "ETH", "USD")
        }),
        &mut events,
    );
    for a in 1..=ACCOUNTS {
        for asset in ["USD", "ETH"] {
            ex.apply(
                &Command::Deposit { account: AccountId(a), asset: asset.into(), amount: 1 << 50 },
                &mut events,
            );
        }
    }
    // Resting orders on both sides, 1..=200 ticks from the mid.
    let mut open: Vec<(u64, u64, Side)> = Vec::new();
    let mut next_id = 1;
    let mut rest = |rng: &mut ChaCha8Rng, open: &mut Vec<(u64, u64, Side)>| {
        let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let away = rng.random_range(1..=200);
        let price = if side == Side::Buy { MID - away } else { MID + away };
        let account = rng.random_range(1..=ACCOUNTS);
        next_id += 1;
        open.push((account, next_id, side));
        (place(account, next_id, side, price, rng.random_range(1..100), TimeInForce::Gtc), price)
    };
    for _ in 0..10_000 {
        let (cmd, _) = rest(&mut rng, &mut open);
        ex.apply(&cmd, &mut events);
    }
    let mut commands = Vec::with_capacity(ops);
    let mut taker_id = 1u64 << 40;
    while commands.len() < ops {
        let roll = rng.random_range(0..100);
        if roll < 45 && !open.is_empty() {
            let (account, id, side) = open[rng.random_range(0..open.len())];
            let away = rng.random_range(1..=200);
            let price = if side == Side::Buy { MID - away } else { MID + away };
            let qty = rng.random_range(1..100);
            commands.push(Command::Amend {
                account: AccountId(account),
                market: "ETH-USD".into(),
                id,
                price: rng.random_bool(0.5).then_some(price),
                qty: Some(qty),
            });
        } else if roll < 80 {
            commands.push(rest(&mut rng, &mut open).0);
        } else if roll < 95 && !open.is_empty() {
            let (account, id, _) = open.swap_remove(rng.random_range(0..open.len()));
            commands.push(Command::Cancel {
                account: AccountId(account),
                market: "ETH-USD".into(),
                id,
            });
        } else {
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            let price = if side == Side::Buy { MID + 5 } else { MID - 5 };
            taker_id += 1;
            commands.push(place(
                rng.random_range(1..=ACCOUNTS),
                taker_id,
                side,
                price,
                rng.random_range(1..50),
                TimeInForce::Ioc,
            ));
        }
    }
    (ex, commands)
}

fn mixed(c: &mut Criterion) {
    let ops = 200_000;
    let (ex, commands) = workload(ops);
    // Say what the stream does, so the figure can be read honestly.
    {
        let mut probe = ex.clone();
        let mut events = Vec::new();
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for cmd in &commands {
            probe.apply(cmd, &mut events);
            for e in events.drain(..) {
                let kind = match e {
                    agora_orderbook::Event::Accepted { .. } => "accepted",
                    agora_orderbook::Event::Amended { .. } => "amended",
                    agora_orderbook::Event::Cancelled { .. } => "cancelled",
                    agora_orderbook::Event::Trade { .. } => "trade",
                    agora_orderbook::Event::Rejected { .. } => "rejected",
                    _ => "other",
                };
                *counts.entry(kind).or_default() += 1;
            }
        }
        eprintln!(
            "orderbook mixed workload: {ops} commands → {counts:?}, {} resting at the end",
            probe.open_orders()
        );
    }
    let mut g = c.benchmark_group("orderbook");
    g.throughput(Throughput::Elements(ops as u64));
    g.sample_size(20);
    g.bench_function("mixed_ops", |b| {
        b.iter_batched(
            || (ex.clone(), Vec::with_capacity(16)),
            |(mut ex, mut events)| {
                for cmd in &commands {
                    ex.apply(cmd, &mut events);
                    events.clear();
                }
                black_box(ex.open_orders())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, mixed);
criterion_main!(benches);
