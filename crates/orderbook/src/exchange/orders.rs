//! Orders through their life: admission and holds, matching, fills and settlement, cancels,
//! amends.

use std::sync::Arc;

use crate::book::{Book, Resting};
use crate::types::{
    AccountId, Event, FEE_ACCOUNT, NewOrder, OrderId, OrderType, Reject, SelfTrade, Side,
    TimeInForce,
};

use super::*;

/// The incoming side of a match.
pub(super) struct Taker {
    pub(super) account: AccountId,
    pub(super) id: OrderId,
    pub(super) side: Side,
    /// Worst acceptable price; `None` for a market sell without one.
    pub(super) limit: Option<u64>,
    pub(super) rem: u64,
    pub(super) held: u64,
    /// Per-lot hold (limit orders and priced market orders); `None` in budget mode.
    pub(super) per_lot: Option<u64>,
    pub(super) stp: SelfTrade,
}

/// An accepted order holding its funds, before matching.
pub(super) struct Admitted {
    pub(super) m: usize,
    pub(super) taker: Taker,
    pub(super) tif: TimeInForce,
    pub(super) order_type: OrderType,
}

pub(super) enum Stop {
    Done,
    CancelIncoming,
}

/// One fill's terms: lots at a price, and each side's fee rate.
#[derive(Clone, Copy)]
pub(super) struct Fill {
    pub(super) price: u64,
    pub(super) q: u64,
    pub(super) buyer_bps: i64,
    pub(super) seller_bps: i64,
}

impl<B: Book> Exchange<B> {
    pub(super) fn place(&mut self, o: &NewOrder, events: &mut Vec<Event>) -> Result<()> {
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
    pub(super) fn admit(&mut self, o: &NewOrder, events: &mut Vec<Event>) -> Result<Admitted> {
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
    pub(super) fn finish_taker(
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
    pub(super) fn fillable(
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
    pub(super) fn match_taker(
        &mut self,
        m: usize,
        taker: &mut Taker,
        events: &mut Vec<Event>,
    ) -> Stop {
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
    pub(super) fn affordable(&self, m: usize, price: u64, q: u64, budget: u64) -> u64 {
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
    pub(super) fn trade(
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
        let event = self.trade_event(
            m,
            (maker.id, maker.account),
            taker,
            maker.price,
            q,
            (maker_fee, taker_fee),
        );
        events.push(event);
    }

    /// The event of one fill in market `m`: `maker` (its order and account) rested, `taker`
    /// came in; `fees` are the maker's and the taker's.
    pub(super) fn trade_event(
        &self,
        m: usize,
        maker: (OrderId, AccountId),
        taker: &Taker,
        price: u64,
        qty: u64,
        (maker_fee, taker_fee): (i64, i64),
    ) -> Event {
        Event::Trade {
            market: Arc::clone(&self.markets[m].name),
            maker_id: maker.0,
            taker_id: taker.id,
            maker_account: maker.1,
            taker_account: taker.account,
            taker_side: taker.side,
            price,
            qty,
            maker_fee,
            taker_fee,
        }
    }

    /// Moves the money of one fill: the buyer pays notional + its fee out of its hold (what the
    /// hold had beyond the cost becomes available again), the seller delivers base out of its
    /// hold and receives notional − its fee, and the fee account takes both fees. The buyer's
    /// hold consumed is `buyer_consumed`, or exactly the cost for a budget (`None`). Returns the
    /// buyer's fee, the seller's fee and the buyer's cost.
    pub(super) fn settle(
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

    pub(super) fn cancel_resting(&mut self, m: usize, order: &Resting, events: &mut Vec<Event>) {
        self.markets[m].book.remove(order.account, order.id);
        self.open_orders -= 1;
        let asset =
            if order.side == Side::Buy { self.markets[m].quote } else { self.markets[m].base };
        self.release(order.account, asset, order.held);
        events.push(Event::Cancelled { account: order.account, id: order.id, qty: order.qty });
    }

    /// Self-trade "decrement both": both lose the smaller quantity; no trade, no fee.
    pub(super) fn decrement_both(
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

    pub(super) fn cancel(
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

    pub(super) fn cancel_all(
        &mut self,
        account: AccountId,
        market: Option<&str>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let markets: Vec<usize> = match market {
            Some(name) => vec![self.market_index(name)?],
            None => (0..self.markets.len()).collect(),
        };
        let mut count = 0;
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
            count += mine.len() as u64;
            for order in mine {
                self.cancel_resting(m, &order, events);
            }
        }
        events.push(Event::CancelledAll { account, market: market.map(str::to_owned), count });
        Ok(())
    }

    /// Amend: a smaller quantity at the same price keeps priority; a new price or a larger
    /// quantity loses it, and an amended order that crosses trades like a new taker.
    pub(super) fn amend(
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
}
