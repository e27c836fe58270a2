//! Postgres SQL that clients send and DataFusion does not accept as is, rewritten into
//! equivalent SQL before datafusion-postgres parses it. Every rule is a general Postgres
//! semantic, not a match on one client's query text:
//!
//! - `user` (a keyword meaning `current_user` in Postgres) becomes `current_user`;
//! - a scalar function in `FROM` (`FROM string_to_array(…) s`) becomes a one-row derived
//!   table whose column is named after the alias, as Postgres does;
//! - `generate_series(…) AS i` / `range(…) AS i` name their single column `i`, as Postgres
//!   does, so `s[i]` works;
//! - an `ORDER BY` expression holding a subquery (DataFusion only plans subqueries in
//!   projections and filters) is computed as a hidden column of a derived table and sorted
//!   outside it;
//! - `x IN (subquery)` in a projection (DataFusion plans IN-subqueries only in filters) is
//!   asked as `array_has` of the subquery's values, gathered by an uncorrelated scalar
//!   subquery;
//! - `information_schema.columns.data_type` reports Postgres type names (`double precision`,
//!   `timestamp with time zone`) instead of Arrow's;
//! - `SHOW <fixed setting>` (e.g. `server_version`) reads the server settings table;
//! - a projection subquery holding parameter placeholders keeps them (see
//!   [`subqueries_keep_their_placeholders`]).
//!
//! Grafana's query builder needs all of these at once (its search-path subquery), and the
//! rewrite runs before datafusion-pg-catalog's token blacklist, which would otherwise replace
//! that subquery by `''` and list no columns at all.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, FunctionArguments, LimitClause, ObjectNamePart,
    OrderBy, OrderByKind, Query, Select, SelectItem, SetExpr, Statement, TableAliasColumnDef,
    TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::compat::PG_TYPE_NAME_FUNCTION;
use super::settings;

/// Table functions whose result is one column, named by a bare table alias in Postgres.
const SINGLE_COLUMN_TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// Rewrites client SQL (see the module docs). Cheap to share between connections.
#[derive(Debug)]
pub(crate) struct Rewriter {
    /// Names of the session's table functions: any other function in `FROM` is scalar.
    table_functions: HashSet<String>,
}

impl Rewriter {
    pub(crate) fn new(table_functions: impl IntoIterator<Item = String>) -> Self {
        Rewriter { table_functions: table_functions.into_iter().collect() }
    }

    /// The rewritten SQL, or `None` when nothing needs rewriting or the SQL does not parse
    /// (then the original goes on and its error is reported as usual).
    pub(crate) fn rewrite(&self, sql: &str) -> Option<String> {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let mut visitor = Rewrite { rewriter: self, changed: false };
        for statement in &mut statements {
            if let Some(show) = show_fixed_setting(statement) {
                *statement = show;
                visitor.changed = true;
                continue;
            }
            let _ = statement.visit(&mut visitor);
        }
        if !visitor.changed {
            return None;
        }
        let rewritten: Vec<String> = statements.iter().map(ToString::to_string).collect();
        Some(rewritten.join("; "))
    }
}

struct Rewrite<'a> {
    rewriter: &'a Rewriter,
    changed: bool,
}

impl VisitorMut for Rewrite<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // sqlparser reads the keyword as a function without parentheses (or, quoted, as a
        // column, which stays one).
        let is_user = match expr {
            Expr::Function(function) => {
                matches!(function.args, FunctionArguments::None)
                    && matches!(function.name.0.as_slice(),
                        [ObjectNamePart::Identifier(name)]
                            if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("user"))
            }
            Expr::Identifier(ident) => {
                ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("user")
            }
            _ => false,
        };
        if is_user {
            if let Some(current_user) = parse_expr("current_user") {
                *expr = current_user;
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(replacement) = self.rewriter.table_factor(factor) {
            *factor = replacement;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(replacement) = sort_outside_subqueries(query) {
            *query = replacement;
            self.changed = true;
        }
        // After the sort rewrite: it moves ORDER BY subqueries into a projection.
        if in_subqueries_as_arrays(query) {
            self.changed = true;
        }
        if subqueries_keep_their_placeholders(query) {
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

impl Rewriter {
    fn table_factor(&self, factor: &mut TableFactor) -> Option<TableFactor> {
        let TableFactor::Table { name, alias, args, with_ordinality: false, .. } = factor else {
            return None;
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
                ObjectNamePart::Function(_) => None,
            })
            .collect::<Option<_>>()?;

        let Some(args) = args else {
            // A plain table: only information_schema.columns is replaced.
            let is_columns = parts.len() >= 2
                && parts[parts.len() - 2] == "information_schema"
                && parts[parts.len() - 1] == "columns";
            if !is_columns {
                return None;
            }
            let alias = alias.as_ref().map(ToString::to_string);
            let alias = alias.unwrap_or_else(|| "\"columns\"".to_string());
            return parse_table_factor(&format!(
                "(SELECT table_catalog, table_schema, table_name, column_name, ordinal_position, \
                 column_default, is_nullable, {PG_TYPE_NAME_FUNCTION}(data_type) AS data_type, \
                 character_maximum_length, character_octet_length, numeric_precision, \
                 numeric_precision_radix, numeric_scale, datetime_precision, interval_type \
                 FROM {name}) AS {alias}"
            ));
        };

        let [function] = parts.as_slice() else { return None };
        if self.table_functions.contains(function) {
            let alias = alias.as_mut()?;
            if alias.columns.is_empty()
                && SINGLE_COLUMN_TABLE_FUNCTIONS.contains(&function.as_str())
            {
                alias.columns.push(TableAliasColumnDef::from_name(alias.name.value.clone()));
                // Changed in place; report it by returning the factor itself.
                return Some(factor.clone());
            }
            return None;
        }
        // A scalar function used as a relation: one row, one column named like the alias.
        let column = alias.as_ref().map(|alias| alias.name.to_string());
        let column = column.unwrap_or_else(|| function.clone());
        let table_alias = alias.as_ref().map(ToString::to_string).unwrap_or_else(|| column.clone());
        let arguments: Vec<String> = args.args.iter().map(ToString::to_string).collect();
        parse_table_factor(&format!(
            "(SELECT {name}({}) AS {column}) AS {table_alias}",
            arguments.join(", ")
        ))
    }
}

/// `SHOW server_version` and the other fixed settings become `SELECT current_setting(…)`.
fn show_fixed_setting(statement: &Statement) -> Option<Statement> {
    let Statement::ShowVariable { variable } = statement else { return None };
    let [name] = variable.as_slice() else { return None };
    if !settings::is_fixed(&name.value) {
        return None;
    }
    let setting = name.value.to_ascii_lowercase();
    let sql = format!("SELECT current_setting('{setting}') AS {setting}");
    Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()
}

/// `SELECT a AS x … ORDER BY <expr with subquery>, 1` becomes
/// `SELECT x FROM (SELECT a AS x, <expr> AS __minitrue_order_0 …) ORDER BY __minitrue_order_0, 1`.
fn sort_outside_subqueries(query: &Query) -> Option<Query> {
    let OrderBy { kind: OrderByKind::Expressions(order), .. } = query.order_by.as_ref()? else {
        return None;
    };
    if !order.iter().any(|item| contains_subquery(&item.expr)) {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let mut visible = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let name = match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => ident.clone(),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last()?.clone(),
            _ => return None,
        };
        visible.push(name.to_string());
    }
    let mut inner = select.as_ref().clone();
    let mut sort_keys = Vec::with_capacity(order.len());
    for (position, item) in order.iter().enumerate() {
        if matches!(&item.expr, Expr::Value(value) if matches!(value.value, Value::Number(..))) {
            // An output column position: the same in the outer query.
            sort_keys.push(item.to_string());
            continue;
        }
        let hidden = format!("__minitrue_order_{position}");
        inner.projection.push(SelectItem::ExprWithAlias {
            expr: item.expr.clone(),
            alias: datafusion::sql::sqlparser::ast::Ident::new(hidden.clone()),
        });
        sort_keys.push(format!("{hidden}{}", item.options));
    }
    let limit = query.limit_clause.as_ref().map(ToString::to_string).unwrap_or_default();
    let sql = format!(
        "SELECT {} FROM ({inner}) AS __minitrue_sorted ORDER BY {}{limit}",
        visible.join(", "),
        sort_keys.join(", ")
    );
    let Statement::Query(mut rewritten) =
        Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()?
    else {
        return None;
    };
    rewritten.with = query.with.clone();
    Some(*rewritten)
}

/// In the projection of `query` (and of the derived tables in its `FROM`, which the sort
/// rewrite creates after they were visited), `x [NOT] IN (SELECT e …)` becomes
/// `[NOT] array_has((SELECT array_agg(v) FROM (SELECT e …) AS l(v)), x)`: DataFusion plans
/// IN-subqueries only in filters, but uncorrelated scalar subqueries anywhere. Returns
/// whether anything changed.
fn in_subqueries_as_arrays(query: &mut Query) -> bool {
    let SetExpr::Select(select) = query.body.as_mut() else { return false };
    let mut changed = false;
    for expr in projection_exprs(select) {
        let _ = visit_expressions_mut(expr, |expr| {
            if let Expr::InSubquery { expr: needle, subquery, negated } = expr {
                let sql = format!(
                    "{}array_has((SELECT array_agg(__minitrue_in) FROM ({subquery}) \
                     AS __minitrue_list(__minitrue_in)), {needle})",
                    if *negated { "NOT " } else { "" }
                );
                if let Some(replacement) = parse_expr(&sql) {
                    *expr = replacement;
                    changed = true;
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    for table in &mut select.from {
        if let TableFactor::Derived { subquery, .. } = &mut table.relation {
            changed |= in_subqueries_as_arrays(subquery);
        }
    }
    changed
}

/// datafusion-pg-catalog replaces a projection subquery it takes for correlated by `NULL`
/// (DataFusion cannot plan most of the correlated ones catalog queries use), and it counts a
/// parameter placeholder as a correlation. The placeholders vanish with the subquery, and
/// datafusion-postgres, which matches bound values to placeholders by position, then gives
/// every later value the type of another placeholder (SQLAlchemy's column reflection failed
/// with "invalid digit found in string"), or the subquery is `NULL` for no reason. So in
/// `query`'s projection, a subquery with placeholders becomes:
///
/// - if it is uncorrelated apart from its placeholders: the same subquery, with `LIMIT 1`
///   as pg-catalog adds, in parentheses that pg-catalog does not look into;
/// - else the `NULL` pg-catalog would make of it, spelled so that the placeholders stay
///   in the plan: `CASE WHEN $1 IS NULL OR … THEN NULL END`.
///
/// Returns whether anything changed.
fn subqueries_keep_their_placeholders(query: &mut Query) -> bool {
    let SetExpr::Select(select) = query.body.as_mut() else { return false };
    let mut changed = false;
    for expr in projection_exprs(select) {
        let Expr::Subquery(subquery) = expr else { continue };
        let placeholders = placeholders_in(subquery);
        if placeholders.is_empty() {
            continue;
        }
        if correlated_apart_from_placeholders(subquery) {
            let tests: Vec<String> = placeholders.iter().map(|p| format!("{p} IS NULL")).collect();
            if let Some(null) =
                parse_expr(&format!("CASE WHEN {} THEN NULL END", tests.join(" OR ")))
            {
                *expr = null;
                changed = true;
            }
        } else {
            let mut subquery = subquery.clone();
            if subquery.limit_clause.is_none() && subquery.fetch.is_none() {
                subquery.limit_clause = Some(LimitClause::LimitOffset {
                    limit: parse_expr("1"),
                    offset: None,
                    limit_by: vec![],
                });
            }
            *expr = Expr::Nested(Box::new(Expr::Subquery(subquery)));
            changed = true;
        }
    }
    changed
}

/// The distinct placeholders (`$1`, …) in `query`, in order of appearance.
fn placeholders_in(query: &Query) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let _ = visit_expressions(query, |expr| {
        if let Expr::Value(value) = expr {
            if let Value::Placeholder(name) = &value.value {
                if !found.contains(name) {
                    found.push(name.clone());
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// pg-catalog's test for a correlated subquery, without its placeholder case: a compound
/// identifier whose first part is not an alias given in the subquery's `FROM`.
fn correlated_apart_from_placeholders(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else { return false };
    let mut aliases = HashSet::new();
    for table in &select.from {
        for factor in
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
        {
            if let TableFactor::Table { alias: Some(alias), .. } = factor {
                aliases.insert(alias.name.value.clone());
            }
        }
    }
    visit_expressions(query, |expr| match expr {
        Expr::CompoundIdentifier(parts)
            if parts.first().is_some_and(|p| !aliases.contains(&p.value)) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The expressions of `select`'s projection (its wildcards have none).
fn projection_exprs(select: &mut Select) -> impl Iterator<Item = &mut Expr> {
    select.projection.iter_mut().filter_map(|item| match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => Some(expr),
        _ => None,
    })
}

fn contains_subquery(expr: &Expr) -> bool {
    visit_expressions(expr, |expr| match expr {
        Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_expr().ok()
}

/// Parses `fragment` as the relation of `SELECT 1 FROM <fragment>`.
fn parse_table_factor(fragment: &str) -> Option<TableFactor> {
    let sql = format!("SELECT 1 FROM {fragment}");
    let Statement::Query(query) = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()?
    else {
        return None;
    };
    let SetExpr::Select(select) = *query.body else { return None };
    select.from.into_iter().next().map(|table| table.relation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> Rewriter {
        Rewriter::new(["generate_series".to_string(), "range".to_string()])
    }

    #[test]
    fn plain_queries_are_left_alone() {
        assert_eq!(rewriter().rewrite("SELECT avg(value) FROM readings WHERE time > now()"), None);
        assert_eq!(rewriter().rewrite("SELEC 1"), None);
        assert_eq!(rewriter().rewrite("SELECT \"user\" FROM t"), None);
    }

    #[test]
    fn postgres_semantics_datafusion_lacks_are_spelled_out() {
        let sql = rewriter()
            .rewrite(
                "SELECT trim(s[i]), user FROM generate_series(1, 2) AS i, \
                 string_to_array('a,b', ',') s",
            )
            .unwrap();
        assert_eq!(
            sql,
            "SELECT TRIM(s[i]), current_user FROM generate_series(1, 2) AS i (i), \
             (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
    }

    #[test]
    fn subqueries_in_order_by_are_sorted_outside() {
        let sql = rewriter()
            .rewrite(
                "SELECT CASE WHEN a IN (SELECT 1) THEN b ELSE c END AS x FROM t \
                 ORDER BY CASE WHEN a IN (SELECT 1) THEN 0 ELSE 1 END DESC, 1 LIMIT 5",
            )
            .unwrap();
        let in_list = "array_has((SELECT array_agg(__minitrue_in) FROM (SELECT 1) \
                       AS __minitrue_list (__minitrue_in)), a)";
        assert_eq!(
            sql,
            format!(
                "SELECT x FROM (SELECT CASE WHEN {in_list} THEN b ELSE c END AS x, \
                 CASE WHEN {in_list} THEN 0 ELSE 1 END AS __minitrue_order_0 FROM t) \
                 AS __minitrue_sorted ORDER BY __minitrue_order_0 DESC, 1 LIMIT 5"
            )
        );
    }

    #[test]
    fn in_subqueries_in_a_projection_become_array_lookups_but_stay_in_filters() {
        let sql = rewriter()
            .rewrite("SELECT a NOT IN (SELECT b FROM u) AS x FROM t WHERE a IN (SELECT c FROM v)")
            .unwrap();
        assert_eq!(
            sql,
            "SELECT NOT array_has((SELECT array_agg(__minitrue_in) FROM (SELECT b FROM u) \
             AS __minitrue_list (__minitrue_in)), a) AS x FROM t WHERE a IN (SELECT c FROM v)"
        );
    }

    #[test]
    fn information_schema_columns_reports_postgres_type_names() {
        let sql = rewriter()
            .rewrite("SELECT column_name, data_type FROM information_schema.columns c")
            .unwrap();
        assert!(sql.contains(&format!("{PG_TYPE_NAME_FUNCTION}(data_type) AS data_type")), "{sql}");
        assert!(sql.ends_with("FROM information_schema.columns) AS c"), "{sql}");
    }

    #[test]
    fn projection_subqueries_keep_their_placeholders() {
        // Uncorrelated: kept (pg-catalog would make it NULL), parenthesised, LIMIT 1.
        assert_eq!(
            rewriter().rewrite("SELECT (SELECT $1::VARCHAR), $2::SMALLINT").unwrap(),
            "SELECT ((SELECT $1::VARCHAR LIMIT 1)), $2::SMALLINT"
        );
        // Correlated: NULL, as pg-catalog makes it, with its placeholders still planned.
        assert_eq!(
            rewriter()
                .rewrite(
                    "SELECT (SELECT json_build_object($1, s.seqstart) FROM pg_sequence s \
                     WHERE a.attidentity != $2 AND s.seqrelid = a.attrelid) AS identity, \
                     a.attname FROM pg_attribute a WHERE a.attnum > $3"
                )
                .unwrap(),
            "SELECT CASE WHEN $1 IS NULL OR $2 IS NULL THEN NULL END AS identity, a.attname \
             FROM pg_attribute a WHERE a.attnum > $3"
        );
        // Without placeholders, pg-catalog's own rule decides.
        assert_eq!(rewriter().rewrite("SELECT (SELECT max(x) FROM t) AS m FROM u"), None);
    }

    #[test]
    fn show_of_a_fixed_setting_reads_the_settings_table() {
        assert_eq!(
            rewriter().rewrite("SHOW server_version").unwrap(),
            "SELECT current_setting('server_version') AS server_version"
        );
        assert_eq!(rewriter().rewrite("SHOW TimeZone"), None);
    }
}
