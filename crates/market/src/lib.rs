//! The replicated exchange: the order book driven only by the finalized log.
//!
//! A transaction's payload is an encoded [`OrderAction`]; the account is the one bound to the
//! transaction's signing key in the [`MarketGenesis`], and a per-account nonce window refuses
//! replays. [`MarketApp`] is the consensus [`Application`]: for each final block, in order, it
//! verifies each transaction's signature, decodes the action, checks the nonce, applies it to
//! its [`Exchange`], and publishes the state digest. Every honest replica applies the same log,
//! so every honest replica ends in the same state.
//!
//! [`priority`] is the market's lane classifier: which block space each kind of order gets.
//!
//! This crate holds only what every replica must compute identically; workloads, studies and
//! drivers live above it (the `agora` facade's `market::agents`, `fairness` and `simulate`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_consensus::{Application, Applied};
use agora_crypto::{Digest, PublicKeyBytes, SignatureCheck, domain};
use agora_orderbook::{
    AccountId, Book, Command, Event, Exchange, MarketSpec, NewOrder, OrderType, Resting, SelfTrade,
    Side, TimeInForce,
};
use agora_types::{Block, Height, Transaction, codec};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub mod priority;
mod snapshot;
mod stored;

pub use stored::StoredApplication;

pub use snapshot::{MarketSnapshotError, SNAPSHOT_BYTES_MAX};

/// What a market transaction asks for. The account is not in it: it is the signer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderAction {
    /// Place an order.
    Place {
        /// Market.
        market: String,
        /// Client id.
        id: u64,
        /// Side.
        side: Side,
        /// Limit or market.
        order_type: OrderType,
        /// Time in force.
        tif: TimeInForce,
        /// Limit (or worst) price in ticks.
        price: Option<u64>,
        /// Lots.
        qty: u64,
        /// Quote budget (market buys).
        budget: Option<u64>,
        /// Self-trade prevention.
        stp: SelfTrade,
    },
    /// Cancel an order.
    Cancel {
        /// Market.
        market: String,
        /// Client id.
        id: u64,
    },
    /// Amend an order.
    Amend {
        /// Market.
        market: String,
        /// Client id.
        id: u64,
        /// New price.
        price: Option<u64>,
        /// New open quantity.
        qty: Option<u64>,
    },
    /// Cancel all of the signer's orders (in one market, or all).
    CancelAll {
        /// Market, if one.
        market: Option<String>,
    },
}

impl From<NewOrder> for OrderAction {
    /// The order as a transaction's payload. Its account is left out: the account is the one
    /// the signing key is bound to, so an order cannot name someone else's.
    fn from(o: NewOrder) -> Self {
        let NewOrder { account: _, market, id, side, order_type, tif, price, qty, budget, stp } = o;
        OrderAction::Place { market, id, side, order_type, tif, price, qty, budget, stp }
    }
}

impl OrderAction {
    /// The payload bytes.
    pub fn encode(&self) -> Bytes {
        codec::encode(self).expect("an order action is far below the message limit")
    }

    /// The order-book command for `account`.
    pub fn command(self, account: AccountId) -> Command {
        match self {
            OrderAction::Place { market, id, side, order_type, tif, price, qty, budget, stp } => {
                Command::Place(NewOrder {
                    account,
                    market,
                    id,
                    side,
                    order_type,
                    tif,
                    price,
                    qty,
                    budget,
                    stp,
                })
            }
            OrderAction::Cancel { market, id } => Command::Cancel { account, market, id },
            OrderAction::Amend { market, id, price, qty } => {
                Command::Amend { account, market, id, price, qty }
            }
            OrderAction::CancelAll { market } => Command::CancelAll { account, market },
        }
    }
}

/// What an account is for. Priority lanes use it: only liquidators' orders go to the
/// liquidation lane, and market makers may be given a larger turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// An ordinary trader.
    #[default]
    Trader,
    /// A market maker, quoting both sides.
    MarketMaker,
    /// A liquidator, closing out positions urgently.
    Liquidator,
}

/// An account known at genesis: its key, its number, and what it starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    /// The key that signs its transactions.
    pub key: PublicKeyBytes,
    /// Its account number (not 0, the fee account).
    pub account: AccountId,
    /// Initial balances.
    pub deposits: Vec<(String, u64)>,
    /// What the account is for.
    #[serde(default)]
    pub role: AccountRole,
}

/// The order in which a replica executes the transactions of a final block. Every replica
/// uses the same rule, so every rule keeps replicas in agreement; they differ in what the
/// block's proposer can gain by arranging the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionOrder {
    /// The order the proposer put them in. The proposer can place its own orders ahead of
    /// anyone's.
    #[default]
    Proposal,
    /// Cancels first, then everything else by a key the proposer cannot know when it builds
    /// the block: blake3 (`agora/canonical-order/v1`) of the *next* block's digest and the
    /// transaction id. A block is therefore executed when its successor is final (one block
    /// later); the proposer could only steer the order by also proposing the successor.
    Canonical,
    /// Cancels and amends first (in canonical order keyed by the block's own digest), then all
    /// of the block's new orders clear as one batch auction per market, at one price
    /// ([`Exchange::apply_auction`]). Position in the block buys nothing.
    BatchAuction,
}

impl ExecutionOrder {
    /// Every mode.
    pub const ALL: [ExecutionOrder; 3] =
        [ExecutionOrder::Proposal, ExecutionOrder::Canonical, ExecutionOrder::BatchAuction];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionOrder::Proposal => "proposal",
            ExecutionOrder::Canonical => "canonical",
            ExecutionOrder::BatchAuction => "batch-auction",
        }
    }
}

impl std::str::FromStr for ExecutionOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| {
            format!("unknown ordering {s:?}; expected proposal, canonical or batch-auction")
        })
    }
}

/// The market's starting point, the same at every replica.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MarketGenesis {
    /// Markets.
    pub markets: Vec<MarketSpec>,
    /// Accounts.
    pub accounts: Vec<GenesisAccount>,
}

/// How far back an account's nonces are remembered: a nonce is accepted once, and refused once
/// it is this far below the highest seen.
pub const NONCE_WINDOW: u64 = 4_096;

/// An account's nonce window, kept compact for in-order senders: the state digest encodes it
/// every block, so its size is what hashing it costs.
///
/// A nonce is taken when it is below `next` or in `ahead`. `next` is the lowest nonce still
/// acceptable: at least the window's floor, and never itself taken. `ahead` holds the taken
/// nonces above it, which stays empty while a sender's transactions are executed in order. The
/// form is canonical: one set of taken nonces has one representation.
///
/// A front end (the node's API) keeps a copy of each account's window, fed by
/// [`MarketObserver::reset`] and the accepted transactions, to refuse a stale nonce before it
/// reaches the mempool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceWindow {
    next: u64,
    ahead: BTreeSet<u64>,
}

/// The window under its old name, inside the crate.
type Nonces = NonceWindow;

impl NonceWindow {
    /// Whether [`NonceWindow::accept`] would take `nonce` now.
    pub fn is_fresh(&self, nonce: u64) -> bool {
        nonce >= self.next && !self.ahead.contains(&nonce)
    }

    /// The lowest nonce the window could still take.
    pub fn floor(&self) -> u64 {
        self.next
    }

    /// Accepts `nonce` once: not seen before and not older than the window ([`NONCE_WINDOW`]
    /// below the highest accepted). Transactions of one account may be finalized out of nonce
    /// order (different leaders), so this is a window, not a strict sequence.
    pub fn accept(&mut self, nonce: u64) -> bool {
        if nonce < self.next || !self.ahead.insert(nonce) {
            return false;
        }
        // The highest accepted nonce is the largest in `ahead` (no nonce above `next` is taken
        // without being in it, and `nonce` is in it now).
        let highest = self.ahead.last().copied().unwrap_or(nonce);
        self.next = self.next.max(highest.saturating_sub(NONCE_WINDOW - 1));
        while let Some(&first) = self.ahead.first() {
            if first > self.next || (first == self.next && first == u64::MAX) {
                break;
            }
            self.ahead.pop_first();
            if first == self.next {
                self.next += 1;
            }
        }
        true
    }
}

/// Why the market refused a transaction before its book: the transaction changed nothing, not
/// even its signer's nonce window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Its signature does not verify.
    BadSignature,
    /// Its signing key belongs to no account of the genesis.
    UnknownSigner,
    /// Its payload is not an [`OrderAction`].
    Malformed,
    /// Its nonce was used already, or is below the signer's window ([`NONCE_WINDOW`]).
    StaleNonce,
}

impl Refusal {
    /// Its name in reports and APIs: `bad_signature`, `unknown_signer`, `malformed`,
    /// `stale_nonce`.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadSignature => "bad_signature",
            Refusal::UnknownSigner => "unknown_signer",
            Refusal::Malformed => "malformed",
            Refusal::StaleNonce => "stale_nonce",
        }
    }
}

/// What a replica's market does, reported as it happens, to whoever studies or serves it from
/// outside the replicated state: a run's fairness measures, an operator's metrics, a feed.
///
/// The market calls these in execution order; none of them can change what it computes, and
/// every method ignores its report unless overridden. Set one with [`MarketApp::with_observer`].
pub trait MarketObserver: Send {
    /// The market's whole state, when the observer is set (at genesis) and after a snapshot
    /// replaced it: the height it includes, the exchange and every account's nonce window. An
    /// observer that mirrors part of the state starts over from here.
    fn reset(
        &mut self,
        height: Height,
        exchange: &Exchange,
        nonces: &BTreeMap<AccountId, NonceWindow>,
    ) {
        let _ = (height, exchange, nonces);
    }

    /// A final block is about to be executed (under [`ExecutionOrder::Canonical`], the one
    /// before the block just applied); its transactions follow.
    fn block_started(&mut self, block: &Block) {
        let _ = block;
    }

    /// A transaction of a block reached the market, before any check: its signer's genesis
    /// account, or `None` for a signer the genesis does not know.
    fn transaction(&mut self, tx: &Transaction, account: Option<AccountId>) {
        let _ = (tx, account);
    }

    /// The transaction last reported by [`MarketObserver::transaction`] was refused before the
    /// book, for `reason`; it changed nothing.
    fn refused(&mut self, tx: &Transaction, reason: Refusal) {
        let _ = (tx, reason);
    }

    /// `action` of `account`, the transaction last reported by
    /// [`MarketObserver::transaction`], passed every check and is about to be applied;
    /// `exchange` is the state just before it.
    fn action(&mut self, account: AccountId, action: &OrderAction, exchange: &Exchange) {
        let _ = (account, action, exchange);
    }

    /// The book's events of one command (or of one block's auction), in order.
    fn events(&mut self, events: &[Event]) {
        let _ = events;
    }

    /// A block was applied (under [`ExecutionOrder::Canonical`], the one before it): what it
    /// executed and refused, and the state after it.
    fn block(&mut self, applied: &Applied, exchange: &Exchange) {
        let _ = (applied, exchange);
    }
}

/// The simplest observer: counters of what a replica's market applied, shared so that a driver
/// or a metrics endpoint can read them while the market runs (observe with an `Arc` of them).
#[derive(Debug, Default)]
pub struct MarketCounters {
    /// Order actions applied to the book (accepted or rejected by it).
    pub orders_applied: AtomicU64,
    /// Trades.
    pub trades: AtomicU64,
    /// Transactions refused before the book: bad signature, unknown signer, replayed nonce or
    /// undecodable payload.
    pub refused: AtomicU64,
}

impl MarketObserver for Arc<MarketCounters> {
    fn events(&mut self, events: &[Event]) {
        let trades = events.iter().filter(|e| matches!(e, Event::Trade { .. })).count();
        self.trades.fetch_add(trades as u64, Ordering::Relaxed);
    }

    fn block(&mut self, applied: &Applied, _: &Exchange) {
        self.orders_applied.fetch_add(applied.executed as u64, Ordering::Relaxed);
        self.refused.fetch_add(applied.rejected as u64, Ordering::Relaxed);
    }
}

/// The replicated exchange as a consensus [`Application`].
pub struct MarketApp {
    exchange: Exchange,
    /// Signing key → account and its position in `ids`.
    accounts: BTreeMap<PublicKeyBytes, (AccountId, usize)>,
    /// The genesis accounts in order.
    ids: Vec<AccountId>,
    nonces: BTreeMap<AccountId, Nonces>,
    height: Height,
    digest: Digest,
    events: Vec<Event>,
    order: ExecutionOrder,
    /// Canonical order: the last final block, waiting for its successor.
    waiting: Option<Block>,
    observer: Option<Box<dyn MarketObserver>>,
    level_digests: LevelDigests,
}

impl std::fmt::Debug for MarketApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketApp")
            .field("height", &self.height)
            .field("digest", &self.digest)
            .field("order", &self.order)
            .field("accounts", &self.ids.len())
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// Digests of the books' price levels, each with the level version it was computed at
/// ([`Book::levels`]), keyed by market, side and price.
#[derive(Debug, Default)]
struct LevelDigests {
    cache: FxHashMap<(usize, usize, u64), (u64, Digest)>,
}

/// Each book as `[bids, asks]`, each a list of `(price, level digest)`, best first.
type BookLevels = Vec<[Vec<(u64, Digest)>; 2]>;

impl LevelDigests {
    /// The books' levels with their digests: cached ones where a level's version is unchanged,
    /// fresh ones elsewhere. Levels gone from the books leave the cache.
    fn books(&mut self, exchange: &Exchange) -> BookLevels {
        let mut fresh = FxHashMap::with_capacity_and_hasher(self.cache.len(), Default::default());
        let books = exchange
            .books()
            .enumerate()
            .map(|(m, (_, book))| {
                [Side::Buy, Side::Sell].map(|side| {
                    book.levels(side)
                        .map(|level| {
                            let key = (m, side as usize, level.price);
                            let digest = match self.cache.get(&key) {
                                Some((version, digest)) if *version == level.version => *digest,
                                _ => {
                                    let orders: Vec<&Resting> =
                                        book.level_orders(side, level.price).collect();
                                    codec::digest(&domain::STATE_LEVEL, &orders)
                                        .expect("orders always encode")
                                }
                            };
                            fresh.insert(key, (level.version, digest));
                            (level.price, digest)
                        })
                        .collect()
                })
            })
            .collect();
        self.cache = fresh;
        books
    }
}

/// A transaction of a block with its payload decoded (`None`: not an order action).
type Decoded<'b> = (&'b Transaction, Option<OrderAction>);

/// A transaction that passed every check before the book: its account and action.
struct Checked {
    account: AccountId,
    action: OrderAction,
}

impl MarketApp {
    /// A replica's market at genesis.
    pub fn new(genesis: &MarketGenesis) -> Self {
        let mut exchange = Exchange::new();
        let mut events = Vec::new();
        for spec in &genesis.markets {
            exchange.apply(&Command::Market(spec.clone()), &mut events);
        }
        let mut accounts = BTreeMap::new();
        let mut ids = Vec::new();
        for a in &genesis.accounts {
            if accounts.insert(a.key, (a.account, ids.len())).is_none() {
                ids.push(a.account);
            }
            for (asset, amount) in &a.deposits {
                exchange.apply(
                    &Command::Deposit { account: a.account, asset: asset.clone(), amount: *amount },
                    &mut events,
                );
            }
        }
        let mut app = Self {
            exchange,
            accounts,
            ids,
            nonces: BTreeMap::new(),
            height: Height(0),
            digest: Digest::ZERO,
            events: Vec::new(),
            order: ExecutionOrder::Proposal,
            waiting: None,
            observer: None,
            level_digests: LevelDigests::default(),
        };
        app.digest = app.compute_digest();
        app
    }

    /// Executes blocks in `order` (the default is [`ExecutionOrder::Proposal`]).
    pub fn with_order(mut self, order: ExecutionOrder) -> Self {
        self.order = order;
        self
    }

    /// Reports what the market does to `observer` (see [`MarketObserver`]); it replaces any
    /// observer set before.
    pub fn with_observer(mut self, mut observer: Box<dyn MarketObserver>) -> Self {
        observer.reset(self.height, &self.exchange, &self.nonces);
        self.observer = Some(observer);
        self
    }

    /// The execution order.
    pub fn order(&self) -> ExecutionOrder {
        self.order
    }

    /// The market's mid price in ticks, when its book has both sides.
    pub fn mid(&self, market: &str) -> Option<u64> {
        let bbo = self.exchange.bbo(market)?;
        let ((bid, _), (ask, _)) = (bbo.bid?, bbo.ask?);
        Some(bid + (ask - bid) / 2)
    }

    /// The exchange, to read balances, books and market data.
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// The state digest: blake3 (`agora/state/v1`) of the canonical encoding of the exchange's
    /// ledger (markets, supply, balances, next sequence number), each book as its price levels
    /// best first (price and the `agora/state-level/v1` digest of the level's orders), and the
    /// nonce windows. Levels a block did not change keep their digests, so a block costs the
    /// levels it touched, not the whole book.
    fn compute_digest(&mut self) -> Digest {
        let books = self.level_digests.books(&self.exchange);
        codec::digest(&domain::STATE, &(self.exchange.ledger_view(), books, &self.nonces))
            .expect("the market state always encodes")
    }

    /// The state digest computed from scratch, without the cache of level digests: equal to
    /// the published digest unless that cache is wrong. For tests and audits; it costs the
    /// whole state.
    pub fn recompute_digest(&self) -> Digest {
        let books = LevelDigests::default().books(&self.exchange);
        codec::digest(&domain::STATE, &(self.exchange.ledger_view(), books, &self.nonces))
            .expect("the market state always encodes")
    }

    /// Every check before the book: signature, known signer, decodable action (`action`, the
    /// payload decoded once by the caller), fresh nonce. A refused transaction changes nothing;
    /// an accepted one, its signer's nonce window.
    fn check(
        &mut self,
        tx: &Transaction,
        action: Option<OrderAction>,
        checker: &mut dyn SignatureCheck,
    ) -> Option<Checked> {
        let known = self.accounts.get(tx.sender()).copied();
        if let Some(observer) = &mut self.observer {
            observer.transaction(tx, known.map(|(account, _)| account));
        }
        let checked = self.admit(tx, known.map(|(account, _)| account), action, checker);
        match checked {
            Ok(checked) => Some(checked),
            Err(reason) => {
                if let Some(observer) = &mut self.observer {
                    observer.refused(tx, reason);
                }
                None
            }
        }
    }

    /// The checks of [`MarketApp::check`], in order, with the first that fails.
    fn admit(
        &mut self,
        tx: &Transaction,
        account: Option<AccountId>,
        action: Option<OrderAction>,
        checker: &mut dyn SignatureCheck,
    ) -> Result<Checked, Refusal> {
        tx.verify_with(checker).map_err(|_| Refusal::BadSignature)?;
        let account = account.ok_or(Refusal::UnknownSigner)?;
        let action = action.ok_or(Refusal::Malformed)?;
        if !self.nonces.entry(account).or_default().accept(tx.nonce()) {
            return Err(Refusal::StaleNonce);
        }
        Ok(Checked { account, action })
    }

    /// The order of execution under [`ExecutionOrder::Canonical`] (and for the cancels and
    /// amends of a batch auction): cancels first, then the rest, each by blake3 of `seed` and
    /// the transaction id.
    fn canonical<'b>(decoded: &mut [Decoded<'b>], seed: &Digest) {
        let key = |(tx, action): &Decoded<'_>| {
            let cancel =
                matches!(action, Some(OrderAction::Cancel { .. } | OrderAction::CancelAll { .. }));
            let digest = domain::CANONICAL_ORDER
                .hasher()
                .update_digest(seed)
                .update_digest(&tx.id())
                .finalize();
            (!cancel, *digest.as_bytes())
        };
        // Stable: copies of one transaction (equal keys) keep their block order.
        decoded.sort_by_cached_key(key);
    }

    /// Executes `block`'s transactions in this replica's order; returns (executed, refused).
    fn execute(
        &mut self,
        block: &Block,
        seed: &Digest,
        checker: &mut dyn SignatureCheck,
    ) -> (usize, usize) {
        if let Some(observer) = &mut self.observer {
            observer.block_started(block);
        }
        // Each payload decoded once: the canonical order needs the kind of action too.
        let mut ordered: Vec<Decoded<'_>> = block
            .batch()
            .transactions()
            .iter()
            .map(|tx| (tx, codec::decode::<OrderAction>(tx.payload()).ok()))
            .collect();
        if self.order != ExecutionOrder::Proposal {
            Self::canonical(&mut ordered, seed);
        }
        let (mut executed, mut refused) = (0, 0);
        let mut auction = Vec::new();
        for (tx, action) in ordered {
            let Some(Checked { account, action }) = self.check(tx, action, checker) else {
                refused += 1;
                continue;
            };
            executed += 1;
            if let Some(observer) = &mut self.observer {
                observer.action(account, &action, &self.exchange);
            }
            match action.command(account) {
                Command::Place(o) if self.order == ExecutionOrder::BatchAuction => auction.push(o),
                command => {
                    self.exchange.apply(&command, &mut self.events);
                    // One command's events at a time: the buffer stays small and warm.
                    self.take_events();
                }
            }
        }
        if !auction.is_empty() {
            self.exchange.apply_auction(&auction, &mut self.events);
            self.take_events();
        }
        (executed, refused)
    }

    /// Hands one command's events to the observer and clears them.
    fn take_events(&mut self) {
        if let Some(observer) = &mut self.observer {
            observer.events(&self.events);
        }
        self.events.clear();
    }
}

impl Application for MarketApp {
    fn apply(&mut self, block: &Block, checker: &mut dyn SignatureCheck) -> Applied {
        let (executed, rejected) = match self.order {
            ExecutionOrder::Canonical => match self.waiting.replace(block.clone()) {
                // The previous block, ordered by this one's digest.
                Some(previous) => {
                    self.height = previous.height();
                    self.execute(&previous, &block.digest(), checker)
                }
                None => (0, 0),
            },
            _ => {
                self.height = block.height();
                self.execute(block, &block.digest(), checker)
            }
        };
        self.digest = self.compute_digest();
        let applied = Applied { executed, rejected, state_digest: self.digest };
        if let Some(observer) = &mut self.observer {
            observer.block(&applied, &self.exchange);
        }
        applied
    }

    fn state_digest(&self) -> Digest {
        self.digest
    }

    fn height(&self) -> Height {
        self.height
    }

    fn state_snapshot(&self) -> Option<Bytes> {
        Some(self.snapshot())
    }

    fn restore_snapshot(&mut self, snapshot: &[u8], expected: Digest) -> Result<(), String> {
        self.restore(snapshot, expected).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::{DirectCheck, SecretKey};
    use agora_types::{Batch, NodeId, Round};

    #[test]
    fn a_book_order_becomes_a_payload_with_the_same_bytes_and_comes_back_for_its_signer() {
        let order = NewOrder::limit(AccountId(7), "ETH-USD", 3, Side::Buy, 2_000, 5);
        let action = OrderAction::from(order.clone());
        let spelled_out = OrderAction::Place {
            market: "ETH-USD".into(),
            id: 3,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Some(2_000),
            qty: 5,
            budget: None,
            stp: SelfTrade::CancelResting,
        };
        assert_eq!(action.encode(), spelled_out.encode());
        // The payload names no account: the signer's is put back.
        assert_eq!(action.command(AccountId(7)), Command::Place(order));
    }

    fn setup() -> (MarketApp, SecretKey, Arc<MarketCounters>) {
        let key = SecretKey::from_seed(1, 1);
        let genesis = MarketGenesis {
            markets: vec![MarketSpec::new("ETH-USD", "ETH", "USD")],
            accounts: vec![GenesisAccount {
                key: PublicKeyBytes::from(key.public_key()),
                account: AccountId(7),
                deposits: vec![("USD".into(), 1_000_000)],
                role: AccountRole::Trader,
            }],
        };
        let counters = Arc::new(MarketCounters::default());
        let app = MarketApp::new(&genesis).with_observer(Box::new(Arc::clone(&counters)));
        (app, key, counters)
    }

    fn bid(id: u64) -> OrderAction {
        OrderAction::Place {
            market: "ETH-USD".into(),
            id,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Some(100),
            qty: 1,
            budget: None,
            stp: SelfTrade::CancelResting,
        }
    }

    fn block(height: u64, txs: Vec<Transaction>) -> Block {
        Block::new(
            Digest::ZERO,
            Round(height),
            Height(height),
            NodeId(0),
            0,
            Batch::new(txs).unwrap(),
        )
    }

    #[test]
    fn orders_bind_to_the_signer_and_replays_unknown_signers_and_garbage_are_refused() {
        let (mut app, key, counters) = setup();
        let stranger = SecretKey::from_seed(9, 9);
        let good = Transaction::new_signed(&key, 0, bid(1).encode()).unwrap();
        let txs = vec![
            good.clone(),
            // The same nonce again (a replay, even with other content).
            Transaction::new_signed(&key, 0, bid(2).encode()).unwrap(),
            // A key with no account.
            Transaction::new_signed(&stranger, 0, bid(3).encode()).unwrap(),
            // Not an order action.
            Transaction::new_signed(&key, 1, Bytes::from_static(b"garbage")).unwrap(),
            // A forged signature: the right sender, someone else's signature.
            Transaction::from_parts(*good.sender(), 2, bid(4).encode(), *good.signature()).unwrap(),
            Transaction::new_signed(&key, 3, bid(5).encode()).unwrap(),
        ];
        let before = app.state_digest();
        let applied = app.apply(&block(1, txs), &mut DirectCheck);
        assert_eq!((applied.executed, applied.rejected), (2, 4));
        assert_ne!(applied.state_digest, before);
        let ex = app.exchange();
        assert!(
            ex.order("ETH-USD", AccountId(7), 1).is_some()
                && ex.order("ETH-USD", AccountId(7), 5).is_some()
        );
        assert_eq!(ex.open_orders(), 2);
        assert_eq!(counters.refused.load(Ordering::Relaxed), 4);
        // The replayed transaction in a later block is refused too.
        let again = app.apply(&block(2, vec![good]), &mut DirectCheck);
        assert_eq!((again.executed, again.rejected), (0, 1));
    }

    /// Records what an observer is told about each transaction.
    #[derive(Clone, Default)]
    struct Told(Arc<std::sync::Mutex<Vec<String>>>);

    impl MarketObserver for Told {
        fn reset(&mut self, height: Height, _: &Exchange, nonces: &BTreeMap<AccountId, Nonces>) {
            self.push(format!("reset {} {}", height.0, nonces.len()));
        }
        fn block_started(&mut self, block: &Block) {
            self.push(format!("block {}", block.height().0));
        }
        fn transaction(&mut self, tx: &Transaction, _: Option<AccountId>) {
            self.push(format!("tx {}", tx.nonce()));
        }
        fn refused(&mut self, tx: &Transaction, reason: Refusal) {
            self.push(format!("refused {} {}", tx.nonce(), reason.name()));
        }
        fn action(&mut self, account: AccountId, _: &OrderAction, _: &Exchange) {
            self.push(format!("action {}", account.0));
        }
    }

    impl Told {
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    #[test]
    fn an_observer_hears_each_refusal_with_its_reason_and_the_whole_state_at_each_reset() {
        let (app, key, _) = setup();
        let told = Told::default();
        let mut app = app.with_observer(Box::new(told.clone()));
        let stranger = SecretKey::from_seed(9, 9);
        let good = Transaction::new_signed(&key, 0, bid(1).encode()).unwrap();
        let forged =
            Transaction::from_parts(*good.sender(), 4, bid(4).encode(), *good.signature()).unwrap();
        let txs = vec![
            good,
            Transaction::new_signed(&key, 0, bid(2).encode()).unwrap(),
            Transaction::new_signed(&stranger, 1, bid(3).encode()).unwrap(),
            Transaction::new_signed(&key, 2, Bytes::from_static(b"garbage")).unwrap(),
            forged,
        ];
        app.apply(&block(1, txs), &mut DirectCheck);
        let snapshot = app.state_snapshot().unwrap();
        let digest = app.state_digest();
        let (fresh, _, _) = setup();
        let mut fresh = fresh.with_observer(Box::new(told.clone()));
        fresh.restore_snapshot(&snapshot, digest).unwrap();
        let lines = told.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                "reset 0 0",
                "block 1",
                "tx 0",
                "action 7",
                "tx 0",
                "refused 0 stale_nonce",
                "tx 1",
                "refused 1 unknown_signer",
                "tx 2",
                "refused 2 malformed",
                "tx 4",
                "refused 4 bad_signature",
                "reset 0 0",
                "reset 1 1",
            ]
        );
    }

    #[test]
    fn nonces_are_accepted_once_within_a_window() {
        let mut n = Nonces::default();
        assert!(n.accept(5) && n.accept(3) && n.accept(100));
        assert!(!n.accept(5) && !n.accept(100));
        assert!(n.accept(NONCE_WINDOW + 50));
        assert!(!n.accept(10), "below the window");
        assert!(n.ahead.len() <= NONCE_WINDOW as usize);
        // In order, nothing is kept but the next nonce.
        let mut n = Nonces::default();
        assert!((0..10_000).all(|i| n.accept(i)));
        assert_eq!((n.next, n.ahead.len()), (10_000, 0));
        assert!(n.accept(u64::MAX) && !n.accept(u64::MAX));
    }

    /// The window as first written: every accepted nonce kept until it falls out of the window.
    #[derive(Default)]
    struct NoncesReference {
        highest: Option<u64>,
        seen: BTreeSet<u64>,
    }

    impl NoncesReference {
        fn accept(&mut self, nonce: u64) -> bool {
            if let Some(h) = self.highest
                && (nonce.saturating_add(NONCE_WINDOW) <= h || self.seen.contains(&nonce))
            {
                return false;
            }
            self.seen.insert(nonce);
            let highest = self.highest.map_or(nonce, |h| h.max(nonce));
            self.highest = Some(highest);
            self.seen.retain(|n| *n >= highest.saturating_sub(NONCE_WINDOW));
            true
        }
    }

    proptest::proptest! {
        /// The compact window accepts exactly what the plain one does, and is canonical: equal
        /// sets of taken nonces, equal values.
        #[test]
        fn compact_nonces_decide_like_the_plain_window(
            steps in proptest::collection::vec((0u64..3, 0u64..6_000), 1..400),
        ) {
            let (mut compact, mut plain) = (Nonces::default(), NoncesReference::default());
            let mut last = 0u64;
            for (kind, x) in steps {
                // Mostly near the last nonce (in order, replays, small gaps), sometimes far.
                let nonce = match kind {
                    0 => last + x % 3,
                    1 => last.saturating_sub(x % 50),
                    _ => x * 3,
                };
                last = last.max(nonce);
                proptest::prop_assert_eq!(compact.accept(nonce), plain.accept(nonce), "{}", nonce);
            }
            let floor = plain.highest.map_or(0, |h| h.saturating_sub(NONCE_WINDOW - 1));
            let mut rebuilt = Nonces { next: floor, ahead: BTreeSet::new() };
            for n in plain.seen.iter().filter(|n| **n >= floor) {
                rebuilt.accept(*n);
            }
            proptest::prop_assert_eq!(compact, rebuilt);
        }
    }

    #[test]
    fn same_log_same_digest() {
        let (mut a, key, _) = setup();
        let (mut b, _, _) = setup();
        let txs: Vec<Transaction> =
            (0..20).map(|i| Transaction::new_signed(&key, i, bid(i).encode()).unwrap()).collect();
        let blk = block(1, txs);
        assert_eq!(
            a.apply(&blk, &mut DirectCheck).state_digest,
            b.apply(&blk, &mut DirectCheck).state_digest
        );
    }
}
