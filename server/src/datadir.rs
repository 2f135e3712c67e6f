//! The member's data directory: refuses directories that belong to something else, and records
//! the member's identity (name, ids, cluster token) so a restart with other flags is caught.
//!
//! Layout: `<data-dir>/oxcd/identity.json`, `<data-dir>/oxcd/db/` (the storage engine) and
//! `<data-dir>/oxcd/wal/` (the Raft log).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const OXCD_DIR: &str = "oxcd";
const IDENTITY_FILE: &str = "identity.json";
/// The on-disk format of the data dir this binary writes; members advertise it beside their
/// server version (`version`). Format 2 keeps the Raft log in a WAL (`oxcd/wal/`); format 1
/// kept it in the storage engine and is moved over when opened (`raft::legacy_log`).
pub const FORMAT: u32 = 2;
/// The older format this binary still opens.
pub const FORMAT_LOG_IN_ENGINE: u32 = 1;

/// Who this member is, fixed when its data dir is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// On-disk format version.
    pub format: u32,
    /// `--name` at creation.
    pub name: String,
    /// This member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// `--initial-cluster-token` at creation.
    pub cluster_token: String,
}

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory holds an etcd member.
    #[error(
        "data dir {path} holds an etcd member (member/): oxcd does not read etcd's on-disk format; use an empty data dir and restore an etcd snapshot into it"
    )]
    EtcdData {
        /// The data dir.
        path: PathBuf,
    },
    /// The directory holds something that is not oxcd's.
    #[error("data dir {path} is not empty and was not created by oxcd (found {entry:?})")]
    Foreign {
        /// The data dir.
        path: PathBuf,
        /// The first unexpected entry.
        entry: String,
    },
    /// The identity record is unreadable.
    #[error("data dir {path} is corrupt: {identity} cannot be read")]
    Corrupt {
        /// The data dir.
        path: PathBuf,
        /// The identity file.
        identity: PathBuf,
        /// The parse or read error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The data dir belongs to another member or cluster.
    #[error(
        "data dir {path} belongs to member {found_name:?} of cluster token {found_token:?}, not {name:?} of {token:?}"
    )]
    Mismatch {
        /// The data dir.
        path: PathBuf,
        /// Name recorded there.
        found_name: String,
        /// Token recorded there.
        found_token: String,
        /// Name from the flags.
        name: String,
        /// Token from the flags.
        token: String,
    },
    /// Filesystem failure.
    #[error("failed to {action} in data dir {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The data dir.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// FNV-1a: a small, stable hash for deriving ids (stable across builds, unlike std's hasher).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A member id from its peer URLs and the cluster token, as etcd derives it.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    fnv1a(&[urls.join(",").as_bytes(), token.as_bytes()])
}

/// A cluster id from its members' ids and the token.
pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    fnv1a(&[&bytes, token.as_bytes()])
}

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// The identity recorded in it.
    pub identity: Identity,
}

impl DataDir {
    /// Opens `root`, creating it and its identity from `fresh` when it is new.
    pub fn open(root: &Path, fresh: Identity) -> Result<Self, DataDirError> {
        let io = |action| {
            let path = root.to_path_buf();
            move |source| DataDirError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(root).map_err(io("create the directory"))?;
        let mut entries: Vec<String> = fs::read_dir(root)
            .map_err(io("list the directory"))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        if entries.iter().any(|e| e == "member") {
            return Err(DataDirError::EtcdData {
                path: root.to_path_buf(),
            });
        }
        if let Some(entry) = entries
            .iter()
            .find(|e| *e != OXCD_DIR && *e != "lost+found" && !e.starts_with('.'))
        {
            return Err(DataDirError::Foreign {
                path: root.to_path_buf(),
                entry: entry.clone(),
            });
        }
        let dir = root.join(OXCD_DIR);
        let identity_path = dir.join(IDENTITY_FILE);
        let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| DataDirError::Corrupt {
            path: root.to_path_buf(),
            identity: identity_path.clone(),
            source,
        };
        let identity = if dir.exists() {
            let text = fs::read(&identity_path).map_err(|e| corrupt(Box::new(e)))?;
            let found: Identity =
                serde_json::from_slice(&text).map_err(|e| corrupt(Box::new(e)))?;
            if found.format != FORMAT && found.format != FORMAT_LOG_IN_ENGINE {
                return Err(corrupt(format!("unknown format {}", found.format).into()));
            }
            if found.name != fresh.name || found.cluster_token != fresh.cluster_token {
                return Err(DataDirError::Mismatch {
                    path: root.to_path_buf(),
                    found_name: found.name,
                    found_token: found.cluster_token,
                    name: fresh.name,
                    token: fresh.cluster_token,
                });
            }
            found
        } else {
            fs::create_dir_all(&dir).map_err(io("create oxcd/"))?;
            write_identity(&dir, &fresh).map_err(|e| match e {
                IdentityWrite::Encode(e) => corrupt(Box::new(e)),
                IdentityWrite::Io(source) => DataDirError::Io {
                    action: "write the identity",
                    path: root.to_path_buf(),
                    source,
                },
            })?;
            fresh
        };
        Ok(Self {
            root: root.to_path_buf(),
            identity,
        })
    }

    /// Records that the data dir is now in this binary's [`FORMAT`] (after moving an older
    /// one's contents over).
    pub fn record_current_format(&mut self) -> Result<(), DataDirError> {
        let identity = Identity {
            format: FORMAT,
            ..self.identity.clone()
        };
        write_identity(&self.root.join(OXCD_DIR), &identity).map_err(|e| DataDirError::Io {
            action: "write the identity",
            path: self.root.clone(),
            source: match e {
                IdentityWrite::Io(e) => e,
                IdentityWrite::Encode(e) => std::io::Error::other(e),
            },
        })?;
        self.identity = identity;
        Ok(())
    }

    /// Where snapshot images are staged while sent or installed (see `raft::snapshot`).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join(OXCD_DIR).join("snap")
    }

    /// True when `root` already holds an oxcd member (its identity is recorded).
    pub fn exists(root: &Path) -> bool {
        root.join(OXCD_DIR).join(IDENTITY_FILE).exists()
    }

    /// The flushed-index watermark file (see `raft::watermark`).
    pub fn watermark_path(&self) -> PathBuf {
        self.root.join(OXCD_DIR).join("flushed-index")
    }

    /// Directory of the Raft WAL.
    pub fn wal_path(&self) -> PathBuf {
        self.root.join(OXCD_DIR).join("wal")
    }

    /// Directory of the storage engine.
    pub fn db_path(&self) -> PathBuf {
        self.root.join(OXCD_DIR).join("db")
    }

    /// Present from a snapshot restore until the member has made the restored store its Raft
    /// snapshot (see `raft::start`): a crash in between seeds again on the next start.
    pub fn restored_marker(&self) -> PathBuf {
        self.root.join(OXCD_DIR).join("restored")
    }

    /// Marks the data dir as restored from a snapshot (see [`Self::restored_marker`]).
    pub fn mark_restored(&self) -> Result<(), DataDirError> {
        let path = self.restored_marker();
        let io = |source| DataDirError::Io {
            action: "mark the restore",
            path: self.root.clone(),
            source,
        };
        let file = std::fs::File::create(&path).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

enum IdentityWrite {
    Encode(serde_json::Error),
    Io(std::io::Error),
}

/// Replaces the identity file in `dir` (the data dir's `oxcd/`) atomically and durably.
fn write_identity(dir: &Path, identity: &Identity) -> Result<(), IdentityWrite> {
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let body = serde_json::to_vec_pretty(identity).map_err(IdentityWrite::Encode)?;
    let mut file = fs::File::create(&tmp).map_err(IdentityWrite::Io)?;
    file.write_all(&body)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, dir.join(IDENTITY_FILE)))
        .and_then(|()| fs::File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(IdentityWrite::Io)
}

/// Builds the identity a new member with these flags gets.
pub fn fresh_identity(name: &str, peer_urls: &[String], token: &str) -> Identity {
    let member = member_id(peer_urls, token);
    Identity {
        format: FORMAT,
        name: name.to_string(),
        member_id: member,
        cluster_id: cluster_id(&[member], token),
        cluster_token: token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ident(name: &str) -> Identity {
        fresh_identity(name, &["http://127.0.0.1:2380".to_string()], "tok")
    }

    #[test]
    fn a_new_dir_records_identity_and_reopens_with_the_same_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path(), ident("a")).unwrap();
        let again = DataDir::open(tmp.path(), ident("a")).unwrap();
        assert_eq!(first.identity, again.identity);
    }

    #[test]
    fn etcd_and_foreign_and_mismatched_dirs_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("member")).unwrap();
        assert!(matches!(
            DataDir::open(tmp.path(), ident("a")),
            Err(DataDirError::EtcdData { .. })
        ));
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("PG_VERSION"), "15").unwrap();
        assert!(matches!(
            DataDir::open(tmp.path(), ident("a")),
            Err(DataDirError::Foreign { .. })
        ));
        let tmp = tempfile::tempdir().unwrap();
        DataDir::open(tmp.path(), ident("a")).unwrap();
        assert!(matches!(
            DataDir::open(tmp.path(), ident("b")),
            Err(DataDirError::Mismatch { .. })
        ));
    }

    #[test]
    fn a_garbled_identity_is_reported_as_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        DataDir::open(tmp.path(), ident("a")).unwrap();
        fs::write(tmp.path().join("oxcd").join(IDENTITY_FILE), "{not json").unwrap();
        assert!(matches!(
            DataDir::open(tmp.path(), ident("a")),
            Err(DataDirError::Corrupt { .. })
        ));
    }
}
