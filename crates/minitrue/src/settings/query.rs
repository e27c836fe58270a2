//! `[query]`: the SQL session every query door shares; maps onto [`QueryOptions`].

use clap::Args;
use minitrue_query::QueryOptions;
use serde::Serialize;

fn options() -> QueryOptions {
    QueryOptions::default()
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct QuerySettings {
    /// Session time zone: timestamptz literals without an offset and now() use it.
    #[arg(id = "query.time_zone", long = "query-time-zone", env = "MINITRUE_QUERY_TIME_ZONE", default_value_t = options().time_zone)]
    pub time_zone: String,
    /// Target rows per batch of a readings scan.
    #[arg(id = "query.scan_batch_rows", long = "query-scan-batch-rows", env = "MINITRUE_QUERY_SCAN_BATCH_ROWS",
          default_value_t = options().scan_batch_rows as u64, value_parser = clap::value_parser!(u64).range(64..=(1 << 20)))]
    pub scan_batch_rows: u64,
    /// Rows per engine write of an INSERT (statements up to this size are atomic).
    #[arg(id = "query.insert_chunk_rows", long = "query-insert-chunk-rows", env = "MINITRUE_QUERY_INSERT_CHUNK_ROWS",
          default_value_t = options().insert_chunk_rows as u64, value_parser = clap::value_parser!(u64).range(1..=(1 << 24)))]
    pub insert_chunk_rows: u64,
    /// Parallelism of the operators above the scans (default: the number of cores).
    #[arg(id = "query.target_partitions", long = "query-target-partitions", env = "MINITRUE_QUERY_TARGET_PARTITIONS",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub target_partitions: Option<u64>,
}

impl QuerySettings {
    pub fn options(&self) -> QueryOptions {
        QueryOptions {
            time_zone: self.time_zone.clone(),
            scan_batch_rows: self.scan_batch_rows as usize,
            insert_chunk_rows: self.insert_chunk_rows as usize,
            target_partitions: self.target_partitions.map(|n| n as usize),
            ..QueryOptions::default()
        }
    }
}
