//! A snapshot is untrusted input (read from disk or a peer): restoring one checks it first, and a
//! snapshot the exchange could not have reached is refused with a reason, not restored.

use agora_orderbook::{
    AccountId, Command, Exchange, FEE_ACCOUNT, MarketSpec, NewOrder, Side, Snapshot, SnapshotError,
};

fn traded() -> Exchange {
    let mut ex = Exchange::new();
    let mut events = Vec::new();
    let spec = MarketSpec {
        market: "ETH-USD".into(),
        base: "ETH".into(),
        quote: "USD".into(),
        tick: 1,
        lot: 1,
        maker_fee_bps: 0,
        taker_fee_bps: 10,
    };
    ex.apply(&Command::Market(spec), &mut events);
    for (account, asset) in [(1, "USD"), (2, "ETH")] {
        let deposit =
            Command::Deposit { account: AccountId(account), asset: asset.into(), amount: 100_000 };
        ex.apply(&deposit, &mut events);
    }
    for (account, id, side, price) in
        [(1, 1, Side::Buy, 90), (1, 2, Side::Buy, 95), (2, 1, Side::Sell, 120)]
    {
        let order = NewOrder::limit(AccountId(account), "ETH-USD", id, side, price, 10);
        ex.apply(&Command::Place(order), &mut events);
    }
    assert_eq!(ex.open_orders(), 3);
    ex
}

fn refused(snapshot: &Snapshot) -> SnapshotError {
    match Exchange::restore(snapshot) {
        Ok(_) => panic!("a tampered snapshot was restored"),
        Err(e) => e,
    }
}

#[test]
fn a_snapshot_restores_to_itself() {
    let ex = traded();
    let restored = Exchange::restore(&ex.snapshot()).unwrap();
    assert_eq!(restored.snapshot(), ex.snapshot());
    restored.check_integrity().unwrap();
}

#[test]
fn a_bid_holds_its_fee_rounded_up_per_lot() {
    // 10 lots at 90 with a 10 bps taker fee: 90 + ⌈0.09⌉ = 91 per lot.
    let ex = traded();
    let snapshot = ex.snapshot();
    let bid = snapshot.orders.iter().find(|(_, r)| r.account == AccountId(1) && r.id == 1).unwrap();
    assert_eq!(bid.1.held, 910);
}

#[test]
fn a_tampered_hold_is_refused() {
    let mut snapshot = traded().snapshot();
    snapshot.orders[0].1.held -= 1;
    assert!(matches!(refused(&snapshot), SnapshotError::Inconsistent(m) if m.contains("holds")));
}

#[test]
fn a_balance_that_disagrees_with_its_orders_or_the_supply_is_refused() {
    let base = traded().snapshot();
    let mut held = base.clone();
    let (_, _, b) = held
        .balances
        .iter_mut()
        .find(|(a, asset, _)| *a == AccountId(1) && asset == "USD")
        .unwrap();
    b.held += 1;
    b.available -= 1;
    assert!(matches!(refused(&held), SnapshotError::Inconsistent(m) if m.contains("its orders")));
    let mut minted = base.clone();
    let (_, _, b) = minted.balances.iter_mut().find(|(a, _, _)| *a == AccountId(2)).unwrap();
    b.available += 1_000;
    assert!(matches!(refused(&minted), SnapshotError::Inconsistent(m) if m.contains("supply")));
    let mut twice = base;
    let first = twice.balances[0].clone();
    twice.balances.push(first);
    assert!(
        matches!(refused(&twice), SnapshotError::Inconsistent(m) if m.contains("two balances"))
    );
}

#[test]
fn impossible_orders_are_refused() {
    let base = traded().snapshot();
    let mut unknown = base.clone();
    unknown.orders[0].0 = "BTC-USD".into();
    assert!(
        matches!(refused(&unknown), SnapshotError::Inconsistent(m) if m.contains("no such market"))
    );
    let mut duplicate = base.clone();
    let mut copy = duplicate.orders[0].clone();
    copy.1.seq = duplicate.next_seq;
    duplicate.next_seq += 1;
    duplicate.orders.push(copy);
    assert!(matches!(refused(&duplicate), SnapshotError::Inconsistent(_)));
    let mut ahead = base.clone();
    ahead.orders[0].1.seq = ahead.next_seq;
    assert!(matches!(refused(&ahead), SnapshotError::Inconsistent(m) if m.contains("sequence")));
    let mut fee = base.clone();
    fee.orders[0].1.account = FEE_ACCOUNT;
    assert!(matches!(refused(&fee), SnapshotError::Inconsistent(m) if m.contains("fee account")));
    let mut zero = base.clone();
    zero.orders[0].1.qty = 0;
    assert!(matches!(refused(&zero), SnapshotError::Inconsistent(_)));
    let mut markets = base;
    let again = markets.markets[0].clone();
    markets.markets.push(again);
    assert!(matches!(refused(&markets), SnapshotError::Market { .. }));
}

#[test]
fn unknown_markets_answer_none_everywhere() {
    let ex = traded();
    assert!(ex.bbo("BTC-USD").is_none());
    assert!(ex.depth("BTC-USD", Side::Buy, 5).is_none());
    assert!(ex.level("BTC-USD", Side::Buy, 90).is_none());
    assert!(ex.order("BTC-USD", AccountId(1), 1).is_none());
    // A known market with nothing at a price answers Some of nothing.
    assert_eq!(ex.level("ETH-USD", Side::Buy, 1).unwrap(), vec![]);
}
