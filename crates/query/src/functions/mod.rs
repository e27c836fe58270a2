//! SQL functions MiniTrue adds to DataFusion's: `time_bucket` (TimescaleDB-compatible) and
//! the `first(value, time)` / `last(value, time)` aggregates.
//!
//! DataFusion already provides the rest of what IoT queries use, and the tests hold it to
//! that: `date_bin(interval, ts [, origin])` (origin defaults to 1970-01-01 UTC),
//! `now()` (a UTC `timestamptz`, constant within a statement), `extract(epoch FROM ts)`
//! (seconds as a double), `to_timestamp(double seconds)` and `ts AT TIME ZONE 'zone'`
//! (the same instant shown in that zone; `date_trunc`, `extract` and `time_bucket` then
//! follow the zone's wall clock).

mod bookend;
mod time_bucket;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use bookend::{Bookend, BookendAggregate};
pub use time_bucket::{TimeBucket, DEFAULT_ORIGIN_NS};

/// Registers every MiniTrue function in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(TimeBucket::default()));
    ctx.register_udaf(AggregateUDF::new_from_impl(BookendAggregate::new(Bookend::First)));
    ctx.register_udaf(AggregateUDF::new_from_impl(BookendAggregate::new(Bookend::Last)));
}
