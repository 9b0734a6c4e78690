//! A multi-market limit order book: accounts, holds, settlement, fees and self-trade
//! prevention, with price-time priority. It knows nothing about consensus or cryptography: it is
//! a deterministic state machine over [`Command`]s that emits [`Event`]s, usable on its own.
//!
//! **Units.** Each market is a base/quote pair with a tick and a lot size, in integer units of
//! the assets. A quantity of q lots is q × lot base units; a price of p ticks is p × tick quote
//! units per lot, so a fill of q lots at p costs p × q × tick quote units. There is no floating
//! point, and arithmetic is checked: an overflow is a rejection, never a wrap or a panic.
//!
//! **Orders.** Limit good-till-cancelled, immediate-or-cancel, fill-or-kill, post-only, and
//! market orders bounded by a worst price or a quote budget; cancel, cancel-all, and amend (a
//! smaller quantity keeps priority, a new price or a larger quantity loses it, and an amended
//! order that crosses trades like a new taker). Trades execute at the resting order's price.
//! Self-trade prevention per order: cancel resting (default), cancel incoming, cancel both, or
//! decrement both.
//!
//! **Money.** Placing an order holds what it could spend (an ask: its quantity in base; a bid,
//! per lot, its price in quote plus the higher of the maker and taker fee on that price, rounded
//! up to a whole quote unit, times its lots: with a 10 bps fee, 10 lots at 90 hold 91 × 10 = 910,
//! not 900.9); fills settle both sides; cancels
//! release holds. Fees are maker and taker rates in basis points of notional, charged in the quote
//! asset (a taker fee rounds up, a maker rebate down) and collected in [`FEE_ACCOUNT`]. Money is
//! conserved per asset, fees included ([`Exchange::conservation`]).
//!
//! **Determinism.** Identical command streams give identical events and an identical
//! [`Snapshot`]; restoring a snapshot gives the same snapshot back. [`Exchange::restore`] checks
//! a snapshot before it trusts it (holds, balances, supply, ids; [`SnapshotError`]).
//!
//! **Lookups.** Every lookup by market name answers `None` for a market that does not exist
//! ([`Exchange::bbo`], [`Exchange::depth`], [`Exchange::level`], [`Exchange::order`]); a market
//! with an empty book answers `Some` of nothing. A balance of an account or asset never seen is
//! zero, like an empty account's. A refused command is an [`Event::Rejected`] with its
//! [`Reject`], which displays as a sentence and is a `std::error::Error`.
//!
//! **Hashing the state.** A replica hashes its state after every block, so the crate offers it
//! without copies: [`Exchange::snapshot_view`] serializes exactly as the snapshot does, and
//! [`Exchange::ledger_view`] without the orders. [`Book::levels`] stamps each price level with
//! a version that changes whenever the level does, so a digest per level can be cached and
//! only the levels a block touched rehashed.
//!
//! **JSON.** [`Command`] and [`Event`] are serde types; one JSON object per line is the format of
//! `agora book`. Accounts are integers; prices are in ticks and quantities in lots.
//!
//! ```text
//! {"cmd":"market","market":"ETH-USD","base":"ETH","quote":"USD","tick":1,"lot":1,"maker_fee_bps":-1,"taker_fee_bps":5}
//! {"cmd":"deposit","account":1,"asset":"USD","amount":1000000}
//! {"cmd":"withdraw","account":1,"asset":"USD","amount":500}
//! {"cmd":"place","account":1,"market":"ETH-USD","id":7,"side":"buy","type":"limit","tif":"gtc","price":2001,"qty":40}
//! {"cmd":"place","account":1,"market":"ETH-USD","id":8,"side":"buy","type":"market","budget":50000,"qty":40}
//! {"cmd":"cancel","account":1,"market":"ETH-USD","id":7}
//! {"cmd":"amend","account":1,"market":"ETH-USD","id":7,"price":2000,"qty":30}
//! {"cmd":"cancel_all","account":1}
//! ```
//!
//! `type` is `limit` (default) or `market`; `tif` is `gtc` (default), `ioc`, `fok` or
//! `post_only`; `stp` is `cancel_resting` (default), `cancel_incoming`, `cancel_both` or
//! `decrement_both`; a market order's `price` is its worst price, and a market buy needs a
//! worst price or a `budget`. Events are `market_opened`, `deposited`, `withdrawn`, `accepted`,
//! `rejected` (with a `reason`), `trade` (market, maker and taker ids and accounts, taker side,
//! price, qty, maker and taker fees), `cancelled` (with the open quantity) and `amended`.
//!
//! ```
//! use agora_orderbook::{AccountId, Command, Event, Exchange, MarketSpec, NewOrder, Side};
//!
//! let mut ex = Exchange::new();
//! let mut events = Vec::new();
//! let spec = MarketSpec {
//!     market: "ETH-USD".into(), base: "ETH".into(), quote: "USD".into(),
//!     tick: 1, lot: 1, maker_fee_bps: 0, taker_fee_bps: 10,
//! };
//! ex.apply(&Command::Market(spec), &mut events);
//! for (account, asset) in [(1, "USD"), (2, "ETH")] {
//!     ex.apply(&Command::Deposit { account: AccountId(account), asset: asset.into(), amount: 1_000_000 }, &mut events);
//! }
//! let order = |account, side, price| {
//!     Command::Place(NewOrder::limit(AccountId(account), "ETH-USD", 1, side, price, 10))
//! };
//! ex.apply(&order(2, Side::Sell, 2_000), &mut events);
//! ex.apply(&order(1, Side::Buy, 2_100), &mut events);
//! // The trade is at the resting ask's price; the buyer pays 20,000 + 20 in fees.
//! assert!(events.iter().any(|e| matches!(e, Event::Trade { price: 2_000, qty: 10, taker_fee: 20, .. })));
//! assert_eq!(ex.balance(AccountId(1), "USD").available, 1_000_000 - 20_020);
//! assert_eq!(ex.balance(AccountId(1), "ETH").available, 10);
//!
//! // A snapshot restores with no type annotation, and is checked first.
//! let restored = Exchange::restore(&ex.snapshot()).expect("a consistent snapshot");
//! assert_eq!(restored.snapshot(), ex.snapshot());
//! ```
//!
//! A rejection carries into an application's error with `?`:
//!
//! ```
//! use agora_orderbook::{Event, Reject};
//!
//! fn check(event: &Event) -> Result<(), Box<dyn std::error::Error>> {
//!     if let Event::Rejected { reason, .. } = event {
//!         return Err((*reason).into());
//!     }
//!     Ok(())
//! }
//! assert_eq!(Reject::InsufficientFunds.to_string(), "not enough available balance");
//! ```

mod book;
mod exchange;
mod types;

pub use book::{Book, FastBook, LevelStamp, NaiveBook, Resting};
pub use exchange::{
    Balance, Bbo, Depth, Exchange, OPEN_ORDERS_MAX, OpenOrder, SUPPLY_MAX, Snapshot, SnapshotError,
    SnapshotView, StateView,
};
pub use types::{
    AccountId, Command, Event, FEE_ACCOUNT, MarketSpec, NAME_BYTES_MAX, NewOrder, OrderId,
    OrderType, Reject, SelfTrade, Side, TimeInForce, check_name,
};
