//! The member's side of the Snapshot RPC: a point-in-time image of the store written to an
//! unnamed scratch file, then streamed to the client in chunks and closed with its SHA-256.
//!
//! Memory stays bounded whatever the store's size: the image goes through a 1 MiB write buffer
//! to the scratch file, and the stream holds at most a few chunks in flight. The price is that
//! the store is frozen (no apply, no compaction) while the image is written, which takes as long
//! as copying the keyspace to disk; the stream itself runs without holding anything, at the
//! client's pace. The scratch file is unnamed (or unlinked at once where the filesystem cannot
//! create unnamed files), so a crash leaves nothing behind.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::format::{Header, ImageWriter};
use crate::mvcc::MvccStore;
use crate::mvcc::hash::is_raft_record;
use crate::proto::etcdserverpb::SnapshotResponse;
use crate::storage::{Keyspace, StorageError};

/// Bytes of snapshot content per response message (etcd sends 32 KiB; any size works for
/// clients, and fewer, larger messages stream faster).
pub const CHUNK_LEN: usize = 256 * 1024;
/// Response messages buffered ahead of a slow client.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Write buffer between the keyspace scan and the scratch file.
const WRITE_BUFFER: usize = 1 << 20;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error("failed to read the store for a snapshot")]
    Storage(#[from] StorageError),
    /// Writing the scratch file failed.
    #[error("failed to write the snapshot scratch file")]
    Scratch(#[from] io::Error),
}

/// An image of the store, ready to stream.
#[derive(Debug)]
pub struct Exported {
    /// The scratch file, positioned at its start.
    pub file: File,
    /// Bytes of content (without the trailer the stream appends).
    pub content_len: u64,
    /// The image's header.
    pub header: Header,
}

/// Writes a point-in-time image of `store` to an unnamed file in `scratch_dir`.
pub fn write_image(
    store: &MvccStore,
    scratch_dir: &Path,
    storage_version: &str,
) -> Result<Exported, ExportError> {
    write_image_with(store, scratch_dir, storage_version, |_| Ok(())).map(|(e, ())| e)
}

/// Like [`write_image`], and also runs `also` on the keyspace in the same frozen view, so what
/// it reads (such as the applied Raft position) describes exactly the image.
pub fn write_image_with<T>(
    store: &MvccStore,
    scratch_dir: &Path,
    storage_version: &str,
    also: impl FnOnce(&dyn Keyspace) -> Result<T, StorageError>,
) -> Result<(Exported, T), ExportError> {
    let file = tempfile::tempfile_in(scratch_dir)?;
    let (mut file, content_len, header, extra) =
        store.read_frozen(|ks, revision, compact_revision| {
            let extra = also(ks)?;
            let header = Header {
                revision,
                compact_revision,
                storage_version: storage_version.to_string(),
            };
            let out = BufWriter::with_capacity(WRITE_BUFFER, file);
            let mut image = ImageWriter::new(out, &header)?;
            for pair in ks.range(&[], None) {
                let (key, value) = pair?;
                if !is_raft_record(&key) {
                    image.record(&key, &value)?;
                }
            }
            let (out, content_len) = image.finish()?;
            let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            Ok::<_, ExportError>((file, content_len, header, extra))
        })?;
    file.seek(SeekFrom::Start(0))?;
    Ok((
        Exported {
            file,
            content_len,
            header,
        },
        extra,
    ))
}

/// Streams an image as etcd does: chunks with `remaining_bytes` counting down to 0, then one
/// message whose blob is the SHA-256 of all chunks; every message carries `version`.
pub fn stream(
    exported: Exported,
    version: String,
) -> ReceiverStream<Result<SnapshotResponse, Status>> {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let Exported {
        mut file,
        content_len,
        ..
    } = exported;
    tokio::task::spawn_blocking(move || {
        let mut sha = Sha256::new();
        let mut sent = 0u64;
        while sent < content_len {
            let len = (content_len - sent).min(CHUNK_LEN as u64) as usize;
            let mut blob = vec![0u8; len];
            if let Err(e) = file.read_exact(&mut blob) {
                tracing::warn!(error = %e, "failed to read the snapshot scratch file");
                let _ = tx.blocking_send(Err(Status::internal(
                    "oxcd: failed to read the snapshot scratch file",
                )));
                return;
            }
            sha.update(&blob);
            sent += len as u64;
            let chunk = SnapshotResponse {
                header: None,
                remaining_bytes: content_len - sent,
                blob,
                version: version.clone(),
            };
            if tx.blocking_send(Ok(chunk)).is_err() {
                tracing::info!(sent, content_len, "snapshot client went away");
                return;
            }
        }
        let trailer = SnapshotResponse {
            header: None,
            remaining_bytes: 0,
            blob: sha.finalize().to_vec(),
            version,
        };
        if tx.blocking_send(Ok(trailer)).is_ok() {
            tracing::info!(content_len, "sent a snapshot and its sha256");
        }
    });
    ReceiverStream::new(rx)
}
