//! What a client's statement may do, decided from its syntax before it is planned.
//!
//! Every door that takes SQL from outside (pgwire, HTTP, Flight SQL) passes each statement
//! through [`check_client_statement`] first. It answers with the [`Privilege`] the statement
//! needs (the door compares it with the client's role), or refuses statements that no client
//! may run whatever its role:
//!
//! - `COPY` and `CREATE EXTERNAL TABLE`, which would read or write files on the server;
//! - statements that create, change or drop objects (`CREATE TABLE/VIEW/…`, `DROP`,
//!   `ALTER`): MiniTrue's tables are fixed, and the catalog is shared by every client;
//! - `SET`/`RESET` of `datafusion.*` settings, which DataFusion applies to the session every
//!   client shares, and `SET ROLE`/`SESSION AUTHORIZATION` (a role comes from the login);
//! - anything not on the list below.
//!
//! The check is an allowlist over the parsed statement, so a statement DataFusion learns to
//! run in a later version stays refused until it is added here. It is not the only guard:
//! the session also has no file formats, no table factories and no local file system
//! ([`crate::session_in_cluster`]), and its schemas refuse new tables, so a statement that
//! slipped past this check would still fail before it touched a file.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{ObjectName, Reset, Set, Statement};

use crate::error::QueryError;

/// The privilege a statement needs. Ordered: each includes the ones before it, as the roles
/// do (a reader reads, a writer also writes, an admin may do everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    /// Queries of the tables clients read (`readings`, `devices`, `information_schema`,
    /// `pg_catalog`), `EXPLAIN`, `SHOW`, transaction control, cursors and the connection's own
    /// settings.
    Read,
    /// Adding points: `INSERT`.
    Write,
    /// Removing points (`DELETE`) and reading MiniTrue's internals (`system.*`).
    Admin,
}

impl Privilege {
    /// The role that first has this privilege, for messages.
    pub fn role_name(self) -> &'static str {
        match self {
            Privilege::Read => "reader",
            Privilege::Write => "writer",
            Privilege::Admin => "admin",
        }
    }
}

/// Plans one client statement on `ctx`, as `SessionContext::sql_with_options` would, after
/// [`check_client_statement`] and a check that `granted` covers what it needs
/// ([`QueryError::NotAllowed`] otherwise). For the stateless doors (HTTP, Flight). Also says
/// whether the statement deletes points (the doors write those to the audit log).
pub async fn plan_client_sql(
    ctx: &SessionContext,
    sql: &str,
    options: SQLOptions,
    granted: Privilege,
) -> Result<(DataFrame, bool), QueryError> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect)?;
    let needed = check_client_statement(&statement)?;
    check_privilege(needed, granted)?;
    let deletes = statement_deletes(&statement);
    let plan = state.statement_to_plan(statement).await?;
    options.verify_plan(&plan)?;
    Ok((ctx.execute_logical_plan(plan).await?, deletes))
}

/// Whether `statement` deletes points (`DELETE`, also under `EXPLAIN ANALYZE`).
pub fn statement_deletes(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(statement) => sql_statement_deletes(statement),
        DfStatement::Explain(explain) => {
            explain.options.analyze && statement_deletes(&explain.statement)
        }
        _ => false,
    }
}

/// Like [`statement_deletes`], for a statement parsed by sqlparser alone.
pub fn sql_statement_deletes(statement: &Statement) -> bool {
    match statement {
        Statement::Delete(_) => true,
        Statement::Explain { statement, analyze, .. } => {
            *analyze && sql_statement_deletes(statement)
        }
        _ => false,
    }
}

/// Refuses a statement that needs `needed` from a client granted only `granted`.
pub fn check_privilege(needed: Privilege, granted: Privilege) -> Result<(), QueryError> {
    match needed <= granted {
        true => Ok(()),
        false => Err(QueryError::NotAllowed {
            reason: format!(
                "permission denied: this statement needs the {} role ({}), and this login has \
                 the {} role",
                needed.role_name(),
                match needed {
                    Privilege::Read => "queries",
                    Privilege::Write => "INSERT",
                    Privilege::Admin => "DELETE and system.* tables",
                },
                granted.role_name()
            ),
        }),
    }
}

/// The schema holding MiniTrue's internals (files, WAL, series, metrics, nodes, ring).
const SYSTEM_SCHEMA: &str = "system";

/// Decides whether a client may run `statement` and with which privilege. An error is
/// [`QueryError::NotAllowed`] (SQLSTATE 42501) or [`QueryError::Unsupported`], with a message
/// that says what to do instead. Pure: looks only at the syntax.
pub fn check_client_statement(statement: &DfStatement) -> Result<Privilege, QueryError> {
    let privilege = match statement {
        DfStatement::Statement(statement) => sql_statement(statement)?,
        DfStatement::CreateExternalTable(_) => return Err(reads_files("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => return Err(reads_files("COPY")),
        DfStatement::Explain(explain) => check_client_statement(&explain.statement)?,
        DfStatement::Reset(datafusion::sql::parser::ResetStatement::Variable(name)) => {
            session_setting(name)?
        }
    };
    // A statement reading `system.*` needs the admin privilege, whatever else it does.
    match reads_system_tables(statement) {
        true => Ok(Privilege::Admin),
        false => Ok(privilege),
    }
}

/// Like [`check_client_statement`], for a statement parsed by sqlparser alone (the Postgres
/// wire protocol door parses with its own Postgres dialect).
pub fn check_client_sql_statement(statement: &Statement) -> Result<Privilege, QueryError> {
    check_client_statement(&DfStatement::Statement(Box::new(statement.clone())))
}

fn sql_statement(statement: &Statement) -> Result<Privilege, QueryError> {
    match statement {
        Statement::Query(_) => Ok(Privilege::Read),
        Statement::Insert(_) => Ok(Privilege::Write),
        Statement::Delete(_) => Ok(Privilege::Admin),
        Statement::Explain { statement, .. } => sql_statement(statement),
        Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowCreate { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Deallocate { .. }
        | Statement::Discard { .. } => Ok(Privilege::Read),
        Statement::Set(set) => set_statement(set),
        Statement::Reset(reset) => match &reset.reset {
            Reset::ALL => Ok(Privilege::Read),
            Reset::ConfigurationParameter(name) => session_setting(name),
        },
        Statement::Copy { .. } => Err(reads_files("COPY")),
        Statement::CreateTable(table) if table.external => {
            Err(reads_files("CREATE EXTERNAL TABLE"))
        }
        Statement::Update(_) | Statement::Merge(_) => Err(QueryError::Unsupported {
            reason: "points are not updated in place: write the point again (the last write \
                     of a timestamp wins) or DELETE it"
                .to_string(),
        }),
        Statement::Truncate(_) => Err(QueryError::Unsupported {
            reason: "TRUNCATE is not supported: use DELETE FROM readings WHERE device_id = …"
                .to_string(),
        }),
        Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateVirtualTable { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateMacro { .. }
        | Statement::CreateType { .. }
        | Statement::CreateSequence { .. }
        | Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AlterView { .. }
        | Statement::AlterIndex { .. }
        | Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::RenameTable(_) => Err(QueryError::NotAllowed {
            reason: format!(
                "{} is not allowed: MiniTrue's tables are fixed (readings, devices, system.*) \
                 and shared by every client; use a WITH clause or a subquery for intermediate \
                 results",
                statement_verb(statement)
            ),
        }),
        Statement::Prepare { .. } | Statement::Execute { .. } => Err(QueryError::NotAllowed {
            reason: "SQL-level PREPARE/EXECUTE is not allowed (prepared statements would be \
                     shared by every client): use your driver's prepared statements"
                .to_string(),
        }),
        other => Err(QueryError::NotAllowed {
            reason: format!("{} statements are not allowed", statement_verb(other)),
        }),
    }
}

fn set_statement(set: &Set) -> Result<Privilege, QueryError> {
    match set {
        Set::SingleAssignment { variable, .. } => session_setting(variable),
        Set::ParenthesizedAssignments { variables, .. } => {
            variables.iter().try_for_each(|name| session_setting(name).map(|_| ()))?;
            Ok(Privilege::Read)
        }
        Set::MultipleAssignments { assignments } => {
            assignments.iter().try_for_each(|set| session_setting(&set.name).map(|_| ()))?;
            Ok(Privilege::Read)
        }
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => Err(QueryError::NotAllowed {
            reason: "a connection's role is the one its user logged in with; connect as \
                     another user instead of SET ROLE / SET SESSION AUTHORIZATION"
                .to_string(),
        }),
        Set::SetSessionParam(_)
        | Set::SetTimeZone { .. }
        | Set::SetNames { .. }
        | Set::SetNamesDefault {}
        | Set::SetTransaction { .. } => Ok(Privilege::Read),
    }
}

/// `SET`/`RESET` of one variable: a connection's own setting, unless it is one of
/// DataFusion's (which DataFusion would change for every client of the node).
fn session_setting(name: &ObjectName) -> Result<Privilege, QueryError> {
    let name = name.to_string().to_ascii_lowercase();
    if name.trim_matches('"').starts_with("datafusion.") {
        return Err(QueryError::NotAllowed {
            reason: format!(
                "SET {name} is not allowed: DataFusion settings are shared by every client of \
                 this node"
            ),
        });
    }
    Ok(Privilege::Read)
}

fn reads_files(what: &str) -> QueryError {
    QueryError::NotAllowed {
        reason: format!(
            "{what} is not allowed: SQL never reads or writes files on the server. Export \
             results with POST /api/v1/sql?format=csv (or format=arrow) or Arrow Flight; load \
             points with INSERT, the HTTP write endpoints or Flight DoPut"
        ),
    }
}

/// True when `statement` names a table in `system` (with or without the catalog).
fn reads_system_tables(statement: &DfStatement) -> bool {
    // A statement whose tables cannot be resolved fails in planning anyway.
    let Ok((tables, _ctes)) = resolve_table_references(statement, true) else {
        return false;
    };
    tables.iter().any(|table| table.schema() == Some(SYSTEM_SCHEMA))
}

/// The first words of a statement, for messages (`CREATE TABLE`, `DROP`, …).
fn statement_verb(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second]
            if first.eq_ignore_ascii_case("create") || first.eq_ignore_ascii_case("alter") =>
        {
            format!("{} {}", first.to_ascii_uppercase(), second.to_ascii_uppercase())
        }
        [first, ..] => first.to_ascii_uppercase(),
        [] => "this".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn check(sql: &str) -> Result<Privilege, QueryError> {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        check_client_statement(&statements.pop_front().unwrap())
    }

    fn refused(sql: &str) -> String {
        match check(sql) {
            Err(error @ QueryError::NotAllowed { .. }) => error.to_string(),
            other => panic!("{sql}: expected NotAllowed, got {other:?}"),
        }
    }

    #[test]
    fn privileges_follow_what_a_statement_does() {
        let cases = [
            ("SELECT avg(value) FROM readings", Privilege::Read),
            ("SELECT * FROM devices d JOIN readings r USING (device_id, metric)", Privilege::Read),
            ("SELECT * FROM information_schema.tables", Privilege::Read),
            ("EXPLAIN SELECT 1", Privilege::Read),
            ("SHOW TIME ZONE", Privilege::Read),
            ("SET TIME ZONE 'Europe/Berlin'", Privilege::Read),
            ("SET extra_float_digits = 3", Privilege::Read),
            ("BEGIN", Privilege::Read),
            ("INSERT INTO readings VALUES (now(), 'a', 'b', 1.0)", Privilege::Write),
            ("DELETE FROM readings WHERE device_id = 'a'", Privilege::Admin),
            ("EXPLAIN ANALYZE DELETE FROM readings WHERE device_id = 'a'", Privilege::Admin),
            ("SELECT * FROM system.files", Privilege::Admin),
            ("SELECT * FROM minitrue.system.metrics", Privilege::Admin),
            ("SELECT * FROM SYSTEM.series", Privilege::Admin),
            ("WITH s AS (SELECT * FROM system.series) SELECT count(*) FROM s", Privilege::Admin),
            ("SELECT (SELECT count(*) FROM system.files)", Privilege::Admin),
            (
                "INSERT INTO readings SELECT now(), 'a', 'b', count(*) FROM system.files",
                Privilege::Admin,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(check(sql).unwrap(), expected, "{sql}");
        }
    }

    #[test]
    fn statements_that_reach_files_are_refused_with_what_to_do_instead() {
        for sql in [
            "COPY (SELECT * FROM readings) TO '/tmp/out.csv'",
            "COPY readings TO '/tmp/out.parquet' STORED AS PARQUET",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
        ] {
            let message = refused(sql);
            assert!(message.contains("files on the server"), "{sql}: {message}");
            assert!(message.contains("format=csv"), "{sql}: {message}");
        }
        // The Postgres dialect's spellings, as the pgwire door parses them.
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        for sql in ["COPY readings TO '/tmp/out.csv'", "COPY readings FROM '/etc/passwd'"] {
            let statement = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
                .unwrap()
                .remove(0);
            let error = check_client_sql_statement(&statement).unwrap_err();
            assert!(matches!(error, QueryError::NotAllowed { .. }), "{sql}: {error}");
        }
    }

    #[test]
    fn objects_and_shared_settings_are_refused() {
        for (sql, words) in [
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("CREATE TABLE t AS SELECT * FROM readings", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE OR"),
            ("DROP TABLE readings", "DROP"),
            ("CREATE SCHEMA s", "CREATE SCHEMA"),
            ("SET datafusion.execution.batch_size = 1", "shared by every client"),
            ("SET datafusion.runtime.memory_limit = '100G'", "shared by every client"),
            ("RESET datafusion.execution.batch_size", "shared by every client"),
            ("SET ROLE admin", "logged in with"),
            ("PREPARE p AS SELECT 1", "driver's prepared statements"),
        ] {
            let message = refused(sql);
            assert!(message.contains(words), "{sql}: {message}");
        }
        assert!(matches!(
            check("UPDATE readings SET value = 1"),
            Err(QueryError::Unsupported { .. })
        ));
    }
}
