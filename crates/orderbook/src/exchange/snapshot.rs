//! The exchange's state as a whole: snapshots (checked before they are trusted), the views
//! that hash and serialize it without copies, and the query results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::book::{Book, FastBook, Resting};
use crate::types::{AccountId, FEE_ACCOUNT, MarketSpec, OrderId, Reject, Side};

use super::*;

impl Exchange {
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
