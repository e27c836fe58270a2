//! A check on `DELETE` statements before DataFusion reduces them to a list of filters.
//!
//! DataFusion hands [`TableProvider::delete_from`](datafusion::catalog::TableProvider) only
//! the conjuncts of the `WHERE` clause that reference the target table, and ignores a
//! `LIMIT`. A predicate comparing with a subquery would be silently dropped after
//! decorrelation, and `LIMIT` would be ignored: both would widen the delete. This analyzer
//! rule rejects such statements while they still look like the SQL that was written.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::optimizer::AnalyzerRule;

use crate::error::QueryError;

/// Rejects `DELETE` statements whose input is anything but `Filter`s (without subqueries)
/// over the table scan.
#[derive(Debug, Default)]
pub struct DeleteGuard;

impl AnalyzerRule for DeleteGuard {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.apply(|node| {
            if let LogicalPlan::Dml(dml) = node {
                if dml.op == WriteOp::Delete {
                    check_delete_input(&dml.input).map_err(QueryError::into_datafusion)?;
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "minitrue_delete_guard"
    }
}

fn check_delete_input(plan: &LogicalPlan) -> Result<(), QueryError> {
    match plan {
        LogicalPlan::TableScan(_) => Ok(()),
        LogicalPlan::SubqueryAlias(alias) => check_delete_input(&alias.input),
        LogicalPlan::Filter(filter) => {
            let has_subquery = filter
                .predicate
                .exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_)
                            | Expr::Exists(_)
                            | Expr::InSubquery(_)
                            | Expr::OuterReferenceColumn(..)
                    ))
                })
                .unwrap_or(true);
            if has_subquery {
                return Err(QueryError::UnsupportedDelete {
                    reason: "subqueries in DELETE are not supported; compare with constants".into(),
                });
            }
            check_delete_input(&filter.input)
        }
        LogicalPlan::Limit(_) => Err(QueryError::UnsupportedDelete {
            reason: "DELETE … LIMIT is not supported".into(),
        }),
        other => Err(QueryError::UnsupportedDelete {
            reason: format!("DELETE over {} is not supported", other.display()),
        }),
    }
}
