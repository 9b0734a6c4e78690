//! Agents that trade: each has a key and an account, signs its own orders with increasing
//! nonces, and submits them to its local replica. A public fair price follows a random walk
//! drawn from the seed.
//!
//! - Random traders and the liquidator act on their own schedule (open loop): their orders
//!   are generated up front.
//! - Market makers close the loop through [`agora_netsim::ClientHook`]: after each block their
//!   replica finalizes, they look at their quotes in that replica's book (finalized state
//!   only) and, when a quote was filled or the fair price has moved, cancel and re-quote.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_crypto::{PublicKeyBytes, SecretKey};
use agora_market::{AccountRole, GenesisAccount, MarketApp, MarketGenesis, OrderAction};
use agora_netsim::ClientHook;
use agora_orderbook::{AccountId, MarketSpec, OrderType, SelfTrade, Side, TimeInForce};
use agora_types::{Block, NodeId, Transaction};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The market the agents trade in.
pub const MARKET: &str = "ETH-USD";

/// Who trades, and how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentsConfig {
    /// Random traders (limit, market, cancel, amend).
    pub traders: usize,
    /// Market makers quoting both sides.
    pub market_makers: usize,
    /// Liquidators sending urgent market orders.
    pub liquidators: usize,
    /// Orders per simulated second of each trader.
    pub trader_rate: f64,
    /// Market makers place their first quotes at a random time within this many nanoseconds
    /// (after that they re-quote on fills and price moves they see finalized).
    pub quote_every_ns: u64,
    /// Orders stop at this time.
    pub end_ns: u64,
    /// The fraction of traders' orders that are large market orders (60 to 120 lots, up to
    /// 30 ticks through the fair price): the orders a front-runner preys on. 0 by default.
    pub large_orders: f64,
    /// One more funded account, with no orders of its own, for a front-running node to
    /// trade from ([`frontrunner_key`]).
    pub frontrunner: bool,
}

/// Lots of the smallest of the traders' large orders.
pub const LARGE_ORDER_LOTS: u64 = 60;

/// The signing key of agent `index` of the run with `seed` (traders first, then market
/// makers, liquidators and the front-runner's account).
pub fn agent_key(seed: u64, index: usize) -> SecretKey {
    SecretKey::from_seed(seed ^ 0x6d61_726b_6574, index as u64) // "market"
}

/// The key of the front-runner's account, when `config.frontrunner` is set.
pub fn frontrunner_key(config: &AgentsConfig, seed: u64) -> SecretKey {
    agent_key(seed, config.traders + config.market_makers + config.liquidators)
}

/// One agent transaction: when, to which replica, what.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Simulated time.
    pub at_ns: u64,
    /// The agent's local replica.
    pub node: NodeId,
    /// The signed order.
    pub tx: Transaction,
}

struct Agent {
    key: SecretKey,
    nonce: u64,
    next_id: u64,
    open: Vec<u64>,
    node: NodeId,
}

impl Agent {
    fn sign(&mut self, at_ns: u64, action: &OrderAction) -> Submission {
        let tx =
            Transaction::new_signed(&self.key, self.nonce, action.encode()).expect("small payload");
        self.nonce += 1;
        Submission { at_ns, node: self.node, tx }
    }
}

fn limit(id: u64, side: Side, price: u64, qty: u64, tif: TimeInForce) -> OrderAction {
    OrderAction::Place {
        market: MARKET.into(),
        id,
        side,
        order_type: OrderType::Limit,
        tif,
        price: Some(price),
        qty,
        budget: None,
        stp: SelfTrade::CancelResting,
    }
}

/// An immediate-or-cancel market order for `qty` lots, at worst `worst`.
pub fn market_order(id: u64, side: Side, worst: u64, qty: u64) -> OrderAction {
    OrderAction::Place {
        market: MARKET.into(),
        id,
        side,
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        price: Some(worst),
        qty,
        budget: None,
        stp: SelfTrade::CancelResting,
    }
}

/// Lots per market-maker quote.
pub const QUOTE_LOTS: u64 = 50;

/// The fair price (ticks) at a time, from a random walk with one step per 10 ms.
#[derive(Debug, Clone)]
pub struct FairPrice(Vec<u64>);

impl FairPrice {
    /// The fair price at `t_ns`.
    pub fn at(&self, t_ns: u64) -> u64 {
        self.0[((t_ns / 10_000_000) as usize).min(self.0.len() - 1)]
    }
}

/// The market makers, reacting to what their replicas finalize.
pub struct MarketMakers {
    makers: Vec<Maker>,
    fair: FairPrice,
    end_ns: u64,
    requotes: Arc<AtomicU64>,
}

struct Maker {
    agent: Agent,
    account: AccountId,
    spread: u64,
    /// The ids of the live bid and ask, and the fair price they were made at.
    quotes: Option<(u64, u64, u64)>,
    /// The nonce of the last transaction of a quote not yet seen final.
    waiting_for: Option<u64>,
}

impl Maker {
    /// Cancel everything, then a post-only bid and ask around `mid`.
    fn quote(&mut self, at_ns: u64, mid: u64, out: &mut Vec<Submission>) {
        out.push(self.agent.sign(at_ns, &OrderAction::CancelAll { market: Some(MARKET.into()) }));
        let (bid, ask) = (self.agent.next_id, self.agent.next_id + 1);
        self.agent.next_id += 2;
        let (low, high) = (mid.saturating_sub(self.spread).max(1), mid + self.spread);
        out.push(
            self.agent.sign(at_ns, &limit(bid, Side::Buy, low, QUOTE_LOTS, TimeInForce::PostOnly)),
        );
        out.push(
            self.agent
                .sign(at_ns, &limit(ask, Side::Sell, high, QUOTE_LOTS, TimeInForce::PostOnly)),
        );
        self.quotes = Some((bid, ask, mid));
        self.waiting_for = Some(self.agent.nonce - 1);
    }
}

impl std::fmt::Debug for MarketMakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketMakers").field("makers", &self.makers.len()).finish()
    }
}

impl MarketMakers {
    /// Counts the re-quotes made after the first quotes (shared, to read after a run).
    pub fn requotes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.requotes)
    }
}

impl ClientHook<MarketApp> for MarketMakers {
    fn on_commit(
        &mut self,
        now_ns: u64,
        node: NodeId,
        block: &Block,
        market: &MarketApp,
        submit: &mut Vec<(u64, NodeId, Transaction)>,
    ) {
        let mid = self.fair.at(now_ns);
        let mut out = Vec::new();
        for maker in self.makers.iter_mut().filter(|m| m.agent.node == node) {
            let me = PublicKeyBytes::from(maker.agent.key.public_key());
            if let Some(n) = maker.waiting_for {
                // Until its last quote is final here, the maker's view of its quotes is stale.
                if !block.batch().transactions().iter().any(|t| *t.sender() == me && t.nonce() == n)
                {
                    continue;
                }
                maker.waiting_for = None;
            }
            let Some((bid, ask, quoted_at)) = maker.quotes else { continue };
            let ex = market.exchange();
            let filled =
                |id| ex.order(MARKET, maker.account, id).is_none_or(|o| o.qty < QUOTE_LOTS);
            if now_ns < self.end_ns && (filled(bid) || filled(ask) || mid.abs_diff(quoted_at) >= 3)
            {
                maker.quote(now_ns + 1_000_000, mid, &mut out);
                self.requotes.fetch_add(1, Ordering::Relaxed);
            }
        }
        submit.extend(out.into_iter().map(|s| (s.at_ns, s.node, s.tx)));
    }
}

/// The genesis (market and funded accounts), the open-loop agents' transactions (with the
/// market makers' first quotes) in time order, and the market makers for the client hook.
pub fn generate(
    config: &AgentsConfig,
    seed: u64,
    nodes: usize,
) -> (MarketGenesis, Vec<Submission>, MarketMakers) {
    generate_from(config, seed, nodes, 0)
}

/// [`generate`] with every agent's nonces starting at `first_nonce`: a later run against the
/// same genesis (a testnet run again) signs transactions the market has not seen.
pub fn generate_from(
    config: &AgentsConfig,
    seed: u64,
    nodes: usize,
    first_nonce: u64,
) -> (MarketGenesis, Vec<Submission>, MarketMakers) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6167_656e_7473); // "agents"
    let count = config.traders
        + config.market_makers
        + config.liquidators
        + usize::from(config.frontrunner);
    let mut agents: Vec<Agent> = (0..count)
        .map(|i| Agent {
            key: agent_key(seed, i),
            nonce: first_nonce,
            next_id: 1,
            open: Vec::new(),
            node: NodeId((i % nodes.max(1)) as u16),
        })
        .collect();
    let genesis = genesis_of(config, &agents);
    // The fair price: a random walk in ticks, one step per 10 ms.
    let fair = fair_walk(config, &mut rng);
    let fair_at = |t: u64| fair.at(t);
    let mut out = Vec::new();
    let (traders, makers) = (config.traders, config.market_makers);
    // Random traders: limits near the fair price, market orders, cancels and amends.
    for agent in agents.iter_mut().take(traders) {
        trade(agent, config, &fair_at, &mut rng, &mut out);
    }
    // Liquidators: urgent market sells (or buys) of larger size, about once a second.
    for l in 0..config.liquidators {
        liquidate(&mut agents[traders + makers + l], config, &fair_at, &mut rng, &mut out);
    }
    // Market makers: their first quotes now; after that they react to what is final.
    let makers: Vec<Maker> = agents
        .drain(traders..traders + makers)
        .enumerate()
        .map(|(m, agent)| Maker {
            account: AccountId((traders + m) as u64 + 1),
            agent,
            spread: 1 + m as u64,
            quotes: None,
            waiting_for: None,
        })
        .collect();
    let mut makers = MarketMakers {
        makers,
        fair: fair.clone(),
        end_ns: config.end_ns,
        requotes: Arc::new(AtomicU64::new(0)),
    };
    for maker in &mut makers.makers {
        let at = 1_000_000 + rng.random_range(0..config.quote_every_ns.max(1));
        let mid = makers.fair.at(at);
        maker.quote(at, mid, &mut out);
    }
    out.sort_by_key(|s| (s.at_ns, s.node, s.tx.id()));
    (genesis, out, makers)
}

/// The genesis of a run's agents: one market, and every agent funded, in the order traders,
/// market makers, liquidators, then the front-runner (a trader's role).
fn genesis_of(config: &AgentsConfig, agents: &[Agent]) -> MarketGenesis {
    MarketGenesis {
        markets: vec![MarketSpec {
            maker_fee_bps: -1,
            taker_fee_bps: 5,
            ..MarketSpec::new(MARKET, "ETH", "USD")
        }],
        accounts: agents
            .iter()
            .enumerate()
            .map(|(i, a)| GenesisAccount {
                key: PublicKeyBytes::from(a.key.public_key()),
                account: AccountId(i as u64 + 1),
                deposits: vec![("USD".into(), 1_000_000_000), ("ETH".into(), 1_000_000)],
                role: if i < config.traders {
                    AccountRole::Trader
                } else if i < config.traders + config.market_makers {
                    AccountRole::MarketMaker
                } else if i < config.traders + config.market_makers + config.liquidators {
                    AccountRole::Liquidator
                } else {
                    AccountRole::Trader
                },
            })
            .collect(),
    }
}

/// The fair price: a random walk in ticks between 1,000 and 3,000, one step per 10 ms.
fn fair_walk(config: &AgentsConfig, rng: &mut ChaCha8Rng) -> FairPrice {
    let steps = (config.end_ns / 10_000_000) as usize + 1;
    let mut fair = Vec::with_capacity(steps);
    let mut p: i64 = 2_000;
    for _ in 0..steps {
        p = (p + rng.random_range(-2..=2)).clamp(1_000, 3_000);
        fair.push(p as u64);
    }
    FairPrice(fair)
}

/// A random trader's order flow: limits near the fair price, market orders (some large),
/// cancels and amends, as a Poisson process at the trader rate.
fn trade(
    agent: &mut Agent,
    config: &AgentsConfig,
    fair_at: &impl Fn(u64) -> u64,
    rng: &mut ChaCha8Rng,
    out: &mut Vec<Submission>,
) {
    let mut t = 0.0f64;
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() * 1e9 / config.trader_rate.max(1e-9);
        let at = t as u64;
        if at >= config.end_ns {
            break;
        }
        let mid = fair_at(at);
        let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        if config.large_orders > 0.0 && rng.random_bool(config.large_orders.min(1.0)) {
            let id = agent.next_id;
            agent.next_id += 1;
            let worst = match side {
                Side::Buy => mid + 30,
                Side::Sell => mid.saturating_sub(30).max(1),
            };
            let qty = rng.random_range(LARGE_ORDER_LOTS..=2 * LARGE_ORDER_LOTS);
            out.push(agent.sign(at, &market_order(id, side, worst, qty)));
            continue;
        }
        let action = match rng.random_range(0..100) {
            0..=54 => {
                let offset = rng.random_range(0..8);
                let price = if side == Side::Buy { mid - offset } else { mid + offset };
                let id = agent.next_id;
                agent.next_id += 1;
                agent.open.push(id);
                limit(id, side, price.max(1), rng.random_range(1..20), TimeInForce::Gtc)
            }
            55..=69 => {
                let id = agent.next_id;
                agent.next_id += 1;
                let worst = match side {
                    Side::Buy => mid + 10,
                    Side::Sell => mid.saturating_sub(10).max(1),
                };
                market_order(id, side, worst, rng.random_range(1..10))
            }
            70..=84 if !agent.open.is_empty() => {
                let id = agent.open.swap_remove(rng.random_range(0..agent.open.len()));
                OrderAction::Cancel { market: MARKET.into(), id }
            }
            _ if !agent.open.is_empty() => {
                let id = agent.open[rng.random_range(0..agent.open.len())];
                OrderAction::Amend {
                    market: MARKET.into(),
                    id,
                    price: None,
                    qty: Some(rng.random_range(1..20)),
                }
            }
            _ => continue,
        };
        out.push(agent.sign(at, &action));
    }
}

/// A liquidator's flow: urgent market sells (or buys) of larger size, about once a second.
fn liquidate(
    agent: &mut Agent,
    config: &AgentsConfig,
    fair_at: &impl Fn(u64) -> u64,
    rng: &mut ChaCha8Rng,
    out: &mut Vec<Submission>,
) {
    let mut t = 500_000_000 + rng.random_range(0..500_000_000);
    while t < config.end_ns {
        let mid = fair_at(t);
        let side = if rng.random_bool(0.7) { Side::Sell } else { Side::Buy };
        let id = agent.next_id;
        agent.next_id += 1;
        let worst = match side {
            Side::Buy => mid + 50,
            Side::Sell => mid.saturating_sub(50).max(1),
        };
        let action = market_order(id, side, worst, 100);
        out.push(agent.sign(t, &action));
        t += 700_000_000 + rng.random_range(0..600_000_000);
    }
}
