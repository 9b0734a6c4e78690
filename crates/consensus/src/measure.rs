//! What drivers measure the same way: latency percentiles over a run's samples.

use serde::Serialize;

/// Latency percentiles over a set of samples, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

impl LatencySummary {
    /// Percentiles of `samples` (nearest-rank; sorts in place).
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Self {
            count: samples.len() as u64,
            p50_ns: rank(0.50),
            p99_ns: rank(0.99),
            max_ns: samples[samples.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=100).collect();
        let l = LatencySummary::of(&mut s);
        assert_eq!((l.count, l.p50_ns, l.p99_ns, l.max_ns), (100, 50, 99, 100));
        assert_eq!(LatencySummary::of(&mut []), LatencySummary::default());
        let l = LatencySummary::of(&mut [7]);
        assert_eq!((l.p50_ns, l.p99_ns, l.max_ns), (7, 7, 7));
    }
}
