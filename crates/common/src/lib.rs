//! The shared vocabulary of MiniTrue.
//!
//! Every other crate speaks in these types: a [`SeriesKey`] names one time series
//! (`device_id`, `metric`), a [`Point`] is one measurement of it, and an [`ErrorKind`]
//! classifies failures so that the edges (pgwire, HTTP, Flight, MQTT) map them to
//! SQLSTATE / HTTP status / gRPC code in exactly one place. This crate does no I/O.

mod error;
pub mod metrics;
mod point;
mod time;
mod token;

pub use error::ErrorKind;
pub use metrics::{Metric, MetricKind, MetricsRegistry, MetricsSource};
pub use point::{LiveBatch, Point, SeriesKey, SeriesKeyError, MAX_NAME_LEN};
pub use time::{TimeRange, TimestampNs};
pub use token::{series_token, Token, TokenSet};
