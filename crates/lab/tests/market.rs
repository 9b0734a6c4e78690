//! The replicated exchange under the agents' order flow (the agents live above agora-market,
//! so these tests do too).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use agora_consensus::Application;
use agora_crypto::{Digest, DirectCheck};
use agora_lab::agents::{self, AgentsConfig};
use agora_market::priority::{Lanes, Priority};
use agora_market::{MarketApp, MarketCounters, OrderAction};
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction, codec};

fn block(height: u64, txs: Vec<Transaction>) -> Block {
    Block::new(Digest::ZERO, Round(height), Height(height), NodeId(0), 0, Batch::new(txs).unwrap())
}

/// The cached level digests give the digest computed from scratch, block after block of
/// the agents' orders (places, market orders, cancels and amends), and the digest moves
/// with the state.
#[test]
fn cached_level_digests_match_a_fresh_digest() {
    let config = agents::AgentsConfig {
        traders: 8,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 200.0,
        quote_every_ns: 100_000_000,
        end_ns: 2_000_000_000,
        large_orders: 0.05,
        frontrunner: false,
    };
    let (genesis, orders, _) = agents::generate(&config, 3, 4);
    let counters = Arc::new(MarketCounters::default());
    let mut app = MarketApp::new(&genesis).with_observer(Box::new(Arc::clone(&counters)));
    let txs: Vec<Transaction> = orders.into_iter().map(|o| o.tx).collect();
    assert!(txs.len() > 2_000, "{} orders", txs.len());
    let (mut digests, mut most_open) = (BTreeSet::new(), 0);
    for (h, chunk) in txs.chunks(37).enumerate() {
        let digest = app.apply(&block(h as u64 + 1, chunk.to_vec()), &mut DirectCheck).state_digest;
        let fresh = app.recompute_digest();
        assert_eq!(digest, fresh, "block {}", h + 1);
        digests.insert(digest);
        most_open = most_open.max(app.exchange().open_orders());
    }
    assert!(most_open > 40, "at most {most_open} open orders: too thin a book");
    assert_eq!(counters.refused.load(Ordering::Relaxed), 0);
    assert_eq!(digests.len(), txs.len().div_ceil(37), "every block changed the state");
}

#[test]
fn every_kind_of_order_finds_its_lane() {
    let config = AgentsConfig {
        traders: 8,
        market_makers: 2,
        liquidators: 1,
        trader_rate: 50.0,
        quote_every_ns: 100_000_000,
        end_ns: 2_000_000_000,
        large_orders: 0.1,
        frontrunner: false,
    };
    let (genesis, orders, _) = agents::generate(&config, 3, 4);
    let lanes = Lanes::new(&Priority::default(), &genesis);
    let mut seen = [0usize; 4];
    for o in &orders {
        let lane = lanes.lane(&o.tx);
        seen[lane] += 1;
        let action = codec::decode::<OrderAction>(o.tx.payload()).unwrap();
        match lane {
            1 => assert!(matches!(
                action,
                OrderAction::Cancel { .. } | OrderAction::CancelAll { .. }
            )),
            2 => assert!(matches!(action, OrderAction::Place { qty, .. } if qty >= 60)),
            _ => {}
        }
    }
    assert!(seen.iter().all(|n| *n > 0), "{seen:?}");
}
