//! Replication: every mutating request is a Raft log entry applied by a deterministic state
//! machine, as in etcd.
//!
//! Raft is openraft 0.9 (0.9.25, pinned): the stable line. 0.10 is still published as alphas
//! whose storage and network traits change between releases; 0.9's storage-v2 traits give what
//! oxcd needs (own log store with group commit, own state machine, whole-snapshot transfer with
//! `generic-snapshot-data`).

mod group_commit;
pub mod legacy_log;
pub mod log_cache;
pub mod log_store;
pub mod network;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod suite;
pub mod types;
pub mod wal;
mod wal_disk;
mod wal_record;
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
    /// The directory of the Raft WAL.
    pub wal: std::path::PathBuf,
    /// The engine directory, for messages.
    pub db: std::path::PathBuf,
    /// Present while the store restored from a snapshot is not yet the Raft snapshot.
    pub restored_marker: std::path::PathBuf,
}

/// Failure to start the Raft member.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings were rejected.
    #[error("invalid raft settings")]
    Config(#[source] openraft::ConfigError),
    /// Storage could not be opened.
    #[error("failed to open the raft log")]
    Storage(#[source] wal::WalError),
    /// The log is shorter than what was flushed before: the store was damaged or replaced.
    #[error(
        "the Raft WAL at {wal} is damaged or incomplete: it ends at index {last} but index {flushed} had been flushed (recorded in {watermark}); refusing to serve a store that may have lost acknowledged writes"
    )]
    LostEntries {
        /// WAL directory.
        wal: std::path::PathBuf,
        /// Watermark file.
        watermark: std::path::PathBuf,
        /// Last index present.
        last: u64,
        /// Highest index flushed before.
        flushed: u64,
    },
    /// The store lacks entries the WAL no longer holds: it was damaged, removed or replaced.
    #[error(
        "the store at {db} is damaged or was replaced: it holds the log applied up to index {applied} but the Raft WAL at {wal} was purged up to index {purged} (the store had been flushed past it); refusing to serve a store that lost acknowledged writes"
    )]
    StoreBehindLog {
        /// Engine directory.
        db: std::path::PathBuf,
        /// WAL directory.
        wal: std::path::PathBuf,
        /// Last index the store has applied.
        applied: u64,
        /// Last index purged from the WAL.
        purged: u64,
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
    /// A member restored from a snapshot could not make its store a Raft snapshot.
    #[error("failed to snapshot the restored store for the members that will join it")]
    SeedRestored(#[source] openraft::metrics::WaitError),
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
    /// Where the state machine announces what it applied.
    pub applied: Arc<watermark::AppliedIndex>,
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
        applied,
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
    let mut log = log_store::LogStore::open(id, &paths.wal, mark.clone(), metrics.clone())
        .map_err(StartError::Storage)?;
    let state = openraft::storage::RaftLogStorage::get_log_state(&mut log)
        .await
        .map_err(StartError::ReadLog)?;
    let last = state.last_log_id.map_or(0, |l| l.index);
    if let Some(flushed) = flushed.filter(|f| *f > last) {
        return Err(StartError::LostEntries {
            wal: paths.wal.clone(),
            watermark: paths.watermark.clone(),
            last,
            flushed,
        });
    }
    snapshots.recover().map_err(StartError::Snapshot)?;
    // A store restored from a snapshot holds data no log entry produced: a member added later
    // must receive it as a Raft snapshot, never replay the log onto an empty store.
    // `oxcd snapshot restore` leaves a marker until that is done (also across a crash).
    let restored = initial.is_some() && paths.restored_marker.exists();
    let network = network::PeerNetwork::new(peers, snapshots.clone(), mark.clone());
    let mut sm =
        state_machine::StateMachine::new(store, engine, hub, metrics, snapshots, (mark, applied));
    // The store is flushed only when a snapshot lets the log before it go; what it lost since
    // is applied again from the WAL, which must therefore still hold everything after it.
    let (store_applied, _) = openraft::storage::RaftStateMachine::applied_state(&mut sm)
        .await
        .map_err(StartError::ReadLog)?;
    let store_applied = store_applied.map(|l| l.index);
    if let Some(purged) = state.last_purged_log_id.map(|l| l.index)
        && store_applied.is_none_or(|a| a < purged)
    {
        return Err(StartError::StoreBehindLog {
            db: paths.db.clone(),
            wal: paths.wal.clone(),
            applied: store_applied.unwrap_or(0),
            purged,
        });
    }
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
    if restored {
        seed_restored(&raft).await?;
        // If this fails the next start seeds again: slower, never wrong.
        if let Err(error) = std::fs::remove_file(&paths.restored_marker) {
            tracing::warn!(%error, path = %paths.restored_marker.display(), "restore marker stays");
        }
    }
    Ok(raft)
}

/// How long a member restored from a snapshot may take to lead itself and snapshot its store
/// (a store near the quota takes a while to copy; failing sooner would only start over).
const SEED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Makes the restored store the Raft snapshot and purges the log before it, so that members
/// added later start from the store (as `etcdutl snapshot restore` gives every etcd member).
async fn seed_restored(raft: &OxRaft) -> Result<(), StartError> {
    let wait = raft.wait(Some(SEED_TIMEOUT));
    let applied = wait
        .metrics(
            |m| m.last_applied.is_some(),
            "the restored member applies its first entry",
        )
        .await
        .map_err(StartError::SeedRestored)?
        .last_applied
        .map_or(0, |id| id.index);
    raft.trigger().snapshot().await.map_err(StartError::Fatal)?;
    wait.metrics(
        |m| m.snapshot.is_some_and(|s| s.index >= applied),
        "the restored store becomes the snapshot",
    )
    .await
    .map_err(StartError::SeedRestored)?;
    raft.trigger()
        .purge_log(applied)
        .await
        .map_err(StartError::Fatal)?;
    wait.metrics(
        |m| m.purged.is_some_and(|p| p.index >= applied),
        "the log before the restored snapshot is purged",
    )
    .await
    .map_err(StartError::SeedRestored)?;
    tracing::info!(
        index = applied,
        "restored store snapshotted; members added later receive it"
    );
    Ok(())
}
