//! The exchange: markets, accounts, holds, matching, settlement and fees.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::book::{Book, FastBook, Resting};
use crate::types::{
    AccountId, Command, Event, FEE_ACCOUNT, MarketSpec, NewOrder, OrderId, OrderType, Reject,
    SelfTrade, Side, TimeInForce,
};

/// The most units of one asset that may exist (deposits minus withdrawals): every balance,
/// notional and fee then fits in an `i64`, so no settlement can overflow.
pub const SUPPLY_MAX: u64 = i64::MAX as u64;

/// Open orders the whole exchange holds at most.
pub const OPEN_ORDERS_MAX: usize = 10_000_000;

/// An account's balance of one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balance {
    /// Free to use.
    pub available: u64,
    /// Held for open orders.
    pub held: u64,
}

#[derive(Debug, Clone)]
struct Market<B> {
    spec: MarketSpec,
    name: Arc<str>,
    base: usize,
    quote: usize,
    book: B,
}

impl<B> Market<B> {
    /// The fee rate a resting bid must be able to pay (it may fill as maker or, after an amend,
    /// as taker).
    fn hold_bps(&self) -> i64 {
        self.spec.taker_fee_bps.max(self.spec.maker_fee_bps).max(0)
    }

    /// What one lot at `price` holds: quote (notional plus the highest fee) for a bid, base for
    /// an ask. Linear in lots, so the hold of any partial fill covers its cost exactly.
    fn per_lot(&self, side: Side, price: u64) -> Option<u64> {
        match side {
            Side::Buy => {
                let notional = u128::from(price) * u128::from(self.spec.tick);
                let total = notional + fee_up(notional, self.hold_bps());
                u64::try_from(total).ok().filter(|t| *t <= SUPPLY_MAX)
            }
            Side::Sell => Some(self.spec.lot),
        }
    }
}

/// `ceil(amount · bps / 10 000)` for `bps ≥ 0`.
fn fee_up(amount: u128, bps: i64) -> u128 {
    (amount * u128::from(bps.unsigned_abs())).div_ceil(10_000)
}

/// A fee on `notional`: rounded up when charged, down when it is a rebate (paid out).
fn fee(notional: u64, bps: i64) -> i64 {
    let n = u128::from(notional);
    if bps >= 0 {
        fee_up(n, bps) as i64
    } else {
        -((n * u128::from(bps.unsigned_abs()) / 10_000) as i64)
    }
}

/// The exchange over books of type `B` ([`FastBook`] unless a test says otherwise).
#[derive(Debug, Clone)]
pub struct Exchange<B: Book = FastBook> {
    markets: Vec<Market<B>>,
    market_ids: FxHashMap<String, usize>,
    assets: Vec<String>,
    asset_ids: FxHashMap<String, usize>,
    supply: Vec<u64>,
    accounts: FxHashMap<AccountId, Vec<Balance>>,
    next_seq: u64,
    open_orders: usize,
}

impl<B: Book> Default for Exchange<B> {
    fn default() -> Self {
        Self {
            markets: Vec::new(),
            market_ids: FxHashMap::default(),
            assets: Vec::new(),
            asset_ids: FxHashMap::default(),
            supply: Vec::new(),
            accounts: FxHashMap::default(),
            next_seq: 1,
            open_orders: 0,
        }
    }
}

/// The incoming side of a match.
struct Taker {
    account: AccountId,
    id: OrderId,
    side: Side,
    /// Worst acceptable price; `None` for a market sell without one.
    limit: Option<u64>,
    rem: u64,
    held: u64,
    /// Per-lot hold (limit orders and priced market orders); `None` in budget mode.
    per_lot: Option<u64>,
    stp: SelfTrade,
}

/// An accepted order holding its funds, before matching.
struct Admitted {
    m: usize,
    taker: Taker,
    tif: TimeInForce,
    order_type: OrderType,
}

enum Stop {
    Done,
    CancelIncoming,
}

/// One fill's terms: lots at a price, and each side's fee rate.
#[derive(Clone, Copy)]
struct Fill {
    price: u64,
    q: u64,
    buyer_bps: i64,
    seller_bps: i64,
}

mod auction;

type Result<T> = std::result::Result<T, Reject>;

impl Exchange {
    /// An empty exchange on the default book: no markets, no accounts. (`Exchange::default()`
    /// gives one on any [`Book`].)
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds an exchange on the default book from a snapshot, checking it first (see
    /// [`Exchange::from_snapshot`], which restores onto any [`Book`]).
    pub fn restore(snapshot: &Snapshot) -> std::result::Result<Self, SnapshotError> {
        Self::from_snapshot(snapshot)
    }
}

/// Why a snapshot was refused: it is not a state the exchange could have reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A market spec was refused as a command would be (a duplicate name, a bad tick or fee).
    #[error("market {market}: {reason}")]
    Market {
        /// The market's name.
        market: String,
        /// Why.
        reason: Reject,
    },
    /// An order or balance contradicts the rest of the snapshot.
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
}

impl<B: Book> Exchange<B> {
    /// Applies one command, appending what happened to `events`. A rejected command changes
    /// nothing and appends one `Rejected` event.
    pub fn apply(&mut self, command: &Command, events: &mut Vec<Event>) {
        let outcome = match command {
            Command::Market(spec) => self.open_market(spec, events),
            Command::Deposit { account, asset, amount } => {
                self.deposit(*account, asset, *amount, events)
            }
            Command::Withdraw { account, asset, amount } => {
                self.withdraw(*account, asset, *amount, events)
            }
            Command::Place(order) => self.place(order, events),
            Command::Cancel { account, market, id } => self.cancel(*account, market, *id, events),
            Command::Amend { account, market, id, price, qty } => {
                self.amend(*account, market, *id, *price, *qty, events)
            }
            Command::CancelAll { account, market } => {
                self.cancel_all(*account, market.as_deref(), events)
            }
        };
        if let Err(reason) = outcome {
            let (account, id) = match command {
                Command::Market(_) => (None, None),
                Command::Deposit { account, .. } | Command::Withdraw { account, .. } => {
                    (Some(*account), None)
                }
                Command::Place(o) => (Some(o.account), Some(o.id)),
                Command::Cancel { account, id, .. } | Command::Amend { account, id, .. } => {
                    (Some(*account), Some(*id))
                }
                Command::CancelAll { account, .. } => (Some(*account), None),
            };
            events.push(Event::Rejected { account, id, reason });
        }
    }

    fn asset(&mut self, name: &str) -> usize {
        if let Some(i) = self.asset_ids.get(name) {
            return *i;
        }
        self.assets.push(name.to_owned());
        self.supply.push(0);
        self.asset_ids.insert(name.to_owned(), self.assets.len() - 1);
        self.assets.len() - 1
    }

    fn balance_mut(&mut self, account: AccountId, asset: usize) -> &mut Balance {
        let balances = self.accounts.entry(account).or_default();
        if balances.len() <= asset {
            balances.resize(asset + 1, Balance::default());
        }
        &mut balances[asset]
    }

    fn available(&self, account: AccountId, asset: usize) -> u64 {
        self.accounts.get(&account).and_then(|b| b.get(asset)).map_or(0, |b| b.available)
    }

    /// Moves `amount` from available to held (the caller checked it is available).
    fn hold(&mut self, account: AccountId, asset: usize, amount: u64) {
        let b = self.balance_mut(account, asset);
        b.available -= amount;
        b.held += amount;
    }

    /// Moves `amount` from held back to available.
    fn release(&mut self, account: AccountId, asset: usize, amount: u64) {
        let b = self.balance_mut(account, asset);
        b.held -= amount;
        b.available += amount;
    }

    fn market_index(&self, name: &str) -> Result<usize> {
        self.market_ids.get(name).copied().ok_or(Reject::UnknownMarket)
    }

    fn open_market(&mut self, spec: &MarketSpec, events: &mut Vec<Event>) -> Result<()> {
        if self.market_ids.contains_key(&spec.market) {
            return Err(Reject::MarketExists);
        }
        let fees_ok = (0..=10_000).contains(&spec.taker_fee_bps)
            && (-10_000..=10_000).contains(&spec.maker_fee_bps)
            && spec.taker_fee_bps + spec.maker_fee_bps >= 0;
        if spec.tick == 0
            || spec.lot == 0
            || spec.base == spec.quote
            || spec.market.is_empty()
            || !fees_ok
        {
            return Err(Reject::BadMarket);
        }
        let (base, quote) = (self.asset(&spec.base), self.asset(&spec.quote));
        self.markets.push(Market {
            spec: spec.clone(),
            name: Arc::from(spec.market.as_str()),
            base,
            quote,
            book: B::default(),
        });
        self.market_ids.insert(spec.market.clone(), self.markets.len() - 1);
        events.push(Event::MarketOpened { market: spec.market.clone() });
        Ok(())
    }

    fn deposit(
        &mut self,
        account: AccountId,
        asset: &str,
        amount: u64,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        if account == FEE_ACCOUNT {
            return Err(Reject::ReservedAccount);
        }
        if amount == 0 {
            return Err(Reject::ZeroSize);
        }
        let a = self.asset(asset);
        let supply = self.supply[a]
            .checked_add(amount)
            .filter(|s| *s <= SUPPLY_MAX)
            .ok_or(Reject::Overflow)?;
        self.supply[a] = supply;
        self.balance_mut(account, a).available += amount;
        events.push(Event::Deposited { account, asset: asset.to_owned(), amount });
        Ok(())
    }

    fn withdraw(
        &mut self,
        account: AccountId,
        asset: &str,
        amount: u64,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        if account == FEE_ACCOUNT {
            return Err(Reject::ReservedAccount);
        }
        if amount == 0 {
            return Err(Reject::ZeroSize);
        }
        let a = *self.asset_ids.get(asset).ok_or(Reject::InsufficientFunds)?;
        if self.available(account, a) < amount {
            return Err(Reject::InsufficientFunds);
        }
        self.balance_mut(account, a).available -= amount;
        self.supply[a] -= amount;
        events.push(Event::Withdrawn { account, asset: asset.to_owned(), amount });
        Ok(())
    }

    fn place(&mut self, o: &NewOrder, events: &mut Vec<Event>) -> Result<()> {
        let Admitted { m, mut taker, tif, order_type } = self.admit(o, events)?;
        let stop = self.match_taker(m, &mut taker, events);
        let rests = matches!(stop, Stop::Done)
            && taker.rem > 0
            && order_type == OrderType::Limit
            && matches!(tif, TimeInForce::Gtc | TimeInForce::PostOnly);
        self.finish_taker(m, taker, rests, tif == TimeInForce::PostOnly, events);
        Ok(())
    }

    /// Every check of a new order, then its hold: from here on it is accepted and must be
    /// matched, rested or cancelled.
    fn admit(&mut self, o: &NewOrder, events: &mut Vec<Event>) -> Result<Admitted> {
        if o.account == FEE_ACCOUNT {
            return Err(Reject::ReservedAccount);
        }
        let m = self.market_index(&o.market)?;
        if o.qty == 0 {
            return Err(Reject::ZeroSize);
        }
        if self.markets[m].book.get(o.account, o.id).is_some() {
            return Err(Reject::DuplicateId);
        }
        if self.open_orders >= OPEN_ORDERS_MAX {
            return Err(Reject::TooManyOrders);
        }
        let market = &self.markets[m];
        let (limit, tif) = match o.order_type {
            OrderType::Limit => match o.price {
                Some(p) if p > 0 => (Some(p), o.tif),
                _ => return Err(Reject::BadPrice),
            },
            OrderType::Market => {
                if o.price == Some(0) {
                    return Err(Reject::BadPrice);
                }
                if o.side == Side::Buy && o.price.is_none() && o.budget.is_none() {
                    return Err(Reject::UnboundedMarketOrder);
                }
                (o.price, TimeInForce::Ioc)
            }
        };
        // What the order holds: per lot at its limit, or its budget.
        let (per_lot, hold) = match (o.side, o.budget.filter(|_| o.order_type == OrderType::Market))
        {
            (Side::Buy, Some(budget)) => {
                let cap = match limit {
                    Some(p) => market
                        .per_lot(Side::Buy, p)
                        .and_then(|l| l.checked_mul(o.qty))
                        .unwrap_or(u64::MAX),
                    None => u64::MAX,
                };
                (None, budget.min(cap))
            }
            (side, _) => {
                let l = market.per_lot(side, limit.unwrap_or(1)).ok_or(Reject::Overflow)?;
                (
                    Some(l),
                    l.checked_mul(o.qty).filter(|h| *h <= SUPPLY_MAX).ok_or(Reject::Overflow)?,
                )
            }
        };
        if hold == 0 {
            return Err(Reject::ZeroSize);
        }
        let asset = if o.side == Side::Buy { market.quote } else { market.base };
        if self.available(o.account, asset) < hold {
            return Err(Reject::InsufficientFunds);
        }
        let best = market.book.front(o.side.opposite()).map(|r| r.price);
        if tif == TimeInForce::PostOnly
            && best.is_some_and(|b| o.side.crosses(limit.unwrap_or(0), b))
        {
            return Err(Reject::WouldTake);
        }
        if tif == TimeInForce::Fok
            && self.fillable(m, o.account, o.side, limit, o.qty, o.stp) < o.qty
        {
            return Err(Reject::CannotFill);
        }
        // Accepted: from here on the order changes state.
        events.push(Event::Accepted { account: o.account, id: o.id });
        self.hold(o.account, asset, hold);
        let taker = Taker {
            account: o.account,
            id: o.id,
            side: o.side,
            limit,
            rem: o.qty,
            held: hold,
            per_lot,
            stp: o.stp,
        };
        Ok(Admitted { m, taker, tif, order_type: o.order_type })
    }

    /// Rests the rest of a taker, or cancels it and releases its hold.
    fn finish_taker(
        &mut self,
        m: usize,
        taker: Taker,
        rests: bool,
        post_only: bool,
        events: &mut Vec<Event>,
    ) {
        let asset =
            if taker.side == Side::Buy { self.markets[m].quote } else { self.markets[m].base };
        if rests {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.open_orders += 1;
            let price = taker.limit.expect("resting orders are limit orders");
            self.markets[m].book.insert(Resting {
                account: taker.account,
                id: taker.id,
                side: taker.side,
                price,
                qty: taker.rem,
                held: taker.held,
                stp: taker.stp,
                post_only,
                seq,
            });
            return;
        }
        if taker.rem > 0 {
            events.push(Event::Cancelled { account: taker.account, id: taker.id, qty: taker.rem });
        }
        if taker.held > 0 {
            self.release(taker.account, asset, taker.held);
        }
    }

    /// How much of an incoming order could fill now (dry run, nothing changes), following the
    /// self-trade rules as matching would.
    fn fillable(
        &self,
        m: usize,
        account: AccountId,
        side: Side,
        limit: Option<u64>,
        qty: u64,
        stp: SelfTrade,
    ) -> u64 {
        let mut filled = 0;
        for r in self.markets[m].book.walk(side.opposite()) {
            if filled >= qty || limit.is_some_and(|l| !side.crosses(l, r.price)) {
                break;
            }
            if r.account == account {
                match stp {
                    SelfTrade::CancelResting => continue,
                    SelfTrade::CancelIncoming | SelfTrade::CancelBoth => break,
                    SelfTrade::DecrementBoth => {}
                }
            }
            filled += r.qty.min(qty - filled);
        }
        filled
    }

    /// Matches a taker against the opposite side, best price first, oldest first.
    fn match_taker(&mut self, m: usize, taker: &mut Taker, events: &mut Vec<Event>) -> Stop {
        while taker.rem > 0 {
            let Some(front) = self.markets[m].book.front(taker.side.opposite()) else {
                return Stop::Done;
            };
            if taker.limit.is_some_and(|l| !taker.side.crosses(l, front.price)) {
                return Stop::Done;
            }
            let maker = front.clone();
            if maker.account == taker.account {
                match taker.stp {
                    SelfTrade::CancelResting => self.cancel_resting(m, &maker, events),
                    SelfTrade::CancelIncoming => return Stop::CancelIncoming,
                    SelfTrade::CancelBoth => {
                        self.cancel_resting(m, &maker, events);
                        return Stop::CancelIncoming;
                    }
                    SelfTrade::DecrementBoth => self.decrement_both(m, taker, &maker, events),
                }
                continue;
            }
            let mut q = taker.rem.min(maker.qty);
            if taker.per_lot.is_none() {
                q = self.affordable(m, maker.price, q, taker.held);
                if q == 0 {
                    return Stop::Done;
                }
            }
            self.trade(m, taker, &maker, q, events);
        }
        Stop::Done
    }

    /// Lots a budget-mode buyer can pay for at `price`, at most `q`.
    fn affordable(&self, m: usize, price: u64, q: u64, budget: u64) -> u64 {
        let market = &self.markets[m];
        let cost = |lots: u64| {
            let notional = u128::from(price) * u128::from(lots) * u128::from(market.spec.tick);
            notional + fee_up(notional, market.spec.taker_fee_bps)
        };
        let per_lot = cost(1).max(1);
        let mut lots = (u128::from(budget) / per_lot).min(u128::from(q)) as u64;
        while lots < q && cost(lots + 1) <= u128::from(budget) {
            lots += 1;
        }
        lots
    }

    /// Settles `q` lots between the taker and the resting maker at the maker's price.
    fn trade(
        &mut self,
        m: usize,
        taker: &mut Taker,
        maker: &Resting,
        q: u64,
        events: &mut Vec<Event>,
    ) {
        let spec = &self.markets[m].spec;
        let (maker_bps, taker_bps, lot) = (spec.maker_fee_bps, spec.taker_fee_bps, spec.lot);
        let base_units = q * lot;
        // Holds consumed: per lot for limit orders, the exact cost for a budget.
        let maker_consumed = match maker.side {
            Side::Buy => {
                self.markets[m].per_lot(Side::Buy, maker.price).expect("checked when placed") * q
            }
            Side::Sell => base_units,
        };
        let (taker_fee, maker_fee, taker_consumed) = match taker.side {
            Side::Buy => {
                let fill =
                    Fill { price: maker.price, q, buyer_bps: taker_bps, seller_bps: maker_bps };
                let consumed = taker.per_lot.map(|per_lot| per_lot * q);
                let (buyer_fee, seller_fee, cost) =
                    self.settle(m, taker.account, maker.account, fill, consumed);
                (buyer_fee, seller_fee, consumed.unwrap_or(cost))
            }
            Side::Sell => {
                let fill =
                    Fill { price: maker.price, q, buyer_bps: maker_bps, seller_bps: taker_bps };
                let (buyer_fee, seller_fee, _) =
                    self.settle(m, maker.account, taker.account, fill, Some(maker_consumed));
                (seller_fee, buyer_fee, base_units)
            }
        };
        taker.rem -= q;
        taker.held -= taker_consumed;
        let left = maker.qty - q;
        if left == 0 {
            self.markets[m].book.remove(maker.account, maker.id);
            self.open_orders -= 1;
        } else {
            self.markets[m].book.reduce(maker.account, maker.id, left, maker.held - maker_consumed);
        }
        events.push(Event::Trade {
            market: Arc::clone(&self.markets[m].name),
            maker_id: maker.id,
            taker_id: taker.id,
            maker_account: maker.account,
            taker_account: taker.account,
            taker_side: taker.side,
            price: maker.price,
            qty: q,
            maker_fee,
            taker_fee,
        });
    }

    /// Moves the money of one fill: the buyer pays notional + its fee out of its hold (what the
    /// hold had beyond the cost becomes available again), the seller delivers base out of its
    /// hold and receives notional − its fee, and the fee account takes both fees. The buyer's
    /// hold consumed is `buyer_consumed`, or exactly the cost for a budget (`None`). Returns the
    /// buyer's fee, the seller's fee and the buyer's cost.
    fn settle(
        &mut self,
        m: usize,
        buyer: AccountId,
        seller: AccountId,
        fill: Fill,
        buyer_consumed: Option<u64>,
    ) -> (i64, i64, u64) {
        let mk = &self.markets[m];
        let (base, quote, tick, lot) = (mk.base, mk.quote, mk.spec.tick, mk.spec.lot);
        let notional = fill.price * fill.q * tick;
        let base_units = fill.q * lot;
        let buyer_fee = fee(notional, fill.buyer_bps);
        let seller_fee = fee(notional, fill.seller_bps);
        let buyer_cost = (i128::from(notional) + i128::from(buyer_fee)) as u64;
        let seller_gets = (i128::from(notional) - i128::from(seller_fee)) as u64;
        let consumed = buyer_consumed.unwrap_or(buyer_cost);
        {
            let b = self.balance_mut(buyer, quote);
            b.held -= consumed;
            b.available += consumed - buyer_cost;
        }
        self.balance_mut(buyer, base).available += base_units;
        self.balance_mut(seller, base).held -= base_units;
        self.balance_mut(seller, quote).available += seller_gets;
        let fees = i128::from(buyer_fee) + i128::from(seller_fee);
        self.balance_mut(FEE_ACCOUNT, quote).available += fees as u64;
        (buyer_fee, seller_fee, buyer_cost)
    }

    fn cancel_resting(&mut self, m: usize, order: &Resting, events: &mut Vec<Event>) {
        self.markets[m].book.remove(order.account, order.id);
        self.open_orders -= 1;
        let asset =
            if order.side == Side::Buy { self.markets[m].quote } else { self.markets[m].base };
        self.release(order.account, asset, order.held);
        events.push(Event::Cancelled { account: order.account, id: order.id, qty: order.qty });
    }

    /// Self-trade "decrement both": both lose the smaller quantity; no trade, no fee.
    fn decrement_both(
        &mut self,
        m: usize,
        taker: &mut Taker,
        maker: &Resting,
        events: &mut Vec<Event>,
    ) {
        let d = taker.rem.min(maker.qty);
        let market = &self.markets[m];
        let asset = if maker.side == Side::Buy { market.quote } else { market.base };
        let maker_release =
            market.per_lot(maker.side, maker.price).expect("checked when placed") * d;
        if d == maker.qty {
            self.markets[m].book.remove(maker.account, maker.id);
            self.open_orders -= 1;
            self.release(maker.account, asset, maker.held);
        } else {
            self.markets[m].book.reduce(
                maker.account,
                maker.id,
                maker.qty - d,
                maker.held - maker_release,
            );
            self.release(maker.account, asset, maker_release);
        }
        events.push(Event::Cancelled { account: maker.account, id: maker.id, qty: d });
        events.push(Event::Cancelled { account: taker.account, id: taker.id, qty: d });
        taker.rem -= d;
        if let Some(per_lot) = taker.per_lot {
            let release = per_lot * d;
            let taker_asset =
                if taker.side == Side::Buy { self.markets[m].quote } else { self.markets[m].base };
            taker.held -= release;
            self.release(taker.account, taker_asset, release);
        }
    }

    fn cancel(
        &mut self,
        account: AccountId,
        market: &str,
        id: OrderId,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let m = self.market_index(market)?;
        let order = self.markets[m].book.get(account, id).cloned().ok_or(Reject::UnknownOrder)?;
        self.cancel_resting(m, &order, events);
        Ok(())
    }

    fn cancel_all(
        &mut self,
        account: AccountId,
        market: Option<&str>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let markets: Vec<usize> = match market {
            Some(name) => vec![self.market_index(name)?],
            None => (0..self.markets.len()).collect(),
        };
        for m in markets {
            let mut mine: Vec<Resting> = [Side::Buy, Side::Sell]
                .into_iter()
                .flat_map(|s| {
                    self.markets[m]
                        .book
                        .walk(s)
                        .filter(|r| r.account == account)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect();
            mine.sort_by_key(|r| r.id);
            for order in mine {
                self.cancel_resting(m, &order, events);
            }
        }
        Ok(())
    }

    /// Amend: a smaller quantity at the same price keeps priority; a new price or a larger
    /// quantity loses it, and an amended order that crosses trades like a new taker.
    fn amend(
        &mut self,
        account: AccountId,
        market: &str,
        id: OrderId,
        price: Option<u64>,
        qty: Option<u64>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let m = self.market_index(market)?;
        let old = self.markets[m].book.get(account, id).cloned().ok_or(Reject::UnknownOrder)?;
        let new_price = price.unwrap_or(old.price);
        let new_qty = qty.unwrap_or(old.qty);
        if new_qty == 0 {
            return Err(Reject::ZeroSize);
        }
        if new_price == 0 {
            return Err(Reject::BadPrice);
        }
        if new_price == old.price && new_qty == old.qty {
            return Err(Reject::NothingToAmend);
        }
        let market_ref = &self.markets[m];
        let per_lot = market_ref.per_lot(old.side, new_price).ok_or(Reject::Overflow)?;
        let new_held =
            per_lot.checked_mul(new_qty).filter(|h| *h <= SUPPLY_MAX).ok_or(Reject::Overflow)?;
        let asset = if old.side == Side::Buy { market_ref.quote } else { market_ref.base };
        if new_held > old.held && self.available(account, asset) < new_held - old.held {
            return Err(Reject::InsufficientFunds);
        }
        let crosses = market_ref
            .book
            .front(old.side.opposite())
            .is_some_and(|best| old.side.crosses(new_price, best.price));
        if old.post_only && crosses {
            return Err(Reject::WouldTake);
        }
        events.push(Event::Amended { account, id });
        if new_price == old.price && new_qty < old.qty {
            self.markets[m].book.reduce(account, id, new_qty, new_held);
            self.release(account, asset, old.held - new_held);
            return Ok(());
        }
        // Loses its place: out of the book, hold adjusted, in again as a taker.
        self.markets[m].book.remove(account, id);
        self.open_orders -= 1;
        if new_held > old.held {
            self.hold(account, asset, new_held - old.held);
        } else {
            self.release(account, asset, old.held - new_held);
        }
        let mut taker = Taker {
            account,
            id,
            side: old.side,
            limit: Some(new_price),
            rem: new_qty,
            held: new_held,
            per_lot: Some(per_lot),
            stp: old.stp,
        };
        let stop = self.match_taker(m, &mut taker, events);
        let rests = matches!(stop, Stop::Done) && taker.rem > 0;
        self.finish_taker(m, taker, rests, old.post_only, events);
        Ok(())
    }

    // ----- market data and state ------------------------------------------------------------

    /// An account's balance of an asset: zero for an account or an asset the exchange has
    /// never seen (nothing is held or available there), as for an empty account.
    pub fn balance(&self, account: AccountId, asset: &str) -> Balance {
        let Some(a) = self.asset_ids.get(asset) else { return Balance::default() };
        self.accounts.get(&account).and_then(|b| b.get(*a)).copied().unwrap_or_default()
    }

    /// Best bid and best offer of a market (`None` for an unknown market).
    pub fn bbo(&self, market: &str) -> Option<Bbo> {
        let book = &self.markets[self.market_index(market).ok()?].book;
        let (bid, ask) = (book.depth(Side::Buy, 1), book.depth(Side::Sell, 1));
        Some(Bbo { bid: bid.first().copied(), ask: ask.first().copied() })
    }

    /// Up to `levels` levels of one side, best first (`None` for an unknown market).
    pub fn depth(&self, market: &str, side: Side, levels: usize) -> Option<Vec<(u64, u64)>> {
        Some(self.markets[self.market_index(market).ok()?].book.depth(side, levels))
    }

    /// The resting orders at one price, oldest first (`None` for an unknown market).
    pub fn level(&self, market: &str, side: Side, price: u64) -> Option<Vec<Resting>> {
        let m = self.market_index(market).ok()?;
        Some(self.markets[m].book.walk(side).filter(|r| r.price == price).cloned().collect())
    }

    /// An open order (`None` if there is none, or no such market).
    pub fn order(&self, market: &str, account: AccountId, id: OrderId) -> Option<&Resting> {
        self.markets[self.market_index(market).ok()?].book.get(account, id)
    }

    /// Open orders in all markets.
    pub fn open_orders(&self) -> usize {
        self.open_orders
    }

    /// For each asset: its supply (deposits − withdrawals) and the sum of every account's
    /// available and held balance, fee account included. Equal when money is conserved.
    pub fn conservation(&self) -> BTreeMap<String, (u128, u128)> {
        self.assets
            .iter()
            .enumerate()
            .map(|(a, name)| {
                let total: u128 = self
                    .accounts
                    .values()
                    .filter_map(|b| b.get(a))
                    .map(|b| u128::from(b.available) + u128::from(b.held))
                    .sum();
                (name.clone(), (u128::from(self.supply[a]), total))
            })
            .collect()
    }

    /// The whole state in a canonical form: identical for identical command streams, and
    /// enough to [`restore`](Exchange::restore) from. Hash its encoding for a state digest.
    pub fn snapshot(&self) -> Snapshot {
        let mut balances: Vec<(AccountId, String, Balance)> = self
            .accounts
            .iter()
            .flat_map(|(acc, bs)| {
                bs.iter()
                    .enumerate()
                    .filter(|(_, b)| **b != Balance::default())
                    .map(|(a, b)| (*acc, self.assets[a].clone(), *b))
            })
            .collect();
        balances.sort_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
        let mut orders = Vec::new();
        for market in &self.markets {
            for side in [Side::Buy, Side::Sell] {
                orders.extend(
                    market.book.walk(side).map(|r| (market.spec.market.clone(), r.clone())),
                );
            }
        }
        let mut supply: Vec<(String, u64)> =
            self.assets.iter().cloned().zip(self.supply.iter().copied()).collect();
        supply.sort();
        Snapshot {
            markets: self.markets.iter().map(|m| m.spec.clone()).collect(),
            supply,
            balances,
            orders,
            next_seq: self.next_seq,
        }
    }

    /// The [`snapshot`](Exchange::snapshot) as a borrowed view that serializes identically:
    /// what a replica hashes for its state digest after every block, without building it.
    pub fn snapshot_view(&self) -> SnapshotView<'_, B> {
        SnapshotView { exchange: self, orders: true }
    }

    /// The snapshot without its resting orders: markets, supply, balances and the next
    /// sequence number, serialized as [`Snapshot`] would be with no `orders` field. A state
    /// digest hashes it beside digests of the books ([`Exchange::books`]), which it can cache
    /// level by level.
    pub fn ledger_view(&self) -> SnapshotView<'_, B> {
        SnapshotView { exchange: self, orders: false }
    }

    /// Each market's spec and book, in creation order.
    pub fn books(&self) -> impl Iterator<Item = (&MarketSpec, &B)> + '_ {
        self.markets.iter().map(|m| (&m.spec, &m.book))
    }

    /// Rebuilds an exchange from a snapshot, after checking that it is one the exchange could
    /// have reached: valid and distinct markets, every order in a known market with a positive
    /// price and quantity, a unique id per account and market, a sequence number below
    /// `next_seq` and unique, and exactly the hold its price and quantity need; no order of the
    /// fee account; each account's held balance equal to its orders' holds; and each asset's
    /// supply equal to every balance of it. A snapshot read from disk or the network is
    /// untrusted, and a wrong hold would let an account spend money it does not have.
    pub fn from_snapshot(snapshot: &Snapshot) -> std::result::Result<Self, SnapshotError> {
        let bad = |what: String| SnapshotError::Inconsistent(what);
        let mut ex = Self::default();
        let mut sink = Vec::new();
        for spec in &snapshot.markets {
            ex.open_market(spec, &mut sink)
                .map_err(|reason| SnapshotError::Market { market: spec.market.clone(), reason })?;
        }
        for (asset, amount) in &snapshot.supply {
            let a = ex.asset(asset);
            ex.supply[a] = *amount;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (account, asset, balance) in &snapshot.balances {
            if !seen.insert((*account, asset.as_str())) {
                return Err(bad(format!("two balances of {asset} for account {}", account.0)));
            }
            let a = ex.asset(asset);
            *ex.balance_mut(*account, a) = *balance;
        }
        let mut orders = snapshot.orders.clone();
        orders.sort_by_key(|(_, r)| r.seq);
        let mut held: BTreeMap<(AccountId, usize), u64> = BTreeMap::new();
        let mut last_seq = None;
        for (market, order) in orders {
            let what = format!("order {} of account {} in {market}", order.id, order.account.0);
            let m = ex.market_index(&market).map_err(|_| bad(format!("{what}: no such market")))?;
            let mk = &ex.markets[m];
            if order.account == FEE_ACCOUNT {
                return Err(bad(format!("{what}: the fee account cannot trade")));
            }
            if order.qty == 0 || order.price == 0 {
                return Err(bad(format!("{what}: zero price or quantity")));
            }
            if last_seq == Some(order.seq) || order.seq >= snapshot.next_seq {
                return Err(bad(format!("{what}: sequence number {} reused or ahead", order.seq)));
            }
            last_seq = Some(order.seq);
            let expected =
                mk.per_lot(order.side, order.price).and_then(|p| p.checked_mul(order.qty));
            if expected != Some(order.held) {
                return Err(bad(format!("{what}: holds {} instead of {expected:?}", order.held)));
            }
            if mk.book.get(order.account, order.id).is_some() {
                return Err(bad(format!("{what}: its id is taken")));
            }
            let asset = if order.side == Side::Buy { mk.quote } else { mk.base };
            let total = held.entry((order.account, asset)).or_default();
            *total =
                total.checked_add(order.held).ok_or_else(|| bad(format!("{what}: overflow")))?;
            ex.markets[m].book.insert(order);
            ex.open_orders += 1;
        }
        for (account, balances) in &ex.accounts {
            for (asset, b) in balances.iter().enumerate() {
                let expected = held.get(&(*account, asset)).copied().unwrap_or(0);
                if b.held != expected {
                    let name = &ex.assets[asset];
                    return Err(bad(format!(
                        "account {} holds {} of {name}, its orders {expected}",
                        account.0, b.held
                    )));
                }
            }
        }
        for (asset, (supply, total)) in ex.conservation() {
            if supply != total {
                return Err(bad(format!("{asset}: supply {supply}, balances {total}")));
            }
        }
        ex.next_seq = snapshot.next_seq;
        Ok(ex)
    }

    /// The state as `agora book --state` prints it: balances, open orders, and depth per market.
    pub fn state_view(&self, depth_levels: usize) -> StateView {
        let mut balances: BTreeMap<String, BTreeMap<String, Balance>> = BTreeMap::new();
        for (account, asset, balance) in self.snapshot().balances {
            balances.entry(account.0.to_string()).or_default().insert(asset, balance);
        }
        let open_orders = self
            .markets
            .iter()
            .flat_map(|m| {
                [Side::Buy, Side::Sell].into_iter().flat_map(move |s| {
                    m.book.walk(s).map(move |r| OpenOrder {
                        market: m.spec.market.clone(),
                        account: r.account,
                        id: r.id,
                        side: r.side,
                        price: r.price,
                        qty: r.qty,
                    })
                })
            })
            .collect();
        let depth = self
            .markets
            .iter()
            .map(|m| {
                (
                    m.spec.market.clone(),
                    Depth {
                        bids: m.book.depth(Side::Buy, depth_levels),
                        asks: m.book.depth(Side::Sell, depth_levels),
                    },
                )
            })
            .collect();
        StateView { balances, open_orders, depth }
    }
}

impl Exchange<FastBook> {
    /// Checks every index against the orders (see [`FastBook::check_integrity`]), and that each
    /// account's held balance of each asset is exactly what its resting orders hold. For tests.
    pub fn check_integrity(&self) -> std::result::Result<(), String> {
        let mut held: BTreeMap<(AccountId, usize), u64> = BTreeMap::new();
        for market in &self.markets {
            market.book.check_integrity().map_err(|e| format!("{}: {e}", market.spec.market))?;
            for side in [Side::Buy, Side::Sell] {
                let asset = if side == Side::Buy { market.quote } else { market.base };
                for r in market.book.walk(side) {
                    let expected =
                        market.per_lot(side, r.price).unwrap_or(u64::MAX).saturating_mul(r.qty);
                    if r.held != expected {
                        return Err(format!(
                            "order {:?} holds {} instead of {expected}",
                            (r.account, r.id),
                            r.held
                        ));
                    }
                    *held.entry((r.account, asset)).or_default() += r.held;
                }
            }
        }
        for (account, balances) in &self.accounts {
            for (asset, b) in balances.iter().enumerate() {
                let expected = held.get(&(*account, asset)).copied().unwrap_or(0);
                if b.held != expected {
                    return Err(format!(
                        "account {account:?} holds {} of {}, its orders {expected}",
                        b.held, self.assets[asset]
                    ));
                }
            }
        }
        if self.open_orders != self.markets.iter().map(|m| m.book.len()).sum::<usize>() {
            return Err("open-order count disagrees".into());
        }
        Ok(())
    }
}

/// The canonical state: markets in creation order, balances by account and asset, orders by
/// market, side and priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Markets.
    pub markets: Vec<MarketSpec>,
    /// Supply of each asset.
    pub supply: Vec<(String, u64)>,
    /// Non-zero balances.
    pub balances: Vec<(AccountId, String, Balance)>,
    /// Resting orders.
    pub orders: Vec<(String, Resting)>,
    /// Next arrival sequence number.
    pub next_seq: u64,
}

/// The [`Snapshot`] of an exchange, borrowed rather than built: it serializes to exactly the
/// same serde stream (so any format encodes both to the same bytes), without cloning a string or
/// an order. See [`Exchange::snapshot_view`], and [`Exchange::ledger_view`] for the same without
/// the resting orders.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotView<'a, B: Book> {
    exchange: &'a Exchange<B>,
    /// Include the `orders` field (the whole snapshot) or not (the ledger).
    orders: bool,
}

/// A sequence of known length whose elements are produced on demand.
struct Seq<F> {
    len: usize,
    items: F,
}

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        let mut written = 0;
        for item in (self.items)() {
            seq.serialize_element(&item)?;
            written += 1;
        }
        if written != self.len {
            return Err(S::Error::custom("sequence length changed while serializing"));
        }
        seq.end()
    }
}

impl<B: Book> Serialize for SnapshotView<'_, B> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let ex = self.exchange;
        // Assets by name, accounts by id: the snapshot's sort orders.
        let mut assets: Vec<usize> = (0..ex.assets.len()).collect();
        assets.sort_by(|a, b| ex.assets[*a].cmp(&ex.assets[*b]));
        let mut accounts: Vec<(&AccountId, &Vec<Balance>)> = ex.accounts.iter().collect();
        accounts.sort_unstable_by_key(|(account, _)| **account);
        let balances = || {
            let assets = &assets;
            accounts.iter().flat_map(move |(account, bs)| {
                assets.iter().filter_map(move |a| {
                    let b = bs.get(*a).filter(|b| **b != Balance::default())?;
                    Some((**account, &ex.assets[*a], *b))
                })
            })
        };
        let orders = || {
            ex.markets.iter().flat_map(|m| {
                [Side::Buy, Side::Sell]
                    .into_iter()
                    .flat_map(move |side| m.book.walk(side).map(move |r| (&m.spec.market, r)))
            })
        };
        let mut st = serializer.serialize_struct("Snapshot", if self.orders { 5 } else { 4 })?;
        st.serialize_field(
            "markets",
            &Seq { len: ex.markets.len(), items: || ex.markets.iter().map(|m| &m.spec) },
        )?;
        st.serialize_field(
            "supply",
            &Seq {
                len: assets.len(),
                items: || assets.iter().map(|a| (&ex.assets[*a], ex.supply[*a])),
            },
        )?;
        st.serialize_field("balances", &Seq { len: balances().count(), items: balances })?;
        if self.orders {
            let open: usize = ex.markets.iter().map(|m| m.book.len()).sum();
            st.serialize_field("orders", &Seq { len: open, items: orders })?;
        }
        st.serialize_field("next_seq", &ex.next_seq)?;
        st.end()
    }
}

/// Best bid and offer: `(price, total quantity at that price)` each, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bbo {
    /// Best bid.
    pub bid: Option<(u64, u64)>,
    /// Best ask.
    pub ask: Option<(u64, u64)>,
}

/// One open order in [`StateView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenOrder {
    /// Market.
    pub market: String,
    /// Owner.
    pub account: AccountId,
    /// Client id.
    pub id: OrderId,
    /// Side.
    pub side: Side,
    /// Price in ticks.
    pub price: u64,
    /// Open quantity in lots.
    pub qty: u64,
}

/// Bids and asks, best first, as `[price, quantity]` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Depth {
    /// Bids, highest first.
    pub bids: Vec<(u64, u64)>,
    /// Asks, lowest first.
    pub asks: Vec<(u64, u64)>,
}

/// The state as JSON for people: `{"balances": …, "open_orders": […], "depth": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateView {
    /// `account → asset → {available, held}`.
    pub balances: BTreeMap<String, BTreeMap<String, Balance>>,
    /// Every open order.
    pub open_orders: Vec<OpenOrder>,
    /// `market → {bids, asks}`.
    pub depth: BTreeMap<String, Depth>,
}
