//! Who leads a round.

use agora_crypto::domain;
use agora_types::{NodeId, Round};

/// Chooses the leader of each round. Must be a pure function of the round, so every node agrees.
pub trait LeaderElection {
    /// The leader of `round`.
    fn leader(&self, round: Round) -> NodeId;
}

/// Round `r` is led by node `r mod n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundRobin {
    n: u16,
}

impl RoundRobin {
    /// Round robin over `n` nodes (`n ≥ 1`).
    pub fn new(n: u16) -> Self {
        assert!(n > 0, "a committee has at least one member");
        Self { n }
    }
}

impl LeaderElection for RoundRobin {
    fn leader(&self, round: Round) -> NodeId {
        NodeId((round.0 % u64::from(self.n)) as u16)
    }
}

/// The leader of round `r` is a public hash of `(seed, r)` reduced mod `n` (Streamlet's
/// default): unpredictable-looking but computable by everyone, so no node is favoured by the
/// schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashedLeader {
    n: u16,
    seed: u64,
}

impl HashedLeader {
    /// Hashed election over `n` nodes (`n ≥ 1`) with a public `seed`.
    pub fn new(n: u16, seed: u64) -> Self {
        assert!(n > 0, "a committee has at least one member");
        Self { n, seed }
    }
}

impl LeaderElection for HashedLeader {
    fn leader(&self, round: Round) -> NodeId {
        let digest = domain::LEADER.hasher().update_u64(self.seed).update_u64(round.0).finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest.as_bytes()[..8]);
        // The modulo bias is below 2^-48 for any committee size agora allows.
        NodeId((u64::from_le_bytes(word) % u64::from(self.n)) as u16)
    }
}

/// How a protocol's round leaders are chosen, as a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderRule {
    /// A public hash of the round number (and this seed), reduced mod n ([`HashedLeader`]):
    /// Streamlet's and Simplex's papers' choice.
    Hashed {
        /// Public seed of the hash.
        seed: u64,
    },
    /// Round `r` is led by node `r mod n` ([`RoundRobin`]).
    RoundRobin,
}

impl LeaderRule {
    /// The leader of `round` in a committee of `n`.
    pub fn leader(&self, n: u16, round: Round) -> NodeId {
        match *self {
            LeaderRule::Hashed { seed } => HashedLeader::new(n, seed).leader(round),
            LeaderRule::RoundRobin => RoundRobin::new(n).leader(round),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles() {
        let rr = RoundRobin::new(4);
        let leaders: Vec<u16> = (0..9).map(|r| rr.leader(Round(r)).0).collect();
        assert_eq!(leaders, vec![0, 1, 2, 3, 0, 1, 2, 3, 0]);
    }

    #[test]
    fn hashed_is_deterministic_in_range_and_spread() {
        let h = HashedLeader::new(7, 42);
        let mut counts = [0u32; 7];
        for r in 0..7_000 {
            let l = h.leader(Round(r));
            assert_eq!(l, h.leader(Round(r)));
            counts[l.index()] += 1;
        }
        // Each node leads roughly 1/7 of the rounds.
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        assert_ne!(
            (0..20).map(|r| h.leader(Round(r))).collect::<Vec<_>>(),
            (0..20).map(|r| HashedLeader::new(7, 43).leader(Round(r))).collect::<Vec<_>>()
        );
    }
}
