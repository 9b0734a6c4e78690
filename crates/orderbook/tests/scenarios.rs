//! The order book's behaviour as tables: setup commands, one command, and exactly the events it
//! must produce (plus balances and depth where they matter).
//!
//! Market ETH-USD: tick 10 (a fill of q lots at p costs 10·p·q USD), lot 100 ETH, maker fee
//! 10 bps, taker fee 20 bps. Accounts 1–4 start with 10,000,000 USD and 100,000 ETH.

use std::sync::Arc;

use agora_orderbook::{
    AccountId, Balance, Command, Event, Exchange, MarketSpec, NewOrder, OrderType, Reject,
    SelfTrade, Side, TimeInForce,
};

const M: &str = "ETH-USD";

fn spec(maker: i64, taker: i64) -> MarketSpec {
    MarketSpec {
        market: M.into(),
        base: "ETH".into(),
        quote: "USD".into(),
        tick: 10,
        lot: 100,
        maker_fee_bps: maker,
        taker_fee_bps: taker,
    }
}

fn setup(maker: i64, taker: i64) -> Exchange {
    let mut ex = Exchange::new();
    let mut ev = Vec::new();
    ex.apply(&Command::Market(spec(maker, taker)), &mut ev);
    for a in 1..=4 {
        ex.apply(
            &Command::Deposit { account: AccountId(a), asset: "USD".into(), amount: 10_000_000 },
            &mut ev,
        );
        ex.apply(
            &Command::Deposit { account: AccountId(a), asset: "ETH".into(), amount: 100_000 },
            &mut ev,
        );
    }
    ex
}

fn order(account: u64, id: u64, side: Side, price: u64, qty: u64) -> NewOrder {
    NewOrder::limit(AccountId(account), M, id, side, price, qty)
}

fn buy(account: u64, id: u64, price: u64, qty: u64) -> Command {
    Command::Place(order(account, id, Side::Buy, price, qty))
}

fn sell(account: u64, id: u64, price: u64, qty: u64) -> Command {
    Command::Place(order(account, id, Side::Sell, price, qty))
}

fn with(cmd: Command, f: impl FnOnce(&mut NewOrder)) -> Command {
    let Command::Place(mut o) = cmd else { panic!("not a placement") };
    f(&mut o);
    Command::Place(o)
}

fn accepted(account: u64, id: u64) -> Event {
    Event::Accepted { account: AccountId(account), id }
}

fn cancelled(account: u64, id: u64, qty: u64) -> Event {
    Event::Cancelled { account: AccountId(account), id, qty }
}

fn rejected(account: u64, id: Option<u64>, reason: Reject) -> Event {
    Event::Rejected { account: Some(AccountId(account)), id, reason }
}

/// A trade of `qty` at `price`, taker on `side`, with fees from the default rates (10/20 bps of
/// notional 10·price·qty, rounded up).
fn trade(maker: (u64, u64), taker: (u64, u64), side: Side, price: u64, qty: u64) -> Event {
    let notional = 10 * price * qty;
    Event::Trade {
        market: Arc::from(M),
        maker_id: maker.1,
        taker_id: taker.1,
        maker_account: AccountId(maker.0),
        taker_account: AccountId(taker.0),
        taker_side: side,
        price,
        qty,
        maker_fee: (notional * 10).div_ceil(10_000) as i64,
        taker_fee: (notional * 20).div_ceil(10_000) as i64,
    }
}

struct Case {
    name: &'static str,
    setup: Vec<Command>,
    command: Command,
    events: Vec<Event>,
    bids: Option<Vec<(u64, u64)>>,
    asks: Option<Vec<(u64, u64)>>,
}

fn case(name: &'static str, setup: Vec<Command>, command: Command, events: Vec<Event>) -> Case {
    Case { name, setup, command, events, bids: None, asks: None }
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let mut ex = setup(10, 20);
        let mut ev = Vec::new();
        for cmd in &c.setup {
            ex.apply(cmd, &mut ev);
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Rejected { .. })),
                "{}: setup rejected: {ev:?}",
                c.name
            );
            ev.clear();
        }
        let before = ex.snapshot();
        ex.apply(&c.command, &mut ev);
        assert_eq!(ev, c.events, "{}", c.name);
        if matches!(ev.as_slice(), [Event::Rejected { .. }]) {
            assert_eq!(ex.snapshot(), before, "{}: a rejection changed the state", c.name);
        }
        if let Some(bids) = c.bids {
            assert_eq!(ex.depth(M, Side::Buy, 10).unwrap(), bids, "{}: bids", c.name);
        }
        if let Some(asks) = c.asks {
            assert_eq!(ex.depth(M, Side::Sell, 10).unwrap(), asks, "{}: asks", c.name);
        }
        for (asset, (supply, total)) in ex.conservation() {
            assert_eq!(supply, total, "{}: {asset} not conserved", c.name);
        }
    }
}

#[test]
fn order_types() {
    run(vec![
        Case {
            bids: Some(vec![(100, 5)]),
            ..case("a GTC bid rests", vec![], buy(1, 1, 100, 5), vec![accepted(1, 1)])
        },
        Case {
            bids: Some(vec![(101, 2)]),
            asks: Some(vec![]),
            ..case(
                "a crossing bid trades at the ask's price and rests the rest",
                vec![sell(2, 7, 100, 3)],
                buy(1, 1, 101, 5),
                vec![accepted(1, 1), trade((2, 7), (1, 1), Side::Buy, 100, 3)],
            )
        },
        Case {
            asks: Some(vec![(101, 1)]),
            ..case(
                "a bid walks the levels in price order, oldest first within a level",
                vec![sell(2, 1, 101, 2), sell(3, 2, 100, 1), sell(4, 3, 100, 1)],
                buy(1, 9, 101, 3),
                vec![
                    accepted(1, 9),
                    trade((3, 2), (1, 9), Side::Buy, 100, 1),
                    trade((4, 3), (1, 9), Side::Buy, 100, 1),
                    trade((2, 1), (1, 9), Side::Buy, 101, 1),
                ],
            )
        },
        Case {
            bids: Some(vec![]),
            ..case(
                "IOC fills what it can and cancels the rest",
                vec![sell(2, 7, 100, 2)],
                with(buy(1, 1, 100, 5), |o| o.tif = TimeInForce::Ioc),
                vec![accepted(1, 1), trade((2, 7), (1, 1), Side::Buy, 100, 2), cancelled(1, 1, 3)],
            )
        },
        case(
            "FOK that cannot fill entirely is rejected with no trade",
            vec![sell(2, 7, 100, 2)],
            with(buy(1, 1, 100, 5), |o| o.tif = TimeInForce::Fok),
            vec![rejected(1, Some(1), Reject::CannotFill)],
        ),
        case(
            "FOK that can fill does, across levels",
            vec![sell(2, 7, 100, 2), sell(3, 8, 101, 3)],
            with(buy(1, 1, 101, 5), |o| o.tif = TimeInForce::Fok),
            vec![
                accepted(1, 1),
                trade((2, 7), (1, 1), Side::Buy, 100, 2),
                trade((3, 8), (1, 1), Side::Buy, 101, 3),
            ],
        ),
        case(
            "post-only that would take is rejected",
            vec![sell(2, 7, 100, 2)],
            with(buy(1, 1, 100, 1), |o| o.tif = TimeInForce::PostOnly),
            vec![rejected(1, Some(1), Reject::WouldTake)],
        ),
        Case {
            bids: Some(vec![(99, 1)]),
            ..case(
                "post-only below the ask rests",
                vec![sell(2, 7, 100, 2)],
                with(buy(1, 1, 99, 1), |o| o.tif = TimeInForce::PostOnly),
                vec![accepted(1, 1)],
            )
        },
        case(
            "a market buy with a worst price stops there and cancels the rest",
            vec![sell(2, 7, 100, 1), sell(3, 8, 105, 1)],
            with(buy(1, 1, 102, 3), |o| o.order_type = OrderType::Market),
            vec![accepted(1, 1), trade((2, 7), (1, 1), Side::Buy, 100, 1), cancelled(1, 1, 2)],
        ),
        case(
            "a market buy with a budget buys what the budget pays for, fees included",
            vec![sell(2, 7, 100, 5)],
            // 3 lots cost 3,000 + 6 fee = 3,006; a budget of 3,005 pays for 2.
            with(buy(1, 1, 1, 5), |o| {
                o.order_type = OrderType::Market;
                o.price = None;
                o.budget = Some(3_005);
            }),
            vec![accepted(1, 1), trade((2, 7), (1, 1), Side::Buy, 100, 2), cancelled(1, 1, 3)],
        ),
        case(
            "a market buy with neither worst price nor budget is refused",
            vec![],
            with(buy(1, 1, 1, 5), |o| {
                o.order_type = OrderType::Market;
                o.price = None;
            }),
            vec![rejected(1, Some(1), Reject::UnboundedMarketOrder)],
        ),
        case(
            "a market sell without a worst price takes the best bids",
            vec![buy(2, 7, 100, 1), buy(3, 8, 90, 1)],
            with(sell(1, 1, 1, 3), |o| {
                o.order_type = OrderType::Market;
                o.price = None;
            }),
            vec![
                accepted(1, 1),
                trade((2, 7), (1, 1), Side::Sell, 100, 1),
                trade((3, 8), (1, 1), Side::Sell, 90, 1),
                cancelled(1, 1, 1),
            ],
        ),
    ]);
}

#[test]
fn cancel_and_amend() {
    let amend = |id, price: Option<u64>, qty: Option<u64>| Command::Amend {
        account: AccountId(1),
        market: M.into(),
        id,
        price,
        qty,
    };
    run(vec![
        Case {
            bids: Some(vec![]),
            ..case(
                "cancel releases the order",
                vec![buy(1, 1, 100, 5)],
                Command::Cancel { account: AccountId(1), market: M.into(), id: 1 },
                vec![cancelled(1, 1, 5)],
            )
        },
        case(
            "cancel of an unknown order",
            vec![],
            Command::Cancel { account: AccountId(1), market: M.into(), id: 9 },
            vec![rejected(1, Some(9), Reject::UnknownOrder)],
        ),
        case(
            "another account cannot cancel my order",
            vec![buy(2, 1, 100, 5)],
            Command::Cancel { account: AccountId(1), market: M.into(), id: 1 },
            vec![rejected(1, Some(1), Reject::UnknownOrder)],
        ),
        Case {
            bids: Some(vec![(100, 1)]),
            ..case(
                "cancel-all cancels every order of the account, by id, then says how many",
                vec![buy(1, 2, 99, 1), buy(1, 1, 100, 1), sell(1, 3, 200, 1), buy(2, 1, 100, 1)],
                Command::CancelAll { account: AccountId(1), market: None },
                vec![
                    cancelled(1, 1, 1),
                    cancelled(1, 2, 1),
                    cancelled(1, 3, 1),
                    Event::CancelledAll { account: AccountId(1), market: None, count: 3 },
                ],
            )
        },
        case(
            "cancel-all with nothing to cancel still answers, with a count of 0",
            vec![buy(2, 1, 100, 1)],
            Command::CancelAll { account: AccountId(1), market: Some("ETH-USD".into()) },
            vec![Event::CancelledAll {
                account: AccountId(1),
                market: Some("ETH-USD".into()),
                count: 0,
            }],
        ),
        case(
            "a smaller amend keeps priority: the amended order still fills first",
            vec![buy(1, 1, 100, 5), buy(2, 2, 100, 5), amend(1, None, Some(3))],
            sell(3, 9, 100, 1),
            vec![accepted(3, 9), trade((1, 1), (3, 9), Side::Sell, 100, 1)],
        ),
        case(
            "a larger amend loses priority",
            vec![buy(1, 1, 100, 5), buy(2, 2, 100, 5), amend(1, None, Some(6))],
            sell(3, 9, 100, 1),
            vec![accepted(3, 9), trade((2, 2), (3, 9), Side::Sell, 100, 1)],
        ),
        case(
            "a price amend loses priority",
            vec![buy(1, 1, 100, 5), buy(2, 2, 101, 5), amend(1, Some(101), None)],
            sell(3, 9, 101, 1),
            vec![accepted(3, 9), trade((2, 2), (3, 9), Side::Sell, 101, 1)],
        ),
        Case {
            bids: Some(vec![(105, 2)]),
            ..case(
                "an amend that crosses trades like a new taker",
                vec![buy(1, 1, 100, 5), sell(2, 2, 104, 3)],
                amend(1, Some(105), None),
                vec![
                    Event::Amended { account: AccountId(1), id: 1 },
                    trade((2, 2), (1, 1), Side::Buy, 104, 3),
                ],
            )
        },
        case(
            "an amend that changes nothing",
            vec![buy(1, 1, 100, 5)],
            amend(1, Some(100), Some(5)),
            vec![rejected(1, Some(1), Reject::NothingToAmend)],
        ),
        case(
            "a post-only order cannot be amended into taking",
            vec![with(buy(1, 1, 99, 5), |o| o.tif = TimeInForce::PostOnly), sell(2, 2, 100, 1)],
            amend(1, Some(100), None),
            vec![rejected(1, Some(1), Reject::WouldTake)],
        ),
        case(
            "an amend needing more funds than available",
            vec![
                Command::Withdraw { account: AccountId(1), asset: "USD".into(), amount: 9_000_000 },
                buy(1, 1, 100, 900),
            ],
            amend(1, None, Some(2_000)),
            vec![rejected(1, Some(1), Reject::InsufficientFunds)],
        ),
    ]);
}

#[test]
fn self_trade_prevention() {
    let mine = |stp| with(buy(1, 9, 100, 3), move |o| o.stp = stp);
    run(vec![
        case(
            "cancel resting (default): my resting ask goes, the next ask trades",
            vec![sell(1, 1, 100, 2), sell(2, 2, 100, 2)],
            mine(SelfTrade::CancelResting),
            vec![accepted(1, 9), cancelled(1, 1, 2), trade((2, 2), (1, 9), Side::Buy, 100, 2)],
        )
        .with_bids(vec![(100, 1)]),
        case(
            "cancel incoming: the rest of the incoming order goes",
            vec![sell(2, 2, 100, 1), sell(1, 1, 100, 2)],
            mine(SelfTrade::CancelIncoming),
            vec![accepted(1, 9), trade((2, 2), (1, 9), Side::Buy, 100, 1), cancelled(1, 9, 2)],
        )
        .with_asks(vec![(100, 2)]),
        case(
            "cancel both",
            vec![sell(1, 1, 100, 2)],
            mine(SelfTrade::CancelBoth),
            vec![accepted(1, 9), cancelled(1, 1, 2), cancelled(1, 9, 3)],
        )
        .with_asks(vec![]),
        case(
            "decrement both: both lose the smaller quantity, no trade, no fee",
            vec![sell(1, 1, 100, 2)],
            mine(SelfTrade::DecrementBoth),
            vec![accepted(1, 9), cancelled(1, 1, 2), cancelled(1, 9, 2)],
        )
        .with_bids(vec![(100, 1)])
        .with_asks(vec![]),
    ]);
}

impl Case {
    fn with_bids(mut self, bids: Vec<(u64, u64)>) -> Self {
        self.bids = Some(bids);
        self
    }

    fn with_asks(mut self, asks: Vec<(u64, u64)>) -> Self {
        self.asks = Some(asks);
        self
    }
}

#[test]
fn rejections_change_nothing() {
    let huge = u64::MAX / 2;
    run(vec![
        case(
            "insufficient funds",
            vec![],
            buy(1, 1, 100_000, 100_000),
            vec![rejected(1, Some(1), Reject::InsufficientFunds)],
        ),
        case(
            "insufficient base",
            vec![],
            sell(1, 1, 100, 1_001),
            vec![rejected(1, Some(1), Reject::InsufficientFunds)],
        ),
        case(
            "unknown market",
            vec![],
            with(buy(1, 1, 100, 1), |o| o.market = "BTC-USD".into()),
            vec![rejected(1, Some(1), Reject::UnknownMarket)],
        ),
        case("zero size", vec![], buy(1, 1, 100, 0), vec![rejected(1, Some(1), Reject::ZeroSize)]),
        case("zero price", vec![], buy(1, 1, 0, 1), vec![rejected(1, Some(1), Reject::BadPrice)]),
        case(
            "a limit order without a price",
            vec![],
            with(buy(1, 1, 1, 1), |o| o.price = None),
            vec![rejected(1, Some(1), Reject::BadPrice)],
        ),
        case(
            "duplicate id",
            vec![buy(1, 1, 100, 1)],
            buy(1, 1, 99, 1),
            vec![rejected(1, Some(1), Reject::DuplicateId)],
        ),
        case(
            "overflowing amounts",
            vec![],
            buy(1, 1, huge, huge),
            vec![rejected(1, Some(1), Reject::Overflow)],
        ),
        case(
            "the fee account cannot trade",
            vec![],
            buy(0, 1, 100, 1),
            vec![rejected(0, Some(1), Reject::ReservedAccount)],
        ),
        case(
            "withdrawing more than available",
            vec![buy(1, 1, 100, 9_000)],
            Command::Withdraw { account: AccountId(1), asset: "USD".into(), amount: 9_999_000 },
            vec![rejected(1, None, Reject::InsufficientFunds)],
        ),
        case(
            "a deposit beyond the supply limit",
            vec![],
            Command::Deposit { account: AccountId(1), asset: "USD".into(), amount: u64::MAX },
            vec![rejected(1, None, Reject::Overflow)],
        ),
        case(
            "a market with a zero tick",
            vec![],
            Command::Market(MarketSpec { market: "X".into(), tick: 0, ..spec(0, 0) }),
            vec![Event::Rejected { account: None, id: None, reason: Reject::BadMarket }],
        ),
        case(
            "a maker rebate larger than the taker fee",
            vec![],
            Command::Market(MarketSpec { market: "X".into(), ..spec(-30, 20) }),
            vec![Event::Rejected { account: None, id: None, reason: Reject::BadMarket }],
        ),
        case(
            "a market that exists",
            vec![],
            Command::Market(spec(0, 0)),
            vec![Event::Rejected { account: None, id: None, reason: Reject::MarketExists }],
        ),
    ]);
}

#[test]
fn holds_fees_and_settlement() {
    let mut ex = setup(10, 20);
    let mut ev = Vec::new();
    // A bid of 10 lots at 100 holds 10·100·10 = 10,000 plus the highest fee (20 bps) per lot:
    // 2 each, so 10,020.
    ex.apply(&buy(1, 1, 100, 10), &mut ev);
    assert_eq!(
        ex.balance(AccountId(1), "USD"),
        Balance { available: 10_000_000 - 10_020, held: 10_020 }
    );
    // An ask holds base: 4 lots × 100.
    ex.apply(&sell(2, 1, 100, 4), &mut ev);
    // It traded 4 lots as taker against the bid (maker): notional 4,000.
    // Buyer (maker) paid 4,000 + 4 (10 bps); its hold for 4 lots was 4,008: 4 released.
    assert_eq!(
        ex.balance(AccountId(1), "USD"),
        Balance { available: 10_000_000 - 10_020 + 4, held: 6_012 }
    );
    assert_eq!(ex.balance(AccountId(1), "ETH"), Balance { available: 100_000 + 400, held: 0 });
    // Seller (taker) received 4,000 − 8 (20 bps) and delivered 400 ETH.
    assert_eq!(ex.balance(AccountId(2), "USD").available, 10_000_000 + 3_992);
    assert_eq!(ex.balance(AccountId(2), "ETH"), Balance { available: 100_000 - 400, held: 0 });
    // The fee account has 12.
    assert_eq!(ex.balance(AccountId(0), "USD").available, 12);
    // Cancelling releases exactly the rest of the hold.
    ex.apply(&Command::Cancel { account: AccountId(1), market: M.into(), id: 1 }, &mut ev);
    assert_eq!(ex.balance(AccountId(1), "USD"), Balance { available: 10_000_000 - 4_004, held: 0 });
    for (asset, (supply, total)) in ex.conservation() {
        assert_eq!(supply, total, "{asset}");
    }
}

#[test]
fn maker_rebates_round_down_and_are_paid_from_taker_fees() {
    let mut ex = setup(-5, 7);
    let mut ev = Vec::new();
    ex.apply(&sell(2, 1, 33, 3), &mut ev);
    ev.clear();
    ex.apply(&buy(1, 1, 33, 3), &mut ev);
    // Notional 990: taker fee ceil(0.693) = 1; maker rebate floor(0.495) = 0.
    assert!(
        ev.iter().any(|e| matches!(e, Event::Trade { maker_fee: 0, taker_fee: 1, .. })),
        "{ev:?}"
    );
    ex.apply(&sell(2, 2, 1_000, 10), &mut ev);
    ev.clear();
    ex.apply(&buy(1, 2, 1_000, 10), &mut ev);
    // Notional 100,000: rebate 50 to the maker, fee 70 from the taker, 20 to the fee account.
    assert!(
        ev.iter().any(|e| matches!(e, Event::Trade { maker_fee: -50, taker_fee: 70, .. })),
        "{ev:?}"
    );
    assert_eq!(ex.balance(AccountId(0), "USD").available, 1 + 20);
    assert_eq!(ex.balance(AccountId(2), "USD").available, 10_000_000 + 990 + 100_050);
}

#[test]
fn market_data() {
    let mut ex = setup(10, 20);
    let mut ev = Vec::new();
    for cmd in [buy(1, 1, 99, 2), buy(2, 2, 99, 3), buy(3, 3, 98, 1), sell(4, 4, 101, 5)] {
        ex.apply(&cmd, &mut ev);
    }
    assert_eq!(ex.bbo(M), Some(agora_orderbook::Bbo { bid: Some((99, 5)), ask: Some((101, 5)) }));
    assert_eq!(ex.depth(M, Side::Buy, 1).unwrap(), vec![(99, 5)]);
    let level: Vec<(u64, u64)> =
        ex.level(M, Side::Buy, 99).unwrap().iter().map(|r| (r.account.0, r.qty)).collect();
    assert_eq!(level, vec![(1, 2), (2, 3)]);
    assert_eq!(ex.bbo("nope"), None);
}
