//! The vocabulary of the exchange: accounts, orders, commands, events, rejections.

use serde::{Deserialize, Serialize};

/// A trading account. Account 0 is the exchange's own fee account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub u64);

/// The account fees are collected in (and rebates paid from).
pub const FEE_ACCOUNT: AccountId = AccountId(0);

/// A client's order id, unique per account among its open orders.
pub type OrderId = u64;

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// A bid.
    Buy,
    /// An ask.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// True when a taker on this side at `limit` may trade against a resting order at `price`.
    pub fn crosses(self, limit: u64, price: u64) -> bool {
        match self {
            Side::Buy => price <= limit,
            Side::Sell => price >= limit,
        }
    }
}

/// Limit or market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Trades at the limit price or better; the rest follows the time in force.
    Limit,
    /// Trades against the book immediately (bounded by a worst price or a quote budget); the
    /// rest is cancelled.
    Market,
}

/// How long a limit order lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled: the rest rests on the book.
    Gtc,
    /// Immediate or cancel: the rest is cancelled.
    Ioc,
    /// Fill or kill: fills entirely at once, or is rejected with no trade.
    Fok,
    /// Rests only; rejected if any part would take.
    PostOnly,
}

/// What happens when an order would trade with its own account's resting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfTrade {
    /// Cancel the resting order and go on matching (the default).
    #[default]
    CancelResting,
    /// Cancel the rest of the incoming order.
    CancelIncoming,
    /// Cancel both.
    CancelBoth,
    /// Reduce both by the smaller quantity, without a trade, and go on.
    DecrementBoth,
}

/// A market: a base/quote pair with tick and lot sizes and fees. As JSON, a field it does not
/// have is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketSpec {
    /// Its name, for example `ETH-USD`.
    pub market: String,
    /// The asset bought and sold.
    pub base: String,
    /// The asset prices are in.
    pub quote: String,
    /// Quote units per lot for one tick of price: a fill of q lots at p ticks costs p·q·tick.
    pub tick: u64,
    /// Base units in one lot.
    pub lot: u64,
    /// Maker fee in basis points of notional (negative: a rebate).
    pub maker_fee_bps: i64,
    /// Taker fee in basis points of notional.
    pub taker_fee_bps: i64,
}

impl MarketSpec {
    /// Market `market` trading `base` against `quote`, with a tick and a lot of one unit and
    /// no fees; set the other fields with struct update syntax:
    ///
    /// ```
    /// use agora_orderbook::MarketSpec;
    ///
    /// let spec = MarketSpec { taker_fee_bps: 5, ..MarketSpec::new("ETH-USD", "ETH", "USD") };
    /// assert_eq!((spec.tick, spec.lot, spec.maker_fee_bps, spec.taker_fee_bps), (1, 1, 0, 5));
    /// ```
    pub fn new(
        market: impl Into<String>,
        base: impl Into<String>,
        quote: impl Into<String>,
    ) -> Self {
        Self {
            market: market.into(),
            base: base.into(),
            quote: quote.into(),
            tick: 1,
            lot: 1,
            maker_fee_bps: 0,
            taker_fee_bps: 0,
        }
    }
}

/// An order to place. As JSON, a field it does not have is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Owner.
    pub account: AccountId,
    /// Market name.
    pub market: String,
    /// Client id (unique among the account's open orders).
    pub id: OrderId,
    /// Side.
    pub side: Side,
    /// Limit or market.
    #[serde(rename = "type", default = "limit")]
    pub order_type: OrderType,
    /// Time in force (limit orders; market orders are immediate or cancel).
    #[serde(default = "gtc")]
    pub tif: TimeInForce,
    /// Limit price in ticks; for a market order, the worst price accepted (optional).
    #[serde(default)]
    pub price: Option<u64>,
    /// Quantity in lots.
    pub qty: u64,
    /// Market buys: the most quote to spend, fees included (instead of, or with, a worst price).
    #[serde(default)]
    pub budget: Option<u64>,
    /// Self-trade prevention.
    #[serde(default)]
    pub stp: SelfTrade,
}

impl NewOrder {
    /// A good-till-cancelled limit order with the default self-trade mode (cancel resting):
    /// what a JSON `place` with only the required fields gives. Set other fields with struct
    /// update syntax, e.g. `NewOrder { tif: TimeInForce::Ioc, ..NewOrder::limit(…) }`.
    pub fn limit(
        account: AccountId,
        market: impl Into<String>,
        id: OrderId,
        side: Side,
        price: u64,
        qty: u64,
    ) -> Self {
        Self {
            account,
            market: market.into(),
            id,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Some(price),
            qty,
            budget: None,
            stp: SelfTrade::default(),
        }
    }
}

fn limit() -> OrderType {
    OrderType::Limit
}

fn gtc() -> TimeInForce {
    TimeInForce::Gtc
}

/// One instruction to the exchange. As JSON: `{"cmd": "place", …}` and so on; a field the
/// command does not have is an error, not ignored (a typo such as `"qyt"` must not become a
/// default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Open a market.
    Market(MarketSpec),
    /// Credit an account.
    Deposit {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: String,
        /// Amount in asset units.
        amount: u64,
    },
    /// Debit an account's available balance.
    Withdraw {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: String,
        /// Amount in asset units.
        amount: u64,
    },
    /// Place an order.
    Place(NewOrder),
    /// Cancel an open order.
    Cancel {
        /// Owner.
        account: AccountId,
        /// Market name.
        market: String,
        /// Client id.
        id: OrderId,
    },
    /// Change an open order's price and/or open quantity.
    Amend {
        /// Owner.
        account: AccountId,
        /// Market name.
        market: String,
        /// Client id.
        id: OrderId,
        /// New price (ticks), if it changes.
        #[serde(default)]
        price: Option<u64>,
        /// New open quantity (lots), if it changes.
        #[serde(default)]
        qty: Option<u64>,
    },
    /// Cancel every open order of an account (in one market, or in all).
    CancelAll {
        /// Owner.
        account: AccountId,
        /// Only this market, if given.
        #[serde(default)]
        market: Option<String>,
    },
}

/// Why a command changed nothing. It displays as a short sentence and is an error, so `?`
/// carries it into an application's own error type.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    thiserror::Error,
)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// No such market.
    #[error("no such market")]
    UnknownMarket,
    /// A market with this name exists.
    #[error("a market with this name exists")]
    MarketExists,
    /// Tick, lot or fees out of range.
    #[error("tick, lot or fees out of range")]
    BadMarket,
    /// Zero quantity or amount.
    #[error("zero quantity or amount")]
    ZeroSize,
    /// A limit order without a price, or a zero price.
    #[error("a limit order needs a non-zero price")]
    BadPrice,
    /// Not enough available balance.
    #[error("not enough available balance")]
    InsufficientFunds,
    /// The account already has an open order with this id.
    #[error("the account already has an open order with this id")]
    DuplicateId,
    /// No such open order.
    #[error("no such open order")]
    UnknownOrder,
    /// A post-only order would take.
    #[error("a post-only order would take")]
    WouldTake,
    /// A fill-or-kill order cannot fill entirely.
    #[error("a fill-or-kill order cannot fill entirely")]
    CannotFill,
    /// A market buy needs a worst price or a budget.
    #[error("a market buy needs a worst price or a budget")]
    UnboundedMarketOrder,
    /// An amount overflowed.
    #[error("an amount overflowed")]
    Overflow,
    /// The fee account cannot trade or be withdrawn from by commands.
    #[error("the fee account cannot trade or withdraw")]
    ReservedAccount,
    /// The amend changes nothing.
    #[error("the amend changes nothing")]
    NothingToAmend,
    /// An open-order limit was reached.
    #[error("an open-order limit was reached")]
    TooManyOrders,
    /// A market or asset name that is not a name (see [`check_name`]).
    #[error("a name is 1 to 32 ASCII letters, digits, '-', '_', '.' or '/'")]
    BadName,
}

/// The longest market or asset name, in bytes.
pub const NAME_BYTES_MAX: usize = 32;

/// Whether `name` is a market or asset name: 1 to [`NAME_BYTES_MAX`] bytes, each an ASCII
/// letter or digit or one of `-`, `_`, `.` and `/`. No spaces, no control characters, nothing
/// that two terminals or two fonts could show alike.
///
/// ```
/// use agora_orderbook::check_name;
///
/// assert!(check_name("ETH-USD").is_ok() && check_name("usdc.e").is_ok());
/// assert!(check_name("").is_err() && check_name("  ").is_err() && check_name("US\0D").is_err());
/// ```
pub fn check_name(name: &str) -> std::result::Result<(), Reject> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/');
    if (1..=NAME_BYTES_MAX).contains(&name.len()) && name.bytes().all(allowed) {
        Ok(())
    } else {
        Err(Reject::BadName)
    }
}

/// What happened. As JSON: `{"event": "trade", …}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A market was opened.
    MarketOpened {
        /// Its name.
        market: String,
    },
    /// A deposit was credited.
    Deposited {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: String,
        /// Amount.
        amount: u64,
    },
    /// A withdrawal was debited.
    Withdrawn {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: String,
        /// Amount.
        amount: u64,
    },
    /// An order was accepted (it may trade, rest, or both).
    Accepted {
        /// Owner.
        account: AccountId,
        /// Client id.
        id: OrderId,
    },
    /// A command was refused; nothing changed.
    Rejected {
        /// The account concerned, if any.
        account: Option<AccountId>,
        /// The order id concerned, if any.
        id: Option<OrderId>,
        /// Why.
        reason: Reject,
    },
    /// A trade at the resting (maker) order's price.
    Trade {
        /// Market (shared, so a trade allocates nothing).
        market: std::sync::Arc<str>,
        /// Resting order.
        maker_id: OrderId,
        /// Incoming order.
        taker_id: OrderId,
        /// Resting order's owner.
        maker_account: AccountId,
        /// Incoming order's owner.
        taker_account: AccountId,
        /// The taker's side.
        taker_side: Side,
        /// Price in ticks.
        price: u64,
        /// Quantity in lots.
        qty: u64,
        /// Fee paid by the maker in quote units (negative: rebate received).
        maker_fee: i64,
        /// Fee paid by the taker in quote units.
        taker_fee: i64,
    },
    /// A `cancel_all` ended: it cancelled `count` orders (each reported by its own
    /// `cancelled` event before this one), perhaps none. Every `cancel_all` that is not
    /// rejected ends with exactly one of these.
    CancelledAll {
        /// Owner.
        account: AccountId,
        /// The market it was limited to, if any.
        market: Option<String>,
        /// Orders cancelled.
        count: u64,
    },
    /// (The rest of) an order was cancelled.
    Cancelled {
        /// Owner.
        account: AccountId,
        /// Client id.
        id: OrderId,
        /// Open quantity cancelled.
        qty: u64,
    },
    /// An order's price or quantity changed.
    Amended {
        /// Owner.
        account: AccountId,
        /// Client id.
        id: OrderId,
    },
}
