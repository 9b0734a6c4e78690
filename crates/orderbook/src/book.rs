//! One market's resting orders, by price-time priority. [`FastBook`] is the one the exchange
//! uses; [`NaiveBook`] is a deliberately simple reference that the differential test compares it
//! with.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::types::{AccountId, OrderId, SelfTrade, Side};

/// An order resting on the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resting {
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
    /// What is held for it: quote units for a bid, base units for an ask.
    pub held: u64,
    /// Its self-trade prevention mode (applies when it is the incoming side of an amend).
    pub stp: SelfTrade,
    /// Post-only: an amend may not make it take.
    pub post_only: bool,
    /// Arrival sequence number: time priority within a price level.
    pub seq: u64,
}

/// A side-by-side price-time priority book.
pub trait Book: Default {
    /// Adds `order` at the back of its price level.
    fn insert(&mut self, order: Resting);
    /// Removes an order.
    fn remove(&mut self, account: AccountId, id: OrderId) -> Option<Resting>;
    /// An order.
    fn get(&self, account: AccountId, id: OrderId) -> Option<&Resting>;
    /// Lowers an order's open quantity and hold in place (it keeps its priority).
    fn reduce(&mut self, account: AccountId, id: OrderId, qty: u64, held: u64);
    /// The first order (best price, then earliest) on `side`.
    fn front(&self, side: Side) -> Option<&Resting>;
    /// The orders of `side` in priority order.
    fn walk(&self, side: Side) -> Box<dyn Iterator<Item = &Resting> + '_>;
    /// Number of resting orders.
    fn len(&self) -> usize;
    /// True when no order rests.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The price levels of `side`, best first, each stamped with a version. The version
    /// changes whenever an order at that level is added, removed or reduced, and is never
    /// reused by this book: an unchanged `(side, price, version)` means unchanged orders, so a
    /// digest of a level can be cached under it. (A clone continues the same numbering, so a
    /// cache belongs to one book, not to its clones.)
    fn levels(&self, side: Side) -> Box<dyn Iterator<Item = LevelStamp> + '_>;
    /// The orders resting at `price` on `side`, in priority order.
    fn level_orders(&self, side: Side, price: u64) -> Box<dyn Iterator<Item = &Resting> + '_>;
    /// Up to `levels` price levels of `side`, best first: `(price, total quantity)`.
    fn depth(&self, side: Side, levels: usize) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for o in self.walk(side) {
            if let Some((p, q)) = out.last_mut()
                && *p == o.price
            {
                *q += o.qty;
                continue;
            }
            if out.len() == levels {
                break;
            }
            out.push((o.price, o.qty));
        }
        out
    }
}

/// A price level as [`Book::levels`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelStamp {
    /// Price in ticks.
    pub price: u64,
    /// Changes with every change at this level; see [`Book::levels`].
    pub version: u64,
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    order: Resting,
    prev: u32,
    next: u32,
    level: u32,
}

#[derive(Debug, Clone)]
struct Level {
    head: u32,
    tail: u32,
    qty: u64,
    orders: u32,
    /// The book's change count when this level last changed.
    version: u64,
}

impl Level {
    const EMPTY: Level = Level { head: NIL, tail: NIL, qty: 0, orders: 0, version: 0 };
}

/// The fast book: orders in an arena addressed by index, each price level a FIFO list linked
/// through the arena, an index from `(account, id)` to slot, and a price index per side (a
/// `BTreeMap` from price to level) whose first or last key is the best price. Slots and levels are
/// recycled, so a warmed-up book allocates only when a new price level needs a map node.
#[derive(Debug, Clone, Default)]
pub struct FastBook {
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    levels: Vec<Level>,
    free_levels: Vec<u32>,
    bids: BTreeMap<u64, u32>,
    asks: BTreeMap<u64, u32>,
    index: FxHashMap<(AccountId, OrderId), u32>,
    /// Changes so far: the source of level versions.
    changes: u64,
}

impl FastBook {
    fn prices(&self, side: Side) -> &BTreeMap<u64, u32> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Marks a level changed.
    fn touch(&mut self, level: u32) {
        self.changes += 1;
        self.levels[level as usize].version = self.changes;
    }

    /// The orders of one level, from its head.
    fn level_list(&self, level: u32) -> impl Iterator<Item = &Resting> + '_ {
        let mut at = self.levels[level as usize].head;
        std::iter::from_fn(move || {
            (at != NIL).then(|| {
                let node = &self.nodes[at as usize];
                at = node.next;
                &node.order
            })
        })
    }

    fn best_level(&self, side: Side) -> Option<u32> {
        match side {
            Side::Buy => self.bids.last_key_value().map(|(_, l)| *l),
            Side::Sell => self.asks.first_key_value().map(|(_, l)| *l),
        }
    }

    fn unlink(&mut self, slot: u32) -> Resting {
        let (prev, next, level_idx) = {
            let n = &self.nodes[slot as usize];
            (n.prev, n.next, n.level)
        };
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        let order = self.nodes[slot as usize].order.clone();
        let level = &mut self.levels[level_idx as usize];
        if level.head == slot {
            level.head = next;
        }
        if level.tail == slot {
            level.tail = prev;
        }
        level.qty -= order.qty;
        level.orders -= 1;
        self.touch(level_idx);
        if self.levels[level_idx as usize].orders == 0 {
            let map = match order.side {
                Side::Buy => &mut self.bids,
                Side::Sell => &mut self.asks,
            };
            map.remove(&order.price);
            self.free_levels.push(level_idx);
        }
        self.free_nodes.push(slot);
        order
    }
}

impl FastBook {
    /// Checks every internal index against the orders themselves: the id index, the links of
    /// each level, each level's total, and each price index entry. For tests; `Err` says what
    /// disagrees.
    pub fn check_integrity(&self) -> Result<(), String> {
        let mut seen = 0usize;
        for (side, map) in [(Side::Buy, &self.bids), (Side::Sell, &self.asks)] {
            for (price, l) in map {
                let level = &self.levels[*l as usize];
                let (mut at, mut prev, mut qty, mut count) = (level.head, NIL, 0u64, 0u32);
                while at != NIL {
                    let node = &self.nodes[at as usize];
                    if node.prev != prev || node.level != *l {
                        return Err(format!("broken links at price {price}"));
                    }
                    let o = &node.order;
                    if o.side != side || o.price != *price || o.qty == 0 {
                        return Err(format!("order {:?} in the wrong level", (o.account, o.id)));
                    }
                    if self.index.get(&(o.account, o.id)) != Some(&at) {
                        return Err(format!("index disagrees for {:?}", (o.account, o.id)));
                    }
                    if prev != NIL && self.nodes[prev as usize].order.seq >= o.seq {
                        return Err(format!("time priority broken at price {price}"));
                    }
                    qty += o.qty;
                    count += 1;
                    prev = at;
                    at = node.next;
                }
                if level.tail != prev || level.qty != qty || level.orders != count || count == 0 {
                    return Err(format!("level total wrong at price {price}"));
                }
                seen += count as usize;
            }
        }
        if seen != self.index.len() {
            return Err(format!("{} indexed orders, {seen} in levels", self.index.len()));
        }
        Ok(())
    }
}

impl Book for FastBook {
    fn insert(&mut self, order: Resting) {
        let key = (order.account, order.id);
        let (side, price, qty) = (order.side, order.price, order.qty);
        let existing = self.prices(side).get(&price).copied();
        let level_idx = match existing {
            Some(l) => l,
            None => {
                let l = match self.free_levels.pop() {
                    Some(l) => {
                        self.levels[l as usize] = Level::EMPTY;
                        l
                    }
                    None => {
                        self.levels.push(Level::EMPTY);
                        (self.levels.len() - 1) as u32
                    }
                };
                match side {
                    Side::Buy => self.bids.insert(price, l),
                    Side::Sell => self.asks.insert(price, l),
                };
                l
            }
        };
        let tail = self.levels[level_idx as usize].tail;
        let node = Node { order, prev: tail, next: NIL, level: level_idx };
        let slot = match self.free_nodes.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        if tail != NIL {
            self.nodes[tail as usize].next = slot;
        }
        let level = &mut self.levels[level_idx as usize];
        if level.head == NIL {
            level.head = slot;
        }
        level.tail = slot;
        level.qty += qty;
        level.orders += 1;
        self.touch(level_idx);
        self.index.insert(key, slot);
    }

    fn remove(&mut self, account: AccountId, id: OrderId) -> Option<Resting> {
        let slot = self.index.remove(&(account, id))?;
        Some(self.unlink(slot))
    }

    fn get(&self, account: AccountId, id: OrderId) -> Option<&Resting> {
        self.index.get(&(account, id)).map(|s| &self.nodes[*s as usize].order)
    }

    fn reduce(&mut self, account: AccountId, id: OrderId, qty: u64, held: u64) {
        let Some(&slot) = self.index.get(&(account, id)) else { return };
        let node = &mut self.nodes[slot as usize];
        debug_assert!(qty <= node.order.qty && qty > 0);
        let level_idx = node.level;
        let level = &mut self.levels[level_idx as usize];
        level.qty -= node.order.qty - qty;
        node.order.qty = qty;
        node.order.held = held;
        self.touch(level_idx);
    }

    fn front(&self, side: Side) -> Option<&Resting> {
        let level = self.best_level(side)?;
        Some(&self.nodes[self.levels[level as usize].head as usize].order)
    }

    fn walk(&self, side: Side) -> Box<dyn Iterator<Item = &Resting> + '_> {
        let levels: Box<dyn Iterator<Item = &u32>> = match side {
            Side::Buy => Box::new(self.bids.values().rev()),
            Side::Sell => Box::new(self.asks.values()),
        };
        Box::new(levels.flat_map(move |l| self.level_list(*l)))
    }

    fn levels(&self, side: Side) -> Box<dyn Iterator<Item = LevelStamp> + '_> {
        let stamp = |(price, l): (&u64, &u32)| LevelStamp {
            price: *price,
            version: self.levels[*l as usize].version,
        };
        match side {
            Side::Buy => Box::new(self.bids.iter().rev().map(stamp)),
            Side::Sell => Box::new(self.asks.iter().map(stamp)),
        }
    }

    fn level_orders(&self, side: Side, price: u64) -> Box<dyn Iterator<Item = &Resting> + '_> {
        match self.prices(side).get(&price) {
            Some(l) => Box::new(self.level_list(*l)),
            None => Box::new(std::iter::empty()),
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn depth(&self, side: Side, levels: usize) -> Vec<(u64, u64)> {
        let level = |(p, l): (&u64, &u32)| (*p, self.levels[*l as usize].qty);
        match side {
            Side::Buy => self.bids.iter().rev().take(levels).map(level).collect(),
            Side::Sell => self.asks.iter().take(levels).map(level).collect(),
        }
    }
}

/// The reference book: each side one `Vec` kept sorted by priority, searched linearly. Slow and
/// obviously right; the differential test runs it beside [`FastBook`].
#[derive(Debug, Clone, Default)]
pub struct NaiveBook {
    bids: Vec<Resting>,
    asks: Vec<Resting>,
    /// Changes so far, the version of every level (any change invalidates them all).
    changes: u64,
}

impl NaiveBook {
    fn side(&self, side: Side) -> &Vec<Resting> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<Resting> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn position(&self, account: AccountId, id: OrderId) -> Option<(Side, usize)> {
        [Side::Buy, Side::Sell].into_iter().find_map(|s| {
            self.side(s).iter().position(|o| o.account == account && o.id == id).map(|i| (s, i))
        })
    }
}

impl Book for NaiveBook {
    fn insert(&mut self, order: Resting) {
        self.changes += 1;
        let side = self.side_mut(order.side);
        side.push(order);
        // Priority: best price first (highest bid, lowest ask), then earliest.
        side.sort_by(|a, b| {
            let by_price = match a.side {
                Side::Buy => b.price.cmp(&a.price),
                Side::Sell => a.price.cmp(&b.price),
            };
            by_price.then(a.seq.cmp(&b.seq))
        });
    }

    fn remove(&mut self, account: AccountId, id: OrderId) -> Option<Resting> {
        let (side, i) = self.position(account, id)?;
        self.changes += 1;
        Some(self.side_mut(side).remove(i))
    }

    fn get(&self, account: AccountId, id: OrderId) -> Option<&Resting> {
        let (side, i) = self.position(account, id)?;
        Some(&self.side(side)[i])
    }

    fn reduce(&mut self, account: AccountId, id: OrderId, qty: u64, held: u64) {
        if let Some((side, i)) = self.position(account, id) {
            self.changes += 1;
            let o = &mut self.side_mut(side)[i];
            o.qty = qty;
            o.held = held;
        }
    }

    fn front(&self, side: Side) -> Option<&Resting> {
        self.side(side).first()
    }

    fn walk(&self, side: Side) -> Box<dyn Iterator<Item = &Resting> + '_> {
        Box::new(self.side(side).iter())
    }

    fn levels(&self, side: Side) -> Box<dyn Iterator<Item = LevelStamp> + '_> {
        let orders = self.side(side);
        let version = self.changes;
        Box::new(
            orders
                .iter()
                .enumerate()
                .filter(move |(i, o)| *i == 0 || orders[i - 1].price != o.price)
                .map(move |(_, o)| LevelStamp { price: o.price, version }),
        )
    }

    fn level_orders(&self, side: Side, price: u64) -> Box<dyn Iterator<Item = &Resting> + '_> {
        Box::new(self.side(side).iter().filter(move |o| o.price == price))
    }

    fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }
}
