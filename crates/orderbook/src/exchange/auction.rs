//! Frequent batch auctions: a batch of new orders clears at one uniform price per market, so
//! the order of the orders inside the batch cannot buy anyone a better price.
//!
//! [`Exchange::apply_auction`] takes the batch's new orders:
//! 1. Post-only orders go on the book first (they only add liquidity).
//! 2. Every other order is checked and holds its funds exactly as in continuous trading, but
//!    does not match yet.
//! 3. Each market is uncrossed once. The clearing price maximises the volume that can trade
//!    (buyers at or above it against sellers at or below it, resting orders included); ties go
//!    to the smallest imbalance, then to the price nearest the book's mid before the batch.
//!    Every fill is at that price. The side with more volume than the other is filled by price,
//!    then orders that were resting before the batch, then the batch's own order.
//! 4. What is left of a good-till-cancelled limit order rests; the rest of anything else is
//!    cancelled and its hold released.
//! 5. Orders an auction cannot price — fill-or-kill, and market buys bounded only by a budget —
//!    then trade continuously, in the batch's order.
//!
//! Orders resting before the batch pay the maker fee, the batch's orders the taker fee. An
//! account's own buy and sell never trade with each other: crossing pairs inside the batch
//! first lose their common quantity (so they cannot move the clearing price either), and a
//! batch order meeting the same account's resting order in the uncross does the same — as with
//! self-trade "decrement both".

use rustc_hash::FxHashSet;

use super::*;

/// One participant of an uncross.
struct Part {
    taker: Taker,
    /// Resting before the batch (maker), or new in it.
    resting: bool,
    /// Priority among equal prices: resting orders by their sequence, then new ones in the
    /// batch's order.
    rank: u64,
    /// New good-till-cancelled limit orders rest what is left.
    rests: bool,
}

impl Part {
    /// The limit as a number to compare: a market sell without one accepts any price.
    fn limit(&self) -> u64 {
        self.taker.limit.unwrap_or(0)
    }

    fn accepts(&self, price: u64) -> bool {
        match self.taker.side {
            Side::Buy => self.limit() >= price,
            Side::Sell => self.limit() <= price,
        }
    }
}

impl<B: Book> Exchange<B> {
    /// Clears `orders` as one batch: a uniform-price call auction per market (see the module
    /// documentation). Each order is accepted or rejected as in [`Exchange::apply`]; events are
    /// appended in the same way.
    pub fn apply_auction(&mut self, orders: &[NewOrder], events: &mut Vec<Event>) {
        let mut batches: BTreeMap<usize, Vec<Admitted>> = BTreeMap::new();
        // Until the uncross the batch's orders are not on the book: their ids are told apart
        // here.
        let mut ids: FxHashSet<(&str, AccountId, OrderId)> = FxHashSet::default();
        let mut continuous = Vec::new();
        for o in orders {
            let limit = o.order_type == OrderType::Limit;
            let budget_buy = !limit && o.side == Side::Buy && o.budget.is_some();
            if (limit && o.tif == TimeInForce::Fok) || budget_buy {
                continuous.push(o);
            } else if !ids.insert((o.market.as_str(), o.account, o.id)) {
                events.push(Event::Rejected {
                    account: Some(o.account),
                    id: Some(o.id),
                    reason: Reject::DuplicateId,
                });
            } else if limit && o.tif == TimeInForce::PostOnly {
                self.apply(&Command::Place(o.clone()), events);
            } else {
                let admitted = self.admit(o, events);
                match admitted {
                    Ok(a) => batches.entry(a.m).or_default().push(a),
                    Err(reason) => events.push(Event::Rejected {
                        account: Some(o.account),
                        id: Some(o.id),
                        reason,
                    }),
                }
            }
        }
        for (m, mut batch) in batches {
            self.net_own_crossings(m, &mut batch, events);
            self.uncross(m, batch, events);
        }
        for o in continuous {
            self.apply(&Command::Place(o.clone()), events);
        }
    }

    /// An account's own buy and sell in one batch that cross each other cannot trade with each
    /// other; left in, they would still push the clearing price. Both lose the crossing
    /// quantity first (as with self-trade "decrement both"). Each buy, lowest limit first,
    /// takes the account's sells with the highest limit it still crosses: as much crossing
    /// quantity as the orders allow is netted.
    fn net_own_crossings(&mut self, m: usize, batch: &mut [Admitted], events: &mut Vec<Event>) {
        let limit = |a: &Admitted| match a.taker.side {
            Side::Buy => a.taker.limit.unwrap_or(u64::MAX),
            Side::Sell => a.taker.limit.unwrap_or(0),
        };
        // Per account: its buys and its sells in the batch.
        let mut accounts: BTreeMap<AccountId, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, a) in batch.iter().enumerate() {
            let entry = accounts.entry(a.taker.account).or_default();
            match a.taker.side {
                Side::Buy => entry.0.push(i),
                Side::Sell => entry.1.push(i),
            }
        }
        for (account, (mut buys, mut sells)) in accounts {
            if buys.is_empty() || sells.is_empty() {
                continue;
            }
            buys.sort_by_key(|&i| limit(&batch[i]));
            sells.sort_by_key(|&i| std::cmp::Reverse(limit(&batch[i])));
            for &b in &buys {
                for &s in &sells {
                    if batch[b].taker.rem == 0 {
                        break;
                    }
                    if limit(&batch[b]) < limit(&batch[s]) || batch[s].taker.rem == 0 {
                        continue;
                    }
                    let q = batch[b].taker.rem.min(batch[s].taker.rem);
                    for i in [b, s] {
                        self.self_match(m, &mut batch[i].taker, q);
                        events.push(Event::Cancelled { account, id: batch[i].taker.id, qty: q });
                    }
                }
            }
        }
    }

    /// The clearing price of `parts`, if anything can trade, and the volume at it.
    fn clearing_price(parts: &[Part], reference: Option<u64>) -> Option<(u64, u64)> {
        let mut prices: Vec<u64> =
            parts.iter().filter_map(|p| p.taker.limit).filter(|p| *p > 0).collect();
        prices.sort_unstable();
        prices.dedup();
        // The curves: buys and sells by limit, with cumulative quantities, so that demand and
        // supply at a price are two binary searches.
        let curve = |side: Side| {
            let mut v: Vec<(u64, u128)> = parts
                .iter()
                .filter(|p| p.taker.side == side)
                .map(|p| (p.limit(), u128::from(p.taker.rem)))
                .collect();
            v.sort_unstable_by_key(|(limit, _)| *limit);
            let mut total = 0;
            let cumulative: Vec<u128> = std::iter::once(0)
                .chain(v.iter().map(|(_, q)| {
                    total += q;
                    total
                }))
                .collect();
            (v, cumulative)
        };
        let (buys, buys_below) = curve(Side::Buy);
        let (sells, sells_upto) = curve(Side::Sell);
        let all_buys = buys_below[buys.len()];
        let at = |price: u64| {
            // Buyers at or above the price, sellers at or below it.
            let demand = all_buys - buys_below[buys.partition_point(|(l, _)| *l < price)];
            let supply = sells_upto[sells.partition_point(|(l, _)| *l <= price)];
            (demand.min(supply), demand.abs_diff(supply))
        };
        // Volume up, imbalance down.
        let score = |price: u64| {
            let (volume, imbalance) = at(price);
            (volume, std::cmp::Reverse(imbalance))
        };
        let best = prices.iter().map(|p| score(*p)).max()?;
        if best.0 == 0 {
            return None;
        }
        let optimal: Vec<u64> = prices.iter().copied().filter(|p| score(*p) == best).collect();
        let (lo, hi) = (optimal[0], optimal[optimal.len() - 1]);
        let target = reference.unwrap_or(lo + (hi - lo) / 2).clamp(lo, hi);
        // Between two optimal limit prices the curves are flat, so the target is optimal too
        // unless a worse stretch lies between; then the nearest optimal limit price.
        let price = if score(target) == best {
            target
        } else {
            *optimal.iter().min_by_key(|p| (p.abs_diff(target), **p)).expect("not empty")
        };
        Some((price, u64::try_from(best.0).unwrap_or(u64::MAX)))
    }

    /// Resting orders on `side` that the batch could reach: from the best, until their
    /// quantity covers everything the batch offers against them.
    fn reachable(&self, m: usize, side: Side, against: u64) -> Vec<Part> {
        let per_lot = |price| self.markets[m].per_lot(side, price);
        let mut out = Vec::new();
        let mut covered = 0u64;
        for r in self.markets[m].book.walk(side) {
            if covered >= against {
                break;
            }
            covered = covered.saturating_add(r.qty);
            out.push(Part {
                taker: Taker {
                    account: r.account,
                    id: r.id,
                    side,
                    limit: Some(r.price),
                    rem: r.qty,
                    held: r.held,
                    per_lot: per_lot(r.price),
                    stp: r.stp,
                },
                resting: true,
                rank: r.seq,
                rests: false,
            });
        }
        out
    }

    fn uncross(&mut self, m: usize, batch: Vec<Admitted>, events: &mut Vec<Event>) {
        let reference = {
            let book = &self.markets[m].book;
            match (book.front(Side::Buy), book.front(Side::Sell)) {
                (Some(b), Some(a)) => Some(b.price + (a.price - b.price) / 2),
                (Some(r), None) | (None, Some(r)) => Some(r.price),
                (None, None) => None,
            }
        };
        let offered = |side: Side| {
            batch.iter().filter(|a| a.taker.side == side).map(|a| a.taker.rem).sum::<u64>()
        };
        let mut parts = self.reachable(m, Side::Buy, offered(Side::Sell));
        parts.extend(self.reachable(m, Side::Sell, offered(Side::Buy)));
        for (i, a) in batch.into_iter().enumerate() {
            parts.push(Part {
                rests: a.order_type == OrderType::Limit && a.tif == TimeInForce::Gtc,
                taker: a.taker,
                resting: false,
                rank: u64::MAX / 2 + i as u64,
            });
        }
        if let Some((price, volume)) = Self::clearing_price(&parts, reference) {
            self.fill_at(m, &mut parts, price, volume, events);
        }
        for p in parts {
            if p.resting {
                self.write_back(m, &p.taker);
            } else {
                let rests = p.rests && p.taker.rem > 0;
                self.finish_taker(m, p.taker, rests, false, events);
            }
        }
    }

    /// Pairs buyers and sellers that accept `price`, in priority order, for `volume` lots.
    fn fill_at(
        &mut self,
        m: usize,
        parts: &mut [Part],
        price: u64,
        volume: u64,
        events: &mut Vec<Event>,
    ) {
        let order = |side: Side| {
            let mut idx: Vec<usize> = (0..parts.len())
                .filter(|&i| parts[i].taker.side == side && parts[i].accepts(price))
                .collect();
            // Better price first (higher bids, lower asks), then rank.
            idx.sort_by_key(|&i| {
                let p = &parts[i];
                let price_key = match side {
                    Side::Buy => u64::MAX - p.limit(),
                    Side::Sell => p.limit(),
                };
                (price_key, p.rank)
            });
            idx
        };
        let (buys, sells) = (order(Side::Buy), order(Side::Sell));
        let (mut i, mut j, mut left) = (0, 0, volume);
        while left > 0 && i < buys.len() && j < sells.len() {
            let (b, s) = (buys[i], sells[j]);
            let q = parts[b].taker.rem.min(parts[s].taker.rem).min(left);
            if parts[b].taker.account == parts[s].taker.account {
                self.self_match(m, &mut parts[b].taker, q);
                self.self_match(m, &mut parts[s].taker, q);
                let account = parts[b].taker.account;
                for id in [parts[b].taker.id, parts[s].taker.id] {
                    events.push(Event::Cancelled { account, id, qty: q });
                }
            } else {
                self.auction_trade(m, parts, (b, s), price, q, events);
            }
            left -= q;
            if parts[b].taker.rem == 0 {
                i += 1;
            }
            if parts[s].taker.rem == 0 {
                j += 1;
            }
        }
    }

    /// An account's own buy and sell met: `q` lots leave the order and its hold is released.
    fn self_match(&mut self, m: usize, t: &mut Taker, q: u64) {
        let market = &self.markets[m];
        let (asset, release) = match t.side {
            Side::Buy => (market.quote, t.per_lot.expect("auction buys hold per lot") * q),
            Side::Sell => (market.base, q * market.spec.lot),
        };
        t.rem -= q;
        t.held -= release;
        self.release(t.account, asset, release);
    }

    fn auction_trade(
        &mut self,
        m: usize,
        parts: &mut [Part],
        (b, s): (usize, usize),
        price: u64,
        q: u64,
        events: &mut Vec<Event>,
    ) {
        let spec = &self.markets[m].spec;
        let bps = |resting: bool| if resting { spec.maker_fee_bps } else { spec.taker_fee_bps };
        let fill =
            Fill { price, q, buyer_bps: bps(parts[b].resting), seller_bps: bps(parts[s].resting) };
        let base_units = q * spec.lot;
        let buyer_consumed = parts[b].taker.per_lot.expect("auction buys hold per lot") * q;
        let (buyer_fee, seller_fee, _) = self.settle(
            m,
            parts[b].taker.account,
            parts[s].taker.account,
            fill,
            Some(buyer_consumed),
        );
        parts[b].taker.rem -= q;
        parts[b].taker.held -= buyer_consumed;
        parts[s].taker.rem -= q;
        parts[s].taker.held -= base_units;
        // The maker is the side that was resting; between two new orders, the seller.
        let (maker, taker, maker_fee, taker_fee) = if parts[b].resting {
            (&parts[b].taker, &parts[s].taker, buyer_fee, seller_fee)
        } else {
            (&parts[s].taker, &parts[b].taker, seller_fee, buyer_fee)
        };
        let event =
            self.trade_event(m, (maker.id, maker.account), taker, price, q, (maker_fee, taker_fee));
        events.push(event);
    }

    /// A resting order after the uncross: gone when filled, else reduced.
    fn write_back(&mut self, m: usize, t: &Taker) {
        let book = &mut self.markets[m].book;
        let Some(before) = book.get(t.account, t.id) else { return };
        if t.rem == before.qty {
            return;
        }
        if t.rem == 0 {
            book.remove(t.account, t.id);
            self.open_orders -= 1;
        } else {
            book.reduce(t.account, t.id, t.rem, t.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "ETH-USD";

    fn exchange() -> Exchange {
        let mut ex = Exchange::new();
        let mut ev = Vec::new();
        ex.apply(
            &Command::Market(MarketSpec {
                market: M.into(),
                base: "ETH".into(),
                quote: "USD".into(),
                tick: 1,
                lot: 1,
                maker_fee_bps: 0,
                taker_fee_bps: 0,
            }),
            &mut ev,
        );
        for a in 1..=6 {
            for asset in ["ETH", "USD"] {
                ex.apply(
                    &Command::Deposit {
                        account: AccountId(a),
                        asset: asset.into(),
                        amount: 1_000_000,
                    },
                    &mut ev,
                );
            }
        }
        ex
    }

    fn order(
        account: u64,
        id: u64,
        side: Side,
        price: u64,
        qty: u64,
        tif: TimeInForce,
    ) -> NewOrder {
        NewOrder { tif, ..NewOrder::limit(AccountId(account), M, id, side, price, qty) }
    }

    fn trades(events: &[Event]) -> Vec<(u64, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Trade { price, qty, .. } => Some((*price, *qty)),
                _ => None,
            })
            .collect()
    }

    fn usd(ex: &Exchange, a: u64) -> u64 {
        let b = ex.balance(AccountId(a), "USD");
        b.available + b.held
    }

    fn eth(ex: &Exchange, a: u64) -> u64 {
        let b = ex.balance(AccountId(a), "ETH");
        b.available + b.held
    }

    /// A book with asks 101 ×10, 102 ×10, 103 ×10 (account 1) and bids 99 ×10 (account 2).
    fn with_book() -> Exchange {
        let mut ex = exchange();
        let mut ev = Vec::new();
        for (i, p) in [101, 102, 103].into_iter().enumerate() {
            ex.apply(
                &Command::Place(order(1, i as u64 + 1, Side::Sell, p, 10, TimeInForce::Gtc)),
                &mut ev,
            );
        }
        ex.apply(&Command::Place(order(2, 1, Side::Buy, 99, 10, TimeInForce::Gtc)), &mut ev);
        ex
    }

    #[test]
    fn a_batch_clears_at_one_price_whatever_its_order() {
        let batch = [
            order(3, 1, Side::Buy, 103, 25, TimeInForce::Ioc),
            order(4, 1, Side::Buy, 102, 5, TimeInForce::Gtc),
            order(5, 1, Side::Sell, 100, 5, TimeInForce::Gtc),
        ];
        let mut outcomes = Vec::new();
        for perm in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut ex = with_book();
            let mut ev = Vec::new();
            let ordered: Vec<NewOrder> = perm.iter().map(|i| batch[*i].clone()).collect();
            ex.apply_auction(&ordered, &mut ev);
            ex.check_integrity().unwrap();
            let t = trades(&ev);
            assert!(t.iter().all(|(p, _)| *p == t[0].0), "one price: {t:?}");
            outcomes
                .push((t[0].0, (3..=5).map(|a| (usd(&ex, a), eth(&ex, a))).collect::<Vec<_>>()));
        }
        // Demand at 102: 30; supply at 102: 20 + 5 = 25; at 103 supply 35, demand 25. Volume 25
        // either way; imbalance 5 at 102, 10 at 103: the price is 102.
        assert_eq!(outcomes[0].0, 102);
        assert!(outcomes.iter().all(|o| *o == outcomes[0]), "{outcomes:?}");
    }

    #[test]
    fn a_sandwich_around_a_large_buy_earns_nothing() {
        // The victim (3) buys 25 at up to 103. The front-runner (4) buys the 10 at 101 ahead of
        // it and offers them again at 102, to sell into the victim's demand.
        let victim = order(3, 1, Side::Buy, 103, 25, TimeInForce::Ioc);
        let front = order(4, 1, Side::Buy, 101, 10, TimeInForce::Ioc);
        let back = order(4, 2, Side::Sell, 102, 10, TimeInForce::Gtc);
        // Continuously, in the front-runner's order, it buys at 101 and sells at 102.
        let mut ex = with_book();
        let mut ev = Vec::new();
        for o in [&front, &back, &victim] {
            ex.apply(&Command::Place(o.clone()), &mut ev);
        }
        let continuous_gain = usd(&ex, 4) as i64 - 1_000_000;
        assert_eq!(eth(&ex, 4), 1_000_000);
        assert_eq!(continuous_gain, 10);
        // In an auction both of its orders meet the same price.
        let mut ex = with_book();
        let mut ev = Vec::new();
        ex.apply_auction(&[front, back, victim], &mut ev);
        ex.check_integrity().unwrap();
        let price = trades(&ev)[0].0;
        let value = |ex: &Exchange, a| usd(ex, a) as i64 + eth(ex, a) as i64 * price as i64;
        assert_eq!(value(&ex, 4), 1_000_000 + 1_000_000 * price as i64, "no gain, no loss");
    }

    #[test]
    fn holds_are_released_and_good_till_cancelled_rests_what_is_left() {
        let mut ex = with_book();
        let mut ev = Vec::new();
        ex.apply_auction(
            &[
                order(3, 1, Side::Buy, 102, 40, TimeInForce::Gtc),
                order(4, 1, Side::Buy, 105, 5, TimeInForce::Ioc),
                order(5, 1, Side::Sell, 90, 5, TimeInForce::Ioc),
            ],
            &mut ev,
        );
        ex.check_integrity().unwrap();
        let t = trades(&ev);
        let price = t[0].0;
        let volume: u64 = t.iter().map(|(_, q)| q).sum();
        // Supply at 102: 20 + 5; demand at 102: 45: volume 25 at 102.
        assert_eq!((price, volume), (102, 25));
        // Account 4's IOC bought 5 (better price first); account 3 got the other 20 and rests 20.
        assert_eq!(eth(&ex, 4), 1_000_005);
        let rest = ex.order(M, AccountId(3), 1).expect("the rest of a GTC order rests");
        assert_eq!(rest.qty, 20);
        // What a buyer holds beyond its fills at the clearing price is released: no fees here,
        // so account 4 paid exactly 5 × 102 and holds nothing.
        assert_eq!(
            ex.balance(AccountId(4), "USD"),
            Balance { available: 1_000_000 - 510, held: 0 }
        );
        // Conservation: every asset's total is what was deposited.
        for (asset, (total, deposited)) in ex.conservation() {
            assert_eq!(total, deposited, "{asset}");
        }
    }

    #[test]
    fn an_accounts_crossing_orders_in_one_batch_cancel_out_entirely() {
        // Two sandwiches of one account: buy 103 / sell 102 around a buyer, sell 95 / buy 96
        // around a seller. Matched greedily by price they would leave buy 96 and sell 102
        // standing; netted properly, nothing of account 4 is left and it trades nothing.
        let mut ex = with_book();
        let mut ev = Vec::new();
        ex.apply_auction(
            &[
                order(4, 1, Side::Buy, 103, 10, TimeInForce::Ioc),
                order(4, 2, Side::Sell, 102, 10, TimeInForce::Gtc),
                order(4, 3, Side::Sell, 95, 10, TimeInForce::Ioc),
                order(4, 4, Side::Buy, 96, 10, TimeInForce::Gtc),
                order(3, 1, Side::Buy, 103, 5, TimeInForce::Ioc),
            ],
            &mut ev,
        );
        ex.check_integrity().unwrap();
        assert_eq!((usd(&ex, 4), eth(&ex, 4)), (1_000_000, 1_000_000));
        assert!((1..=4).all(|id| ex.order(M, AccountId(4), id).is_none()));
        // The other buyer trades with the book at its own price.
        assert_eq!(trades(&ev), vec![(101, 5)]);
    }

    #[test]
    fn nothing_crosses_nothing_trades_and_an_own_buy_and_sell_do_not_trade() {
        let mut ex = with_book();
        let mut ev = Vec::new();
        ex.apply_auction(&[order(3, 1, Side::Buy, 100, 5, TimeInForce::Gtc)], &mut ev);
        assert!(trades(&ev).is_empty());
        assert_eq!(ex.order(M, AccountId(3), 1).unwrap().qty, 5);
        let mut ev = Vec::new();
        ex.apply_auction(
            &[
                order(6, 1, Side::Buy, 110, 5, TimeInForce::Ioc),
                order(6, 2, Side::Sell, 90, 5, TimeInForce::Ioc),
            ],
            &mut ev,
        );
        ex.check_integrity().unwrap();
        assert_eq!((usd(&ex, 6), eth(&ex, 6)), (1_000_000, 1_000_000));
    }
}
