//! `oxcd snapshot restore`: a new member data dir from a snapshot, as `etcdutl snapshot restore`
//! makes one for etcd.
//!
//! Nothing is written until the whole snapshot has been checked (magic, format version, size,
//! SHA-256, the structure of every record and their key order): a corrupt or truncated file leaves no data dir
//! behind. The new data dir holds the member's identity (derived from the flags exactly as a
//! fresh member's) and the store's records with their revision and compaction revision, but no
//! Raft state: the member started on it (with the same `--name` and `--initial-cluster-token`)
//! initializes a new one-member Raft group and serves the same keys at the same revision.
//!
//! The records go into the engine through its bulk load (no per-batch atomicity, several
//! threads, no durability until the single flush at the end): the data dir is only marked
//! restored after that flush, and the init container renames its staged copy into place only
//! after this returns, so a crash part-way never leaves a data dir that passes for a complete
//! restore there (a plain CLI restore killed part-way leaves a partial one, as etcdutl's does,
//! and a failed one removes it). The read-back check reads the revision markers and the newest
//! record instead of rebuilding the key index, which the member does anyway when it starts (and
//! which then drops the history `--mark-compacted` compacted).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::format::{Image, SnapshotError};
use crate::datadir::{DataDir, DataDirError, fresh_identity};
use crate::mvcc::revision::{REV_PREFIX, Revision};
use crate::storage::sled_engine::SledEngine;
use crate::storage::{Engine, Keyspace, StorageError, WriteBatch};
use crate::version::state::{META_VERSIONS, VersionState};

/// Records handed to the engine's bulk load at a time.
const LOAD_RECORDS: usize = 65_536;
/// Bytes handed to the engine's bulk load at a time (values may be up to the request limit
/// each), which bounds the memory a restore holds.
const LOAD_BYTES: usize = 32 << 20;
/// Engine page cache while loading.
const LOAD_CACHE_BYTES: u64 = 64 << 20;
const META_REVISION: &[u8] = b"m/revision";
const META_COMPACT: &[u8] = b"m/compact";

/// What to restore where, with etcdutl's flags.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// The data dir to create.
    pub data_dir: PathBuf,
    /// `--name` of the new member.
    pub name: String,
    /// `--initial-cluster`: `name=peer-url,...`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// `--bump-revision`: added to the restored revision.
    pub bump_revision: u64,
    /// `--mark-compacted`: compact at the (bumped) revision.
    pub mark_compacted: bool,
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The revision the new member will serve.
    pub revision: i64,
    /// Its compaction revision.
    pub compact_revision: i64,
    /// Records written.
    pub records: u64,
    /// The new member's id.
    pub member_id: u64,
}

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The flags do not go together.
    #[error("--mark-compacted required if --bump-revision > 0")]
    BumpFlags,
    /// `--initial-cluster` does not parse.
    #[error("invalid --initial-cluster {value:?}: expected name=peer-url[,name=peer-url...]")]
    InitialCluster {
        /// The value given.
        value: String,
    },
    /// `--initial-cluster` does not name this member.
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    MissingMember {
        /// `--name`.
        name: String,
    },
    /// This member's URLs differ between the flags.
    #[error(
        "--initial-cluster has {name}={cluster_urls} but --initial-advertise-peer-urls is {peer_urls}"
    )]
    PeerUrls {
        /// `--name`.
        name: String,
        /// URLs in `--initial-cluster`.
        cluster_urls: String,
        /// `--initial-advertise-peer-urls`.
        peer_urls: String,
    },
    /// More than one member.
    #[error(
        "--initial-cluster names {count} members: oxcd restores a snapshot into a one-member cluster; add members to it afterwards"
    )]
    MultiMember {
        /// Members named.
        count: usize,
    },
    /// The target exists and holds something.
    #[error("data-dir {path} not empty or could not be read")]
    NotEmpty {
        /// The data dir.
        path: PathBuf,
    },
    /// The snapshot failed its checks.
    #[error("refusing to restore")]
    Snapshot(#[from] SnapshotError),
    /// The data dir could not be created.
    #[error("failed to create the data dir")]
    DataDir(#[from] DataDirError),
    /// Writing the store failed.
    #[error("failed to write the store at {path}")]
    Storage {
        /// The engine directory.
        path: PathBuf,
        /// The engine error.
        #[source]
        source: StorageError,
    },
    /// The written store does not read back as expected.
    #[error("the restored store at {path} reads back revision {found}, expected {expected}")]
    Verify {
        /// The engine directory.
        path: PathBuf,
        /// Revision read back.
        found: i64,
        /// Revision expected.
        expected: i64,
    },
}

/// Checks the cluster flags: exactly this member, with the same peer URLs.
fn check_cluster(opts: &RestoreOptions) -> Result<(), RestoreError> {
    let members = crate::bootstrap::parse_initial_cluster(&opts.initial_cluster).map_err(|_| {
        RestoreError::InitialCluster {
            value: opts.initial_cluster.clone(),
        }
    })?;
    let urls: BTreeSet<String> = members
        .iter()
        .find(|(n, _)| *n == opts.name)
        .map(|(_, urls)| urls.iter().cloned().collect())
        .ok_or_else(|| RestoreError::MissingMember {
            name: opts.name.clone(),
        })?;
    let peer_urls: BTreeSet<String> = opts.peer_urls.iter().cloned().collect();
    if urls != peer_urls {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        return Err(RestoreError::PeerUrls {
            name: opts.name.clone(),
            cluster_urls: join(&urls),
            peer_urls: join(&peer_urls),
        });
    }
    if members.len() > 1 {
        return Err(RestoreError::MultiMember {
            count: members.len(),
        });
    }
    Ok(())
}

/// True when `dir` does not exist; an error when it exists and is not an empty directory.
fn check_target(dir: &Path) -> Result<bool, RestoreError> {
    let not_empty = || RestoreError::NotEmpty {
        path: dir.to_path_buf(),
    };
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(_) => Err(not_empty()),
        Ok(mut entries) => match entries.next() {
            None => Ok(false),
            Some(_) => Err(not_empty()),
        },
    }
}

/// The checks [`restore`] makes before reading the snapshot (flags, and a data dir that is
/// absent or empty), for callers that must fetch the snapshot first.
pub fn precheck(opts: &RestoreOptions) -> Result<(), RestoreError> {
    if (opts.bump_revision == 0) == opts.mark_compacted {
        return Err(RestoreError::BumpFlags);
    }
    check_cluster(opts)?;
    check_target(&opts.data_dir)?;
    Ok(())
}

/// Restores `opts.snapshot` into a new data dir; see the module docs.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    if (opts.bump_revision == 0) == opts.mark_compacted {
        return Err(RestoreError::BumpFlags);
    }
    check_cluster(opts)?;
    let created = check_target(&opts.data_dir)?;
    let image = Image::open(&opts.snapshot)?;
    let records = image.records()?.check()?;
    let result = write(opts, &image, records);
    if result.is_err() {
        // Leave the target as it was: absent, or empty.
        let cleanup = if created {
            std::fs::remove_dir_all(&opts.data_dir)
        } else {
            std::fs::remove_dir_all(opts.data_dir.join("oxcd"))
        };
        if let Err(e) = cleanup {
            tracing::warn!(error = %e, path = %opts.data_dir.display(), "failed to remove a partly restored data dir");
        }
    }
    result
}

/// The version record without its members' versions: the restored cluster has new members,
/// which advertise theirs when they start. The cluster version and a downgrade in progress stay,
/// as etcd's restore keeps its cluster bucket and trims only the members.
fn trim_member_versions(record: &[u8]) -> Result<Vec<u8>, StorageError> {
    let corrupt = |e: postcard::Error| StorageError::Corrupt {
        what: format!("the version record of the snapshot ({e})"),
    };
    let mut state = VersionState::decode(Some(record)).map_err(corrupt)?;
    state.members.clear();
    state.encode().map_err(corrupt)
}

/// The revision and compaction revision a store opened on `ks` starts at (as
/// `MvccStore::open` derives them: the revision marker or the newest record, whichever is
/// later), read without rebuilding the key index.
fn stored_revisions(ks: &dyn Keyspace) -> Result<(i64, i64), StorageError> {
    let read = |key: &[u8]| -> Result<Option<i64>, StorageError> {
        ks.get(key)?
            .map(|v| {
                <[u8; 8]>::try_from(v.as_slice())
                    .map(i64::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt {
                        what: String::from_utf8_lossy(key).into_owned(),
                    })
            })
            .transpose()
    };
    let newest = match ks.range_rev(&[REV_PREFIX], Some(&[REV_PREFIX + 1])).next() {
        None => 1,
        Some(pair) => {
            let (key, _) = pair?;
            Revision::from_key(&key)
                .ok_or_else(|| StorageError::Corrupt {
                    what: "a revision key".into(),
                })?
                .0
                .main
        }
    };
    let revision = read(META_REVISION)?.unwrap_or(1).max(newest);
    Ok((revision, read(META_COMPACT)?.unwrap_or(-1)))
}

fn write(opts: &RestoreOptions, image: &Image, records: u64) -> Result<Restored, RestoreError> {
    let identity = fresh_identity(&opts.name, &opts.peer_urls, &opts.initial_cluster_token);
    let data_dir = DataDir::open(&opts.data_dir, identity)?;
    let db = data_dir.db_path();
    let storage = |source| RestoreError::Storage {
        path: db.clone(),
        source,
    };
    let engine = SledEngine::open(&db, LOAD_CACHE_BYTES).map_err(storage)?;
    let ks = engine.keyspace("mvcc").map_err(storage)?;
    let mut chunk = Vec::with_capacity(LOAD_RECORDS);
    let mut chunk_bytes = 0;
    for record in image.records()? {
        let (key, mut value) = record?;
        if key == META_VERSIONS {
            value = trim_member_versions(&value).map_err(storage)?;
        }
        chunk_bytes += key.len() + value.len();
        chunk.push((key, value));
        if chunk.len() >= LOAD_RECORDS || chunk_bytes >= LOAD_BYTES {
            ks.load(std::mem::take(&mut chunk)).map_err(storage)?;
            chunk_bytes = 0;
        }
    }
    ks.load(chunk).map_err(storage)?;
    let bump = i64::try_from(opts.bump_revision).unwrap_or(i64::MAX);
    let revision = image.header.revision.saturating_add(bump);
    let mut compact_revision = image.header.compact_revision;
    let mut batch = WriteBatch::new();
    if opts.bump_revision > 0 {
        batch.put(META_REVISION.to_vec(), revision.to_be_bytes().to_vec());
    }
    if opts.mark_compacted {
        compact_revision = revision;
        batch.put(META_COMPACT.to_vec(), revision.to_be_bytes().to_vec());
    }
    ks.write(batch).map_err(storage)?;
    engine.flush().map_err(storage)?;
    let (found, found_compact) = stored_revisions(ks.as_ref()).map_err(storage)?;
    if found != revision || found_compact != compact_revision {
        return Err(RestoreError::Verify {
            path: db,
            found,
            expected: revision,
        });
    }
    data_dir.mark_restored()?;
    Ok(Restored {
        revision,
        compact_revision,
        records,
        member_id: data_dir.identity.member_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raftpb::MemberVersion;

    #[test]
    fn restore_keeps_the_cluster_version_and_downgrade_but_not_the_old_members_versions() {
        let mut state = VersionState {
            cluster: Some("0.4.0".into()),
            downgrade: Some("0.3.0".into()),
            ..Default::default()
        };
        state.apply_member(&MemberVersion {
            member_id: 9,
            server: "0.4.1".into(),
            storage_format: 1,
        });
        let record = state.encode().unwrap_or_default();
        let trimmed = trim_member_versions(&record)
            .ok()
            .and_then(|r| VersionState::decode(Some(&r)).ok());
        state.members.clear();
        assert_eq!(trimmed, Some(state));
    }
}
