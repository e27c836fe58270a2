//! Planning a statement for a stateless door (HTTP, Flight): no session state may outlive the
//! request, so DDL, `SET` and transactions are refused (a `CREATE TABLE` would linger in the
//! session every client shares), and bound parameters are cast to what their placeholders need.

use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

/// Plans `sql` on the shared session; `params` fill `$1, $2, …`.
pub(crate) async fn plan(
    ctx: &SessionContext,
    sql: &str,
    params: Vec<ScalarValue>,
) -> Result<DataFrame> {
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_statements(false);
    let frame = ctx.sql_with_options(sql, options).await?;
    if params.is_empty() {
        return Ok(frame);
    }
    let params = coerce_parameters(&frame, params)?;
    frame.with_param_values(params)
}

/// Casts bound values to the types their placeholders need: clients send what their language
/// has (a Python `datetime` is microseconds, an `int` is int64), and DataFusion wants the
/// placeholder's exact type.
fn coerce_parameters(frame: &DataFrame, params: Vec<ScalarValue>) -> Result<Vec<ScalarValue>> {
    let types = frame.logical_plan().get_parameter_types()?;
    params
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let placeholder = format!("${}", index + 1);
            match types.get(&placeholder) {
                Some(Some(wanted)) if value.data_type() != *wanted => value
                    .cast_to(wanted)
                    .map_err(|e| DataFusionError::Plan(format!("parameter {placeholder}: {e}"))),
                _ => Ok(value),
            }
        })
        .collect()
}
