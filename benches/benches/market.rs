//! Applying one 10,000-order block to the replicated exchange: payload decoding, nonce checks,
//! matching, settlement and the state digest. Signatures are taken as verified (the runtime
//! verifies them off the critical path, on arrival in the mempool). Target: under 5 ms. Each
//! execution order is measured: proposal, canonical (sorted by key) and batch auction.

use agora::crypto::{PublicKeyBytes, SecretKey};
use agora::market::{ExecutionOrder, GenesisAccount, MarketApp, MarketGenesis, OrderAction};
use agora::orderbook::{AccountId, MarketSpec, OrderType, SelfTrade, Side, TimeInForce};
use agora::types::{Batch, Block, Digest, Height, NodeId, Round, Transaction};
use agora_benches::TrustAll;
use agora_consensus::Application;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACCOUNTS: u64 = 200;

fn setup() -> (MarketGenesis, Block) {
    let keys: Vec<SecretKey> = (0..ACCOUNTS).map(|i| SecretKey::from_seed(42, i)).collect();
    let genesis = MarketGenesis {
        markets: vec![MarketSpec {
            maker_fee_bps: -1,
            taker_fee_bps: 5,
            ..MarketSpec::new("ETH-USD", "ETH", "USD")
        }],
        accounts: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisAccount {
                key: PublicKeyBytes::from(k.public_key()),
                account: AccountId(i as u64 + 1),
                deposits: vec![("USD".into(), 1 << 40), ("ETH".into(), 1 << 30)],
                role: agora::market::AccountRole::Trader,
            })
            .collect(),
    };
    // 10,000 orders around a mid of 2,000: most rest, about a third cross.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut nonces = vec![0u64; ACCOUNTS as usize];
    let txs: Vec<Transaction> = (0..10_000u64)
        .map(|i| {
            let a = rng.random_range(0..ACCOUNTS as usize);
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            let offset = rng.random_range(0..30);
            let price = if side == Side::Buy { 2_010 - offset } else { 1_990 + offset };
            let action = OrderAction::Place {
                market: "ETH-USD".into(),
                id: i,
                side,
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                price: Some(price),
                qty: rng.random_range(1..50),
                budget: None,
                stp: SelfTrade::CancelResting,
            };
            nonces[a] += 1;
            Transaction::new_signed(&keys[a], nonces[a], action.encode()).expect("small payload")
        })
        .collect();
    let block = Block::new(
        Digest::ZERO,
        Round(1),
        Height(1),
        NodeId(0),
        0,
        Batch::new(txs).expect("within limits"),
    );
    (genesis, block)
}

fn apply_block(c: &mut Criterion) {
    let (genesis, block) = setup();
    let mut g = c.benchmark_group("market");
    g.throughput(Throughput::Elements(block.batch().len() as u64));
    g.sample_size(20);
    for order in ExecutionOrder::ALL {
        // Canonical order executes a block when its successor arrives: apply an empty one
        // after it.
        let next = Block::new(block.digest(), Round(2), Height(2), NodeId(0), 0, Batch::empty());
        let name = match order {
            ExecutionOrder::Proposal => "apply_10000_order_block".to_owned(),
            other => format!("apply_10000_order_block_{}", other.name()),
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || MarketApp::new(&genesis).with_order(order),
                |mut app| {
                    app.apply(&block, &mut TrustAll);
                    if order == ExecutionOrder::Canonical {
                        app.apply(&next, &mut TrustAll);
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// The state digest alone, over the book the 10,000-order block leaves (applying an empty block
/// is nothing but the digest). An empty block changes no price level, so this is the digest's
/// floor: the ledger plus the cached level digests; the blocks above pay for the levels they
/// touch.
fn state_digest(c: &mut Criterion) {
    let (genesis, block) = setup();
    let mut app = MarketApp::new(&genesis);
    app.apply(&block, &mut TrustAll);
    let resting = app.exchange().open_orders();
    let mut g = c.benchmark_group("market");
    g.throughput(Throughput::Elements(resting as u64));
    let mut height = 1;
    g.bench_function(format!("state_digest_{resting}_resting"), |b| {
        b.iter(|| {
            height += 1;
            let empty = Block::new(
                Digest::ZERO,
                Round(height),
                Height(height),
                NodeId(0),
                0,
                Batch::empty(),
            );
            app.apply(&empty, &mut TrustAll)
        })
    });
    g.finish();
}

criterion_group!(benches, apply_block, state_digest);
criterion_main!(benches);
