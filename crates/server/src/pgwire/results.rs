//! Query results on the wire: the rows of a `SELECT` encoded as Postgres DataRows.
//!
//! datafusion-postgres hands results to arrow-pg, which encodes value by value through
//! pgwire's `ToSqlText`/`ToSql`: a type dispatch, a downcast and often a string allocation per
//! value, and for timestamps a strftime pattern and the zone name parsed again for every
//! value. A query returning an hour of raw points (benchmark B5 (b)) spent most of its time
//! there. So `SELECT`s are executed by [`ResultsHook`], the last query hook, and encoded here,
//! a batch at a time into one buffer the batch's DataRows share:
//! - timestamps, floats, integers, booleans and text straight from their Arrow arrays, as
//!   Postgres writes them ([`super::timestamp_text`], [`super::float_text`]);
//! - every other type, and columns with field metadata, through arrow-pg.
//!
//! Postgres behaviours that come with it: `timestamptz` values are shown in the zone set by
//! `SET TIME ZONE` (else the column's own zone); floats are spelled as Postgres spells them
//! (`21`, `1e+20`, `Infinity`; pgwire wrote `21.0`, `1e20`, `inf`); a Bind whose number of
//! result formats fits neither one-for-all nor one-per-column is refused with `08P01`
//! instead of panicking.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
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
use futures::{stream, StreamExt};

use super::float_text::{write_float4, write_float8};
use super::timestamp_text::{micros_of, since_postgres_epoch, TimestampText};

/// Client metadata key datafusion-postgres keeps `SET TIME ZONE`'s zone under.
const METADATA_TIME_ZONE: &str = "timezone";
/// Client metadata key datafusion-postgres keeps `SET statement_timeout` under (ms).
const METADATA_STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

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
            let rows = match batch {
                Ok(batch) => encode_batch(&batch, &encodings, &row_fields)
                    .unwrap_or_else(|error| vec![Err(error)]),
                Err(error) => vec![Err(api_error(error))],
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

/// How one result column is encoded. The common types are written straight from their
/// Arrow arrays; any other type, and any column with field metadata (which arrow-pg reads
/// for `oid`, `"char"` and the like), goes through arrow-pg.
#[derive(Clone)]
enum ColumnEncoding {
    /// By hand ([`TimestampText`]); `zone` is the display zone of a `timestamptz`, `None` for a
    /// `timestamp`.
    Timestamp { unit: TimeUnit, zone: Option<Tz>, binary: bool },
    /// `float4`/`float8`, `int2`/`int4`/`int8`, `bool` and `text`.
    Plain { binary: bool },
    /// Through arrow-pg.
    ArrowPg,
}

impl ColumnEncoding {
    fn of(field: &Field, pg_field: &FieldInfo, session_zone: Option<&str>) -> Self {
        let binary = pg_field.format() == FieldFormat::Binary;
        let DataType::Timestamp(unit, column_zone) = field.data_type() else {
            let pg_type = pg_field.datatype();
            // Postgres' shortest float text is what `extra_float_digits` >= 1 asks for.
            let shortest_floats = binary || pg_field.format_options().extra_float_digits >= 1;
            let plain = field.metadata().is_empty()
                && match field.data_type() {
                    DataType::Float64 => *pg_type == Type::FLOAT8 && shortest_floats,
                    DataType::Float32 => *pg_type == Type::FLOAT4 && shortest_floats,
                    DataType::Int16 => *pg_type == Type::INT2,
                    DataType::Int32 => *pg_type == Type::INT4,
                    DataType::Int64 => *pg_type == Type::INT8,
                    DataType::Boolean => *pg_type == Type::BOOL,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        *pg_type == Type::TEXT
                    }
                    _ => false,
                };
            return if plain { ColumnEncoding::Plain { binary } } else { ColumnEncoding::ArrowPg };
        };
        // Hand-written text is ISO only; other DateStyles stay with arrow-pg.
        let iso = pg_field
            .format_options()
            .date_style
            .trim_start()
            .get(..3)
            .is_some_and(|style| style.eq_ignore_ascii_case("ISO"));
        if !binary && !iso {
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
        ColumnEncoding::Timestamp { unit: *unit, zone, binary }
    }
}

/// One column of a batch, ready to encode row by row.
struct BatchColumn {
    nulls: Option<NullBuffer>,
    values: ColumnValues,
}

enum ColumnValues {
    /// `text` is `None` for binary.
    Timestamp {
        values: ScalarBuffer<i64>,
        unit: TimeUnit,
        text: Option<TimestampText>,
    },
    Float64 {
        values: ScalarBuffer<f64>,
        binary: bool,
    },
    Float32 {
        values: ScalarBuffer<f32>,
        binary: bool,
    },
    Int16 {
        values: ScalarBuffer<i16>,
        binary: bool,
    },
    Int32 {
        values: ScalarBuffer<i32>,
        binary: bool,
    },
    Int64 {
        values: ScalarBuffer<i64>,
        binary: bool,
    },
    Bool {
        values: BooleanBuffer,
        binary: bool,
    },
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    Utf8View(StringViewArray),
    ArrowPg {
        array: ArrayRef,
        field: FieldRef,
    },
}

impl BatchColumn {
    fn new(array: &ArrayRef, field: &FieldRef, encoding: &ColumnEncoding) -> Self {
        let values = match (encoding, array.data_type()) {
            (ColumnEncoding::Timestamp { unit, zone, binary }, _) => {
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
                ColumnValues::Timestamp {
                    values: values.clone(),
                    unit: *unit,
                    text: (!binary).then(|| TimestampText::new(*zone)),
                }
            }
            (ColumnEncoding::Plain { binary }, data_type) => {
                let binary = *binary;
                match data_type {
                    DataType::Float64 => ColumnValues::Float64 {
                        values: array.as_primitive::<Float64Type>().values().clone(),
                        binary,
                    },
                    DataType::Float32 => ColumnValues::Float32 {
                        values: array.as_primitive::<Float32Type>().values().clone(),
                        binary,
                    },
                    DataType::Int16 => ColumnValues::Int16 {
                        values: array.as_primitive::<Int16Type>().values().clone(),
                        binary,
                    },
                    DataType::Int32 => ColumnValues::Int32 {
                        values: array.as_primitive::<Int32Type>().values().clone(),
                        binary,
                    },
                    DataType::Int64 => ColumnValues::Int64 {
                        values: array.as_primitive::<Int64Type>().values().clone(),
                        binary,
                    },
                    DataType::Boolean => {
                        ColumnValues::Bool { values: array.as_boolean().values().clone(), binary }
                    }
                    DataType::Utf8 => ColumnValues::Utf8(array.as_string::<i32>().clone()),
                    DataType::LargeUtf8 => {
                        ColumnValues::LargeUtf8(array.as_string::<i64>().clone())
                    }
                    DataType::Utf8View => ColumnValues::Utf8View(array.as_string_view().clone()),
                    // `ColumnEncoding::of` only chooses `Plain` for the types above.
                    _ => ColumnValues::ArrowPg { array: array.clone(), field: field.clone() },
                }
            }
            (ColumnEncoding::ArrowPg, _) => {
                ColumnValues::ArrowPg { array: array.clone(), field: field.clone() }
            }
        };
        // arrow-pg writes its own NULLs.
        let nulls = match values {
            ColumnValues::ArrowPg { .. } => None,
            _ => array.logical_nulls(),
        };
        BatchColumn { nulls, values }
    }

    /// Appends the value in `row` as a DataRow field: its length (-1 for NULL), then its
    /// bytes. `scratch` is where arrow-pg encodes.
    fn write(
        &mut self,
        row: usize,
        pg_field: &FieldInfo,
        out: &mut BytesMut,
        scratch: &mut DataRowEncoder,
    ) -> PgWireResult<()> {
        if self.nulls.as_ref().is_some_and(|nulls| nulls.is_null(row)) {
            out.put_i32(-1);
            return Ok(());
        }
        match &mut self.values {
            ColumnValues::Timestamp { values, unit, text } => {
                let value = values[row];
                let micros = micros_of(value, *unit).map_err(|_| out_of_range(value))?;
                match text {
                    Some(text) => with_length(out, |out| {
                        text.write(out, micros).map_err(|_| out_of_range(value))
                    })?,
                    None => {
                        out.put_i32(8);
                        out.put_i64(since_postgres_epoch(micros).map_err(|_| out_of_range(value))?);
                    }
                }
            }
            ColumnValues::Float64 { values, binary: true } => {
                out.put_i32(8);
                out.put_f64(values[row]);
            }
            ColumnValues::Float64 { values, binary: false } => with_length(out, |out| {
                write_float8(out, values[row]);
                Ok(())
            })?,
            ColumnValues::Float32 { values, binary: true } => {
                out.put_i32(4);
                out.put_f32(values[row]);
            }
            ColumnValues::Float32 { values, binary: false } => with_length(out, |out| {
                write_float4(out, values[row]);
                Ok(())
            })?,
            ColumnValues::Int16 { values, binary: true } => {
                out.put_i32(2);
                out.put_i16(values[row]);
            }
            ColumnValues::Int32 { values, binary: true } => {
                out.put_i32(4);
                out.put_i32(values[row]);
            }
            ColumnValues::Int64 { values, binary: true } => {
                out.put_i32(8);
                out.put_i64(values[row]);
            }
            ColumnValues::Int16 { values, binary: false } => {
                write_text(out, itoa::Buffer::new().format(values[row]))?
            }
            ColumnValues::Int32 { values, binary: false } => {
                write_text(out, itoa::Buffer::new().format(values[row]))?
            }
            ColumnValues::Int64 { values, binary: false } => {
                write_text(out, itoa::Buffer::new().format(values[row]))?
            }
            ColumnValues::Bool { values, binary: true } => {
                out.put_i32(1);
                out.put_u8(u8::from(values.value(row)));
            }
            ColumnValues::Bool { values, binary: false } => {
                write_text(out, if values.value(row) { "t" } else { "f" })?
            }
            ColumnValues::Utf8(array) => write_text(out, array.value(row))?,
            ColumnValues::LargeUtf8(array) => write_text(out, array.value(row))?,
            ColumnValues::Utf8View(array) => write_text(out, array.value(row))?,
            ColumnValues::ArrowPg { array, field } => {
                encode_value(scratch, array, row, field, pg_field)?;
                out.extend_from_slice(&scratch.take_row().data);
            }
        }
        Ok(())
    }
}

/// Appends `text` with its length.
fn write_text(out: &mut BytesMut, text: &str) -> PgWireResult<()> {
    let length = i32::try_from(text.len())
        .map_err(|_| user_error("54000", format!("value of {} bytes is too long", text.len())))?;
    out.put_i32(length);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Appends what `write` writes, preceded by its length.
fn with_length(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> PgWireResult<()>,
) -> PgWireResult<()> {
    let at = out.len();
    out.put_i32(0);
    write(out)?;
    let length = out.len() - at - 4;
    let length = i32::try_from(length)
        .map_err(|_| user_error("54000", format!("value of {length} bytes is too long")))?;
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// The DataRows of one batch. They are encoded one after another into one buffer and handed
/// out as slices of it: one allocation per batch instead of one per row.
fn encode_batch(
    batch: &RecordBatch,
    encodings: &[ColumnEncoding],
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<PgWireResult<DataRow>>> {
    let schema = batch.schema();
    let mut columns: Vec<BatchColumn> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(encodings)
        .map(|((array, field), encoding)| BatchColumn::new(array, field, encoding))
        .collect();
    let field_count = i16::try_from(columns.len())
        .map_err(|_| user_error("54011", format!("{} result columns", columns.len())))?;
    let rows = batch.num_rows();
    // Room for a typical row of short values; the buffer grows when rows are wider.
    let mut buffer = BytesMut::with_capacity(rows * (columns.len() * 16));
    let mut row_ends = Vec::with_capacity(rows);
    let mut scratch = DataRowEncoder::new(fields.clone());
    for row in 0..rows {
        for (column, pg_field) in columns.iter_mut().zip(fields.iter()) {
            column.write(row, pg_field, &mut buffer, &mut scratch)?;
        }
        row_ends.push(buffer.len());
    }
    let mut start = 0;
    Ok(row_ends
        .into_iter()
        .map(|end| {
            let data = buffer.split_to(end - start);
            start = end;
            Ok(DataRow::new(data, field_count))
        })
        .collect())
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
    use datafusion::arrow::array::{
        BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
        TimestampMicrosecondArray,
    };

    /// The fields of one encoded row: `None` for NULL.
    fn fields_of(row: &DataRow) -> Vec<Option<Vec<u8>>> {
        let mut data = &row.data[..];
        (0..row.field_count)
            .map(|_| {
                let length = i32::from_be_bytes(data[..4].try_into().unwrap());
                data = &data[4..];
                (length >= 0).then(|| {
                    let (value, rest) = data.split_at(length as usize);
                    data = rest;
                    value.to_vec()
                })
            })
            .collect()
    }

    #[test]
    fn rows_are_what_arrow_pg_writes_but_floats_as_postgres_spells_them() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i16", DataType::Int16, true),
            Field::new("i32", DataType::Int32, true),
            Field::new("i64", DataType::Int64, true),
            Field::new("f32", DataType::Float32, true),
            Field::new("f64", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("ls", DataType::LargeUtf8, true),
            Field::new("sv", DataType::Utf8View, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            // Not hand-written: goes through arrow-pg.
            Field::new("d", DataType::Date32, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int16Array::from(vec![Some(-7), None, Some(i16::MAX)])),
            Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(0), None])),
            Arc::new(Int64Array::from(vec![None, Some(i64::MAX), Some(-1)])),
            Arc::new(Float32Array::from(vec![Some(1.5), None, Some(-0.25)])),
            Arc::new(Float64Array::from(vec![Some(21.53), Some(-1e-3), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            Arc::new(StringArray::from(vec![Some("sensor_1"), None, Some("")])),
            Arc::new(LargeStringArray::from(vec![Some("é"), Some("x"), None])),
            Arc::new(StringViewArray::from(vec![
                None,
                Some("a longer string than twelve"),
                Some("v"),
            ])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_772_582_400_000_000), None, Some(0)])
                    .with_timezone("+00:00"),
            ),
            Arc::new(Date32Array::from(vec![Some(20_000), None, Some(-1)])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        let options = Arc::new(FormatOptions::default());
        for format in [FieldFormat::Text, FieldFormat::Binary] {
            let fields = Arc::new(pg_fields(&schema, &[format.value()], &options).expect("fields"));
            let encodings: Vec<ColumnEncoding> = schema
                .fields()
                .iter()
                .zip(fields.iter())
                .map(|(field, pg_field)| ColumnEncoding::of(field, pg_field, None))
                .collect();
            let rows = encode_batch(&batch, &encodings, &fields).expect("encodes");
            assert_eq!(rows.len(), 3);
            let mut reference = DataRowEncoder::new(fields.clone());
            for (row, encoded) in rows.into_iter().enumerate() {
                let encoded = encoded.expect("row");
                assert_eq!(encoded.field_count, 11);
                for (column, field) in schema.fields().iter().enumerate() {
                    encode_value(&mut reference, batch.column(column), row, field, &fields[column])
                        .expect("arrow-pg encodes");
                }
                let expected = fields_of(&reference.take_row());
                let actual = fields_of(&encoded);
                for (column, field) in schema.fields().iter().enumerate() {
                    let name = field.name();
                    if format == FieldFormat::Text && name == "t" {
                        // arrow-pg writes `2026-03-04 00:00:00+00:00`; Postgres omits `:00`.
                        continue;
                    }
                    assert_eq!(actual[column], expected[column], "{name} row {row} {format:?}");
                }
            }
        }
    }

    #[test]
    fn float_text_is_postgres_not_pgwire() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, false)]));
        let values = Float64Array::from(vec![21.0, 1e20, f64::INFINITY, 1e-5]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).expect("batch");
        let options = Arc::new(FormatOptions::default());
        let fields = Arc::new(pg_fields(&schema, &[], &options).expect("fields"));
        let encodings = [ColumnEncoding::of(schema.field(0), &fields[0], None)];
        let texts: Vec<String> = encode_batch(&batch, &encodings, &fields)
            .expect("encodes")
            .into_iter()
            .map(|row| {
                String::from_utf8(fields_of(&row.expect("row"))[0].clone().expect("not null"))
                    .expect("utf8")
            })
            .collect();
        assert_eq!(texts, ["21", "1e+20", "Infinity", "1e-05"]);
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
}
