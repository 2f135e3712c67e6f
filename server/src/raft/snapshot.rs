//! Raft snapshots between members: what the leader sends to a member that is missing log
//! entries, and how a member installs one, crash-safely.
//!
//! The store is its own snapshot (see `state_machine`), so nothing is built ahead of time. When
//! a member must be sent a snapshot, the leader writes a point-in-time image of its store to a
//! scratch file, reading the applied log position and membership in the same frozen view, and
//! sends that position as the snapshot's metadata (as etcd sends its backend at the applied index
//! of the moment). Memory stays bounded: images go through files, for stores of any size.
//!
//! Installing replaces the whole store. The received image and a marker with its metadata are
//! made durable first and removed only after the replaced store is flushed, so a crash in between
//! re-runs the installation at start-up instead of leaving a half-replaced store.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::SnapshotMeta;

use super::state_machine::{META_APPLIED, META_MEMBERSHIP};
use super::types::{LogId, MemberNode};
use crate::mvcc::MvccStore;
use crate::mvcc::watch_hub::WatchHub;
use crate::snapshot::export::{Exported, write_image_with};
use crate::snapshot::format::Image;
use crate::storage::{Engine, StorageError};

/// The installation marker: the metadata of the image being installed.
const INSTALLING_META: &str = "installing.meta";
/// The image being installed.
const INSTALLING_IMAGE: &str = "installing.img";

/// What openraft holds as a snapshot's data.
pub enum SnapshotData {
    /// A member's live store (what it builds and offers; images are made when sent).
    Live(Arc<Snapshots>),
    /// A received, verified image file waiting to be installed.
    Image(PathBuf),
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live(s) => write!(f, "Live({})", s.dir.display()),
            Self::Image(p) => write!(f, "Image({})", p.display()),
        }
    }
}

/// Why a snapshot could not be made or installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// File system failure.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The image failed its checks.
    #[error("invalid snapshot image")]
    Image(#[from] crate::snapshot::format::SnapshotError),
    /// Writing the image failed.
    #[error("failed to write a snapshot image")]
    Export(#[from] crate::snapshot::export::ExportError),
    /// The store could not be replaced.
    #[error("failed to replace the store: {0}")]
    Replace(String),
    /// The engine failed.
    #[error("storage failure")]
    Storage(#[from] StorageError),
    /// Bookkeeping records did not decode.
    #[error("undecodable snapshot metadata: {0}")]
    Meta(String),
}

/// Makes and installs snapshots of one member's store.
pub struct Snapshots {
    dir: PathBuf,
    store: Arc<MvccStore>,
    engine: Arc<dyn Engine>,
    hub: Arc<WatchHub>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` durably (temporary file, fsync, rename, fsync of the directory).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), SnapshotError> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir)),
        None => Ok(()),
    }
}

impl Snapshots {
    /// Snapshots of `store` (in `engine`), staged in `dir`, announced to `hub` when installed.
    pub fn new(
        dir: PathBuf,
        store: Arc<MvccStore>,
        engine: Arc<dyn Engine>,
        hub: Arc<WatchHub>,
    ) -> Result<Self, SnapshotError> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            dir,
            store,
            engine,
            hub,
        })
    }

    /// Where received images are written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A point-in-time image of the store and the Raft position it reflects.
    pub fn export(&self) -> Result<(Exported, SnapshotMeta<u64, MemberNode>), SnapshotError> {
        let (exported, meta) = write_image_with(
            &self.store,
            &self.dir,
            crate::api::maintenance::ETCD_API_VERSION,
            |ks| Ok((ks.get(META_APPLIED)?, ks.get(META_MEMBERSHIP)?)),
        )?;
        let decode_err = |e: postcard::Error| SnapshotError::Meta(e.to_string());
        let applied: Option<LogId> = match &meta.0 {
            Some(b) => postcard::from_bytes(b).map_err(decode_err)?,
            None => None,
        };
        let last_membership = match &meta.1 {
            Some(b) => postcard::from_bytes(b).map_err(decode_err)?,
            None => Default::default(),
        };
        let snapshot_id = applied.map_or_else(
            || "empty".to_string(),
            |l| format!("{}-{}", l.leader_id, l.index),
        );
        Ok((
            exported,
            SnapshotMeta {
                last_log_id: applied,
                last_membership,
                snapshot_id,
            },
        ))
    }

    /// A new file name for an image in the staging directory.
    pub fn incoming_path(&self) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir.join(format!("incoming-{nanos}.img"))
    }

    /// Writes a complete image file (content and SHA-256 trailer) of this store into `dir`,
    /// for installing it into another store of the same process.
    pub fn export_file(&self, path: &Path) -> Result<(), SnapshotError> {
        use sha2::{Digest, Sha256};
        use std::io::{Read, Seek, SeekFrom};
        let (exported, _) = self.export()?;
        let mut input = exported.file;
        input.seek(SeekFrom::Start(0)).map_err(io(path))?;
        let mut out = std::io::BufWriter::new(fs::File::create(path).map_err(io(path))?);
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = exported.content_len;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            input.read_exact(&mut buf[..n]).map_err(io(path))?;
            sha.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(path))?;
            left -= n as u64;
        }
        out.write_all(&sha.finalize()).map_err(io(path))?;
        let file = out.into_inner().map_err(|e| io(path)(e.into_error()))?;
        file.sync_all().map_err(io(path))?;
        Ok(())
    }

    /// Replaces the store with the verified image at `image`, which describes `meta`.
    pub fn install(
        &self,
        meta: &SnapshotMeta<u64, MemberNode>,
        image: &Path,
    ) -> Result<i64, SnapshotError> {
        let staged = self.dir.join(INSTALLING_IMAGE);
        fs::rename(image, &staged).map_err(io(image))?;
        sync_dir(&staged)?;
        let marker = postcard::to_stdvec(meta).map_err(|e| SnapshotError::Meta(e.to_string()))?;
        write_durably(&self.dir.join(INSTALLING_META), &marker)?;
        self.replace(meta, &staged)
    }

    /// Finishes an installation a crash interrupted, if there was one.
    pub fn recover(&self) -> Result<(), SnapshotError> {
        let marker = self.dir.join(INSTALLING_META);
        let bytes = match fs::read(&marker) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&marker)(e)),
        };
        let meta: SnapshotMeta<u64, MemberNode> =
            postcard::from_bytes(&bytes).map_err(|e| SnapshotError::Meta(e.to_string()))?;
        tracing::warn!(snapshot = %meta.snapshot_id, "finishing a snapshot installation interrupted by a crash");
        self.replace(&meta, &self.dir.join(INSTALLING_IMAGE))?;
        Ok(())
    }

    fn replace(
        &self,
        meta: &SnapshotMeta<u64, MemberNode>,
        staged: &Path,
    ) -> Result<i64, SnapshotError> {
        let image = Image::open(staged)?;
        let encode = |e: postcard::Error| SnapshotError::Meta(e.to_string());
        let extra = vec![
            (
                META_APPLIED.to_vec(),
                postcard::to_stdvec(&meta.last_log_id).map_err(encode)?,
            ),
            (
                META_MEMBERSHIP.to_vec(),
                postcard::to_stdvec(&meta.last_membership).map_err(encode)?,
            ),
        ];
        let rev = self
            .store
            .replace(image.records()?, extra)
            .map_err(|e| SnapshotError::Replace(crate::error::chain(&e)))?;
        self.engine.flush()?;
        self.hub.reset(rev);
        for name in [INSTALLING_META, INSTALLING_IMAGE] {
            let path = self.dir.join(name);
            fs::remove_file(&path).map_err(io(&path))?;
        }
        sync_dir(&self.dir.join(INSTALLING_META))?;
        tracing::info!(snapshot = %meta.snapshot_id, revision = rev, "installed a snapshot from the leader");
        Ok(rev)
    }
}
