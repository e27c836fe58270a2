//! Query results on the wire: the rows of a `SELECT` encoded as Postgres DataRows.
//!
//! datafusion-postgres hands results to arrow-pg, which encodes every value through pgwire's
//! `ToSqlText`. For a timestamp that means chrono re-parsing a strftime pattern, and arrow-pg
//! re-parsing the column's time zone name, for every single value: about 1.4 µs each, most of
//! the time of a query returning an hour of raw points (benchmark B5 (b)). So `SELECT`s are
//! executed by [`ResultsHook`], the last query hook, and encoded here: timestamps by hand, as
//! Postgres prints them with DateStyle ISO (`2026-03-04 00:00:00+00`, a fraction only when
//! it is not zero); every other type still through arrow-pg.
//!
//! Two Postgres behaviours come with it: `timestamptz` values are shown in the zone set by
//! `SET TIME ZONE` (else the column's own zone), and a Bind whose number of result formats
//! fits neither one-for-all nor one-per-column is refused with `08P01` instead of panicking.

use std::error::Error;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::field_into_pg_type;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{
    DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response,
};
use datafusion_postgres::pgwire::api::{ClientInfo, Type};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::pgwire::types::ToSqlText;
use futures::{stream, StreamExt};
use postgres_types::{to_sql_checked, IsNull, ToSql};

/// Client metadata key datafusion-postgres keeps `SET TIME ZONE`'s zone under.
const METADATA_TIME_ZONE: &str = "timezone";
/// Client metadata key datafusion-postgres keeps `SET statement_timeout` under (ms).
const METADATA_STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

/// µs from 1970-01-01 to 2000-01-01, Postgres' epoch for binary timestamps.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// The result formats the Bind of the portal being executed asked for, as format codes.
/// Set by the extended-query handler before it executes a portal: datafusion-postgres does
/// not pass the portal to query hooks.
pub(crate) struct PortalResultFormats(pub(crate) Vec<i16>);

impl PortalResultFormats {
    pub(crate) fn of(format: &Format) -> Self {
        PortalResultFormats(match format {
            Format::UnifiedText => vec![FieldFormat::Text.value()],
            Format::UnifiedBinary => vec![FieldFormat::Binary.value()],
            Format::Individual(codes) => codes.clone(),
        })
    }
}

/// Executes `SELECT`s (anything parsed as a query) and encodes their rows with
/// [`query_response`]; other statements are left to the hooks before it and to
/// datafusion-postgres. Must be the last hook.
pub(crate) struct ResultsHook;

#[async_trait]
impl QueryHook for ResultsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let sql = statement.to_string();
        let planned =
            with_statement_timeout(&*client, async { session.sql(&sql).await.map_err(api_error) })
                .await;
        Some(match planned {
            Ok(dataframe) => query_response(dataframe, &[FieldFormat::Text.value()], &*client)
                .await
                .map(Response::Query),
            Err(error) => Err(error),
        })
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let formats = client.session_extensions().get::<PortalResultFormats>()?;
        let planned = async {
            let bound = plan.clone().replace_params_with_values(params).map_err(api_error)?;
            let optimized = session.state().optimize(&bound).map_err(api_error)?;
            session.execute_logical_plan(optimized).await.map_err(api_error)
        };
        Some(match with_statement_timeout(&*client, planned).await {
            Ok(dataframe) => {
                query_response(dataframe, &formats.0, &*client).await.map(Response::Query)
            }
            Err(error) => Err(error),
        })
    }
}

/// Awaits `planning`, bounded by the client's `statement_timeout` (expiry is `57014`, as in
/// Postgres and in datafusion-postgres' own path).
async fn with_statement_timeout(
    client: &dyn HookClient,
    planning: impl std::future::Future<Output = PgWireResult<DataFrame>>,
) -> PgWireResult<DataFrame> {
    let timeout = client
        .metadata()
        .get(METADATA_STATEMENT_TIMEOUT_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis);
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, planning).await.map_err(|_| {
            user_error("57014", "canceling statement due to statement timeout".to_string())
        })?,
        None => planning.await,
    }
}

/// The rows of `dataframe` as a streaming QueryResponse, columns in the formats the client
/// asked for (`format_codes` as in a Bind message: none or one for all, or one per column).
pub(crate) async fn query_response(
    dataframe: DataFrame,
    format_codes: &[i16],
    client: &dyn HookClient,
) -> PgWireResult<QueryResponse> {
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let session_zone = client.metadata().get(METADATA_TIME_ZONE).map(String::as_str);
    let schema = Arc::new(dataframe.schema().as_arrow().clone());
    let fields = Arc::new(pg_fields(&schema, format_codes, &options)?);
    let encodings: Arc<Vec<ColumnEncoding>> = Arc::new(
        schema
            .fields()
            .iter()
            .zip(fields.iter())
            .map(|(field, pg_field)| ColumnEncoding::of(field, pg_field, session_zone))
            .collect(),
    );
    let batches = dataframe.execute_stream().await.map_err(api_error)?;
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(batch) => Box::new(BatchRows::new(batch, row_fields.clone(), &encodings)),
                Err(error) => Box::new(std::iter::once(Err(api_error(error)))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// The RowDescription fields of `schema`.
fn pg_fields(
    schema: &Schema,
    format_codes: &[i16],
    options: &Arc<FormatOptions>,
) -> PgWireResult<Vec<FieldInfo>> {
    check_result_formats(format_codes, schema.fields().len())?;
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(column, field)| {
            let format = match format_codes {
                [] => FieldFormat::Text,
                [code] => FieldFormat::from(*code),
                codes => FieldFormat::from(codes[column]),
            };
            Ok(FieldInfo::new(field.name().clone(), None, None, field_into_pg_type(field)?, format)
                .with_format_options(options.clone()))
        })
        .collect()
}

/// Refuses result format codes that are neither none, one for all columns, nor one per
/// column, as Postgres does (`08P01`).
pub(crate) fn check_result_formats(format_codes: &[i16], columns: usize) -> PgWireResult<()> {
    if format_codes.len() > 1 && format_codes.len() != columns {
        return Err(user_error(
            "08P01",
            format!(
                "bind message has {} result formats but query has {columns} columns",
                format_codes.len()
            ),
        ));
    }
    Ok(())
}

/// How one result column is encoded.
#[derive(Clone)]
enum ColumnEncoding {
    /// By hand ([`PgTimestamp`]); `zone` is the display zone of a `timestamptz`, `None` for a
    /// `timestamp`.
    Timestamp { unit: TimeUnit, zone: Option<Tz> },
    /// Through arrow-pg.
    ArrowPg,
}

impl ColumnEncoding {
    fn of(field: &Field, pg_field: &FieldInfo, session_zone: Option<&str>) -> Self {
        let DataType::Timestamp(unit, column_zone) = field.data_type() else {
            return ColumnEncoding::ArrowPg;
        };
        // Hand-written text is ISO only; other DateStyles stay with arrow-pg.
        let iso = pg_field
            .format_options()
            .date_style
            .trim_start()
            .get(..3)
            .is_some_and(|style| style.eq_ignore_ascii_case("ISO"));
        if pg_field.format() == FieldFormat::Text && !iso {
            return ColumnEncoding::ArrowPg;
        }
        let zone = match column_zone {
            None => None,
            Some(column_zone) => {
                match session_zone.and_then(|zone| Tz::from_str(zone).ok()) {
                    Some(zone) => Some(zone),
                    None => match Tz::from_str(column_zone) {
                        Ok(zone) => Some(zone),
                        // arrow-pg reports the bad zone name.
                        Err(_) => return ColumnEncoding::ArrowPg,
                    },
                }
            }
        };
        ColumnEncoding::Timestamp { unit: *unit, zone }
    }
}

/// One column of a batch, ready to encode row by row.
enum BatchColumn {
    Timestamp {
        values: ScalarBuffer<i64>,
        nulls: Option<NullBuffer>,
        unit: TimeUnit,
        zone: Option<Tz>,
    },
    ArrowPg(ArrayRef),
}

impl BatchColumn {
    fn new(array: &ArrayRef, encoding: &ColumnEncoding) -> Self {
        match encoding {
            ColumnEncoding::Timestamp { unit, zone } => {
                let values = match unit {
                    TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => {
                        array.as_primitive::<TimestampMillisecondType>().values()
                    }
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().values()
                    }
                    TimeUnit::Nanosecond => {
                        array.as_primitive::<TimestampNanosecondType>().values()
                    }
                };
                BatchColumn::Timestamp {
                    values: values.clone(),
                    nulls: array.logical_nulls(),
                    unit: *unit,
                    zone: *zone,
                }
            }
            ColumnEncoding::ArrowPg => BatchColumn::ArrowPg(array.clone()),
        }
    }
}

/// The DataRows of one batch.
struct BatchRows {
    batch: RecordBatch,
    columns: Vec<BatchColumn>,
    fields: Arc<Vec<FieldInfo>>,
    encoder: DataRowEncoder,
    row: usize,
}

impl BatchRows {
    fn new(batch: RecordBatch, fields: Arc<Vec<FieldInfo>>, encodings: &[ColumnEncoding]) -> Self {
        let columns = batch
            .columns()
            .iter()
            .zip(encodings)
            .map(|(array, e)| BatchColumn::new(array, e))
            .collect();
        BatchRows { encoder: DataRowEncoder::new(fields.clone()), batch, columns, fields, row: 0 }
    }

    fn encode_row(&mut self) -> PgWireResult<DataRow> {
        let row = self.row;
        let schema = self.batch.schema();
        for (column, encoding) in self.columns.iter().enumerate() {
            let pg_field = &self.fields[column];
            match encoding {
                BatchColumn::ArrowPg(array) => {
                    encode_value(&mut self.encoder, array, row, schema.field(column), pg_field)?
                }
                BatchColumn::Timestamp { values, nulls, unit, zone } => {
                    let value = match nulls {
                        Some(nulls) if nulls.is_null(row) => None,
                        _ => Some(PgTimestamp::new(values[row], *unit, zone.as_ref())?),
                    };
                    self.encoder.encode_field_with_type_and_format(
                        &value,
                        pg_field.datatype(),
                        pg_field.format(),
                        pg_field.format_options(),
                    )?
                }
            }
        }
        Ok(self.encoder.take_row())
    }
}

impl Iterator for BatchRows {
    type Item = PgWireResult<DataRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.row == self.batch.num_rows() {
            return None;
        }
        let row = self.encode_row();
        self.row += 1;
        Some(row)
    }
}

/// A `timestamp` or `timestamptz` value: µs since 1970-01-01 (UTC for `timestamptz`, wall
/// time for `timestamp`), and for `timestamptz` the UTC offset it is shown at, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PgTimestamp {
    micros: i64,
    offset_seconds: Option<i32>,
}

impl PgTimestamp {
    /// `value` in `unit` since 1970; sub-µs digits are dropped (Postgres keeps µs).
    fn new(value: i64, unit: TimeUnit, zone: Option<&Tz>) -> PgWireResult<Self> {
        let micros = match unit {
            TimeUnit::Second => value.checked_mul(1_000_000),
            TimeUnit::Millisecond => value.checked_mul(1_000),
            TimeUnit::Microsecond => Some(value),
            TimeUnit::Nanosecond => Some(value.div_euclid(1_000)),
        }
        .ok_or_else(|| out_of_range(value))?;
        let offset_seconds = match zone {
            None => None,
            Some(zone) => {
                let utc =
                    DateTime::from_timestamp_micros(micros).ok_or_else(|| out_of_range(value))?;
                Some(zone.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc())
            }
        };
        Ok(PgTimestamp { micros, offset_seconds })
    }

    /// Writes the value as Postgres does with DateStyle ISO: `YYYY-MM-DD HH:MM:SS`, then
    /// `.ffffff` without trailing zeros unless the fraction is zero, then for `timestamptz`
    /// the offset as `+HH`, `+HH:MM` or `+HH:MM:SS`, then ` BC` for years before 1.
    pub(crate) fn write_iso(&self, out: &mut BytesMut) -> Result<(), TimestampOutOfRange> {
        let offset = self.offset_seconds.unwrap_or(0);
        let local =
            self.micros.checked_add(i64::from(offset) * 1_000_000).ok_or(TimestampOutOfRange)?;
        let days = local.div_euclid(MICROS_PER_DAY);
        let in_day = local.rem_euclid(MICROS_PER_DAY);
        let date = i32::try_from(days + UNIX_EPOCH_DAYS_FROM_CE)
            .ok()
            .and_then(NaiveDate::from_num_days_from_ce_opt)
            .ok_or(TimestampOutOfRange)?;
        let year = date.year();
        // Postgres has no year 0: 1 BC is year 0 in chrono's proleptic calendar.
        let shown_year = if year >= 1 { year } else { 1 - year };
        push_number(out, u64::from(shown_year.unsigned_abs()), 4);
        out.put_u8(b'-');
        push_number(out, u64::from(date.month()), 2);
        out.put_u8(b'-');
        push_number(out, u64::from(date.day()), 2);
        out.put_u8(b' ');
        let seconds = in_day / 1_000_000;
        push_number(out, (seconds / 3600) as u64, 2);
        out.put_u8(b':');
        push_number(out, (seconds / 60 % 60) as u64, 2);
        out.put_u8(b':');
        push_number(out, (seconds % 60) as u64, 2);
        let mut fraction = in_day % 1_000_000;
        if fraction != 0 {
            let mut digits = 6;
            while fraction % 10 == 0 {
                fraction /= 10;
                digits -= 1;
            }
            out.put_u8(b'.');
            push_number(out, fraction as u64, digits);
        }
        if self.offset_seconds.is_some() {
            out.put_u8(if offset < 0 { b'-' } else { b'+' });
            let offset = offset.unsigned_abs();
            push_number(out, u64::from(offset / 3600), 2);
            if !offset.is_multiple_of(3600) {
                out.put_u8(b':');
                push_number(out, u64::from(offset / 60 % 60), 2);
                if !offset.is_multiple_of(60) {
                    out.put_u8(b':');
                    push_number(out, u64::from(offset % 60), 2);
                }
            }
        }
        if year < 1 {
            out.extend_from_slice(b" BC");
        }
        Ok(())
    }
}

/// A timestamp outside what the calendar conversion can represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimestampOutOfRange;

impl std::fmt::Display for TimestampOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timestamp out of range")
    }
}

impl Error for TimestampOutOfRange {}

/// Writes `value` in decimal, zero-padded to at least `min_digits`.
fn push_number(out: &mut BytesMut, value: u64, min_digits: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = start.min(digits.len() - min_digits.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

impl ToSqlText for PgTimestamp {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        _options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if !<Self as ToSql>::accepts(ty) {
            return Err(Box::new(postgres_types::WrongType::new::<PgTimestamp>(ty.clone())));
        }
        self.write_iso(out)?;
        Ok(IsNull::No)
    }
}

impl ToSql for PgTimestamp {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let since_postgres_epoch =
            self.micros.checked_sub(POSTGRES_EPOCH_MICROS).ok_or(TimestampOutOfRange)?;
        out.put_i64(since_postgres_epoch);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }

    to_sql_checked!();
}

fn out_of_range(value: i64) -> PgWireError {
    user_error("22008", format!("timestamp out of range: {value}"))
}

fn user_error(sqlstate: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        sqlstate.to_string(),
        message,
    )))
}

fn api_error(error: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, NaiveDateTime};
    use proptest::prelude::*;

    fn text(micros: i64, offset_seconds: Option<i32>) -> String {
        let mut out = BytesMut::new();
        PgTimestamp { micros, offset_seconds }.write_iso(&mut out).expect("in range");
        String::from_utf8(out.to_vec()).expect("ascii")
    }

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).expect("valid").timestamp_micros()
    }

    #[test]
    fn prints_as_postgres_does() {
        // Each expected string is what PostgreSQL 16 prints for the value.
        assert_eq!(text(micros("2026-03-04T00:00:00Z"), Some(0)), "2026-03-04 00:00:00+00");
        assert_eq!(text(micros("2026-03-04T00:00:00.5Z"), Some(0)), "2026-03-04 00:00:00.5+00");
        assert_eq!(
            text(micros("2026-03-04T23:59:59.000001Z"), Some(0)),
            "2026-03-04 23:59:59.000001+00"
        );
        assert_eq!(text(micros("2026-03-04T00:00:00Z"), Some(19_800)), "2026-03-04 05:30:00+05:30");
        assert_eq!(text(micros("2026-03-04T12:00:00Z"), Some(-5 * 3600)), "2026-03-04 07:00:00-05");
        assert_eq!(
            text(micros("1883-11-18T12:00:00Z"), Some(-17_762)),
            "1883-11-18 07:03:58-04:56:02"
        );
        assert_eq!(text(micros("1969-12-31T23:59:59.9Z"), None), "1969-12-31 23:59:59.9");
        assert_eq!(text(micros("0001-01-01T00:00:00Z"), Some(0)), "0001-01-01 00:00:00+00");
        assert_eq!(text(micros("0000-12-31T00:00:00Z"), Some(0)), "0001-12-31 00:00:00+00 BC");
        let year_10000 =
            NaiveDate::from_ymd_opt(10_000, 1, 1).expect("date").and_time(Default::default());
        assert_eq!(text(year_10000.and_utc().timestamp_micros(), None), "10000-01-01 00:00:00");
    }

    #[test]
    fn binary_counts_from_2000() {
        let mut out = BytesMut::new();
        let value = PgTimestamp { micros: micros("2000-01-01T00:00:01Z"), offset_seconds: Some(0) };
        value.to_sql(&Type::TIMESTAMPTZ, &mut out).expect("encodes");
        assert_eq!(&out[..], &1_000_000_i64.to_be_bytes());
    }

    #[test]
    fn units_and_zones() {
        let utc: Tz = "UTC".parse().expect("zone");
        let new_york: Tz = "America/New_York".parse().expect("zone");
        let second = micros("2026-01-15T12:00:00Z") / 1_000_000;
        let ns = PgTimestamp::new(second * 1_000_000_000 + 1_999, TimeUnit::Nanosecond, Some(&utc))
            .expect("in range");
        assert_eq!(ns.micros, second * 1_000_000 + 1);
        let winter = PgTimestamp::new(second, TimeUnit::Second, Some(&new_york)).expect("in range");
        assert_eq!(winter.offset_seconds, Some(-5 * 3600));
        let summer_second = micros("2026-07-15T12:00:00Z") / 1_000_000;
        let summer = PgTimestamp::new(summer_second * 1000, TimeUnit::Millisecond, Some(&new_york))
            .expect("in range");
        assert_eq!(summer.offset_seconds, Some(-4 * 3600));
        assert!(PgTimestamp::new(i64::MAX, TimeUnit::Second, None).is_err());
        // Before 1970, nanoseconds round down to the µs (as chrono and Postgres do).
        let before = PgTimestamp::new(-1, TimeUnit::Nanosecond, None).expect("in range");
        assert_eq!(before.micros, -1);
    }

    #[test]
    fn result_formats_must_fit_the_columns() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
        ]);
        let options = Arc::new(FormatOptions::default());
        let formats = |codes: &[i16]| {
            pg_fields(&schema, codes, &options)
                .map(|fields| fields.iter().map(FieldInfo::format).collect::<Vec<_>>())
        };
        assert_eq!(formats(&[]).expect("fits"), vec![FieldFormat::Text; 3]);
        assert_eq!(formats(&[1]).expect("fits"), vec![FieldFormat::Binary; 3]);
        assert_eq!(
            formats(&[0, 1, 0]).expect("fits"),
            vec![FieldFormat::Text, FieldFormat::Binary, FieldFormat::Text]
        );
        let Err(PgWireError::UserError(error)) = formats(&[0, 1]) else { panic!("accepted") };
        assert_eq!(error.code, "08P01");
    }

    proptest! {
        /// Whatever the instant and offset, the text reads back (chrono's parser) as the same
        /// instant, and a `timestamp` reads back as the same wall time.
        #[test]
        fn text_reads_back(
            micros in -62_135_596_800_000_000_i64..253_402_300_799_999_999,
            offset_minutes in -15 * 60..15 * 60_i32,
        ) {
            let with_zone = text(micros, Some(offset_minutes * 60));
            let parsed = DateTime::<FixedOffset>::parse_from_str(
                &with_zone.replace(' ', "T"),
                "%Y-%m-%dT%H:%M:%S%.f%#z",
            );
            // The local time may fall into year 0 or 10000 at the range's ends.
            if !with_zone.ends_with(" BC") && !with_zone.starts_with("10000") {
                let parsed = parsed.map_err(|e| TestCaseError::fail(format!("{with_zone}: {e}")))?;
                prop_assert_eq!(parsed.timestamp_micros(), micros, "{}", with_zone);
            }
            let wall = text(micros, None);
            let parsed = NaiveDateTime::parse_from_str(&wall, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| TestCaseError::fail(format!("{wall}: {e}")))?;
            prop_assert_eq!(parsed.and_utc().timestamp_micros(), micros);
        }
    }
}
