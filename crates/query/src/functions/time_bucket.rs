//! `time_bucket`, TimescaleDB-compatible.
//!
//! Forms (all return the type of `ts`, a timestamp keeping its time zone):
//! * `time_bucket(width, ts)`
//! * `time_bucket(width, ts, origin timestamp)` — buckets aligned so one starts at `origin`;
//! * `time_bucket(width, ts, offset interval)` — `time_bucket(width, ts - offset) + offset`;
//! * `time_bucket(width, ts, timezone text [, origin timestamp | offset interval])` — buckets
//!   in that zone's wall-clock time (a text third argument that parses as a timestamp is an
//!   origin instead).
//!
//! Semantics, matching TimescaleDB's `ts_timestamptz_bucket` (src/time_bucket.c):
//! * `width` without months (`'5 minutes'`, `'1 day'`, `'1 week'`) is a fixed period of
//!   `days × 24 h + time`; buckets are `origin + k × width` for integer `k` (floor division,
//!   so times before the origin and before 1970 bucket correctly). The default origin is
//!   **Monday 2000-01-03 00:00:00 UTC**, so weekly buckets start on Mondays and daily
//!   buckets at midnight UTC.
//! * `width` in months (`'1 month'`, `'3 months'`, `'1 year'`) counts calendar months; it
//!   cannot also have days or time (an error, as in TimescaleDB). Buckets start on the first
//!   of a month at 00:00; the default origin is **2000-01-01**, so `'3 months'` gives quarters
//!   and `'1 year'` calendar years. With an origin, only its year and month matter.
//! * Without a `timezone` argument the bucketing happens in UTC, unless `ts` itself carries a
//!   non-UTC zone (`time AT TIME ZONE 'Europe/Berlin'`): then, like TimescaleDB on a
//!   `timestamp` produced by `AT TIME ZONE`, the buckets follow that zone's wall clock.
//! * `width` may be an interval or text (`'5m'`, `'300s'`, `'1 hour'` — Grafana's macros
//!   send text); it must be constant and positive. NULL arguments give NULL.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{
    DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit, TimestampNanosecondType,
};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Offset, TimeZone};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::QueryError;

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;
/// Monday 2000-01-03 00:00:00 UTC, TimescaleDB's default origin for fixed-width buckets.
pub const DEFAULT_ORIGIN_NS: i64 = 946_857_600 * 1_000_000_000;
/// 2000-01-01 as a month index (`year × 12 + month − 1`), the default for month buckets.
const DEFAULT_ORIGIN_MONTH: i64 = 2000 * 12;

/// The `time_bucket` scalar function; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    signature: Signature,
}

impl Default for TimeBucket {
    fn default() -> Self {
        TimeBucket { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

fn invalid(reason: impl Into<String>) -> DataFusionError {
    QueryError::InvalidArgument { function: "time_bucket", reason: reason.into() }.into_datafusion()
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if !(2..=4).contains(&arg_types.len()) {
            return Err(invalid(format!(
                "expects (width, ts [, origin | offset | timezone [, origin | offset]]), got {} \
                 arguments",
                arg_types.len()
            )));
        }
        let width = match &arg_types[0] {
            DataType::Interval(_) | DataType::Null => INTERVAL,
            t if is_text(t) => INTERVAL,
            other => return Err(invalid(format!("width must be an interval, not {other}"))),
        };
        let ts = match &arg_types[1] {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
            DataType::Date32 | DataType::Date64 => DataType::Timestamp(TimeUnit::Nanosecond, None),
            DataType::Null => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            t if is_text(t) => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            other => return Err(invalid(format!("ts must be a timestamp, not {other}"))),
        };
        let mut coerced = vec![width, ts.clone()];
        for (position, extra) in arg_types[2..].iter().enumerate() {
            coerced.push(match extra {
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => ts.clone(),
                DataType::Interval(_) => INTERVAL,
                DataType::Null => DataType::Null,
                // Decided when the value is known: a time zone, or an origin timestamp.
                t if is_text(t) && position == 0 => DataType::Utf8,
                t if is_text(t) => ts.clone(),
                other => {
                    return Err(invalid(format!(
                        "argument {} must be a timestamp, an interval or a time zone, not {other}",
                        position + 3
                    )))
                }
            });
        }
        Ok(coerced)
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match &arg_types[1] {
            DataType::Timestamp(_, tz) => Ok(DataType::Timestamp(TimeUnit::Nanosecond, tz.clone())),
            _ => Ok(DataType::Timestamp(TimeUnit::Nanosecond, None)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let return_type = args.return_type().clone();
        let zone_name = match &return_type {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let null_result =
            || ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(None, zone_name.clone()));

        let Some(width) = interval_argument(&args.args[0])? else { return Ok(null_result()) };
        let width = Width::try_from(width)?;

        let mut zone: Option<Tz> =
            zone_name.as_deref().filter(|z| !is_utc(z)).map(parse_zone).transpose()?;
        let mut alignment = Alignment::Default;
        for (position, extra) in args.args[2..].iter().enumerate() {
            let ColumnarValue::Scalar(value) = extra else {
                return Err(invalid(format!("argument {} must be a constant", position + 3)));
            };
            match value {
                v if v.is_null() => return Ok(null_result()),
                ScalarValue::TimestampNanosecond(Some(origin), _) => {
                    alignment = Alignment::Origin(*origin)
                }
                ScalarValue::IntervalMonthDayNano(Some(offset)) => {
                    alignment = Alignment::Offset(*offset)
                }
                ScalarValue::Utf8(Some(text)) if position == 0 => match Tz::from_str(text) {
                    Ok(tz) => zone = Some(tz),
                    Err(_) => alignment = Alignment::Origin(parse_timestamp(text)?),
                },
                other => {
                    return Err(invalid(format!(
                        "argument {} must be a timestamp, an interval or a time zone, not {}",
                        position + 3,
                        other.data_type()
                    )))
                }
            }
        }
        let bucketer = Bucketer { width, alignment, zone };

        match &args.args[1] {
            ColumnarValue::Scalar(value) => {
                let ts = match value.cast_to(&return_type)? {
                    ScalarValue::TimestampNanosecond(ts, _) => ts,
                    other => {
                        return Err(invalid(format!(
                            "ts must be a timestamp, not {}",
                            other.data_type()
                        )))
                    }
                };
                let bucket = ts.map(|ts| bucketer.bucket(ts)).transpose()?;
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(bucket, zone_name)))
            }
            ColumnarValue::Array(array) => {
                let array = if array.data_type() == &return_type {
                    array.clone()
                } else {
                    arrow::compute::cast(array, &return_type)?
                };
                let times = array.as_primitive::<TimestampNanosecondType>();
                let buckets: PrimitiveArray<TimestampNanosecondType> =
                    times.try_unary(|ts| bucketer.bucket(ts))?;
                let buckets = buckets.with_timezone_opt(zone_name);
                Ok(ColumnarValue::Array(Arc::new(buckets) as ArrayRef))
            }
        }
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> DfResult<SortProperties> {
        // Monotonic in `ts` when everything else is constant.
        let others_constant = input
            .iter()
            .enumerate()
            .all(|(i, p)| i == 1 || p.sort_properties == SortProperties::Singleton);
        Ok(if others_constant { input[1].sort_properties } else { SortProperties::Unordered })
    }
}

fn is_utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "utc" | "Z" | "+00:00" | "+00" | "Etc/UTC" | "GMT")
}

fn parse_zone(zone: &str) -> DfResult<Tz> {
    Tz::from_str(zone).map_err(|e| invalid(format!("unknown time zone {zone:?}: {e}")))
}

fn parse_timestamp(text: &str) -> DfResult<i64> {
    let value = ScalarValue::Utf8(Some(text.to_string()))
        .cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())))
        .map_err(|_| invalid(format!("{text:?} is neither a time zone nor a timestamp")))?;
    match value {
        ScalarValue::TimestampNanosecond(Some(ns), _) => Ok(ns),
        _ => Err(invalid(format!("{text:?} is neither a time zone nor a timestamp"))),
    }
}

fn interval_argument(value: &ColumnarValue) -> DfResult<Option<IntervalMonthDayNano>> {
    let ColumnarValue::Scalar(value) = value else {
        return Err(invalid("width must be a constant"));
    };
    match value.cast_to(&INTERVAL).map_err(|e| invalid(format!("width {value}: {e}")))? {
        ScalarValue::IntervalMonthDayNano(width) => Ok(width),
        _ => Err(invalid("width must be an interval")),
    }
}

/// A bucket width: a fixed number of nanoseconds or a number of calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Nanos(i64),
    Months(i64),
}

impl TryFrom<IntervalMonthDayNano> for Width {
    type Error = DataFusionError;

    fn try_from(width: IntervalMonthDayNano) -> DfResult<Width> {
        if width.months != 0 {
            if width.days != 0 || width.nanoseconds != 0 {
                return Err(invalid("month intervals cannot have day or time component"));
            }
            if width.months < 0 {
                return Err(invalid("period must be greater than 0"));
            }
            return Ok(Width::Months(i64::from(width.months)));
        }
        let nanos = i128::from(width.days) * NANOS_PER_DAY + i128::from(width.nanoseconds);
        if nanos <= 0 {
            return Err(invalid("period must be greater than 0"));
        }
        let nanos = i64::try_from(nanos).map_err(|_| invalid("period is too large"))?;
        Ok(Width::Nanos(nanos))
    }
}

#[derive(Debug, Clone, Copy)]
enum Alignment {
    Default,
    Origin(i64),
    Offset(IntervalMonthDayNano),
}

struct Bucketer {
    width: Width,
    alignment: Alignment,
    /// Bucket in this zone's wall-clock time instead of UTC.
    zone: Option<Tz>,
}

impl Bucketer {
    /// The start (UTC nanoseconds) of the bucket holding `ts` (UTC nanoseconds).
    fn bucket(&self, ts: i64) -> Result<i64, arrow::error::ArrowError> {
        self.bucket_inner(ts).ok_or_else(|| {
            arrow::error::ArrowError::ComputeError(format!(
                "time_bucket: timestamp {ts} out of range"
            ))
        })
    }

    fn bucket_inner(&self, ts: i64) -> Option<i64> {
        let local = self.to_local(ts)?;
        let bucket_local = match self.alignment {
            Alignment::Default => bucket_with_origin(self.width, local, None)?,
            Alignment::Origin(origin) => {
                bucket_with_origin(self.width, local, Some(self.to_local(origin)?))?
            }
            Alignment::Offset(offset) => {
                let shifted = add_interval(local, offset, -1)?;
                add_interval(bucket_with_origin(self.width, shifted, None)?, offset, 1)?
            }
        };
        self.to_utc(bucket_local)
    }

    /// UTC nanoseconds → the zone's wall clock, as nanoseconds of a UTC-less clock.
    fn to_local(&self, ts: i64) -> Option<i64> {
        let Some(zone) = &self.zone else { return Some(ts) };
        let utc = DateTime::from_timestamp_nanos(ts).naive_utc();
        let offset = zone.offset_from_utc_datetime(&utc).fix().local_minus_utc();
        ts.checked_add(i64::from(offset) * 1_000_000_000)
    }

    /// Wall-clock nanoseconds in the zone → UTC; in a DST gap, the offset before the gap.
    fn to_utc(&self, local: i64) -> Option<i64> {
        let Some(zone) = &self.zone else { return Some(local) };
        let naive: NaiveDateTime = DateTime::from_timestamp_nanos(local).naive_utc();
        let offset = match zone.offset_from_local_datetime(&naive).earliest() {
            Some(offset) => offset.fix().local_minus_utc(),
            None => {
                let before = naive - chrono::Duration::hours(3);
                zone.offset_from_local_datetime(&before).earliest()?.fix().local_minus_utc()
            }
        };
        local.checked_sub(i64::from(offset) * 1_000_000_000)
    }
}

/// TimescaleDB's bucketing on one clock (UTC or a wall clock): `origin` defaults to
/// 2000-01-03 for fixed widths and 2000-01-01 for months.
fn bucket_with_origin(width: Width, ts: i64, origin: Option<i64>) -> Option<i64> {
    match width {
        Width::Nanos(period) => {
            let period = i128::from(period);
            let origin = i128::from(origin.unwrap_or(DEFAULT_ORIGIN_NS));
            let shift = origin % period;
            let start = (i128::from(ts) - shift).div_euclid(period) * period + shift;
            i64::try_from(start).ok()
        }
        Width::Months(period) => {
            let month_index = |t: i64| {
                let date = DateTime::from_timestamp_nanos(t).date_naive();
                i64::from(date.year()) * 12 + i64::from(date.month0())
            };
            let origin = origin.map(month_index).unwrap_or(DEFAULT_ORIGIN_MONTH);
            let bucket = (month_index(ts) - origin).div_euclid(period) * period + origin;
            let year = i32::try_from(bucket.div_euclid(12)).ok()?;
            let month = u32::try_from(bucket.rem_euclid(12)).ok()? + 1;
            NaiveDate::from_ymd_opt(year, month, 1)?
                .and_hms_opt(0, 0, 0)?
                .and_utc()
                .timestamp_nanos_opt()
        }
    }
}

/// `ts + sign × interval`, months on the calendar (UTC clock), then days and time.
fn add_interval(ts: i64, interval: IntervalMonthDayNano, sign: i32) -> Option<i64> {
    let mut t = ts;
    if interval.months != 0 {
        let months = i64::from(interval.months) * i64::from(sign);
        let date = DateTime::from_timestamp_nanos(t);
        let moved = if months >= 0 {
            date.checked_add_months(Months::new(u32::try_from(months).ok()?))
        } else {
            date.checked_sub_months(Months::new(u32::try_from(-months).ok()?))
        }?;
        t = moved.timestamp_nanos_opt()?;
    }
    let nanos = (i128::from(interval.days) * NANOS_PER_DAY + i128::from(interval.nanoseconds))
        * i128::from(sign);
    i64::try_from(i128::from(t) + nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_nanos_opt().unwrap()
    }

    fn utc(bucketer: &Bucketer, t: &str) -> String {
        let b = bucketer.bucket(ns(t)).unwrap();
        DateTime::from_timestamp_nanos(b).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    fn fixed(nanos: i64) -> Bucketer {
        Bucketer { width: Width::Nanos(nanos), alignment: Alignment::Default, zone: None }
    }

    const MINUTE: i64 = 60_000_000_000;
    const DAY: i64 = 1440 * MINUTE;

    #[test]
    fn fixed_widths_align_to_monday_2000_01_03() {
        assert_eq!(utc(&fixed(5 * MINUTE), "2024-05-06T10:07:59Z"), "2024-05-06T10:05:00Z");
        assert_eq!(utc(&fixed(DAY), "2024-05-06T10:07:59Z"), "2024-05-06T00:00:00Z");
        // 2024-05-08 is a Wednesday: its week starts Monday 2024-05-06.
        assert_eq!(utc(&fixed(7 * DAY), "2024-05-08T10:00:00Z"), "2024-05-06T00:00:00Z");
        // Three-day buckets count from 2000-01-03, not from 1970.
        assert_eq!(utc(&fixed(3 * DAY), "2000-01-05T12:00:00Z"), "2000-01-03T00:00:00Z");
        assert_eq!(utc(&fixed(3 * DAY), "2000-01-02T12:00:00Z"), "1999-12-31T00:00:00Z");
    }

    #[test]
    fn times_before_the_epoch_floor() {
        assert_eq!(utc(&fixed(MINUTE), "1969-12-31T23:59:59.5Z"), "1969-12-31T23:59:00Z");
        assert_eq!(utc(&fixed(7 * DAY), "1969-12-31T00:00:00Z"), "1969-12-29T00:00:00Z");
        let b = fixed(1_000_000_000).bucket(-1).unwrap();
        assert_eq!(b, -1_000_000_000);
    }

    #[test]
    fn months_count_calendar_months_from_2000_01_01() {
        let months =
            |m| Bucketer { width: Width::Months(m), alignment: Alignment::Default, zone: None };
        assert_eq!(utc(&months(1), "2024-02-29T23:00:00Z"), "2024-02-01T00:00:00Z");
        assert_eq!(utc(&months(3), "2024-05-17T00:00:00Z"), "2024-04-01T00:00:00Z");
        assert_eq!(utc(&months(12), "2024-05-17T00:00:00Z"), "2024-01-01T00:00:00Z");
        assert_eq!(utc(&months(5), "1999-12-31T00:00:00Z"), "1999-08-01T00:00:00Z");
        let origin = Bucketer {
            width: Width::Months(3),
            alignment: Alignment::Origin(ns("2000-02-15T00:00:00Z")),
            zone: None,
        };
        assert_eq!(utc(&origin, "2024-01-10T00:00:00Z"), "2023-11-01T00:00:00Z");
    }

    #[test]
    fn origin_offset_and_zone() {
        let origin = Bucketer {
            width: Width::Nanos(DAY),
            alignment: Alignment::Origin(ns("2020-01-01T06:00:00Z")),
            zone: None,
        };
        assert_eq!(utc(&origin, "2024-05-06T05:00:00Z"), "2024-05-05T06:00:00Z");
        let offset = Bucketer {
            width: Width::Nanos(DAY),
            alignment: Alignment::Offset(IntervalMonthDayNano::new(0, 0, 6 * 60 * MINUTE)),
            zone: None,
        };
        assert_eq!(utc(&offset, "2024-05-06T05:00:00Z"), "2024-05-05T06:00:00Z");
        let berlin = Bucketer {
            width: Width::Nanos(DAY),
            alignment: Alignment::Default,
            zone: Some(Tz::from_str("Europe/Berlin").unwrap()),
        };
        // 23:30 UTC on May 6 is 01:30 on May 7 in Berlin (UTC+2).
        assert_eq!(utc(&berlin, "2024-05-06T23:30:00Z"), "2024-05-06T22:00:00Z");
    }

    #[test]
    fn widths_are_validated() {
        assert!(Width::try_from(IntervalMonthDayNano::new(1, 1, 0)).is_err());
        assert!(Width::try_from(IntervalMonthDayNano::new(0, 0, 0)).is_err());
        assert!(Width::try_from(IntervalMonthDayNano::new(0, 0, -5)).is_err());
        assert_eq!(
            Width::try_from(IntervalMonthDayNano::new(0, 7, 0)).unwrap(),
            Width::Nanos(7 * DAY)
        );
    }
}
