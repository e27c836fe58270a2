//! Ring positions of series, and sets of them.
//!
//! A series sits on a 64-bit ring at the xxHash64 (seed 0) of `"{device_id}:{metric}"` (the
//! seed's key). The hash is fixed by its specification, so every node, build and platform
//! puts a series at the same place. The cluster's ring splits the ring into ranges; a
//! distributed query tells each node which ranges it answers for as a [`TokenSet`], and the
//! node's scans keep only the series inside it.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

/// A position on the ring.
pub type Token = u64;

/// The ring position of the series `(device_id, metric)`.
pub fn series_token(device_id: &str, metric: &str) -> Token {
    let mut hasher = XxHash64::with_seed(0);
    std::hash::Hasher::write(&mut hasher, device_id.as_bytes());
    std::hash::Hasher::write(&mut hasher, b":");
    std::hash::Hasher::write(&mut hasher, metric.as_bytes());
    std::hash::Hasher::finish(&hasher)
}

/// A set of ring positions: sorted, disjoint, non-adjacent inclusive intervals `[lo, hi]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenSet {
    intervals: Vec<(Token, Token)>,
}

impl TokenSet {
    /// Every position.
    pub fn all() -> TokenSet {
        TokenSet { intervals: vec![(0, Token::MAX)] }
    }

    /// No position.
    pub fn empty() -> TokenSet {
        TokenSet { intervals: Vec::new() }
    }

    /// The ring range `(start, end]`, wrapping past `Token::MAX` when `end <= start`
    /// (`start == end` is the whole ring: a ring with one token).
    pub fn range(start: Token, end: Token) -> TokenSet {
        if start == end {
            return TokenSet::all();
        }
        let mut intervals = Vec::with_capacity(2);
        if start < end {
            intervals.push((start + 1, end));
        } else {
            intervals.push((0, end));
            if start < Token::MAX {
                intervals.push((start + 1, Token::MAX));
            }
        }
        TokenSet::from_intervals(intervals)
    }

    /// The union of inclusive intervals given in any order (an interval with `lo > hi` is
    /// empty).
    pub fn from_intervals(intervals: impl IntoIterator<Item = (Token, Token)>) -> TokenSet {
        let mut sorted: Vec<(Token, Token)> =
            intervals.into_iter().filter(|(lo, hi)| lo <= hi).collect();
        sorted.sort_unstable();
        let mut merged: Vec<(Token, Token)> = Vec::with_capacity(sorted.len());
        for (lo, hi) in sorted {
            match merged.last_mut() {
                // Overlapping or adjacent: one interval.
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        TokenSet { intervals: merged }
    }

    /// The intervals, ascending.
    pub fn intervals(&self) -> &[(Token, Token)] {
        &self.intervals
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    pub fn is_all(&self) -> bool {
        self.intervals == [(0, Token::MAX)]
    }

    pub fn contains(&self, token: Token) -> bool {
        let after = self.intervals.partition_point(|&(lo, _)| lo <= token);
        after > 0 && token <= self.intervals[after - 1].1
    }

    /// Whether the series `(device_id, metric)` is in the set.
    pub fn contains_series(&self, device_id: &str, metric: &str) -> bool {
        self.is_all() || self.contains(series_token(device_id, metric))
    }

    pub fn union(&self, other: &TokenSet) -> TokenSet {
        TokenSet::from_intervals(self.intervals.iter().chain(&other.intervals).copied())
    }

    pub fn intersection(&self, other: &TokenSet) -> TokenSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.intervals.len() && j < other.intervals.len() {
            let (a_lo, a_hi) = self.intervals[i];
            let (b_lo, b_hi) = other.intervals[j];
            let (lo, hi) = (a_lo.max(b_lo), a_hi.min(b_hi));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        TokenSet { intervals: out }
    }

    /// The fraction of the ring the set covers.
    pub fn share(&self) -> f64 {
        let positions: f64 = self.intervals.iter().map(|(lo, hi)| (hi - lo) as f64 + 1.0).sum();
        positions / 2f64.powi(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_wrap_and_a_single_token_ring_is_everything() {
        assert_eq!(TokenSet::range(10, 20).intervals(), &[(11, 20)]);
        assert_eq!(TokenSet::range(20, 10).intervals(), &[(0, 10), (21, Token::MAX)]);
        assert_eq!(TokenSet::range(Token::MAX, 5).intervals(), &[(0, 5)]);
        assert!(TokenSet::range(7, 7).is_all());
        let wrapped = TokenSet::range(20, 10);
        assert!(wrapped.contains(0) && wrapped.contains(10) && wrapped.contains(Token::MAX));
        assert!(!wrapped.contains(11) && !wrapped.contains(20));
    }

    #[test]
    fn adjacent_ranges_merge_into_one_interval() {
        let set = TokenSet::range(0, 10).union(&TokenSet::range(10, 20));
        assert_eq!(set.intervals(), &[(1, 20)]);
        let ring = TokenSet::range(5, 100).union(&TokenSet::range(100, 5));
        assert!(ring.is_all());
        assert!((ring.share() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_series_key_hash_is_fixed() {
        // xxHash64 of "sensor_01:temperature" with seed 0: a change here moves every series.
        assert_eq!(series_token("sensor_01", "temperature"), {
            let mut h = XxHash64::with_seed(0);
            std::hash::Hasher::write(&mut h, b"sensor_01:temperature");
            std::hash::Hasher::finish(&h)
        });
    }

    fn token_set() -> impl Strategy<Value = TokenSet> {
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..6).prop_map(|pairs| {
            TokenSet::from_intervals(pairs.into_iter().map(|(a, b)| (a.min(b), a.max(b))))
        })
    }

    proptest! {
        #[test]
        fn set_operations_agree_with_membership(a in token_set(), b in token_set(), probes in proptest::collection::vec(any::<u64>(), 32)) {
            let union = a.union(&b);
            let both = a.intersection(&b);
            let edges = a.intervals().iter().chain(b.intervals()).flat_map(|&(lo, hi)| {
                [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]
            });
            for token in probes.into_iter().chain(edges) {
                prop_assert_eq!(union.contains(token), a.contains(token) || b.contains(token));
                prop_assert_eq!(both.contains(token), a.contains(token) && b.contains(token));
            }
            // Canonical form: sorted, disjoint, not adjacent.
            for set in [&union, &both] {
                for pair in set.intervals().windows(2) {
                    prop_assert!(pair[0].1.saturating_add(1) < pair[1].0);
                }
            }
        }
    }
}
