//! The exchange: markets, accounts, holds, matching, settlement and fees.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::book::{Book, FastBook, Resting};
use crate::types::check_name;
use crate::types::{
    AccountId, Command, Event, FEE_ACCOUNT, MarketSpec, NewOrder, OrderId, OrderType, Reject, Side,
    TimeInForce,
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

mod auction;
mod orders;
mod snapshot;

use orders::{Admitted, Fill, Taker};
pub use snapshot::{Bbo, Depth, OpenOrder, Snapshot, SnapshotError, SnapshotView, StateView};

type Result<T> = std::result::Result<T, Reject>;

impl Exchange {
    /// An empty exchange on the default book: no markets, no accounts. (`Exchange::default()`
    /// gives one on any [`Book`].)
    pub fn new() -> Self {
        Self::default()
    }
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
        for name in [&spec.market, &spec.base, &spec.quote] {
            check_name(name)?;
        }
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
        check_name(asset)?;
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
        check_name(asset)?;
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
}
