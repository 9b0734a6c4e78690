//! The replicated exchange without any consensus around it: two replicas apply the same final
//! blocks of signed orders and end in the same state, with the same digest. An order signed by
//! a key no account holds, and a replayed nonce, are refused by both alike and change nothing.
//!
//! `cargo run -p agora-market --example two_replicas`

use agora_consensus::Application;
use agora_crypto::{DirectCheck, SecretKey};
use agora_market::{GenesisAccount, MarketApp, MarketGenesis, OrderAction};
use agora_orderbook::{AccountId, MarketSpec, NewOrder, Side};
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};

/// A good-till-cancelled limit order as a payload: the order book's own order, whose account
/// is left out (the signing key names it).
fn limit(id: u64, side: Side, price: u64, qty: u64) -> OrderAction {
    NewOrder::limit(AccountId(0), "ETH-USD", id, side, price, qty).into()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (maker, taker, stranger) =
        (SecretKey::from_seed(1, 0), SecretKey::from_seed(1, 1), SecretKey::from_seed(1, 2));
    let account = |key: &SecretKey, n, asset: &str| GenesisAccount {
        key: key.public_key().into(),
        account: AccountId(n),
        deposits: vec![(asset.into(), 1_000_000)],
        role: Default::default(),
    };
    let genesis = MarketGenesis {
        markets: vec![MarketSpec { taker_fee_bps: 10, ..MarketSpec::new("ETH-USD", "ETH", "USD") }],
        accounts: vec![account(&maker, 1, "ETH"), account(&taker, 2, "USD")],
    };
    let sign = |key: &SecretKey, nonce, action: OrderAction| {
        Transaction::new_signed(key, nonce, action.encode()).expect("a small payload")
    };
    let blocks = [
        vec![sign(&maker, 0, limit(1, Side::Sell, 2_000, 50))],
        vec![
            sign(&taker, 0, limit(1, Side::Buy, 2_000, 20)),
            sign(&stranger, 0, limit(9, Side::Buy, 2_000, 20)),
            sign(&taker, 0, limit(2, Side::Buy, 2_000, 20)),
        ],
    ];

    let mut replicas = [MarketApp::new(&genesis), MarketApp::new(&genesis)];
    let mut parent = Block::genesis().digest();
    for (h, txs) in blocks.into_iter().enumerate() {
        let height = h as u64 + 1;
        let block =
            Block::new(parent, Round(height), Height(height), NodeId(0), 0, Batch::new(txs)?);
        parent = block.digest();
        for (r, app) in replicas.iter_mut().enumerate() {
            let applied = app.apply(&block, &mut DirectCheck);
            println!(
                "replica {r} height {height}: {} executed, {} refused, state {}",
                applied.executed,
                applied.rejected,
                applied.state_digest.short()
            );
        }
    }
    let [a, b] = &replicas;
    assert_eq!(a.state_digest(), b.state_digest());
    assert_eq!(a.recompute_digest(), a.state_digest());
    let ex = a.exchange();
    println!(
        "taker: {} ETH; maker: {} USD; the ask has {} lots left",
        ex.balance(AccountId(2), "ETH").available,
        ex.balance(AccountId(1), "USD").available,
        ex.bbo("ETH-USD").and_then(|b| b.ask).map_or(0, |(_, q)| q),
    );
    assert_eq!(ex.balance(AccountId(2), "ETH").available, 20);
    Ok(())
}
