//! The server settings a Postgres client can read: announced as ParameterStatus at startup,
//! answered by `SHOW` and `current_setting()`. One table, so the three always agree.

/// The Postgres release MiniTrue reports. Clients branch on it (SQLAlchemy parses
/// `version()`, Grafana `server_version_num`, pgjdbc and asyncpg `server_version`), so it is
/// a modern release whose catalog and protocol MiniTrue follows.
pub const SERVER_VERSION: &str = "16.6";

/// [`SERVER_VERSION`] as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "160006";

/// The `search_path` clients see (Postgres' default).
pub const SEARCH_PATH: &str = "\"$user\", public";

/// Settings sent to every client as ParameterStatus right after authentication, the ones
/// libpq, pgx, asyncpg and pgjdbc read: `(name, value)`. `TimeZone` is added from the
/// session's time zone.
pub const STARTUP_PARAMETERS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("is_superuser", "on"),
    ("in_hot_standby", "off"),
    ("default_transaction_read_only", "off"),
    ("search_path", SEARCH_PATH),
];

/// Read-only settings beyond the startup parameters that clients query.
const OTHER_SETTINGS: &[(&str, &str)] = &[
    ("server_version_num", SERVER_VERSION_NUM),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
    ("application_name", ""),
    ("bytea_output", "hex"),
    ("extra_float_digits", "1"),
    ("block_size", "8192"),
];

/// The value of setting `name` (case-insensitive, as in Postgres), with `time_zone` as the
/// value of `TimeZone`; `None` for a setting MiniTrue does not have.
pub fn setting(name: &str, time_zone: &str) -> Option<String> {
    if name.eq_ignore_ascii_case("timezone") {
        return Some(time_zone.to_string());
    }
    STARTUP_PARAMETERS
        .iter()
        .chain(OTHER_SETTINGS)
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.to_string())
}

/// Settings answered by `SHOW` from this table rather than from per-connection state.
pub fn is_fixed(name: &str) -> bool {
    let per_connection = ["timezone", "datestyle", "intervalstyle", "search_path"]
        .iter()
        .chain(&["application_name", "extra_float_digits", "bytea_output", "statement_timeout"])
        .any(|own| own.eq_ignore_ascii_case(name));
    !per_connection && setting(name, "").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_case_insensitive_and_consistent() {
        assert_eq!(setting("SERVER_VERSION", "UTC").as_deref(), Some(SERVER_VERSION));
        assert_eq!(setting("TimeZone", "Europe/Paris").as_deref(), Some("Europe/Paris"));
        assert_eq!(setting("datestyle", "UTC").as_deref(), Some("ISO, MDY"));
        assert_eq!(setting("no_such_setting", "UTC"), None);
        let num: u32 = SERVER_VERSION_NUM.parse().unwrap();
        let (major, minor) = SERVER_VERSION.split_once('.').unwrap();
        assert_eq!(num, major.parse::<u32>().unwrap() * 10_000 + minor.parse::<u32>().unwrap());
        assert!(is_fixed("server_version_num"));
        assert!(!is_fixed("DateStyle"));
        assert!(!is_fixed("no_such_setting"));
    }
}
