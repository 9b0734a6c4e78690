//! What a market run says about fairness: what a front-runner earned, what large orders paid,
//! how long each priority lane waited, and who got the block space.

use std::collections::BTreeMap;

use agora_crypto::PublicKeyBytes;
use agora_netsim::LatencySummary;
use agora_orderbook::AccountId;
use serde::Serialize;

use crate::market::{AccountRole, MarketApp, MarketGenesis, agents};

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

/// What [`Fairness::measure`] needs besides the replica.
pub struct FairnessInputs<'a> {
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
    /// Measures a finished run from one honest replica's market.
    pub fn measure(app: &MarketApp, inputs: &FairnessInputs<'_>) -> Self {
        let frontrunner_account = inputs.frontrunner.and_then(|(_, key)| {
            inputs.genesis.accounts.iter().find(|a| a.key == key).map(|a| a.account)
        });
        let market = agents::MARKET;
        let ex = app.exchange();
        let frontrunner_profit = match frontrunner_account {
            Some(account) => {
                let genesis = inputs.genesis.accounts.iter().find(|a| a.account == account);
                let initial = |asset: &str| {
                    genesis
                        .and_then(|g| g.deposits.iter().find(|(a, _)| a == asset))
                        .map_or(0, |(_, amount)| *amount)
                };
                let now = |asset: &str| {
                    let b = ex.balance(account, asset);
                    b.available + b.held
                };
                let mid = app.mid(market).unwrap_or(0) as f64;
                let quote = now("USD") as f64 - initial("USD") as f64;
                let base = now("ETH") as f64 - initial("ETH") as f64;
                quote + base * mid
            }
            None => 0.0,
        };
        let slippages: Vec<f64> = app
            .watched()
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
        for (account, n) in app.block_space() {
            *counts.entry(class(account).to_owned()).or_default() += n;
        }
        let block_txs = counts.values().sum::<u64>();
        let total = block_txs.max(1) as f64;
        let ms = |ns: u64| ns as f64 / 1e6;
        Self {
            ordering: app.order().name(),
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
