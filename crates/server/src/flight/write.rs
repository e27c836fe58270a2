//! Bulk writes over Flight: Arrow record batches of `(time, device_id, metric, value)` become an
//! `INSERT INTO readings`, so they take the durable write path SQL inserts take (WAL first,
//! 64 Ki rows per WAL record) and are validated the same way.
//!
//! The batches stream from the client into the insert as they arrive: a bulk load of any size
//! runs in bounded memory, and gRPC flow control slows the client down to the WAL's pace.
//! Like a long `INSERT`, a load that fails part-way (a NULL, a bad device name) keeps the
//! chunks written before the bad row; the error names the row, so the client can resume.

use std::sync::{Arc, Mutex};

use arrow_flight::sql::server::PeekableFlightDataStream;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, UInt64Type};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{cast, col, Expr, SessionContext};
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use super::{query_status, upload_status, uploaded_batches};

/// The columns a bulk write needs, each with the names it may go by (the first is the
/// `readings` column; the others are the MiniTrue document's JSON names).
const COLUMNS: [(&str, &[&str]); 4] = [
    ("time", &["time", "timestamp"]),
    ("device_id", &["device_id"]),
    ("metric", &["metric", "metric_name"]),
    ("value", &["value"]),
];

/// Writes the record batches of a DoPut into `readings`; returns the rows written.
///
/// Columns are found by name (extra columns are an error, so a typo is not silently dropped);
/// `time` may be any Arrow timestamp (a zone-less one is taken as UTC) or an int64 of
/// nanoseconds since the epoch; `device_id`/`metric` any string type; `value` any number.
pub(crate) async fn write_readings(
    ctx: &SessionContext,
    stream: PeekableFlightDataStream,
) -> Result<u64, Status> {
    let mut batches = uploaded_batches(stream);
    let first =
        batches.next().await.transpose().map_err(|e| upload_status(e, "the record batches"))?;
    let Some(schema) = batches.schema().cloned() else {
        return Ok(0); // no schema message: nothing was sent
    };
    let selection = select_columns(&schema)?;
    let rest = batches.map_err(|e| DataFusionError::External(Box::new(e)));
    let input = futures::stream::iter(first.map(Ok)).chain(rest);
    let source = OneShotStream::new(
        schema.clone(),
        Box::pin(RecordBatchStreamAdapter::new(schema.clone(), input)),
    );
    let table = StreamingTable::try_new(schema, vec![Arc::new(source)]).map_err(query_status)?;
    let frame = ctx
        .read_table(Arc::new(table))
        .and_then(|frame| frame.select(selection))
        .map_err(query_status)?;
    let counts =
        frame.write_table("readings", DataFrameWriteOptions::new()).await.map_err(query_status)?;
    Ok(counts
        .iter()
        .filter_map(|batch| batch.column(0).as_primitive_opt::<UInt64Type>())
        .flat_map(|counts| counts.iter().flatten())
        .sum())
}

/// The `readings` columns out of `schema`, cast to their `readings` types.
fn select_columns(schema: &SchemaRef) -> Result<Vec<Expr>, Status> {
    let mut used = Vec::new();
    let mut selection = Vec::new();
    for (column, names) in COLUMNS {
        let field = schema
            .fields()
            .iter()
            .find(|f| names.contains(&f.name().as_str()))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "the batches have no {column} column (they need time, device_id, metric, value; got {})",
                    field_names(schema)
                ))
            })?;
        used.push(field.name().clone());
        let target = match column {
            "time" => {
                if !matches!(field.data_type(), DataType::Timestamp(..) | DataType::Int64) {
                    return Err(Status::invalid_argument(format!(
                        "column {} is {}: it must be a timestamp or int64 nanoseconds",
                        field.name(),
                        field.data_type()
                    )));
                }
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            }
            "value" => DataType::Float64,
            _ => DataType::Utf8,
        };
        let source = col(format!("\"{}\"", field.name().replace('"', "\"\"")));
        let source = match (column, field.data_type()) {
            // A zone-less timestamp is UTC: relabel it before converting the unit.
            ("time", DataType::Timestamp(unit, None)) => {
                cast(source, DataType::Timestamp(*unit, Some("UTC".into())))
            }
            _ => source,
        };
        selection.push(cast(source, target).alias(column));
    }
    if let Some(extra) = schema.fields().iter().find(|f| !used.contains(f.name())) {
        return Err(Status::invalid_argument(format!(
            "column {:?} is not a readings column (time, device_id, metric, value)",
            extra.name()
        )));
    }
    Ok(selection)
}

fn field_names(schema: &SchemaRef) -> String {
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names.is_empty() {
        "no columns".to_string()
    } else {
        names.join(", ")
    }
}

/// A [`PartitionStream`] that hands out one stream once: the client's batches can only be
/// read once.
struct OneShotStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl OneShotStream {
    fn new(schema: SchemaRef, stream: SendableRecordBatchStream) -> Self {
        OneShotStream { schema, stream: Mutex::new(Some(stream)) }
    }
}

impl std::fmt::Debug for OneShotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShotStream").finish_non_exhaustive()
    }
}

impl PartitionStream for OneShotStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
        taken.unwrap_or_else(|| {
            let error = DataFusionError::Execution("the uploaded batches were already read".into());
            Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(error) }),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn schema(fields: Vec<(&str, DataType)>) -> SchemaRef {
        Arc::new(Schema::new(
            fields.into_iter().map(|(n, t)| Field::new(n, t, true)).collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn finds_columns_by_name_and_alias() {
        let ok = schema(vec![
            ("value", DataType::Int32),
            ("metric_name", DataType::LargeUtf8),
            ("device_id", DataType::Utf8View),
            ("timestamp", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ]);
        let selection = select_columns(&ok).unwrap();
        let names: Vec<_> = selection.iter().map(|e| e.schema_name().to_string()).collect();
        assert_eq!(names, ["time", "device_id", "metric", "value"]);
    }

    #[test]
    fn says_what_is_missing_or_extra_or_mistyped() {
        let missing = schema(vec![("time", DataType::Int64), ("device_id", DataType::Utf8)]);
        let error = select_columns(&missing).unwrap_err();
        assert!(error.message().contains("no metric column"), "{}", error.message());

        let extra = schema(vec![
            ("time", DataType::Int64),
            ("device_id", DataType::Utf8),
            ("metric", DataType::Utf8),
            ("value", DataType::Float64),
            ("vlaue", DataType::Float64),
        ]);
        let error = select_columns(&extra).unwrap_err();
        assert!(error.message().contains("\"vlaue\""), "{}", error.message());

        let text_time = schema(vec![
            ("time", DataType::Utf8),
            ("device_id", DataType::Utf8),
            ("metric", DataType::Utf8),
            ("value", DataType::Float64),
        ]);
        let error = select_columns(&text_time).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("timestamp"), "{}", error.message());
    }
}
