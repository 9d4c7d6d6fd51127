//! The probe's log-linear histogram: exact below 128 ns, then 128 buckets
//! per power of two, so any value is within 0.4% of its bucket's midpoint.
//! The bucket math here mirrors `bucket_of()` in `probe.bpf.c`; the tests
//! check the precision claim. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const SUB_BITS: u32 = 7;
pub const SUB: u64 = 1 << SUB_BITS;
pub const NR_OCTAVES: u64 = 37;
pub const NR_BUCKETS: usize = (SUB + NR_OCTAVES * SUB) as usize;

/// The bucket a value (ns) falls in.
pub fn bucket_of(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let e = 63 - u64::from(ns.leading_zeros());
    let idx =
        SUB + (e - u64::from(SUB_BITS)) * SUB + ((ns >> (e - u64::from(SUB_BITS))) & (SUB - 1));
    (idx as usize).min(NR_BUCKETS - 1)
}

/// The values a bucket holds: `lo..=hi` (ns).
pub fn bucket_range(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < SUB {
        return (idx, idx);
    }
    let octave = (idx - SUB) / SUB;
    let sub = (idx - SUB) % SUB;
    let shift = octave;
    let lo = (SUB + sub) << shift;
    let hi = lo + (1u64 << shift) - 1;
    (lo, hi)
}

/// The value reported for a bucket: its midpoint.
pub fn bucket_value(idx: usize) -> u64 {
    let (lo, hi) = bucket_range(idx);
    lo + (hi - lo) / 2
}

/// A histogram of durations, kept sparse (bucket index -> count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: BTreeMap<usize, u64>,
}

impl Histogram {
    pub fn from_counts(counts: &[u64]) -> Histogram {
        Histogram {
            buckets: counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i, *c))
                .collect(),
        }
    }

    pub fn record(&mut self, ns: u64) {
        *self.buckets.entry(bucket_of(ns)).or_default() += 1;
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (idx, c) in &other.buckets {
            *self.buckets.entry(*idx).or_default() += c;
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket that
    /// holds the ceil(q * count)-th smallest value. None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_value(*idx)));
            }
        }
        None
    }

    /// Points of the cumulative distribution: (value ns, fraction <= it).
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let n = self.count() as f64;
        let mut seen = 0u64;
        self.buckets
            .iter()
            .map(|(idx, c)| {
                seen += c;
                (bucket_value(*idx), seen as f64 / n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_exactly_once_and_in_order() {
        let mut prev_hi = None;
        for idx in 0..NR_BUCKETS {
            let (lo, hi) = bucket_range(idx);
            assert!(lo <= hi);
            if let Some(p) = prev_hi {
                assert_eq!(lo, p + 1, "gap or overlap before bucket {idx}");
            }
            prev_hi = Some(hi);
            assert_eq!(bucket_of(lo), idx);
            assert_eq!(bucket_of(hi), idx);
        }
    }

    #[test]
    fn every_value_is_within_half_a_percent_of_its_bucket_value() {
        // Values from 1 ns to an hour, on a dense grid and at every edge.
        let mut v = 1u64;
        while v < 3_600_000_000_000 {
            for x in [v, v + 1, v.saturating_sub(1).max(1), v + v / 3] {
                let got = bucket_value(bucket_of(x)) as f64;
                let err = (got - x as f64).abs() / x as f64;
                assert!(
                    err <= 0.004,
                    "{x} ns reported as {got} ({:.3}%)",
                    err * 100.0
                );
            }
            v = v * 9 / 8 + 1;
        }
    }

    #[test]
    fn quantiles_of_known_data() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(ms * 1_000_000);
        }
        let close = |d: Duration, ms: u64| {
            let err = (d.as_nanos() as f64 - ms as f64 * 1e6).abs() / (ms as f64 * 1e6);
            assert!(err < 0.005, "{d:?} vs {ms} ms");
        };
        close(h.quantile(0.5).unwrap(), 50);
        close(h.quantile(0.99).unwrap(), 99);
        close(h.quantile(1.0).unwrap(), 100);
        close(h.quantile(0.0).unwrap(), 1);
        assert_eq!(h.count(), 100);
        assert_eq!(Histogram::default().quantile(0.5), None);
        let cdf = h.cdf();
        assert_eq!(cdf.last().unwrap().1, 1.0);
        assert_eq!(Histogram::from_counts(&[0, 2, 0, 1]).count(), 3);
    }
}
