//! The API's picture of the finalized market: a mirror of the books, the accounts, recent
//! blocks and recent transactions' outcomes, kept by a [`MarketObserver`] on the replica's
//! apply thread and read by the HTTP handlers, and the stream of what each block changed.
//!
//! Only finalized state enters the mirror: the observer sees a block only when the replica
//! applies it. While the block executes, the observer notes which price levels, accounts and
//! transactions it touches; when the block ends it reads just those from the exchange, takes
//! the write lock once, updates the mirror and publishes one message per changed channel. So a
//! block costs the API what it touched, not the size of the books.
//!
//! Everything kept is bounded ([`ViewLimits`]): recent blocks, recent outcomes and pending
//! submissions are windows that forget their oldest entries.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use agora_consensus::Applied;
use agora_crypto::{Digest, PublicKeyBytes};
use agora_market::{MarketGenesis, MarketObserver, NonceWindow, OrderAction, Refusal};
use agora_orderbook::{AccountId, Balance, Book, Event, Exchange, MarketSpec, Side};
use agora_types::{Block, Height, Transaction};
use serde::Serialize;

use crate::wire::{
    AccountView, BlockView, BookView, CertificateView, LevelChange, OpenOrderView, Outcome,
};
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// How much the view keeps.
#[derive(Debug, Clone, Copy)]
pub struct ViewLimits {
    /// Recent blocks served by `GET /v1/blocks/{height}`.
    pub blocks: usize,
    /// Recent transactions whose outcome `GET /v1/orders/{id}` serves.
    pub outcomes: usize,
    /// Transactions submitted here and not yet final, at most.
    pub pending: usize,
    /// Stream messages buffered for the slowest subscriber before it misses some.
    pub stream_buffer: usize,
    /// Finality latencies kept for the status's recent percentiles.
    pub latencies: usize,
}

impl Default for ViewLimits {
    fn default() -> Self {
        Self {
            blocks: 4_096,
            outcomes: 1_000_000,
            pending: 1_000_000,
            stream_buffer: 16_384,
            latencies: 4_096,
        }
    }
}

/// One account as the mirror keeps it: balances, and open orders by market and client id.
#[derive(Debug, Clone, Default)]
struct AccountMirror {
    balances: BTreeMap<String, Balance>,
    open: BTreeMap<(String, u64), OpenOrderView>,
}

impl AccountMirror {
    fn view(&self) -> AccountView {
        AccountView {
            balances: self.balances.clone(),
            open_orders: self.open.values().cloned().collect(),
            nonce_floor: 0,
        }
    }
}

/// What a block changed in one account: its balances, and each touched order's new state
/// (`None`: no longer open).
type AccountChange = (BTreeMap<String, Balance>, Vec<((String, u64), Option<OpenOrderView>)>);

/// One side's price levels: price → lots, kept in price order.
type Levels = BTreeMap<u64, u64>;

/// One market's book as the mirror keeps it.
#[derive(Debug, Clone, Default)]
struct BookMirror {
    bids: Levels,
    asks: Levels,
    /// The number of the last update published on its `book:` channel.
    seq: u64,
}

impl BookMirror {
    fn side_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// A message of the stream, encoded once for every subscriber.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its channel: `blocks`, `trades:M`, `book:M` or `account:N`.
    pub channel: Arc<str>,
    /// For a `book:` channel, the update's number; else 0.
    pub seq: u64,
    /// The JSON text sent.
    pub text: Arc<str>,
}

/// Everything the mirror holds, behind one lock.
#[derive(Debug, Default)]
struct State {
    height: u64,
    state_digest: Digest,
    nonces: HashMap<AccountId, NonceWindow>,
    books: BTreeMap<String, BookMirror>,
    accounts: HashMap<AccountId, AccountMirror>,
    blocks: BTreeMap<u64, BlockView>,
    /// The certificates of recent heights, as the replica reported them.
    proofs: BTreeMap<u64, Vec<CertificateView>>,
    outcomes: HashMap<Digest, Outcome>,
    outcome_order: VecDeque<Digest>,
    pending: HashMap<Digest, Instant>,
    pending_order: VecDeque<Digest>,
    latencies_ms: VecDeque<f64>,
}

/// The finalized market as the API sees it; cheap to clone (one shared mirror).
#[derive(Debug, Clone)]
pub struct MarketView {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: RwLock<State>,
    /// Channels with subscribers, and how many.
    listened: Mutex<HashMap<String, usize>>,
    hub: broadcast::Sender<Published>,
    limits: ViewLimits,
    metrics: Arc<Metrics>,
    markets: Vec<MarketSpec>,
    assets: Vec<String>,
    keys: HashMap<PublicKeyBytes, AccountId>,
}

/// Why the API refuses a transaction before the mempool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It may go to the mempool.
    Fresh,
    /// Its signer is no account of the genesis.
    UnknownSigner,
    /// Its nonce was used, or is below the account's window.
    StaleNonce,
    /// It was submitted here already and is not final yet.
    Duplicate,
    /// It is final already.
    Final,
}

impl MarketView {
    /// A view of the market `genesis` starts; `metrics` gets its block counts and latencies.
    pub fn new(genesis: &MarketGenesis, limits: ViewLimits, metrics: Arc<Metrics>) -> Self {
        let (hub, _) = broadcast::channel(limits.stream_buffer.max(1));
        let mut assets: Vec<String> =
            genesis.markets.iter().flat_map(|m| [m.base.clone(), m.quote.clone()]).collect();
        assets.sort();
        assets.dedup();
        let keys = genesis.accounts.iter().map(|a| (a.key, a.account)).collect();
        Self {
            shared: Arc::new(Shared {
                state: RwLock::new(State::default()),
                listened: Mutex::default(),
                hub,
                limits,
                metrics,
                markets: genesis.markets.clone(),
                assets,
                keys,
            }),
        }
    }

    /// The observer to give the replica's market ([`agora_market::MarketApp::with_observer`]).
    pub fn observer(&self) -> Box<dyn MarketObserver> {
        Box::new(ViewObserver { view: self.clone(), block: None })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The markets of the genesis.
    pub fn markets(&self) -> &[MarketSpec] {
        &self.shared.markets
    }

    /// The account `tx`'s signer is bound to, if any.
    pub fn account_of(&self, tx: &Transaction) -> Option<AccountId> {
        self.shared.keys.get(tx.sender()).copied()
    }

    /// Whether `tx` may go to the mempool as far as the finalized state says; if so, it is
    /// noted as pending (submitted now), within the pending window.
    pub fn admit(&self, tx: &Transaction) -> Admission {
        let Some(account) = self.account_of(tx) else { return Admission::UnknownSigner };
        let id = tx.id();
        let mut state = self.write();
        if state.outcomes.contains_key(&id) {
            return Admission::Final;
        }
        if state.pending.contains_key(&id) {
            return Admission::Duplicate;
        }
        if state.nonces.get(&account).is_some_and(|w| !w.is_fresh(tx.nonce())) {
            return Admission::StaleNonce;
        }
        if state.pending.len() >= self.shared.limits.pending
            && let Some(oldest) = state.pending_order.pop_front()
        {
            state.pending.remove(&oldest);
        }
        state.pending.insert(id, Instant::now());
        state.pending_order.push_back(id);
        Admission::Fresh
    }

    /// Forgets a pending submission the mempool did not take.
    pub fn withdraw(&self, id: &Digest) {
        self.write().pending.remove(id);
    }

    /// The height and state digest the view is at.
    pub fn height(&self) -> (u64, Digest) {
        let state = self.read();
        (state.height, state.state_digest)
    }

    /// A transaction's outcome if it is final and recent, or `Err(true)` if it is pending here,
    /// `Err(false)` if the view does not know it.
    pub fn outcome(&self, id: &Digest) -> Result<Outcome, bool> {
        let state = self.read();
        match state.outcomes.get(id) {
            Some(outcome) => Ok(outcome.clone()),
            None => Err(state.pending.contains_key(id)),
        }
    }

    /// A market's top `depth` levels per side (`None`: no such market).
    pub fn book(&self, market: &str, depth: usize) -> Option<BookView> {
        let state = self.read();
        let book = state.books.get(market)?;
        Some(BookView {
            market: market.to_owned(),
            height: state.height,
            seq: book.seq,
            bids: book.bids.iter().rev().take(depth).map(|(p, q)| (*p, *q)).collect(),
            asks: book.asks.iter().take(depth).map(|(p, q)| (*p, *q)).collect(),
        })
    }

    /// An account (`None`: the genesis has no such account).
    pub fn account(&self, account: AccountId) -> Option<AccountView> {
        if !self.shared.keys.values().any(|a| *a == account) {
            return None;
        }
        let state = self.read();
        let mut view = state.accounts.get(&account).map(AccountMirror::view).unwrap_or_default();
        view.nonce_floor = state.nonces.get(&account).map_or(0, NonceWindow::floor);
        Some(view)
    }

    /// A recent block with its certificates (`None`: not applied yet, or out of the window).
    pub fn block(&self, height: u64) -> Option<BlockView> {
        let state = self.read();
        let mut block = state.blocks.get(&height).cloned()?;
        block.certificates = state.proofs.get(&height).cloned().unwrap_or_default();
        Some(block)
    }

    /// Notes the certificates that prove the block at `height` final (the replica's
    /// proof sink calls this on its apply thread).
    pub fn note_proof(&self, height: u64, proof: &[agora_types::Certificate]) {
        let certificates = proof
            .iter()
            .map(|c| {
                let s = c.statement();
                CertificateView {
                    phase: format!("{:?}", s.phase),
                    round: s.round.0,
                    height: s.height.0,
                    value: s.value.to_string(),
                    signers: c.signers().map(|n| n.0).collect(),
                }
            })
            .collect();
        let mut state = self.write();
        state.proofs.insert(height, certificates);
        while state.proofs.len() > self.shared.limits.blocks {
            state.proofs.pop_first();
        }
    }

    /// The oldest height the block window still holds.
    pub fn oldest_block(&self) -> Option<u64> {
        self.read().blocks.keys().next().copied()
    }

    /// Percentiles 50 and 99 of the recent finality latencies of transactions submitted here,
    /// in milliseconds, and how many there are.
    pub fn recent_latency(&self) -> (Option<f64>, Option<f64>, usize) {
        let mut ms: Vec<f64> = self.read().latencies_ms.iter().copied().collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms.get(((ms.len() as f64 - 1.0) * q).round() as usize).copied();
        (at(0.50), at(0.99), ms.len())
    }

    /// Transactions submitted here that are not final yet.
    pub fn pending(&self) -> usize {
        self.read().pending.len()
    }

    /// A receiver of every message published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.shared.hub.subscribe()
    }

    /// Whether `channel` names a stream: `blocks`, `trades:M` or `book:M` for a market of the
    /// genesis, or `account:N` for one of its accounts.
    pub fn is_channel(&self, channel: &str) -> bool {
        match channel.split_once(':') {
            None => channel == "blocks",
            Some(("trades" | "book", market)) => {
                self.shared.markets.iter().any(|m| m.market == market)
            }
            Some(("account", id)) => {
                id.parse::<u64>().is_ok_and(|id| self.shared.keys.values().any(|a| a.0 == id))
            }
            Some(_) => false,
        }
    }

    /// A subscriber started listening to `channel`.
    pub fn listen(&self, channel: &str) {
        let mut listened = self.shared.listened.lock().unwrap_or_else(PoisonError::into_inner);
        *listened.entry(channel.to_owned()).or_default() += 1;
    }

    /// A subscriber stopped listening to `channel`.
    pub fn unlisten(&self, channel: &str) {
        let mut listened = self.shared.listened.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = listened.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                listened.remove(channel);
            }
        }
    }

    /// Whether some subscriber listens to `channel`.
    fn is_listened(&self, channel: &str) -> bool {
        self.shared.listened.lock().unwrap_or_else(PoisonError::into_inner).contains_key(channel)
    }

    fn publish(&self, channel: String, seq: u64, message: &impl Serialize) {
        // A channel nobody listens to is the common case: nothing to encode.
        if !self.is_listened(&channel) {
            return;
        }
        let text = match serde_json::to_string(message) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, "a stream message did not encode");
                return;
            }
        };
        let _ = self.shared.hub.send(Published { channel: channel.into(), seq, text: text.into() });
    }
}

/// What the observer notes while one block executes.
#[derive(Debug, Default)]
struct BlockNotes {
    header: Option<BlockView>,
    /// The transaction being executed and its events so far.
    current: Option<(Digest, Outcome)>,
    outcomes: Vec<(Digest, Outcome)>,
    /// Price levels touched: (market, side, price).
    levels: BTreeSet<(String, Side, u64)>,
    /// Accounts touched, and their orders (market, id) the block may have changed.
    accounts: BTreeMap<AccountId, BTreeSet<(String, u64)>>,
    /// Accounts that cancelled all their orders (in one market, or all).
    cancel_all: Vec<(AccountId, Option<String>)>,
    /// The market of the command being executed, if it has one.
    market: Option<String>,
    /// Where the orders placed or amended in the block rest: (account, market, id) → (side,
    /// price); the mirror knows the others.
    resting: HashMap<(AccountId, String, u64), (Side, u64)>,
    trades: Vec<Event>,
    /// The nonces accepted in the block, by account.
    nonces: Vec<(AccountId, u64)>,
    /// The account and nonce of the transaction being checked.
    checking: Option<(Option<AccountId>, u64)>,
    /// Places of a batch auction: (account, id) → their transaction.
    places: HashMap<(AccountId, u64), Digest>,
}

/// The market observer that keeps a [`MarketView`].
struct ViewObserver {
    view: MarketView,
    block: Option<BlockNotes>,
}

impl ViewObserver {
    fn notes(&mut self) -> &mut BlockNotes {
        self.block.get_or_insert_with(BlockNotes::default)
    }

    /// Closes the transaction being executed.
    fn close_current(&mut self) {
        let notes = self.notes();
        if let Some(done) = notes.current.take() {
            notes.outcomes.push(done);
        }
    }
}

/// A resting order as the API serves it.
fn open_order(market: &str, r: &agora_orderbook::Resting) -> OpenOrderView {
    OpenOrderView {
        market: market.to_owned(),
        id: r.id,
        side: r.side,
        price: r.price,
        qty: r.qty,
        held: r.held,
    }
}

/// Where an order rested before this event: placed or moved earlier in the block (`resting`),
/// else as the mirror knows it.
fn rested_at(
    resting: &HashMap<(AccountId, String, u64), (Side, u64)>,
    state: &State,
    account: AccountId,
    market: &str,
    id: u64,
) -> Option<(Side, u64)> {
    let key = (account, market.to_owned(), id);
    resting.get(&key).copied().or_else(|| {
        let order = state.accounts.get(&account)?.open.get(&(key.1, id))?;
        Some((order.side, order.price))
    })
}

/// The side whose level a trade's maker rested on.
fn maker_side(taker: Side) -> Side {
    match taker {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

impl MarketObserver for ViewObserver {
    fn reset(
        &mut self,
        height: Height,
        exchange: &Exchange,
        nonces: &BTreeMap<AccountId, NonceWindow>,
    ) {
        self.block = None;
        let view = &self.view;
        let mut books = BTreeMap::new();
        for (spec, book) in exchange.books() {
            let mut mirror = BookMirror::default();
            for side in [Side::Buy, Side::Sell] {
                let levels = mirror.side_mut(side);
                for level in book.levels(side) {
                    let qty = book.level_orders(side, level.price).map(|r| r.qty).sum();
                    levels.insert(level.price, qty);
                }
            }
            books.insert(spec.market.clone(), mirror);
        }
        let mut accounts: HashMap<AccountId, AccountMirror> = HashMap::new();
        for (account, asset, balance) in exchange.snapshot().balances {
            accounts.entry(account).or_default().balances.insert(asset, balance);
        }
        for (spec, book) in exchange.books() {
            for side in [Side::Buy, Side::Sell] {
                for r in book.walk(side) {
                    let order = open_order(&spec.market, r);
                    let key = (spec.market.clone(), r.id);
                    accounts.entry(r.account).or_default().open.insert(key, order);
                }
            }
        }
        let mut state = view.write();
        // A restored state keeps the books' update numbers going: a subscriber sees a jump.
        for (market, mirror) in &mut books {
            mirror.seq = state.books.get(market).map_or(0, |b| b.seq + 1);
        }
        state.height = height.0;
        state.books = books;
        state.accounts = accounts;
        state.nonces = nonces.iter().map(|(a, w)| (*a, w.clone())).collect();
        view.shared.metrics.height.set(height.0 as i64);
    }

    fn block_started(&mut self, block: &Block) {
        let header = BlockView {
            height: block.height().0,
            digest: block.digest().to_string(),
            parent: block.parent().to_string(),
            round: block.round().0,
            proposer: block.proposer().0,
            state_digest: String::new(),
            executed: 0,
            refused: 0,
            txs: block.batch().transactions().iter().map(|tx| tx.id().to_string()).collect(),
            certificates: Vec::new(),
        };
        self.block = Some(BlockNotes { header: Some(header), ..BlockNotes::default() });
    }

    fn transaction(&mut self, tx: &Transaction, account: Option<AccountId>) {
        self.close_current();
        let notes = self.notes();
        notes.checking = Some((account, tx.nonce()));
        let outcome =
            Outcome { height: 0, status: "executed".into(), reason: None, events: Vec::new() };
        notes.current = Some((tx.id(), outcome));
    }

    fn refused(&mut self, _: &Transaction, reason: Refusal) {
        let notes = self.notes();
        notes.checking = None;
        if let Some((_, outcome)) = &mut notes.current {
            outcome.status = "refused".into();
            outcome.reason = Some(reason);
        }
    }

    fn action(&mut self, account: AccountId, action: &OrderAction, exchange: &Exchange) {
        let view = self.view.clone();
        let notes = self.notes();
        if let Some((_, nonce)) = notes.checking.take() {
            notes.nonces.push((account, nonce));
        }
        let touched = notes.accounts.entry(account).or_default();
        match action {
            OrderAction::Place { market, id, side, price, .. } => {
                touched.insert((market.clone(), *id));
                notes.market = Some(market.clone());
                if let Some(price) = price {
                    notes.resting.insert((account, market.clone(), *id), (*side, *price));
                    notes.levels.insert((market.clone(), *side, *price));
                }
                if let Some((tx, _)) = &notes.current {
                    notes.places.insert((account, *id), *tx);
                }
            }
            OrderAction::Cancel { market, id } | OrderAction::Amend { market, id, .. } => {
                touched.insert((market.clone(), *id));
                notes.market = Some(market.clone());
                if let Some(r) = exchange.order(market, account, *id) {
                    notes.levels.insert((market.clone(), r.side, r.price));
                }
                if let OrderAction::Amend { price: Some(price), .. } = action
                    && let Some(r) = exchange.order(market, account, *id)
                {
                    notes.resting.insert((account, market.clone(), *id), (r.side, *price));
                    notes.levels.insert((market.clone(), r.side, *price));
                }
            }
            OrderAction::CancelAll { market } => {
                notes.market = market.clone();
                notes.cancel_all.push((account, market.clone()));
                let state = view.read();
                if let Some(mirror) = state.accounts.get(&account) {
                    for o in mirror.open.values() {
                        if market.as_ref().is_none_or(|m| *m == o.market) {
                            notes.levels.insert((o.market.clone(), o.side, o.price));
                        }
                    }
                }
                // And the orders placed or moved earlier in the block.
                for ((owner, m, _), (side, price)) in &notes.resting {
                    if *owner == account && market.as_ref().is_none_or(|x| x == m) {
                        notes.levels.insert((m.clone(), *side, *price));
                    }
                }
            }
        }
    }

    fn events(&mut self, events: &[Event]) {
        let view = self.view.clone();
        let notes = self.notes();
        for event in events {
            match event {
                Event::Trade {
                    market,
                    maker_account,
                    taker_account,
                    maker_id,
                    taker_id,
                    taker_side,
                    price,
                    ..
                } => {
                    notes.levels.insert((market.to_string(), maker_side(*taker_side), *price));
                    let maker = (market.to_string(), *maker_id);
                    notes.accounts.entry(*maker_account).or_default().insert(maker);
                    let taker = (market.to_string(), *taker_id);
                    notes.accounts.entry(*taker_account).or_default().insert(taker);
                    // A batch auction trades at one clearing price: each side's own level is
                    // where it rested.
                    let state = view.read();
                    for (account, id) in [(maker_account, maker_id), (taker_account, taker_id)] {
                        let rested = rested_at(&notes.resting, &state, *account, market, *id);
                        if let Some((side, price)) = rested {
                            notes.levels.insert((market.to_string(), side, price));
                        }
                    }
                    notes.trades.push(event.clone());
                }
                Event::Cancelled { account, id, .. } | Event::Amended { account, id } => {
                    // The event names no market, and a batch auction's come after every
                    // command: every market where the account has an order with this id is
                    // touched, with the level it rested on (reading one too many is harmless).
                    let state = view.read();
                    for spec in &view.shared.markets {
                        let market = &spec.market;
                        let rested = rested_at(&notes.resting, &state, *account, market, *id);
                        let named = notes.market.as_ref() == Some(market);
                        if rested.is_some() || named {
                            notes
                                .accounts
                                .entry(*account)
                                .or_default()
                                .insert((market.clone(), *id));
                        }
                        if let Some((side, price)) = rested {
                            notes.levels.insert((market.clone(), side, price));
                        }
                    }
                }
                _ => {}
            }
            // A batch auction's acceptances come after all its places: each goes to its
            // order's transaction.
            let owner = match event {
                Event::Accepted { account, id } => notes.places.get(&(*account, *id)).copied(),
                _ => None,
            };
            match (&mut notes.current, owner) {
                (Some((tx, outcome)), Some(owner)) if *tx != owner => {
                    if let Some((_, o)) = notes.outcomes.iter_mut().find(|(t, _)| *t == owner) {
                        o.events.push(event.clone());
                    }
                }
                (Some((_, outcome)), _) => outcome.events.push(event.clone()),
                (None, _) => {}
            }
        }
    }

    fn block(&mut self, applied: &Applied, exchange: &Exchange) {
        self.close_current();
        let Some(notes) = self.block.take() else { return };
        let Some(mut header) = notes.header else { return };
        header.state_digest = applied.state_digest.to_string();
        header.executed = applied.executed;
        header.refused = applied.rejected;
        let height = header.height;
        let view = self.view.clone();
        let shared = &view.shared;
        let now = Instant::now();

        // What the block changed, read from the exchange before the lock.
        let mut book_changes: BTreeMap<String, Vec<LevelChange>> = BTreeMap::new();
        for (market, side, price) in &notes.levels {
            let qty = exchange
                .books()
                .find(|(spec, _)| spec.market == *market)
                .map_or(0, |(_, book)| book.level_orders(*side, *price).map(|r| r.qty).sum());
            book_changes.entry(market.clone()).or_default().push(LevelChange {
                side: *side,
                price: *price,
                qty,
            });
        }
        let mut account_changes: Vec<(AccountId, AccountChange)> = Vec::new();
        {
            let state = view.read();
            let mut touched = notes.accounts;
            // A cancel-all touches every open order of the account (in its market).
            for (account, market) in &notes.cancel_all {
                let orders = touched.entry(*account).or_default();
                if let Some(mirror) = state.accounts.get(account) {
                    let all =
                        mirror.open.keys().filter(|(m, _)| market.as_ref().is_none_or(|x| x == m));
                    orders.extend(all.cloned());
                }
            }
            for (account, orders) in touched {
                let mut balances = BTreeMap::new();
                for asset in &shared.assets {
                    let balance = exchange.balance(account, asset);
                    if balance != Balance::default() {
                        balances.insert(asset.clone(), balance);
                    }
                }
                let orders = orders
                    .into_iter()
                    .map(|(market, id)| {
                        let now =
                            exchange.order(&market, account, id).map(|r| open_order(&market, r));
                        ((market, id), now)
                    })
                    .collect();
                account_changes.push((account, (balances, orders)));
            }
        }

        let mut state = view.write();
        state.height = height;
        state.state_digest = applied.state_digest;
        for (account, nonce) in &notes.nonces {
            state.nonces.entry(*account).or_default().accept(*nonce);
        }
        let mut book_seqs = BTreeMap::new();
        for (market, changes) in &book_changes {
            let mirror = state.books.entry(market.clone()).or_default();
            for change in changes {
                let side = mirror.side_mut(change.side);
                if change.qty == 0 {
                    side.remove(&change.price);
                } else {
                    side.insert(change.price, change.qty);
                }
            }
            mirror.seq += 1;
            book_seqs.insert(market.clone(), mirror.seq);
        }
        for (account, (balances, orders)) in &account_changes {
            let mirror = state.accounts.entry(*account).or_default();
            mirror.balances = balances.clone();
            for (key, now) in orders {
                match now {
                    Some(order) => mirror.open.insert(key.clone(), order.clone()),
                    None => mirror.open.remove(key),
                };
            }
        }
        let account_views: Vec<(AccountId, AccountView)> = account_changes
            .iter()
            .filter(|(account, _)| view.is_listened(&format!("account:{}", account.0)))
            .filter_map(|(account, _)| Some((*account, state.accounts.get(account)?.view())))
            .collect();
        let mut finalized_here = 0u64;
        for (tx, mut outcome) in notes.outcomes {
            outcome.height = height;
            if let Some(at) = state.pending.remove(&tx) {
                let ms = now.saturating_duration_since(at).as_secs_f64() * 1e3;
                shared.metrics.finality.observe(ms / 1e3);
                if state.latencies_ms.len() >= shared.limits.latencies {
                    state.latencies_ms.pop_front();
                }
                state.latencies_ms.push_back(ms);
                finalized_here += 1;
            }
            if state.outcomes.len() >= shared.limits.outcomes
                && let Some(oldest) = state.outcome_order.pop_front()
            {
                state.outcomes.remove(&oldest);
            }
            if state.outcomes.insert(tx, outcome).is_none() {
                state.outcome_order.push_back(tx);
            }
        }
        // Pending entries whose transaction is final somewhere in the window leave it too:
        // the window's order list is trimmed lazily.
        while state.pending_order.front().is_some_and(|id| !state.pending.contains_key(id)) {
            state.pending_order.pop_front();
        }
        let txs = header.txs.len();
        state.blocks.insert(height, header.clone());
        while state.blocks.len() > shared.limits.blocks {
            state.blocks.pop_first();
        }
        drop(state);

        let metrics = &shared.metrics;
        metrics.height.set(height as i64);
        metrics.blocks.inc();
        metrics.transactions.inc_by(txs as u64);
        metrics.finalized_here.inc_by(finalized_here);

        view.publish("blocks".into(), 0, &Tagged { channel: "blocks", data: &header });
        let mut trades: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for trade in &notes.trades {
            if let Event::Trade { market, .. } = trade {
                trades.entry(market).or_default().push(trade);
            }
        }
        for (market, list) in trades {
            let channel = format!("trades:{market}");
            let message =
                Tagged { channel: &channel, data: &TradesMessage { height, trades: list } };
            view.publish(channel.clone(), 0, &message);
        }
        for (market, changes) in &book_changes {
            let channel = format!("book:{market}");
            let seq = book_seqs[market];
            let update = BookUpdate { kind: "update", height, seq, changes };
            view.publish(channel.clone(), seq, &Tagged { channel: &channel, data: &update });
        }
        for (account, fresh) in &account_views {
            let channel = format!("account:{}", account.0);
            let message = AccountMessage { height, account: fresh };
            view.publish(channel.clone(), 0, &Tagged { channel: &channel, data: &message });
        }
    }
}

/// A stream message: its channel and what it carries.
#[derive(Serialize)]
pub(crate) struct Tagged<'a, T: Serialize> {
    pub(crate) channel: &'a str,
    pub(crate) data: &'a T,
}

#[derive(Serialize)]
struct TradesMessage<'a> {
    height: u64,
    trades: Vec<&'a Event>,
}

/// A `book:` channel's message: `snapshot` (the levels) or `update` (the changed levels).
#[derive(Serialize)]
struct BookUpdate<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    height: u64,
    seq: u64,
    changes: &'a [LevelChange],
}

#[derive(Serialize)]
struct AccountMessage<'a> {
    height: u64,
    account: &'a AccountView,
}
