//! The API's mirror of the market equals the market, block after block: random places,
//! cancels, amends, cancel-alls and crossing orders of three accounts, under each execution
//! order, and after a snapshot restore. The mirror is kept incrementally (only what a block
//! touched is read again), so this is its check against the whole state.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_api::{MarketView, Metrics, OpenOrderView, ViewLimits};
use agora_consensus::Application;
use agora_crypto::{Digest, DirectCheck, PublicKeyBytes, SecretKey};
use agora_market::{
    AccountRole, ExecutionOrder, GenesisAccount, MarketApp, MarketGenesis, OrderAction,
};
use agora_orderbook::{AccountId, Balance, Exchange, MarketSpec, NewOrder, Side};
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};

const MARKETS: [&str; 2] = ["ETH-USD", "BTC-USD"];

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn genesis(keys: &[SecretKey]) -> MarketGenesis {
    MarketGenesis {
        markets: vec![
            MarketSpec::new("ETH-USD", "ETH", "USD"),
            MarketSpec::new("BTC-USD", "BTC", "USD"),
        ],
        accounts: keys
            .iter()
            .enumerate()
            .map(|(i, key)| GenesisAccount {
                key: PublicKeyBytes::from(key.public_key()),
                account: AccountId(i as u64 + 1),
                deposits: vec![
                    ("USD".into(), 10_000_000),
                    ("ETH".into(), 10_000),
                    ("BTC".into(), 10_000),
                ],
                role: AccountRole::Trader,
            })
            .collect(),
    }
}

/// The truth from the exchange: each account's balances and open orders.
fn truth(
    exchange: &Exchange,
    account: AccountId,
) -> (BTreeMap<String, Balance>, Vec<OpenOrderView>) {
    let mut balances = BTreeMap::new();
    for asset in ["BTC", "ETH", "USD"] {
        let b = exchange.balance(account, asset);
        if b != Balance::default() {
            balances.insert(asset.to_owned(), b);
        }
    }
    let mut open: Vec<OpenOrderView> = exchange
        .state_view(0)
        .open_orders
        .into_iter()
        .filter(|o| o.account == account)
        .map(|o| {
            let held = exchange.order(&o.market, account, o.id).map_or(0, |r| r.held);
            OpenOrderView {
                market: o.market,
                id: o.id,
                side: o.side,
                price: o.price,
                qty: o.qty,
                held,
            }
        })
        .collect();
    open.sort_by(|a, b| (&a.market, a.id).cmp(&(&b.market, b.id)));
    (balances, open)
}

fn check(view: &MarketView, app: &MarketApp, case: &str) {
    let exchange = app.exchange();
    for account in 1..=3 {
        let (balances, open) = truth(exchange, AccountId(account));
        let mirrored = view.account(AccountId(account)).unwrap();
        assert_eq!(mirrored.balances, balances, "{case}: account {account}'s balances");
        assert_eq!(mirrored.open_orders, open, "{case}: account {account}'s open orders");
    }
    for market in MARKETS {
        let book = view.book(market, 10_000).unwrap();
        assert_eq!(
            book.bids,
            exchange.depth(market, Side::Buy, 10_000).unwrap(),
            "{case}: {market} bids"
        );
        assert_eq!(
            book.asks,
            exchange.depth(market, Side::Sell, 10_000).unwrap(),
            "{case}: {market} asks"
        );
    }
}

fn action(rng: &mut u64, next_id: &mut u64) -> OrderAction {
    let market = MARKETS[(splitmix(rng) % 2) as usize].to_owned();
    let id = splitmix(rng) % (*next_id).max(1);
    match splitmix(rng) % 10 {
        0 => OrderAction::Cancel { market, id },
        1 => OrderAction::Amend {
            market,
            id,
            price: Some(95 + splitmix(rng) % 10),
            qty: Some(1 + splitmix(rng) % 5),
        },
        2 => OrderAction::CancelAll { market: splitmix(rng).is_multiple_of(2).then_some(market) },
        _ => {
            *next_id += 1;
            let side = if splitmix(rng).is_multiple_of(2) { Side::Buy } else { Side::Sell };
            let price = 95 + splitmix(rng) % 10;
            NewOrder::limit(AccountId(0), &market, *next_id, side, price, 1 + splitmix(rng) % 5)
                .into()
        }
    }
}

#[test]
fn the_mirror_equals_the_market_after_every_block_and_after_a_restore() {
    let keys: Vec<SecretKey> = (0..3).map(|i| SecretKey::from_seed(8, i)).collect();
    let genesis = genesis(&keys);
    // More seeds: AGORA_MIRROR_SEEDS=N (each runs every execution order).
    let seeds: u64 =
        std::env::var("AGORA_MIRROR_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let orders =
        [ExecutionOrder::Proposal, ExecutionOrder::Canonical, ExecutionOrder::BatchAuction];
    for (seed, order) in (4_000..4_000 + seeds).flat_map(|seed| orders.map(|o| (seed, o))) {
        let mut rng = seed;
        let view = MarketView::new(&genesis, ViewLimits::default(), Arc::new(Metrics::new()));
        let mut app = MarketApp::new(&genesis).with_order(order).with_observer(view.observer());
        let mut nonces = [0u64; 3];
        let mut ids = [0u64; 3];
        let mut snapshot = None;
        for height in 1..=80u64 {
            let txs: Vec<Transaction> = (0..(1 + splitmix(&mut rng) % 12))
                .map(|_| {
                    let who = (splitmix(&mut rng) % 3) as usize;
                    let act = action(&mut rng, &mut ids[who]);
                    nonces[who] += 1;
                    Transaction::new_signed(&keys[who], nonces[who], act.encode()).unwrap()
                })
                .collect();
            let block = Block::new(
                Digest::ZERO,
                Round(height),
                Height(height),
                NodeId(0),
                0,
                Batch::new(txs).unwrap(),
            );
            app.apply(&block, &mut DirectCheck);
            check(&view, &app, &format!("seed {seed}, {order:?}, height {height}"));
            if height == 40 {
                snapshot = Some((app.state_snapshot().unwrap(), app.state_digest()));
            }
        }
        // A fresh view from a restored snapshot mirrors the restored state.
        let (bytes, digest) = snapshot.unwrap();
        let fresh = MarketView::new(&genesis, ViewLimits::default(), Arc::new(Metrics::new()));
        let mut restored =
            MarketApp::new(&genesis).with_order(order).with_observer(fresh.observer());
        restored.restore_snapshot(&bytes, digest).unwrap();
        check(&fresh, &restored, &format!("seed {seed}, {order:?}, restored"));
    }
}
