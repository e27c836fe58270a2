use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC. The one time unit inside MiniTrue.
pub type TimestampNs = i64;

/// A half-open-free, inclusive time range `[start, end]` in nanoseconds.
///
/// Inclusive on both ends so that `TimeRange::ALL` covers every representable instant and
/// SQL predicates (`>=`, `<=`, `<` as `end - 1`) map onto it without overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: TimestampNs,
    pub end: TimestampNs,
}

impl TimeRange {
    /// Every instant.
    pub const ALL: TimeRange = TimeRange { start: i64::MIN, end: i64::MAX };

    /// `[start, end]`; an empty range when `start > end`.
    pub const fn new(start: TimestampNs, end: TimestampNs) -> Self {
        TimeRange { start, end }
    }

    pub const fn is_empty(&self) -> bool {
        self.start > self.end
    }

    pub const fn contains(&self, t: TimestampNs) -> bool {
        self.start <= t && t <= self.end
    }

    /// True when the two ranges share at least one instant.
    pub const fn overlaps(&self, other: &TimeRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start <= other.end && other.start <= self.end
    }

    /// True when every instant of `other` lies in `self`.
    pub const fn covers(&self, other: &TimeRange) -> bool {
        other.is_empty() || (self.start <= other.start && other.end <= self.end)
    }

    pub fn intersect(&self, other: &TimeRange) -> TimeRange {
        TimeRange { start: self.start.max(other.start), end: self.end.min(other.end) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_and_cover() {
        let a = TimeRange::new(10, 20);
        assert!(a.overlaps(&TimeRange::new(20, 30)));
        assert!(!a.overlaps(&TimeRange::new(21, 30)));
        assert!(TimeRange::ALL.covers(&a));
        assert!(!a.covers(&TimeRange::new(5, 15)));
        assert!(TimeRange::new(5, 4).is_empty());
        assert!(!TimeRange::new(5, 4).overlaps(&a));
        assert_eq!(a.intersect(&TimeRange::new(15, 40)), TimeRange::new(15, 20));
    }
}
