//! Hand-made fragment tickets, as anyone reaching a node's Flight door could send them: the
//! plan format can name file scans and sinks, and `execute_fragment` must refuse them before
//! anything is decoded, read or written.

use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::{
    CsvScanExecNode, CsvSink, CsvSinkExecNode, FileGroup, FileScanExecConf, FileSinkConfig,
    PartitionedFile, PhysicalExtensionNode, PhysicalPlanNode,
};
use minitrue_storage::{Engine, EngineConfig, SyncPolicy};
use prost::Message;

async fn session(dir: &std::path::Path) -> datafusion::prelude::SessionContext {
    let mut config = EngineConfig::new(dir);
    config.background_interval = None;
    config.wal.sync = SyncPolicy::Off;
    let (engine, _) = Engine::open(config).await.unwrap();
    minitrue_query::session(engine, Default::default()).await.unwrap()
}

/// A fragment payload: the flags byte (0: no fast path), then the plan.
fn payload(kind: PhysicalPlanType) -> Vec<u8> {
    let mut payload = vec![0u8];
    payload.extend(PhysicalPlanNode { physical_plan_type: Some(kind) }.encode_to_vec());
    payload
}

fn error_of(ctx: &datafusion::prelude::SessionContext, payload: &[u8]) -> String {
    match minitrue_query::execute_fragment(ctx, payload) {
        Ok(_) => panic!("a hand-made fragment ran"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_csv_scan_of_a_server_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(&dir.path().join("db")).await;
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "secret\n").unwrap();
    let scan = CsvScanExecNode {
        base_conf: Some(FileScanExecConf {
            file_groups: vec![FileGroup {
                files: vec![PartitionedFile {
                    path: secret.to_string_lossy().into_owned(),
                    size: 7,
                    ..Default::default()
                }],
            }],
            object_store_url: "file:///".into(),
            ..Default::default()
        }),
        has_header: false,
        delimiter: ",".into(),
        ..Default::default()
    };
    let error = error_of(&ctx, &payload(PhysicalPlanType::CsvScan(scan)));
    assert!(error.contains("CsvScan is not an operator MiniTrue sends"), "{error}");
}

#[tokio::test]
async fn a_csv_sink_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(&dir.path().join("db")).await;
    let target = dir.path().join("written.csv");
    let readings = PhysicalPlanNode {
        physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
            node: br#"{"device_ids":null,"metrics":null,"time_start":0,"time_end":1,"projection":null,"limit":null,"batch_rows":8192,"tokens":null}"#.to_vec(),
            inputs: Vec::new(),
        })),
    };
    let sink = CsvSinkExecNode {
        input: Some(Box::new(readings)),
        sink: Some(CsvSink {
            config: Some(FileSinkConfig {
                object_store_url: "file:///".into(),
                table_paths: vec![target.to_string_lossy().into_owned()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let error = error_of(&ctx, &payload(PhysicalPlanType::CsvSink(Box::new(sink))));
    assert!(error.contains("CsvSink is not an operator MiniTrue sends"), "{error}");
    assert!(!target.exists());
}

#[tokio::test]
async fn garbage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(&dir.path().join("db")).await;
    for payload in [&b"\x00"[..], b"\x00\xff\xff\xff\xff", b"\x01\x0a\x02\x08\x01", b"\x02not json"]
    {
        let _ = minitrue_query::execute_fragment(&ctx, payload).err();
    }
}
