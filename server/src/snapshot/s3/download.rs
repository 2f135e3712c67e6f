//! `oxcd snapshot download`: fetches a snapshot object (by key, or the latest under a prefix)
//! into a temporary file beside the target, checks the object's size and SHA-256 against its
//! metadata and then the snapshot's own header and trailer, and only then renames it into
//! place. A missing, foreign or corrupt object leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzDecoder;
use sha2::{Digest, Sha256};

use super::client::{S3CallError, S3Target};
use super::objects::{
    META_COMPRESSION, META_HASH_KV, META_REVISION, META_SHA256, META_SIZE, ObjectsError, latest,
};
use super::sse;
use crate::snapshot::format::{Image, SnapshotError, hex};

/// Which object to fetch.
#[derive(Debug, Clone)]
pub enum Source {
    /// A key (absolute in the bucket).
    Key(String),
    /// The newest snapshot under the prefix.
    Latest,
}

/// What was downloaded: the JSON line `download` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Downloaded {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The revision (from the snapshot's header).
    pub revision: i64,
    /// The object's size.
    pub size: u64,
    /// The object's SHA-256 (hex).
    pub sha256: String,
    /// The source member's HashKV at `revision`, when the upload recorded it.
    pub hash_kv: Option<u32>,
    /// Where the snapshot file is.
    pub path: PathBuf,
}

/// Why a download was refused or failed (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Finding the latest snapshot failed.
    #[error("failed to pick the snapshot to download")]
    Pick(#[from] ObjectsError),
    /// GetObject failed (after retries), e.g. the key does not exist.
    #[error(transparent)]
    Get(#[from] S3CallError),
    /// The object lacks oxcd's metadata, so it cannot be verified.
    #[error("failed to verify s3://{bucket}/{key}: its metadata {field} is missing or invalid")]
    Metadata {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The metadata key.
        field: &'static str,
    },
    /// The bytes received differ from what was uploaded.
    #[error(
        "failed to verify s3://{bucket}/{key}: received {size} bytes with sha256 {sha256}, its metadata says {expected_size} bytes with sha256 {expected_sha256}"
    )]
    Mismatch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Bytes received.
        size: u64,
        /// Their SHA-256.
        sha256: String,
        /// Size recorded at upload.
        expected_size: u64,
        /// SHA-256 recorded at upload.
        expected_sha256: String,
    },
    /// The snapshot inside is damaged or not an oxcd snapshot.
    #[error("failed to verify the snapshot in s3://{bucket}/{key}")]
    Snapshot {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What the check found.
        #[source]
        source: SnapshotError,
    },
    /// The header's revision differs from the metadata's.
    #[error(
        "failed to verify s3://{bucket}/{key}: its snapshot has revision {found}, its metadata says {expected}"
    )]
    Revision {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// From the header.
        found: i64,
        /// From the metadata.
        expected: i64,
    },
    /// Reading the body or writing the file failed.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The body stream broke.
    #[error("failed to read the body of s3://{bucket}/{key}")]
    Body {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The stream error.
        #[source]
        source: aws_sdk_s3::primitives::ByteStreamError,
    },
}

/// The temporary file, written through a gzip decoder when compressed; the first write error
/// is kept (and later writes skipped) so the whole body is still hashed.
struct Output {
    sink: Result<Sink, std::io::Error>,
}

enum Sink {
    Plain(std::fs::File),
    Gzip(Box<GzDecoder<std::fs::File>>),
}

impl Output {
    fn new(file: std::fs::File, gzip: bool) -> Self {
        let sink = if gzip {
            Sink::Gzip(Box::new(GzDecoder::new(file)))
        } else {
            Sink::Plain(file)
        };
        Self { sink: Ok(sink) }
    }

    fn write(&mut self, bytes: &[u8]) {
        let result = match &mut self.sink {
            Ok(Sink::Plain(f)) => f.write_all(bytes),
            Ok(Sink::Gzip(d)) => d.write_all(bytes),
            Err(_) => return,
        };
        if let Err(e) = result {
            self.sink = Err(e);
        }
    }

    fn finish(self) -> Result<(), std::io::Error> {
        match self.sink? {
            Sink::Plain(mut f) => f.flush(),
            Sink::Gzip(d) => d.finish().and_then(|mut f| f.flush()),
        }
    }
}

/// Downloads `source` from `target` to `path` (whose directory must exist); see the module docs.
pub async fn download(
    target: &S3Target,
    source: &Source,
    path: &Path,
) -> Result<Downloaded, DownloadError> {
    let key = match source {
        Source::Key(k) => k.clone(),
        Source::Latest => latest(target).await?.key,
    };
    let bucket = target.bucket.clone();
    let get = target.client.get_object().bucket(&bucket).key(&key);
    let mut object = sse::get_object(get, &target.sse)
        .send()
        .await
        .map_err(target.call_error("get", &key))?;
    let meta = object.metadata().cloned().unwrap_or_default();
    let field = |field: &'static str| DownloadError::Metadata {
        bucket: bucket.clone(),
        key: key.clone(),
        field,
    };
    let expected_sha256 = meta
        .get(META_SHA256)
        .cloned()
        .ok_or_else(|| field(META_SHA256))?;
    let expected_size: u64 = meta
        .get(META_SIZE)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| field(META_SIZE))?;
    let expected_revision: i64 = meta
        .get(META_REVISION)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| field(META_REVISION))?;
    let hash_kv: Option<u32> = match meta.get(META_HASH_KV) {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| field(META_HASH_KV))?),
    };
    let gzip = match meta.get(META_COMPRESSION).map(String::as_str) {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(_) => return Err(field(META_COMPRESSION)),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write = |source| DownloadError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temp = tempfile::Builder::new()
        .prefix(".oxcd-download-")
        .tempfile_in(&dir)
        .map_err(write)?;
    let file = temp.as_file().try_clone().map_err(write)?;
    let mut out = Output::new(file, gzip);
    let mut sha = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = object
        .body
        .try_next()
        .await
        .map_err(|source| DownloadError::Body {
            bucket: bucket.clone(),
            key: key.clone(),
            source,
        })?
    {
        sha.update(&chunk);
        size += chunk.len() as u64;
        out.write(&chunk);
    }
    let written = out.finish();
    let sha256 = hex(&sha.finalize());
    // The object's own checksum first: a tampered object is reported as such, not as the
    // decompression error it may also cause.
    if size != expected_size || sha256 != expected_sha256 {
        return Err(DownloadError::Mismatch {
            bucket,
            key,
            size,
            sha256,
            expected_size,
            expected_sha256,
        });
    }
    written.map_err(write)?;
    let image = Image::open(temp.path()).map_err(|source| DownloadError::Snapshot {
        bucket: bucket.clone(),
        key: key.clone(),
        source,
    })?;
    if image.header.revision != expected_revision {
        return Err(DownloadError::Revision {
            bucket,
            key,
            found: image.header.revision,
            expected: expected_revision,
        });
    }
    temp.as_file().sync_all().map_err(write)?;
    temp.persist(path).map_err(|e| write(e.error))?;
    Ok(Downloaded {
        bucket,
        key,
        revision: image.header.revision,
        size,
        sha256,
        hash_kv,
        path: path.to_path_buf(),
    })
}
