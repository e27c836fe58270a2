//! `s3://bucket/prefix` object stores for real: the engine against moto's S3 server, started
//! on loopback from the Python venv that `scripts/python-env.sh` builds (`MINITRUE_PYTHON`).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use minitrue_common::{ErrorKind, TimeRange};
use minitrue_storage::{DeleteRequest, Engine, EngineConfig, StorageError};

const BUCKET: &str = "minitrue-test";
const PREFIX: &str = "some/prefix";

/// A moto S3 server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `moto.server` on a free loopback port and waits (with a deadline) until it answers.
    fn start(log_dir: &Path) -> Moto {
        let python = std::env::var_os("MINITRUE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
            panic!(
                "MINITRUE_PYTHON is not set. The S3 tests run moto's S3 server from the project's \
                 Python venv: run `scripts/python-env.sh` (it installs scripts/requirements.txt, \
                 including moto[server]) and set MINITRUE_PYTHON to the python it prints, or run \
                 `scripts/test.sh`, which does both."
            )
        });
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = log_dir.join("moto.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} (MINITRUE_PYTHON): {e}", python.display()));
        let mut moto = Moto { child, port, log };

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!(
                    "moto server exited ({status}) before answering; is moto[server] installed in \
                     {} (run scripts/python-env.sh)? log:\n{}",
                    python.display(),
                    moto.log_text()
                );
            }
            if let Ok(response) = moto.http("GET", "/") {
                if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
                    return moto;
                }
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within 60 s; log:\n{}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One unsigned HTTP/1.1 request with an empty body; returns the whole response.
    fn http(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }

    /// object_store cannot create buckets; a path-style `PUT /bucket` does.
    fn create_bucket(&self, bucket: &str) {
        let response = self.http("PUT", &format!("/{bucket}")).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "create bucket {bucket}: {response}");
    }

    /// The keys (ListObjectsV2) under `prefix`.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let response = self.http("GET", &format!("/{bucket}?list-type=2&prefix={prefix}")).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "list {bucket}: {response}");
        response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>"))
            .map(|(key, _)| key.to_string())
            .collect()
    }
}

fn s3_config(dir: &Path, moto: &Moto, url: &str) -> EngineConfig {
    let mut config = config(dir);
    config.object_store_url = Some(url.to_string());
    config.object_store_options = [
        ("aws_endpoint", moto.endpoint().as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "minitrue-test-key"),
        ("aws_secret_access_key", "minitrue-test-secret"),
        ("aws_region", "us-east-1"),
        // moto serves path-style requests (`http://host/bucket/key`).
        ("aws_virtual_hosted_style_request", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    config
}

#[tokio::test]
async fn engine_round_trips_through_s3_across_restarts_deletes_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path());
    moto.create_bucket(BUCKET);
    let data_dir = dir.path().join("data");
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let config = || s3_config(&data_dir, &moto, &url);

    // Two flushes, so there are files for compaction to merge.
    let first = readings(4, 0, 300);
    let second = readings(4, 300, 300);
    let engine = open(config()).await;
    engine.write(&first).await.unwrap();
    engine.flush().await.unwrap();
    engine.write(&second).await.unwrap();
    engine.flush().await.unwrap();
    let mut points = first;
    points.extend(second);
    assert_eq!(scan_all(&engine).await, expected(&points), "from files in s3");
    let files_before_compaction = engine.files().len();
    assert!(files_before_compaction >= 2, "{files_before_compaction} files");
    engine.close().await.unwrap();
    drop(engine);

    // The files and manifest are in the bucket under the prefix, not on local disk.
    let keys = moto.keys(BUCKET, "");
    assert!(keys.iter().all(|k| k.starts_with(&format!("{PREFIX}/"))), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(&format!("{PREFIX}/manifest/"))), "{keys:?}");
    let parquet = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}/data/")) && k.ends_with(".parquet"))
        .count();
    assert_eq!(parquet, files_before_compaction, "{keys:?}");
    assert!(!data_dir.join("store").exists(), "nothing is written to the local store");

    let (engine, report) = Engine::open(config()).await.unwrap();
    assert_eq!(report.wal_records_replayed, 0, "everything was flushed: {report:?}");
    assert!(report.files_missing.is_empty() && report.files_corrupt.is_empty(), "{report:?}");
    assert_eq!(scan_all(&engine).await, expected(&points), "after restart");

    engine
        .delete(DeleteRequest {
            device_id: "sensor_00001".into(),
            metric: None,
            time: TimeRange::ALL,
        })
        .await
        .unwrap();
    let want: std::collections::BTreeMap<_, _> = expected(&points)
        .into_iter()
        .filter(|((device, _, _), _)| device != "sensor_00001")
        .collect();
    assert_eq!(scan_all(&engine).await, want, "right after the delete");
    let compaction = engine.compact(true).await.unwrap();
    assert!(compaction.files_in >= 2, "{compaction:?}");
    assert_eq!(
        compaction.rows_out,
        want.len() as u64,
        "deleted rows are gone physically: {compaction:?}"
    );
    assert_eq!(scan_all(&engine).await, want, "after compaction");
    engine.close().await.unwrap();
    drop(engine);

    let (engine, report) = Engine::open(config()).await.unwrap();
    assert!(report.files_missing.is_empty() && report.files_corrupt.is_empty(), "{report:?}");
    assert_eq!(scan_all(&engine).await, want, "after the second restart");
    let parquet = moto.keys(BUCKET, &format!("{PREFIX}/data/")).len();
    assert_eq!(parquet, engine.files().len(), "compaction deleted its inputs from the bucket");
    engine.close().await.unwrap();
}

#[tokio::test]
async fn bad_store_urls_and_options_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("s3://", &[]),
        ("s3:///prefix", &[]),
        ("ftp://x", &[]),
        ("not a url", &[]),
        ("s3://bucket/prefix", &[("aws_endpont", "http://127.0.0.1:1")]),
    ];
    for (url, options) in cases {
        let mut config = config(dir.path());
        config.object_store_url = Some(url.to_string());
        config.object_store_options =
            options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match Engine::open(config).await {
            Err(error @ StorageError::StoreUrl { .. }) => {
                assert_eq!(error.kind(), ErrorKind::InvalidInput, "{url}: {error}");
            }
            Err(error) => panic!("{url} {options:?}: expected StoreUrl, got {error:?}"),
            Ok(_) => panic!("{url} {options:?}: opened"),
        }
    }
}

#[test]
fn config_debug_hides_option_values() {
    let mut config = EngineConfig::new("/tmp/x");
    config.object_store_options = vec![("aws_secret_access_key".into(), "hunter2".into())];
    let text = format!("{config:?}");
    assert!(text.contains("aws_secret_access_key") && !text.contains("hunter2"), "{text}");
}
