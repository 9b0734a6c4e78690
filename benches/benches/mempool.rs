//! Filling a 1,000-transaction batch from 100,000 pending market orders of 1,000 accounts:
//! first come first served (`InMemoryMempool`) against the four market lanes with fair turns
//! across accounts (`LanedMempool`), and the cost of admitting one order into each.

use std::hint::black_box;

use agora::market::agents::{self, AgentsConfig};
use agora::priority::Priority;
use agora_consensus::{BatchLimits, InMemoryMempool, LanedMempool, Mempool, MempoolLimits};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// About 100,000 agent orders (1,000 traders, 5% large) and their genesis.
fn orders() -> (agora::market::MarketGenesis, Vec<agora::types::Transaction>) {
    let config = AgentsConfig {
        traders: 1_000,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 100.0,
        quote_every_ns: 100_000_000,
        end_ns: 1_000_000_000,
        large_orders: 0.05,
        frontrunner: false,
    };
    let (genesis, orders, _) = agents::generate(&config, 1, 4);
    (genesis, orders.into_iter().map(|o| o.tx).collect())
}

fn mempools(c: &mut Criterion) {
    let (genesis, txs) = orders();
    let priority = Priority::default();
    let limits = MempoolLimits { txs_max: 200_000, ..MempoolLimits::default() };
    let laned =
        || LanedMempool::new(limits, priority.policy(&genesis), priority.classifier(&genesis));
    let mut fifo = InMemoryMempool::new(limits);
    let mut lanes = laned();
    for tx in &txs {
        fifo.insert(tx.clone()).unwrap();
        lanes.insert(tx.clone()).unwrap();
    }
    let batch = BatchLimits::default();
    let mut g = c.benchmark_group("mempool_select_1000_of_100k");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("first_come", |b| b.iter(|| black_box(fifo.select(&batch, &|_| false))));
    g.bench_function("lanes", |b| b.iter(|| black_box(lanes.select(&batch, &|_| false))));
    g.finish();
    let mut g = c.benchmark_group("mempool_insert_10k");
    g.throughput(Throughput::Elements(10_000));
    g.sample_size(20);
    let some: Vec<_> = txs.iter().take(10_000).cloned().collect();
    g.bench_function("first_come", |b| {
        b.iter_batched(
            || (InMemoryMempool::new(limits), some.clone()),
            |(mut m, txs)| {
                for t in txs {
                    let _ = m.insert(t);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("lanes", |b| {
        b.iter_batched(
            || (laned(), some.clone()),
            |(mut m, txs)| {
                for t in txs {
                    let _ = m.insert(t);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, mempools);
criterion_main!(benches);
