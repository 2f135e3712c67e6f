//! Replication: every mutating request is a Raft log entry applied by a deterministic state
//! machine, as in etcd; a single member is a one-member Raft group.

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

pub use types::{Applied, Command, CommandResult, MemberNode, OxRaft, TypeConfig};

use crate::mvcc::MvccStore;
use crate::storage::Engine;

/// Timing and log-compaction settings, from etcd's flags.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// `--heartbeat-interval` in milliseconds.
    pub heartbeat_ms: u64,
    /// `--election-timeout` in milliseconds.
    pub election_ms: u64,
    /// `--snapshot-count`: applied entries between snapshots (log compaction).
    pub snapshot_count: u64,
}

/// Failure to start the Raft member.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings were rejected.
    #[error("invalid raft settings")]
    Config(#[source] openraft::ConfigError),
    /// Storage could not be opened.
    #[error("failed to open the raft log")]
    Storage(#[source] crate::storage::StorageError),
    /// openraft failed to start.
    #[error("failed to start raft")]
    Fatal(#[source] openraft::error::Fatal<u64>),
    /// The one-member cluster could not be initialized.
    #[error("failed to initialize the cluster")]
    Initialize(
        #[source]
        openraft::error::RaftError<u64, openraft::error::InitializeError<u64, MemberNode>>,
    ),
}

/// Starts this member's Raft node; on a fresh data dir, initializes a cluster of just itself.
pub async fn start(
    id: u64,
    node: MemberNode,
    engine: Arc<dyn Engine>,
    store: Arc<MvccStore>,
    settings: &RaftSettings,
) -> Result<OxRaft, StartError> {
    let config = Config {
        cluster_name: "oxcd".into(),
        heartbeat_interval: settings.heartbeat_ms,
        election_timeout_min: settings.election_ms,
        election_timeout_max: settings.election_ms * 2,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_count),
        max_in_snapshot_log_to_keep: 5_000.min(settings.snapshot_count),
        ..Default::default()
    };
    let config = Arc::new(config.validate().map_err(StartError::Config)?);
    let log = log_store::LogStore::open(engine.clone()).map_err(StartError::Storage)?;
    let sm = state_machine::StateMachine::new(store, engine);
    let raft = OxRaft::new(id, config, network::PeerNetwork, log, sm)
        .await
        .map_err(StartError::Fatal)?;
    if !raft.is_initialized().await.map_err(StartError::Fatal)? {
        let members = BTreeMap::from([(id, node)]);
        raft.initialize(members)
            .await
            .map_err(StartError::Initialize)?;
    }
    Ok(raft)
}
