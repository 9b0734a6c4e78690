//! What a market run says about fairness: what a front-runner earned, what large orders paid,
//! how long each priority lane waited, and who got the block space.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use agora_consensus::Applied;
use agora_crypto::PublicKeyBytes;
use agora_netsim::LatencySummary;
use agora_orderbook::{AccountId, Event, Exchange, Side};
use agora_types::Transaction;
use serde::Serialize;

use crate::agents;
use agora_market::{
    AccountRole, ExecutionOrder, MarketCounters, MarketGenesis, MarketObserver, OrderAction,
};

/// Large orders a replica follows to the end, for slippage figures: every placed order of at
/// least `min_qty` lots, up to `max_orders` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Orders of at least this many lots are followed.
    pub min_qty: u64,
    /// At most this many orders are followed (later ones are not).
    pub max_orders: usize,
}

/// How a followed order executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WatchedOrder {
    /// Buy or sell.
    pub side: Side,
    /// Lots asked for.
    pub qty: u64,
    /// The book's mid price (ticks) before its block, if the book had both sides.
    pub mid_before: Option<u64>,
    /// Lots filled.
    pub filled: u64,
    /// Sum of price × lots of its fills (ticks × lots).
    pub notional: u128,
}

impl WatchedOrder {
    /// What the fills cost against the mid before the block, in basis points (positive: worse
    /// than the mid). `None` before any fill or without a mid.
    pub fn slippage_bps(&self) -> Option<f64> {
        let mid = self.mid_before? as f64;
        if self.filled == 0 || mid == 0.0 {
            return None;
        }
        let average = self.notional as f64 / self.filled as f64;
        let signed = match self.side {
            Side::Buy => average - mid,
            Side::Sell => mid - average,
        };
        Some(signed / mid * 10_000.0)
    }
}

/// What a [`MarketStudy`] saw of one replica's market.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyRecord {
    /// The followed orders by (account, client id).
    pub watched: BTreeMap<(AccountId, u64), WatchedOrder>,
    /// Transactions per genesis account in the blocks executed: who got the block space.
    pub block_space: BTreeMap<AccountId, u64>,
    /// Transactions of signers the genesis does not know.
    pub unknown_signers: u64,
    /// After the last block: the mid price (ticks) of [`agents::MARKET`], if both sides rest.
    pub mid: Option<u64>,
    /// After the last block: available plus held of each followed account, by asset.
    pub holdings: BTreeMap<(AccountId, String), u64>,
    /// Whether a block was applied at all (before one, the holdings are the genesis deposits).
    pub blocks: u64,
}

impl StudyRecord {
    /// Transactions per signing account, signers not in the genesis under account 0.
    pub fn block_space(&self) -> BTreeMap<AccountId, u64> {
        let unknown = (AccountId(0), self.unknown_signers);
        let known = self.block_space.iter().map(|(a, n)| (*a, *n));
        known.chain(std::iter::once(unknown)).filter(|(_, n)| *n > 0).collect()
    }
}

/// The market's mid price in ticks, when its book has both sides.
fn mid(exchange: &Exchange, market: &str) -> Option<u64> {
    let bbo = exchange.bbo(market)?;
    let ((bid, _), (ask, _)) = (bbo.bid?, bbo.ask?);
    Some(bid + (ask - bid) / 2)
}

/// A [`MarketObserver`] for the fairness study: it follows large orders ([`Watch`]), counts
/// the block space per signer, keeps the holdings of the accounts it is told to follow and the
/// mid after each block, and counts what [`MarketCounters`] counts. It sees the replicated
/// state only through the observer seam; the market computes the same with or without it.
#[derive(Debug)]
pub struct MarketStudy {
    watch: Watch,
    accounts: Vec<(AccountId, Vec<String>)>,
    counters: Arc<MarketCounters>,
    record: Arc<Mutex<StudyRecord>>,
}

impl MarketStudy {
    /// A study that follows `watch`'s orders and the holdings of `accounts` (each with the
    /// assets to follow).
    pub fn new(watch: Watch, accounts: Vec<(AccountId, Vec<String>)>) -> Self {
        Self {
            watch,
            accounts,
            counters: Arc::new(MarketCounters::default()),
            record: Arc::new(Mutex::new(StudyRecord::default())),
        }
    }

    /// The record, shared: it fills in as the replica applies blocks.
    pub fn record(&self) -> Arc<Mutex<StudyRecord>> {
        Arc::clone(&self.record)
    }

    /// The counters, shared.
    pub fn counters(&self) -> Arc<MarketCounters> {
        Arc::clone(&self.counters)
    }

    fn with<R>(&self, f: impl FnOnce(&mut StudyRecord) -> R) -> R {
        f(&mut self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl MarketObserver for MarketStudy {
    fn transaction(&mut self, _: &Transaction, account: Option<AccountId>) {
        self.with(|r| match account {
            Some(account) => *r.block_space.entry(account).or_default() += 1,
            None => r.unknown_signers += 1,
        });
    }

    fn action(&mut self, account: AccountId, action: &OrderAction, exchange: &Exchange) {
        let OrderAction::Place { market, id, side, qty, .. } = action else { return };
        let watch = self.watch;
        self.with(|r| {
            if *qty >= watch.min_qty && r.watched.len() < watch.max_orders {
                let mid_before = mid(exchange, market);
                r.watched.entry((account, *id)).or_insert(WatchedOrder {
                    side: *side,
                    qty: *qty,
                    mid_before,
                    filled: 0,
                    notional: 0,
                });
            }
        });
    }

    fn events(&mut self, events: &[Event]) {
        self.counters.events(events);
        self.with(|r| {
            for e in events {
                if let Event::Trade {
                    maker_id,
                    taker_id,
                    maker_account,
                    taker_account,
                    price,
                    qty,
                    ..
                } = e
                {
                    for key in [(*maker_account, *maker_id), (*taker_account, *taker_id)] {
                        if let Some(w) = r.watched.get_mut(&key) {
                            w.filled += qty;
                            w.notional += u128::from(*price) * u128::from(*qty);
                        }
                    }
                }
            }
        });
    }

    fn block(&mut self, applied: &Applied, exchange: &Exchange) {
        self.counters.block(applied, exchange);
        let accounts = &self.accounts;
        let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        record.blocks += 1;
        record.mid = mid(exchange, agents::MARKET);
        for (account, assets) in accounts {
            for asset in assets {
                let b = exchange.balance(*account, asset);
                record.holdings.insert((*account, asset.clone()), b.available + b.held);
            }
        }
    }
}

/// Latency percentiles of one lane, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LaneLatency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Transactions measured.
    pub count: u64,
}

/// The `fairness` object of a market run's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    /// The execution order ("proposal", "canonical", "batch-auction").
    pub ordering: &'static str,
    /// Priority lanes were on (otherwise one first-come lane).
    pub priority: bool,
    /// The front-running node, if any.
    pub frontrunner: Option<u16>,
    /// Large orders it sandwiched.
    pub frontrunner_attacks: u64,
    /// What its account gained, in quote units, with its base position marked to the final
    /// mid price: Δquote + Δbase × mid.
    pub frontrunner_profit: f64,
    /// Large orders of others (at least [`agents::LARGE_ORDER_LOTS`] lots) that filled at all.
    pub victims: u64,
    /// Their mean execution cost against the mid before their block, in basis points
    /// (positive: worse than the mid).
    pub victim_slippage_bps: f64,
    /// Submission → finalization per lane.
    pub lane_latency_ms: BTreeMap<String, LaneLatency>,
    /// Transactions in the blocks this replica executed.
    pub block_txs: u64,
    /// Share of the transactions in final blocks per class of account: `trader`,
    /// `market_maker`, `liquidator`, `frontrunner` (and `unknown` signers).
    pub block_share: BTreeMap<String, f64>,
}

/// What [`Fairness::measure`] needs besides the replica's study record.
pub struct FairnessInputs<'a> {
    /// The execution order of the run.
    pub ordering: ExecutionOrder,
    /// The genesis of the run.
    pub genesis: &'a MarketGenesis,
    /// The front-runner's node and account key, if any.
    pub frontrunner: Option<(u16, PublicKeyBytes)>,
    /// Victims it sandwiched.
    pub attacks: u64,
    /// Priority lanes were on.
    pub priority: bool,
    /// Per-lane latencies from the simulator.
    pub lanes: &'a [(String, LatencySummary)],
}

impl Fairness {
    /// Measures a finished run from what a [`MarketStudy`] saw of one honest replica.
    pub fn measure(study: &StudyRecord, inputs: &FairnessInputs<'_>) -> Self {
        let frontrunner_account = inputs.frontrunner.and_then(|(_, key)| {
            inputs.genesis.accounts.iter().find(|a| a.key == key).map(|a| a.account)
        });
        let frontrunner_profit = match frontrunner_account {
            Some(account) => {
                let genesis = inputs.genesis.accounts.iter().find(|a| a.account == account);
                let initial = |asset: &str| {
                    genesis
                        .and_then(|g| g.deposits.iter().find(|(a, _)| a == asset))
                        .map_or(0, |(_, amount)| *amount)
                };
                let now = |asset: &str| match study.blocks {
                    0 => initial(asset),
                    _ => study.holdings.get(&(account, asset.to_owned())).copied().unwrap_or(0),
                };
                let mid = study.mid.unwrap_or(0) as f64;
                let quote = now("USD") as f64 - initial("USD") as f64;
                let base = now("ETH") as f64 - initial("ETH") as f64;
                quote + base * mid
            }
            None => 0.0,
        };
        let slippages: Vec<f64> = study
            .watched
            .iter()
            .filter(|((account, _), _)| Some(*account) != frontrunner_account)
            .filter_map(|(_, w)| w.slippage_bps())
            .collect();
        let victim_slippage_bps = if slippages.is_empty() {
            0.0
        } else {
            slippages.iter().sum::<f64>() / slippages.len() as f64
        };
        let class = |account: AccountId| -> &'static str {
            if Some(account) == frontrunner_account {
                return "frontrunner";
            }
            match inputs.genesis.accounts.iter().find(|a| a.account == account).map(|a| a.role) {
                Some(AccountRole::Trader) => "trader",
                Some(AccountRole::MarketMaker) => "market_maker",
                Some(AccountRole::Liquidator) => "liquidator",
                None => "unknown",
            }
        };
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (account, n) in study.block_space() {
            *counts.entry(class(account).to_owned()).or_default() += n;
        }
        let block_txs = counts.values().sum::<u64>();
        let total = block_txs.max(1) as f64;
        let ms = |ns: u64| ns as f64 / 1e6;
        Self {
            ordering: inputs.ordering.name(),
            priority: inputs.priority,
            frontrunner: inputs.frontrunner.map(|(node, _)| node),
            frontrunner_attacks: inputs.attacks,
            frontrunner_profit,
            victims: slippages.len() as u64,
            victim_slippage_bps,
            lane_latency_ms: inputs
                .lanes
                .iter()
                .map(|(name, l)| {
                    (
                        name.clone(),
                        LaneLatency { p50: ms(l.p50_ns), p99: ms(l.p99_ns), count: l.count },
                    )
                })
                .collect(),
            block_txs,
            block_share: counts.into_iter().map(|(k, n)| (k, n as f64 / total)).collect(),
        }
    }
}
