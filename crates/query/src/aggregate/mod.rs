//! The exact aggregate fast path.
//!
//! `SELECT count(…), sum(value), avg(value), min(value), max(value) FROM readings WHERE …
//! [GROUP BY device_id, metric, time_bucket(…, time) | date_bin(…, time)]` is planned by
//! DataFusion as usual; the [`AggregateFastPath`] physical optimizer rule then replaces the
//! aggregate and its `readings` scan by a [`ReadingsAggregateExec`], which calls
//! [`Engine::aggregate`](minitrue_storage::Engine::aggregate): chunks (one series in one
//! file) that lie wholly inside the time range and one bucket, with no overlapping source and
//! no delete, are answered from the aggregates stored in the file footer; everything else is
//! decoded. `EXPLAIN` shows `ReadingsAggregateExec` where the rule applied;
//! `EXPLAIN ANALYZE` shows how many chunks came from stored aggregates.
//!
//! The contract: the fast path returns exactly the rows, and bit for bit the values, of the
//! plan it replaces. This holds because MiniTrue's `sum`/`avg`/`min`/`max` over doubles are
//! order-independent ([`exact`]: exact sums rounded once, `totalOrder` min/max) — so it makes
//! no difference whether a chunk's points were added one by one or merged from the chunk's
//! stored aggregate. The rule applies only when it can keep that promise: every group
//! expression is `device_id`, `metric` or one UTC bucket function of `time` with constant
//! arguments, every aggregate is `count` of a column or constant, or one of MiniTrue's exact
//! functions of `value`, without `DISTINCT`, `FILTER` or `ORDER BY`, and every `WHERE`
//! predicate was pushed into the scan exactly (a remaining filter keeps the normal plan).
//!
//! `SET minitrue.aggregate_fast_path = false` turns the rule off for a session (the tests run
//! every query both ways).

pub mod exact;
mod fast_path;

use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;

pub use exact::{ExactAggregate, ExactKind};
pub(crate) use fast_path::below_exchanges;
pub use fast_path::{AggregateFastPath, ReadingsAggregateExec};

extensions_options! {
    /// MiniTrue's session options: `SET minitrue.<name> = <value>`.
    pub struct MiniTrueOptions {
        /// Answer aggregates over `readings` from stored chunk aggregates where that is exact.
        pub aggregate_fast_path: bool, default = true
    }
}

impl ConfigExtension for MiniTrueOptions {
    const PREFIX: &'static str = "minitrue";
}
