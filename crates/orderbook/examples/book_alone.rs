//! The order book on its own, with no consensus and no crypto: open a market, fund two
//! accounts, rest an ask, cross it with a bid, amend and cancel, and check that a snapshot
//! restores to the same state.
//!
//! `cargo run -p agora-orderbook --example book_alone`

use agora_orderbook::{
    AccountId, Command, Event, Exchange, MarketSpec, NewOrder, Reject, Side, TimeInForce,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ex = Exchange::new();
    let mut events = Vec::new();
    let spec = MarketSpec {
        maker_fee_bps: -1,
        taker_fee_bps: 5,
        ..MarketSpec::new("ETH-USD", "ETH", "USD")
    };
    let (alice, bob) = (AccountId(1), AccountId(2));
    let commands = [
        Command::Market(spec),
        Command::Deposit { account: alice, asset: "USD".into(), amount: 1_000_000 },
        Command::Deposit { account: bob, asset: "ETH".into(), amount: 500 },
        Command::Place(NewOrder::limit(bob, "ETH-USD", 1, Side::Sell, 2_000, 100)),
        // An immediate-or-cancel bid: it takes 40 of the ask and rests nothing.
        Command::Place(NewOrder {
            tif: TimeInForce::Ioc,
            ..NewOrder::limit(alice, "ETH-USD", 7, Side::Buy, 2_001, 40)
        }),
        Command::Amend {
            account: bob,
            market: "ETH-USD".into(),
            id: 1,
            price: Some(1_999),
            qty: None,
        },
    ];
    for command in &commands {
        ex.apply(command, &mut events);
    }
    for event in &events {
        println!("{}", serde_json::to_string(event)?);
    }

    // Every refusal is an event with a reason, and the state does not change.
    let before = ex.snapshot();
    let mut refused = Vec::new();
    let overdraft = NewOrder::limit(alice, "ETH-USD", 8, Side::Buy, 2_000, 1_000_000);
    ex.apply(&Command::Place(overdraft), &mut refused);
    let Some(Event::Rejected { reason, .. }) = refused.first() else {
        return Err("the overdraft was not refused".into());
    };
    assert_eq!(*reason, Reject::InsufficientFunds);
    assert_eq!(ex.snapshot(), before);
    println!("refused: {reason}");

    ex.apply(&Command::Cancel { account: bob, market: "ETH-USD".into(), id: 1 }, &mut events);
    println!(
        "alice: {} USD, {} ETH; bob: {} USD, {} ETH",
        ex.balance(alice, "USD").available,
        ex.balance(alice, "ETH").available,
        ex.balance(bob, "USD").available,
        ex.balance(bob, "ETH").available,
    );

    // A snapshot is checked before it is trusted, and restores to the same state.
    let restored = Exchange::restore(&ex.snapshot())?;
    assert_eq!(restored.snapshot(), ex.snapshot());
    println!("snapshot restored and equal");
    Ok(())
}
