//! Fuzz what a node decodes from a peer's calls: plan fragment tickets (checked, then decoded
//! into operators), the replica-write descriptor's tag JSON, replica deletes and repair
//! questions (answered from an empty engine). A peer must prove the cluster secret first, but
//! a member with a bug, or a stolen secret, must still not be able to panic a node.
//!
//! Input: the first byte picks the message (`% 4`: fragment, tags, delete, repair question);
//! the rest is its body (for a repair question, its second byte picks digest or points).
//!
//! Run: `scripts/fuzz.sh 60 peer_messages`.
#![no_main]

use std::sync::OnceLock;

use datafusion::prelude::SessionContext;
use libfuzzer_sys::fuzz_target;
use minitrue_cluster::peer::DeleteAction;
use minitrue_cluster::repair::{answer_from, REPAIR_DIGEST_ACTION, REPAIR_POINTS_ACTION};
use minitrue_cluster::ReplicaWrite;
use minitrue_storage::{Engine, EngineConfig, SyncPolicy};

struct Node {
    runtime: tokio::runtime::Runtime,
    engine: std::sync::Arc<Engine>,
    session: SessionContext,
    _dir: tempfile::TempDir,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.background_interval = None;
        config.wal.sync = SyncPolicy::Off;
        let (engine, session) = runtime.block_on(async {
            let (engine, _) = Engine::open(config).await.unwrap();
            let session =
                minitrue_query::session(engine.clone(), Default::default()).await.unwrap();
            (engine, session)
        });
        Node { runtime, engine, session, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let node = node();
    match kind % 4 {
        0 => {
            // Decoding only: a fragment that passes the check reads `readings` (empty here).
            let _guard = node.runtime.enter();
            let _ = minitrue_query::execute_fragment(&node.session, body);
        }
        1 => {
            let path = ["minitrue", "replica-write", &String::from_utf8_lossy(body)]
                .map(String::from);
            let _ = ReplicaWrite::from_path(&path);
        }
        2 => {
            let _ = serde_json::from_slice::<DeleteAction>(body);
        }
        _ => {
            let Some((&which, question)) = body.split_first() else {
                return;
            };
            let action = if which % 2 == 0 { REPAIR_DIGEST_ACTION } else { REPAIR_POINTS_ACTION };
            let _ = node.runtime.block_on(answer_from(&node.engine, 0, action, question));
        }
    }
});
