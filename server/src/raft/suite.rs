//! openraft's own storage test suite (`openraft::testing::Suite::test_all`) run against oxcd's
//! log store and state machine on the real engine, each case on a fresh data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::snapshot::Snapshots;
use super::state_machine::StateMachine;
use super::types::{StorageError, TypeConfig};
use super::watermark::Watermark;
use crate::mvcc::MvccStore;
use crate::mvcc::watch_hub::WatchHub;
use crate::storage::Engine;
use crate::storage::sled_engine::SledEngine;

struct OxcdStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for OxcdStores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine: Arc<dyn Engine> =
            Arc::new(SledEngine::open(&dir.path().join("db"), 8 << 20).expect("engine"));
        let store = Arc::new(MvccStore::open(engine.keyspace("mvcc").expect("ks")).expect("store"));
        let hub = Arc::new(WatchHub::new(1));
        let metrics = Arc::new(crate::http::Metrics::new());
        let snapshots = Arc::new(
            Snapshots::new(
                dir.path().join("snap"),
                store.clone(),
                engine.clone(),
                hub.clone(),
            )
            .expect("snapshots"),
        );
        let mark = Arc::new(Watermark::open(&dir.path().join("flushed-index")).expect("watermark"));
        let log =
            LogStore::open(1, &dir.path().join("wal"), mark.clone(), metrics.clone()).expect("log");
        let sm = StateMachine::new(
            store,
            engine,
            hub,
            metrics,
            snapshots,
            (mark, Default::default()),
        );
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(OxcdStores).expect("openraft storage suite");
}
