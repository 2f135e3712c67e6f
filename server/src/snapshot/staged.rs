//! `oxcd snapshot restore` as an init container that runs on every start of every member
//! (`--skip-if-not-empty`, `--initial-cluster-state`): it restores only into an empty data dir
//! of a member that bootstraps a new cluster, and leaves anything else untouched. The restore
//! is staged in a sibling directory and renamed into place once complete, so a restore killed
//! half-way (OOM, node loss) never leaves a partial data dir that a later start would take for
//! a restored one.

use std::path::{Path, PathBuf};

use crate::config::InitialClusterState;

/// Why a restore is not needed at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The member joins a running cluster: its leader sends it the data.
    JoiningExisting,
    /// The data dir already holds something (a member that restarts).
    NotEmpty(PathBuf),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::JoiningExisting => write!(
                f,
                "nothing restored: a member joining an existing cluster (--initial-cluster-state existing) receives the data from its leader"
            ),
            Self::NotEmpty(path) => write!(
                f,
                "nothing restored: data dir {} already holds data (--skip-if-not-empty)",
                path.display()
            ),
        }
    }
}

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The data dir has no parent or file name to stage beside.
    #[error("failed to stage the restore: data dir {path} has no parent directory")]
    NoParent {
        /// The data dir.
        path: PathBuf,
    },
    /// A leftover staging directory could not be removed, or the rename failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether the restore is skipped: for `existing`, or (with `skip_if_not_empty`) a data dir
/// that holds something. An unreadable data dir is not skipped: the restore reports it.
pub fn skip(state: InitialClusterState, data_dir: &Path, skip_if_not_empty: bool) -> Option<Skip> {
    if state == InitialClusterState::Existing {
        return Some(Skip::JoiningExisting);
    }
    let holds_data = std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some());
    (skip_if_not_empty && holds_data).then(|| Skip::NotEmpty(data_dir.to_path_buf()))
}

/// The staging directory of `data_dir` (`<data dir>.restoring`, on the same file system), with
/// any leftover of an interrupted restore removed.
pub fn prepare(data_dir: &Path) -> Result<PathBuf, StageError> {
    let name = data_dir
        .file_name()
        .filter(|_| data_dir.parent().is_some())
        .ok_or_else(|| StageError::NoParent {
            path: data_dir.to_path_buf(),
        })?;
    let mut staged_name = name.to_os_string();
    staged_name.push(".restoring");
    let staging = data_dir.with_file_name(staged_name);
    match std::fs::remove_dir_all(&staging) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(StageError::Io {
            action: "remove the leftover staging directory",
            path: staging,
            source,
        }),
        _ => Ok(staging),
    }
}

/// Moves the complete restore in `staging` to `data_dir` (absent or empty: a rename replaces
/// an empty directory) and makes the rename durable.
pub fn commit(staging: &Path, data_dir: &Path) -> Result<(), StageError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| StageError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::rename(staging, data_dir).map_err(io("rename the restore into", data_dir))?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io("sync", parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_joining_member_and_a_member_with_data_are_skipped_an_empty_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(
            skip(InitialClusterState::Existing, &data, false),
            Some(Skip::JoiningExisting)
        );
        assert_eq!(skip(InitialClusterState::New, &data, true), None);
        std::fs::create_dir(&data).unwrap();
        assert_eq!(skip(InitialClusterState::New, &data, true), None);
        std::fs::write(data.join("x"), b"x").unwrap();
        assert_eq!(
            skip(InitialClusterState::New, &data, true),
            Some(Skip::NotEmpty(data.clone()))
        );
        assert_eq!(skip(InitialClusterState::New, &data, false), None);
    }

    #[test]
    fn a_staged_restore_replaces_an_empty_data_dir_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let staging = prepare(&data).unwrap();
        assert_eq!(staging, dir.path().join("data.restoring"));
        std::fs::create_dir_all(staging.join("half")).unwrap();
        let staging = prepare(&data).unwrap();
        assert!(!staging.exists(), "leftover kept");
        std::fs::create_dir_all(staging.join("oxcd")).unwrap();
        commit(&staging, &data).unwrap();
        assert!(data.join("oxcd").is_dir());
        assert!(!staging.exists());
    }
}
