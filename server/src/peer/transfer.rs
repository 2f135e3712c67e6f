//! Snapshot transfer between members: the leader streams an image file in chunks, the receiver
//! writes it to a file beside its store, checks its SHA-256 and hands it to Raft for
//! installation. Both sides hold at most a few chunks in memory, whatever the store's size.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{Fatal, NetworkError, StreamingError, Unreachable};
use openraft::raft::SnapshotResponse;
use openraft::storage::SnapshotMeta;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError, Vote};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::Peers;
use crate::proto::peerpb::SnapshotChunk;
use crate::raft::snapshot::Snapshots;
use crate::raft::{MemberNode, TypeConfig};

/// Image bytes per message.
const CHUNK_LEN: usize = 1 << 20;
/// Messages buffered between the file reader and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

type SendError = StreamingError<TypeConfig, Fatal<u64>>;

fn storage_error(e: &dyn std::error::Error) -> SendError {
    SendError::StorageError(openraft::StorageError::IO {
        source: StorageIOError::new(
            ErrorSubject::Snapshot(None),
            ErrorVerb::Read,
            AnyError::error(e.to_string()),
        ),
    })
}

fn network_error(status: &Status) -> SendError {
    let err = std::io::Error::other(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled => {
            SendError::Unreachable(Unreachable::new(&err))
        }
        _ => SendError::Network(NetworkError::new(&err)),
    }
}

/// Sends an image of this member's store to member `target` and returns the vote it answered.
pub async fn send(
    peers: &Peers,
    snapshots: &std::sync::Arc<Snapshots>,
    target: u64,
    node: &MemberNode,
    vote: Vote<u64>,
) -> Result<SnapshotResponse<u64>, SendError> {
    let source = snapshots.clone();
    let (exported, meta) = tokio::task::spawn_blocking(move || source.export())
        .await
        .map_err(|e| storage_error(&e))?
        .map_err(|e| storage_error(&e))?;
    tracing::info!(to = %format!("{target:x}"), snapshot = %meta.snapshot_id, bytes = exported.content_len, "sending a snapshot");
    let first = SnapshotChunk {
        header: peers.header(target),
        vote: postcard::to_stdvec(&vote).map_err(|e| storage_error(&e))?,
        meta: postcard::to_stdvec(&meta).map_err(|e| storage_error(&e))?,
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let mut file = exported.file;
    let total = exported.content_len;
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(first).is_err() {
            return;
        }
        let mut sha = Sha256::new();
        let mut sent = 0u64;
        loop {
            let len = (total - sent).min(CHUNK_LEN as u64) as usize;
            let mut data = vec![0u8; len];
            if let Err(e) = file.read_exact(&mut data) {
                // Ending the stream without `done` makes the receiver discard the image.
                tracing::warn!(error = %e, "failed to read a snapshot image");
                return;
            }
            sha.update(&data);
            sent += len as u64;
            let done = sent == total;
            let chunk = SnapshotChunk {
                data,
                done,
                sha256: if done {
                    sha.clone().finalize().to_vec()
                } else {
                    Vec::new()
                },
                ..Default::default()
            };
            if tx.blocking_send(chunk).is_err() || done {
                return;
            }
        }
    });
    let mut client = peers.client(node).map_err(|e| storage_error(&e))?;
    let reply = client
        .install_snapshot(ReceiverStream::new(rx))
        .await
        .map_err(|s| network_error(&s))?
        .into_inner();
    let vote = postcard::from_bytes(&reply.vote).map_err(|e| storage_error(&e))?;
    Ok(SnapshotResponse { vote })
}

/// A received image and what it is.
pub struct Received {
    /// The leader's vote.
    pub vote: Vote<u64>,
    /// The snapshot's metadata.
    pub meta: SnapshotMeta<u64, MemberNode>,
    /// The checked image file.
    pub path: PathBuf,
}

/// Removes a partly received file unless it was kept.
struct Incoming {
    path: PathBuf,
    keep: bool,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn bad(what: &str) -> Status {
    Status::invalid_argument(format!("oxcd: malformed snapshot transfer: {what}"))
}

fn internal(e: &dyn std::error::Error) -> Status {
    Status::internal(format!("oxcd: failed to store a received snapshot: {e}"))
}

/// Receives an image into `dir`, checking its SHA-256; the first chunk has been read already.
pub async fn receive(
    first: SnapshotChunk,
    mut rest: Streaming<SnapshotChunk>,
    dir: &Path,
) -> Result<Received, Status> {
    let vote: Vote<u64> = postcard::from_bytes(&first.vote).map_err(|_| bad("vote"))?;
    let meta: SnapshotMeta<u64, MemberNode> =
        postcard::from_bytes(&first.meta).map_err(|_| bad("metadata"))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut incoming = Incoming {
        path: dir.join(format!("incoming-{nanos}.img")),
        keep: false,
    };
    let mut file = std::io::BufWriter::with_capacity(
        CHUNK_LEN,
        std::fs::File::create(&incoming.path).map_err(|e| internal(&e))?,
    );
    let mut sha = Sha256::new();
    let mut done = false;
    while let Some(chunk) = rest.next().await {
        let chunk = chunk?;
        if done {
            return Err(bad("data after the last chunk"));
        }
        sha.update(&chunk.data);
        file.write_all(&chunk.data).map_err(|e| internal(&e))?;
        if chunk.done {
            if sha.clone().finalize().as_slice() != chunk.sha256.as_slice() {
                return Err(Status::data_loss(
                    "oxcd: received snapshot does not match its sha256",
                ));
            }
            // The file takes the same form as `oxcd snapshot save` writes: content, then hash.
            file.write_all(&chunk.sha256).map_err(|e| internal(&e))?;
            done = true;
        }
    }
    if !done {
        return Err(bad("stream ended before the last chunk"));
    }
    let file = file.into_inner().map_err(|e| internal(e.error()))?;
    file.sync_all().map_err(|e| internal(&e))?;
    crate::snapshot::format::Image::open(&incoming.path).map_err(|e| {
        Status::data_loss(format!(
            "oxcd: received snapshot is invalid: {}",
            crate::error::chain(&e)
        ))
    })?;
    incoming.keep = true;
    Ok(Received {
        vote,
        meta,
        path: incoming.path.clone(),
    })
}
