//! What a connection may run: every statement passes the client SQL check
//! ([`minitrue_query::check_client_statement`]) and the connection's privilege before any
//! other hook or DataFusion sees it, and `SET` changes only the issuing connection.
//!
//! datafusion-postgres keeps the Postgres settings clients send (`statement_timeout`,
//! `DateStyle`, `application_name`, `SET TIME ZONE`, …) per connection, and hands every other
//! `SET` to DataFusion, which would change the session every client shares. So `SET`
//! statements are normalised here first: a time zone set as a variable (`SET timezone = …`,
//! `SET LOCAL TIME ZONE`) and settings with a `SESSION`/`LOCAL` scope become the
//! per-connection forms; `datafusion.*` settings are refused by the check.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use minitrue_auth::{Door, Gatekeeper, Principal};
use minitrue_query::{check_client_sql_statement, check_privilege, sql_statement_deletes};

use crate::stateless::privilege_of;

/// Who a connection is, set at startup.
#[derive(Debug, Clone)]
pub(crate) struct Login(pub(crate) Principal);

/// The first query hook: checks each statement, then lets datafusion-postgres' `SET`/`SHOW`
/// handling answer the connection-local ones.
pub(crate) struct AccessHook {
    gate: Arc<Gatekeeper>,
    settings: SetShowHook,
}

impl AccessHook {
    pub(crate) fn new(gate: Arc<Gatekeeper>) -> Self {
        AccessHook { gate, settings: SetShowHook }
    }

    /// Checks `statement` against the connection's login and returns the form to run; a
    /// refusal is counted, a `DELETE` written to the audit log.
    fn admit(
        &self,
        statement: &Statement,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<Statement> {
        // A connection without a login never got through startup: it may do nothing.
        let Some(login) = client.session_extensions().get::<Login>() else {
            return Err(refused(minitrue_query::QueryError::NotAllowed {
                reason: "not logged in".to_string(),
            }));
        };
        let principal = &login.0;
        let peer = Some(client.socket_addr());
        let checked = check_client_sql_statement(statement)
            .and_then(|needed| check_privilege(needed, privilege_of(principal.role)));
        if let Err(error) = checked {
            self.gate.denied(Door::Postgres, peer, principal, &error.to_string());
            return Err(refused(error));
        }
        if sql_statement_deletes(statement) {
            self.gate.audit(Door::Postgres, peer, principal, &statement.to_string());
        }
        Ok(connection_local(statement))
    }
}

fn refused(error: minitrue_query::QueryError) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

/// The per-connection form of a `SET` (other statements unchanged).
fn connection_local(statement: &Statement) -> Statement {
    let Statement::Set(set) = statement else {
        return statement.clone();
    };
    let set = match set {
        Set::SingleAssignment { variable, values, .. } if is_time_zone(&variable.to_string()) => {
            match values.first() {
                Some(value) => Set::SetTimeZone { local: false, value: value.clone() },
                None => set.clone(),
            }
        }
        Set::SingleAssignment { scope: Some(_), hivevar, variable, values } => {
            Set::SingleAssignment {
                scope: None,
                hivevar: *hivevar,
                variable: variable.clone(),
                values: values.clone(),
            }
        }
        Set::SetTimeZone { value, .. } => Set::SetTimeZone { local: false, value: value.clone() },
        other => other.clone(),
    };
    Statement::Set(set)
}

fn is_time_zone(variable: &str) -> bool {
    let variable = variable.trim_matches('"').to_ascii_lowercase();
    matches!(variable.as_str(), "timezone" | "time_zone" | "time zone")
}

#[async_trait]
impl QueryHook for AccessHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let statement = match self.admit(statement, &*client) {
            Ok(statement) => statement,
            Err(error) => return Some(Err(error)),
        };
        self.settings.handle_simple_query(&statement, session, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let statement = match self.admit(statement, client) {
            Ok(statement) => statement,
            Err(error) => return Some(Err(error)),
        };
        self.settings.handle_extended_parse_query(&statement, session, client).await
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Checked when it was parsed; only the `SET` form is needed again.
        let statement = connection_local(statement);
        self.settings.handle_extended_query(&statement, plan, params, session, client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Expr;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
    }

    #[test]
    fn time_zones_set_as_variables_stay_with_the_connection() {
        for sql in [
            "SET timezone = 'Europe/Berlin'",
            "SET TIMEZONE TO 'Europe/Berlin'",
            "SET SESSION TIME ZONE 'Europe/Berlin'",
            "SET LOCAL TIME ZONE 'Europe/Berlin'",
        ] {
            let Statement::Set(Set::SetTimeZone { local: false, value }) =
                connection_local(&parse(sql))
            else {
                panic!("{sql}: not a connection time zone");
            };
            assert!(matches!(value, Expr::Value(_)), "{sql}: {value:?}");
        }
        let Statement::Set(Set::SingleAssignment { scope: None, .. }) =
            connection_local(&parse("SET SESSION statement_timeout = 5000"))
        else {
            panic!("the SESSION scope is kept");
        };
    }
}
