//! Priority lanes for the market: which block space each kind of order gets.
//!
//! Four lanes, in this order:
//! 1. **liquidations**: any order of an account whose genesis role is
//!    [`Liquidator`](crate::AccountRole::Liquidator);
//! 2. **cancels**: cancel and cancel-all (they only reduce risk);
//! 3. **high-value**: new orders whose notional (limit or worst price × lots × tick) is at least
//!    [`Priority::high_value_notional`];
//! 4. **ordinary**: everything else (and anything that does not decode).
//!
//! Each lane has a weight and a guaranteed minimum share of every block (see
//! [`agora_consensus::LanedMempool`]); market makers get a larger turn inside their lane. The
//! lanes decide which transactions get into a block and in what order they are listed; the
//! market's [`ExecutionOrder`](crate::ExecutionOrder) decides the order they execute
//! in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agora_consensus::{Classifier, LanePolicy, LaneSpec};
use agora_crypto::PublicKeyBytes;
use agora_types::{Transaction, codec};

use crate::{AccountRole, MarketGenesis, OrderAction};

/// The lanes' names, in lane order.
pub const LANES: [&str; 4] = ["liquidations", "cancels", "high_value", "ordinary"];

/// One lane's share: its weight and its guaranteed minimum fraction of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneShare {
    /// Weight for the space left after the minimums.
    pub weight: u32,
    /// Guaranteed fraction of a block (0 to 1) while the lane has transactions.
    pub min_share: f64,
}

/// The market's priority settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Priority {
    /// Shares of the four lanes, in [`LANES`] order.
    pub lanes: [LaneShare; 4],
    /// A new order is high-value from this notional on (quote units).
    pub high_value_notional: u64,
    /// A market maker's turn inside a lane (everyone else has 1).
    pub market_maker_weight: u32,
}

impl Default for Priority {
    /// Liquidations weight 8 with at least 20% of a block, cancels 4 / 10%, high-value 2 / 10%,
    /// ordinary 1 / 10%; high-value from 150,000 quote units; market makers' turn 2.
    fn default() -> Self {
        let share = |weight, min_share| LaneShare { weight, min_share };
        Self {
            lanes: [share(8, 0.2), share(4, 0.1), share(2, 0.1), share(1, 0.1)],
            high_value_notional: 150_000,
            market_maker_weight: 2,
        }
    }
}

impl Priority {
    /// Parses lane overrides on top of the defaults: `default`, or a comma-separated list of
    /// `LANE=WEIGHT:MIN_SHARE` (`ordinary=1:0.15,liquidations=10:0.3`), lanes named as in
    /// [`LANES`] (`high-value` is accepted too).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut p = Self::default();
        if spec.trim() == "default" {
            return Ok(p);
        }
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let err = || format!("bad lane share {item:?}: expected LANE=WEIGHT:MIN_SHARE");
            let (lane, share) = item.split_once('=').ok_or_else(err)?;
            let lane = lane.trim().replace('-', "_");
            let index = LANES
                .iter()
                .position(|l| *l == lane)
                .ok_or_else(|| format!("unknown lane {lane:?}; lanes are {}", LANES.join(", ")))?;
            let (weight, min) = share.split_once(':').ok_or_else(err)?;
            let weight: u32 = weight.trim().parse().map_err(|_| err())?;
            let min_share: f64 = min.trim().parse().map_err(|_| err())?;
            if weight == 0 || !(0.0..=1.0).contains(&min_share) {
                return Err(format!(
                    "lane {lane}: the weight must be at least 1 and the minimum share in [0, 1]"
                ));
            }
            p.lanes[index] = LaneShare { weight, min_share };
        }
        let total: f64 = p.lanes.iter().map(|l| l.min_share).sum();
        if total > 1.0 + 1e-9 {
            return Err(format!("the lanes' minimum shares add up to {total}, more than 1"));
        }
        Ok(p)
    }

    /// The mempool policy for `genesis`: the four lanes, market makers' turns.
    pub fn policy(&self, genesis: &MarketGenesis) -> LanePolicy {
        LanePolicy {
            lanes: LANES
                .iter()
                .zip(self.lanes)
                .map(|(name, s)| LaneSpec {
                    name: (*name).into(),
                    weight: s.weight,
                    min_share: s.min_share,
                })
                .collect(),
            account_weights: genesis
                .accounts
                .iter()
                .filter(|a| a.role == AccountRole::MarketMaker)
                .map(|a| (a.key, self.market_maker_weight.max(1)))
                .collect(),
        }
    }

    /// The classifier for `genesis`: the lane of each transaction.
    pub fn classifier(&self, genesis: &MarketGenesis) -> Classifier {
        let lanes = Lanes::new(self, genesis);
        Box::new(move |tx| lanes.lane(tx))
    }
}

/// What classifying needs: the liquidators' keys, the markets' ticks and the threshold.
#[derive(Debug, Clone)]
pub struct Lanes {
    liquidators: Arc<BTreeSet<PublicKeyBytes>>,
    ticks: Arc<BTreeMap<String, u64>>,
    high_value_notional: u64,
}

impl Lanes {
    /// The lanes of `priority` over `genesis`.
    pub fn new(priority: &Priority, genesis: &MarketGenesis) -> Self {
        Self {
            liquidators: Arc::new(
                genesis
                    .accounts
                    .iter()
                    .filter(|a| a.role == AccountRole::Liquidator)
                    .map(|a| a.key)
                    .collect(),
            ),
            ticks: Arc::new(genesis.markets.iter().map(|m| (m.market.clone(), m.tick)).collect()),
            high_value_notional: priority.high_value_notional,
        }
    }

    /// The lane (index into [`LANES`]) of `tx`.
    pub fn lane(&self, tx: &Transaction) -> usize {
        if self.liquidators.contains(tx.sender()) {
            return 0;
        }
        match codec::decode::<OrderAction>(tx.payload()) {
            Ok(OrderAction::Cancel { .. } | OrderAction::CancelAll { .. }) => 1,
            Ok(OrderAction::Place { market, price: Some(price), qty, .. }) => {
                let tick = self.ticks.get(&market).copied().unwrap_or(1);
                let notional = u128::from(price) * u128::from(qty) * u128::from(tick);
                if notional >= u128::from(self.high_value_notional) { 2 } else { 3 }
            }
            _ => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_overrides_defaults_and_refuses_nonsense() {
        let p = Priority::parse("ordinary=3:0.25, high-value=5:0").unwrap();
        assert_eq!(p.lanes[3], LaneShare { weight: 3, min_share: 0.25 });
        assert_eq!(p.lanes[2], LaneShare { weight: 5, min_share: 0.0 });
        assert_eq!(p.lanes[0], Priority::default().lanes[0]);
        assert_eq!(Priority::parse("default").unwrap(), Priority::default());
        for bad in ["ordinary", "fast=1:0.1", "ordinary=0:0.1", "ordinary=1:2", "cancels=1:x"] {
            assert!(Priority::parse(bad).is_err(), "{bad}");
        }
        assert!(Priority::parse("ordinary=1:0.6,cancels=1:0.5").is_err(), "minimums over 1");
    }
}
