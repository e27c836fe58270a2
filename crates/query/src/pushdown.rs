//! Translating `WHERE` predicates on `readings` into what a storage scan applies: a set of
//! device ids × a set of metrics × an inclusive time range (a [`ScanBounds`]).
//!
//! Each predicate DataFusion offers the provider is analysed into the smallest box that
//! contains every row it accepts, plus whether the box is *exact* (the predicate accepts
//! every row inside it). Exact predicates are reported as
//! [`TableProviderFilterPushDown::Exact`] and DataFusion drops its own filter; inexact ones
//! still prune the scan but DataFusion re-checks them above it.
//!
//! Recognised (after DataFusion's simplifier has folded constants such as
//! `now() - interval '1 hour'` and RFC 3339 string literals into timestamp literals):
//! * `time` `=`, `<`, `<=`, `>`, `>=` a timestamp literal (either side), `BETWEEN` two
//!   literals, `IN (…)` literals (inexact unless one value);
//! * `device_id` / `metric` `=` a string literal and `IN (…)` string literals;
//! * `IS NOT NULL` / `IS NULL` on any column (the columns are `NOT NULL`);
//! * `AND` of anything (exact when both sides are; an unrecognised side makes it inexact);
//! * `OR` of recognised predicates: exact when both sides are exact and differ in at most one
//!   dimension (e.g. `device_id = 'a' OR device_id = 'b'`, or overlapping time ranges),
//!   otherwise the bounding box, inexact.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, SecondsFormat};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use minitrue_common::{TimeRange, TimestampNs};
use minitrue_storage::SeriesFilter;

/// Columns of `readings`, by the index in [`minitrue_storage::readings_schema`].
pub(crate) const TIME: &str = "time";
pub(crate) const DEVICE_ID: &str = "device_id";
pub(crate) const METRIC: &str = "metric";
pub(crate) const VALUE: &str = "value";

/// A box of series × time that a storage scan applies exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBounds {
    /// `None`: any device.
    pub device_ids: Option<BTreeSet<String>>,
    /// `None`: any metric.
    pub metrics: Option<BTreeSet<String>>,
    pub time: TimeRange,
}

impl Default for ScanBounds {
    fn default() -> Self {
        ScanBounds::all()
    }
}

impl ScanBounds {
    /// Every row.
    pub fn all() -> Self {
        ScanBounds { device_ids: None, metrics: None, time: TimeRange::ALL }
    }

    /// True when no row can match.
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
            || self.device_ids.as_ref().is_some_and(BTreeSet::is_empty)
            || self.metrics.as_ref().is_some_and(BTreeSet::is_empty)
    }

    /// The rows in both boxes (exact).
    pub fn intersect(&self, other: &ScanBounds) -> ScanBounds {
        ScanBounds {
            device_ids: intersect_sets(&self.device_ids, &other.device_ids),
            metrics: intersect_sets(&self.metrics, &other.metrics),
            time: self.time.intersect(&other.time),
        }
    }

    /// The smallest box holding both, and whether it holds nothing else.
    fn union(&self, other: &ScanBounds) -> (ScanBounds, bool) {
        if self.is_empty() {
            return (other.clone(), true);
        }
        if other.is_empty() {
            return (self.clone(), true);
        }
        let same_devices = self.device_ids == other.device_ids;
        let same_metrics = self.metrics == other.metrics;
        let same_time = self.time == other.time;
        let differing =
            [same_devices, same_metrics, same_time].iter().filter(|same| !**same).count();
        let time_union_exact = same_time || ranges_touch(self.time, other.time);
        let bounding = ScanBounds {
            device_ids: union_sets(&self.device_ids, &other.device_ids),
            metrics: union_sets(&self.metrics, &other.metrics),
            time: TimeRange::new(
                self.time.start.min(other.time.start),
                self.time.end.max(other.time.end),
            ),
        };
        (bounding, differing <= 1 && time_union_exact)
    }

    /// The storage filter for these bounds.
    pub fn series_filter(&self) -> SeriesFilter {
        SeriesFilter {
            device_ids: self.device_ids.as_ref().map(|set| set.iter().cloned().collect()),
            metrics: self.metrics.as_ref().map(|set| set.iter().cloned().collect()),
            tokens: None,
        }
    }
}

impl ScanBounds {
    /// `device_id IN (a, b), metric=any`.
    pub fn series_display(&self) -> String {
        fn set(name: &str, values: &Option<BTreeSet<String>>) -> String {
            match values {
                None => format!("{name}=any"),
                Some(values) => {
                    let values: Vec<&str> = values.iter().map(String::as_str).collect();
                    format!("{name} IN ({})", values.join(", "))
                }
            }
        }
        format!("{}, {}", set(DEVICE_ID, &self.device_ids), set(METRIC, &self.metrics))
    }

    /// `[2024-01-01T00:00:00Z, +inf]` (inclusive bounds).
    pub fn time_display(&self) -> String {
        if self.time.is_empty() {
            return "empty".to_string();
        }
        format!(
            "[{}, {}]",
            format_bound(self.time.start, "-inf"),
            format_bound(self.time.end, "+inf")
        )
    }
}

impl fmt::Display for ScanBounds {
    /// `device_id IN (a, b), metric=any, time=[2024-01-01T00:00:00Z, +inf]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, time={}", self.series_display(), self.time_display())
    }
}

/// RFC 3339 in UTC with as many fractional digits as needed; `open` for the range ends.
pub(crate) fn format_bound(time: TimestampNs, open: &str) -> String {
    if time == i64::MIN || time == i64::MAX {
        return open.to_string();
    }
    DateTime::from_timestamp_nanos(time).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn intersect_sets(
    a: &Option<BTreeSet<String>>,
    b: &Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    match (a, b) {
        (None, None) => None,
        (Some(set), None) | (None, Some(set)) => Some(set.clone()),
        (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
    }
}

fn union_sets(
    a: &Option<BTreeSet<String>>,
    b: &Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.union(b).cloned().collect()),
        _ => None,
    }
}

/// True when the union of two non-empty inclusive ranges is itself a range.
fn ranges_touch(a: TimeRange, b: TimeRange) -> bool {
    let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
    second.start <= first.end.saturating_add(1)
}

/// What a predicate allows: the bounding box and whether it is exact.
type Analysis = (ScanBounds, bool);

/// How DataFusion should treat `expr` when pushed into a readings scan.
pub fn pushdown_support(expr: &Expr) -> TableProviderFilterPushDown {
    match analyze(expr) {
        Some((_, true)) => TableProviderFilterPushDown::Exact,
        Some((bounds, false)) if bounds != ScanBounds::all() => {
            TableProviderFilterPushDown::Inexact
        }
        _ => TableProviderFilterPushDown::Unsupported,
    }
}

/// The bounds all `filters` (ANDed) impose, and whether they are exactly those bounds.
pub fn bounds_of(filters: &[Expr]) -> (ScanBounds, bool) {
    let mut bounds = ScanBounds::all();
    let mut exact = true;
    for filter in filters {
        match analyze(filter) {
            Some((filter_bounds, filter_exact)) => {
                bounds = bounds.intersect(&filter_bounds);
                exact &= filter_exact;
            }
            None => exact = false,
        }
    }
    (bounds, exact)
}

/// The box `expr` allows, or `None` when it tells nothing about series or time.
pub(crate) fn analyze(expr: &Expr) -> Option<Analysis> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => match (analyze(left), analyze(right)) {
                (Some((a, a_exact)), Some((b, b_exact))) => {
                    Some((a.intersect(&b), a_exact && b_exact))
                }
                (Some((a, _)), None) | (None, Some((a, _))) => Some((a, false)),
                (None, None) => None,
            },
            Operator::Or => {
                let (a, a_exact) = analyze(left)?;
                let (b, b_exact) = analyze(right)?;
                let (bounds, union_exact) = a.union(&b);
                Some((bounds, a_exact && b_exact && union_exact))
            }
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                comparison(left, *op, right)
            }
            _ => None,
        },
        Expr::Between(Between { expr, negated: false, low, high }) => {
            if column_name(expr)? != TIME {
                return None;
            }
            let low = timestamp_literal(low)?;
            let high = timestamp_literal(high)?;
            Some((time_bounds(TimeRange::new(low, high)), true))
        }
        Expr::InList(in_list) if !in_list.negated => {
            let column = column_name(&in_list.expr)?;
            match column {
                DEVICE_ID | METRIC => {
                    let values: Option<BTreeSet<String>> =
                        in_list.list.iter().map(string_literal).collect();
                    Some((string_bounds(column, values?), true))
                }
                TIME => {
                    let mut result: Option<Analysis> = None;
                    for item in &in_list.list {
                        let t = timestamp_literal(item)?;
                        let point = time_bounds(TimeRange::new(t, t));
                        result = Some(match result {
                            None => (point, true),
                            Some((bounds, exact)) => {
                                let (union, union_exact) = bounds.union(&point);
                                (union, exact && union_exact)
                            }
                        });
                    }
                    result
                }
                _ => None,
            }
        }
        // Every column of readings is NOT NULL.
        Expr::IsNotNull(inner) => {
            column_name(inner)?;
            Some((ScanBounds::all(), true))
        }
        Expr::IsNull(inner) => {
            column_name(inner)?;
            Some((time_bounds(TimeRange::new(1, 0)), true))
        }
        _ => None,
    }
}

fn comparison(left: &Expr, op: Operator, right: &Expr) -> Option<Analysis> {
    let (column, op, literal) = match (column_name(left), column_name(right)) {
        (Some(column), None) => (column, op, right),
        (None, Some(column)) => (column, op.swap()?, left),
        _ => return None,
    };
    match column {
        TIME => {
            let t = timestamp_literal(literal)?;
            let range = match op {
                Operator::Eq => TimeRange::new(t, t),
                Operator::Gt => match t.checked_add(1) {
                    Some(start) => TimeRange::new(start, i64::MAX),
                    None => TimeRange::new(1, 0),
                },
                Operator::GtEq => TimeRange::new(t, i64::MAX),
                Operator::Lt => match t.checked_sub(1) {
                    Some(end) => TimeRange::new(i64::MIN, end),
                    None => TimeRange::new(1, 0),
                },
                Operator::LtEq => TimeRange::new(i64::MIN, t),
                _ => return None,
            };
            Some((time_bounds(range), true))
        }
        DEVICE_ID | METRIC if op == Operator::Eq => {
            let value = string_literal(literal)?;
            Some((string_bounds(column, BTreeSet::from([value])), true))
        }
        _ => None,
    }
}

fn time_bounds(time: TimeRange) -> ScanBounds {
    ScanBounds { time, ..ScanBounds::all() }
}

fn string_bounds(column: &str, values: BTreeSet<String>) -> ScanBounds {
    if column == DEVICE_ID {
        ScanBounds { device_ids: Some(values), ..ScanBounds::all() }
    } else {
        ScanBounds { metrics: Some(values), ..ScanBounds::all() }
    }
}

/// The readings column `expr` names, if it is a bare column reference.
fn column_name(expr: &Expr) -> Option<&'static str> {
    let Expr::Column(column) = expr else { return None };
    [TIME, DEVICE_ID, METRIC, VALUE].into_iter().find(|name| *name == column.name)
}

fn string_literal(expr: &Expr) -> Option<String> {
    let Expr::Literal(value, _) = expr else { return None };
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Dictionary(_, inner) => {
            string_literal(&Expr::Literal((**inner).clone(), None))
        }
        _ => None,
    }
}

/// A timestamp literal as nanoseconds since the epoch (UTC, whatever zone it displays in).
fn timestamp_literal(expr: &Expr) -> Option<TimestampNs> {
    let Expr::Literal(value, _) = expr else { return None };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::Expr;

    use super::*;

    fn ts(ns: i64) -> Expr {
        Expr::Literal(ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())), None)
    }

    fn set(values: &[&str]) -> Option<BTreeSet<String>> {
        Some(values.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn time_comparisons_become_inclusive_ranges() {
        let cases = [
            (col("time").gt(ts(10)), TimeRange::new(11, i64::MAX)),
            (col("time").gt_eq(ts(10)), TimeRange::new(10, i64::MAX)),
            (col("time").lt(ts(10)), TimeRange::new(i64::MIN, 9)),
            (col("time").lt_eq(ts(10)), TimeRange::new(i64::MIN, 10)),
            (col("time").eq(ts(10)), TimeRange::new(10, 10)),
            (ts(10).lt(col("time")), TimeRange::new(11, i64::MAX)),
            (col("time").between(ts(5), ts(10)), TimeRange::new(5, 10)),
        ];
        for (expr, range) in cases {
            let (bounds, exact) = analyze(&expr).expect("recognised");
            assert!(exact, "{expr}");
            assert_eq!(bounds.time, range, "{expr}");
        }
        let (bounds, exact) = analyze(&col("time").gt(ts(i64::MAX))).unwrap();
        assert!(exact && bounds.is_empty());
    }

    #[test]
    fn series_predicates_and_their_combinations() {
        let expr = col("device_id")
            .eq(lit("a"))
            .and(col("metric").in_list(vec![lit("t"), lit("h")], false));
        let (bounds, exact) = analyze(&expr).unwrap();
        assert!(exact);
        assert_eq!(bounds.device_ids, set(&["a"]));
        assert_eq!(bounds.metrics, set(&["h", "t"]));

        let either = col("device_id").eq(lit("a")).or(col("device_id").eq(lit("b")));
        let (bounds, exact) = analyze(&either).unwrap();
        assert!(exact);
        assert_eq!(bounds.device_ids, set(&["a", "b"]));

        // Different devices with different metrics: the bounding box is too large.
        let cross =
            col("device_id")
                .eq(lit("a"))
                .and(col("metric").eq(lit("t")))
                .or(col("device_id").eq(lit("b")).and(col("metric").eq(lit("h"))));
        let (bounds, exact) = analyze(&cross).unwrap();
        assert!(!exact);
        assert_eq!(bounds.device_ids, set(&["a", "b"]));
        assert_eq!(pushdown_support(&cross), TableProviderFilterPushDown::Inexact);

        // Disjoint time ranges are not one range.
        let gap = col("time").lt(ts(0)).or(col("time").gt(ts(10)));
        assert!(!analyze(&gap).unwrap().1);
        let overlapping = col("time").lt(ts(5)).or(col("time").gt_eq(ts(5)));
        let (bounds, exact) = analyze(&overlapping).unwrap();
        assert!(exact);
        assert_eq!(bounds.time, TimeRange::ALL);
    }

    #[test]
    fn unsupported_predicates_are_left_to_datafusion() {
        for expr in [
            col("value").gt(lit(1.0)),
            col("device_id").not_eq(lit("a")),
            col("device_id").gt(lit("a")),
            col("device_id").like(lit("a%")),
            col("device_id").in_list(vec![lit("a")], true),
            col("time").gt(ts(1)).or(col("value").gt(lit(1.0))),
        ] {
            assert_eq!(pushdown_support(&expr), TableProviderFilterPushDown::Unsupported, "{expr}");
        }
        let partly = col("time").gt(ts(1)).and(col("value").gt(lit(1.0)));
        assert_eq!(pushdown_support(&partly), TableProviderFilterPushDown::Inexact);
    }

    #[test]
    fn bounds_display_for_explain() {
        let bounds = ScanBounds {
            device_ids: set(&["a", "b"]),
            metrics: None,
            time: TimeRange::new(1_700_000_000_000_000_000, i64::MAX),
        };
        assert_eq!(
            bounds.to_string(),
            "device_id IN (a, b), metric=any, time=[2023-11-14T22:13:20Z, +inf]"
        );
    }
}
