//! The one error type of the ingest crate.
//!
//! Per-message problems (a malformed payload, a NaN value) are not errors: they are
//! [`crate::Rejection`]s inside a [`crate::ParsedMessage`], because bad input never stops
//! ingestion. [`IngestError`] is for things the operator must fix, such as a configuration
//! that cannot work.

use minitrue_common::ErrorKind;

/// Everything that can go wrong in the ingest crate outside of judging one message.
///
/// Map it to a protocol status with [`IngestError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// A configured topic template cannot be used (syntax, missing `{device_id}` or
    /// `{metric}`, duplicate placeholder, ...).
    #[error("bad topic template {template:?}: {reason}")]
    BadTopicTemplate {
        /// The template as configured.
        template: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A configured MQTT topic filter is not a valid filter (`#` not last, wildcard mixed
    /// into a level, empty filter).
    #[error("bad topic filter {filter:?}: {reason}")]
    BadTopicFilter {
        /// The filter as configured.
        filter: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Another configuration value is out of range.
    #[error("invalid ingest configuration: {field}: {reason}")]
    InvalidConfig {
        /// The configuration field, e.g. `"line_protocol.device_tags"`.
        field: &'static str,
        /// Why the value cannot be used.
        reason: String,
    },
}

impl IngestError {
    /// The kind of failure, mapped once at the protocol edges.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::BadTopicTemplate { .. }
            | IngestError::BadTopicFilter { .. }
            | IngestError::InvalidConfig { .. } => ErrorKind::InvalidInput,
        }
    }
}
