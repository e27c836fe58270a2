//! Planning a statement for a stateless door (HTTP, Flight): the statement passes the client
//! SQL check ([`minitrue_query::check_client_statement`]: nothing that reaches files, creates
//! objects or changes shared settings, and no more than the client's privilege allows); no
//! session state may outlive the request, so `SET` and transactions are refused too; bound
//! parameters are cast to what their placeholders need.

use std::net::SocketAddr;

use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use minitrue_auth::{Door, Gatekeeper, Principal, Role};
use minitrue_query::{Privilege, QueryError};

/// Who runs a statement, for the privilege check and the audit log.
pub(crate) struct Caller<'a> {
    pub(crate) gate: &'a Gatekeeper,
    pub(crate) door: Door,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) principal: &'a Principal,
}

/// The SQL privilege of a role.
pub(crate) fn privilege_of(role: Role) -> Privilege {
    match role {
        Role::Reader => Privilege::Read,
        Role::Writer => Privilege::Write,
        Role::Admin => Privilege::Admin,
    }
}

/// Plans `sql` on the shared session for `caller`; `params` fill `$1, $2, …`. A refused
/// statement is counted as denied, a `DELETE` written to the audit log.
pub(crate) async fn plan(
    ctx: &SessionContext,
    sql: &str,
    params: Vec<ScalarValue>,
    caller: &Caller<'_>,
) -> Result<DataFrame> {
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_statements(false);
    let granted = privilege_of(caller.principal.role);
    let (frame, deletes) = match minitrue_query::plan_client_sql(ctx, sql, options, granted).await {
        Ok(planned) => planned,
        Err(error) => {
            if matches!(error, QueryError::NotAllowed { .. }) {
                caller.gate.denied(caller.door, caller.peer, caller.principal, &error.to_string());
            }
            return Err(DataFusionError::External(Box::new(error)));
        }
    };
    if deletes {
        caller.gate.audit(caller.door, caller.peer, caller.principal, sql);
    }
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
