//! Replication: every mutating request is a Raft log entry applied by a deterministic state
//! machine, as in etcd.
//!
//! Raft is openraft 0.9 (0.9.25, pinned): the stable line. 0.10 is still published as alphas
//! whose storage and network traits change between releases; 0.9's storage-v2 traits give what
//! oxcd needs (own log store with group commit, own state machine, whole-snapshot transfer with
//! `generic-snapshot-data`).

pub mod log_store;
pub mod network;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod suite;
pub mod types;
pub mod watermark;

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

pub use types::{Applied, Command, CommandResult, MemberNode, OxRaft, TypeConfig};

use crate::mvcc::MvccStore;
use crate::mvcc::watch_hub::WatchHub;
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

/// Where the member's durable state lives.
#[derive(Debug, Clone)]
pub struct RaftPaths {
    /// The flushed-index watermark file.
    pub watermark: std::path::PathBuf,
    /// The engine directory, for messages.
    pub db: std::path::PathBuf,
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
    /// The log is shorter than what was flushed before: the store was damaged or replaced.
    #[error(
        "the store at {db} is damaged or incomplete: its Raft log ends at index {last} but index {flushed} had been flushed (recorded in {watermark}); refusing to serve a store that may have lost acknowledged writes"
    )]
    LostEntries {
        /// Engine directory.
        db: std::path::PathBuf,
        /// Watermark file.
        watermark: std::path::PathBuf,
        /// Last index present.
        last: u64,
        /// Highest index flushed before.
        flushed: u64,
    },
    /// The watermark file cannot be opened.
    #[error("failed to open {path}")]
    Watermark {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the log state failed.
    #[error("failed to read the raft log")]
    ReadLog(#[source] types::StorageError),
    /// A snapshot installation interrupted by a crash could not be finished.
    #[error("failed to finish installing a snapshot")]
    Snapshot(#[source] snapshot::SnapshotError),
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

/// What the Raft node applies to and reports into.
pub struct RaftState {
    /// The storage engine holding log and store.
    pub engine: Arc<dyn Engine>,
    /// The multi-version store the state machine applies to.
    pub store: Arc<MvccStore>,
    /// Where applied revisions are announced to watchers.
    pub hub: Arc<WatchHub>,
    /// Metrics the log and state machine update.
    pub metrics: Arc<crate::http::Metrics>,
    /// Snapshots of the store, for the state machine and the transport.
    pub snapshots: Arc<snapshot::Snapshots>,
    /// Channels to the other members.
    pub peers: Arc<crate::peer::Peers>,
}

/// Starts this member's Raft node. A member that has never been part of a cluster initializes
/// one with `initial` members (a new cluster), or, given none, waits to be contacted by the
/// leader of the cluster it was added to.
pub async fn start(
    id: u64,
    initial: Option<BTreeMap<u64, MemberNode>>,
    state: RaftState,
    settings: &RaftSettings,
    paths: &RaftPaths,
) -> Result<OxRaft, StartError> {
    let RaftState {
        engine,
        store,
        hub,
        metrics,
        snapshots,
        peers,
    } = state;
    let config = Config {
        cluster_name: "oxcd".into(),
        heartbeat_interval: settings.heartbeat_ms,
        // openraft's followers refuse votes for `election_timeout_max` after the last word
        // from the leader (its leader lease), so every first candidacy inside that window
        // fails. etcd's check-quorum lease is one --election-timeout; mapping the flag to the
        // lease and randomizing candidacies over its second half elects a new leader within
        // one to two election timeouts of losing the old one, as etcd does.
        election_timeout_min: (settings.election_ms / 2).max(settings.heartbeat_ms * 2),
        election_timeout_max: settings.election_ms,
        // Whole batches of proposals travel per entry: bound the entries per message instead.
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_count),
        max_in_snapshot_log_to_keep: 5_000.min(settings.snapshot_count),
        ..Default::default()
    };
    let config = Arc::new(config.validate().map_err(StartError::Config)?);
    let flushed = watermark::Watermark::load(&paths.watermark);
    let mark =
        watermark::Watermark::open(&paths.watermark).map_err(|source| StartError::Watermark {
            path: paths.watermark.clone(),
            source,
        })?;
    let mark = Arc::new(mark);
    let mut log = log_store::LogStore::open(id, engine.clone(), mark.clone(), metrics.clone())
        .map_err(StartError::Storage)?;
    let state = openraft::storage::RaftLogStorage::get_log_state(&mut log)
        .await
        .map_err(StartError::ReadLog)?;
    let last = state.last_log_id.map_or(0, |l| l.index);
    if let Some(flushed) = flushed.filter(|f| *f > last) {
        return Err(StartError::LostEntries {
            db: paths.db.clone(),
            watermark: paths.watermark.clone(),
            last,
            flushed,
        });
    }
    snapshots.recover().map_err(StartError::Snapshot)?;
    let network = network::PeerNetwork::new(peers, snapshots.clone(), mark.clone());
    let sm = state_machine::StateMachine::new(store, engine, hub, metrics, snapshots, mark);
    let raft = OxRaft::new(id, config, network, log, sm)
        .await
        .map_err(StartError::Fatal)?;
    if let Some(members) = initial
        && !raft.is_initialized().await.map_err(StartError::Fatal)?
    {
        raft.initialize(members)
            .await
            .map_err(StartError::Initialize)?;
    }
    Ok(raft)
}
