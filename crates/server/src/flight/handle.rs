//! Statement handles: what a Flight SQL client holds between planning a statement and
//! fetching its result.
//!
//! Handles are stateless: one carries the SQL text and the parameters bound to it, so any node
//! can serve the ticket, a restart does not invalidate it, and closing a prepared statement
//! frees nothing. Binding parameters answers a new handle (Flight SQL's
//! `DoPutPreparedStatementResult`), which clients use from then on.
//!
//! Layout: `MTS1` · u32 LE length of the SQL · the SQL (UTF-8) · the parameters as an Arrow IPC
//! stream of one row (absent when none are bound).

use std::io::Cursor;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::scalar::ScalarValue;
use tonic::Status;

const MAGIC: &[u8; 4] = b"MTS1";

/// A statement, and the parameters bound to it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatementHandle {
    pub sql: String,
    /// One row: column `i` fills `$i+1`.
    pub params: Option<RecordBatch>,
}

impl StatementHandle {
    pub fn new(sql: impl Into<String>) -> StatementHandle {
        StatementHandle { sql: sql.into(), params: None }
    }

    pub fn encode(&self) -> Result<Bytes, Status> {
        let sql_len = u32::try_from(self.sql.len())
            .map_err(|_| Status::invalid_argument("the SQL text is longer than 4 GiB"))?;
        let mut out = Vec::with_capacity(8 + self.sql.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&sql_len.to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(params) = &self.params {
            let internal = |e: datafusion::arrow::error::ArrowError| {
                Status::internal(format!("encoding the parameters: {e}"))
            };
            let mut writer = StreamWriter::try_new(&mut out, &params.schema()).map_err(internal)?;
            writer.write(params).map_err(internal)?;
            writer.finish().map_err(internal)?;
        }
        Ok(out.into())
    }

    /// Fails with `InvalidArgument` on anything [`StatementHandle::encode`] did not make.
    pub fn decode(bytes: &[u8]) -> Result<StatementHandle, Status> {
        let invalid =
            |what: &str| Status::invalid_argument(format!("invalid statement handle: {what}"));
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| invalid("unknown format"))?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| invalid("truncated"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(invalid("truncated"));
        }
        let (sql, rest) = rest.split_at(len);
        let sql = std::str::from_utf8(sql).map_err(|_| invalid("the SQL is not UTF-8"))?;
        let params = if rest.is_empty() {
            None
        } else {
            let mut reader = StreamReader::try_new(Cursor::new(rest), None)
                .map_err(|_| invalid("parameters"))?;
            let batch = reader.next().transpose().map_err(|_| invalid("parameters"))?;
            Some(batch.ok_or_else(|| invalid("parameters"))?)
        };
        Ok(StatementHandle { sql: sql.to_string(), params })
    }

    /// The bound values, in placeholder order (`$1` first); empty when nothing is bound.
    pub fn parameter_values(&self) -> Result<Vec<ScalarValue>, Status> {
        let Some(params) = &self.params else {
            return Ok(Vec::new());
        };
        parameter_row(params, 0)
    }
}

/// Row `row` of a parameter batch, one value per column.
pub(crate) fn parameter_row(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>, Status> {
    batch
        .columns()
        .iter()
        .map(|column| {
            ScalarValue::try_from_array(column, row)
                .map_err(|e| Status::invalid_argument(format!("parameter value: {e}")))
        })
        .collect()
}

/// The one row a query binds, out of the batches a client sent.
pub(crate) fn single_parameter_row(batches: Vec<RecordBatch>) -> Result<RecordBatch, Status> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(Status::invalid_argument(format!(
            "a query binds exactly one row of parameters, got {rows}"
        )));
    }
    Ok(batches.into_iter().find(|b| b.num_rows() == 1).expect("the one row"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn params() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["sensor_1"])),
                Arc::new(Float64Array::from(vec![21.5])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trips_with_and_without_parameters() {
        let bare = StatementHandle::new("SELECT 1");
        assert_eq!(StatementHandle::decode(&bare.encode().unwrap()).unwrap(), bare);
        let bound =
            StatementHandle { sql: "SELECT $1, $2 — ünïcode".into(), params: Some(params()) };
        let decoded = StatementHandle::decode(&bound.encode().unwrap()).unwrap();
        assert_eq!(decoded, bound);
        assert_eq!(
            decoded.parameter_values().unwrap(),
            vec![ScalarValue::Utf8(Some("sensor_1".into())), ScalarValue::Float64(Some(21.5))]
        );
    }

    #[test]
    fn rejects_what_it_did_not_make() {
        let good =
            StatementHandle { sql: "SELECT $1".into(), params: Some(params()) }.encode().unwrap();
        for bad in
            [&b""[..], b"SELECT 1", b"MTS1", b"MTS1\xff\xff\xff\xffabc", &good[..good.len() / 2]]
        {
            let error = StatementHandle::decode(bad).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn a_query_binds_one_row() {
        assert!(single_parameter_row(vec![params()]).is_ok());
        let two =
            datafusion::arrow::compute::concat_batches(&params().schema(), &[params(), params()])
                .unwrap();
        assert_eq!(
            single_parameter_row(vec![two]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(single_parameter_row(vec![]).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
