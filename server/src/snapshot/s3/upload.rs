//! `oxcd snapshot upload`: streams a member's Snapshot RPC straight into an S3 multipart upload,
//! optionally gzip-compressed, without a local copy.
//!
//! S3 fixes an object's metadata when the upload starts, but the SHA-256 and size are known only
//! at the end; so the stream goes to a staging key under `<prefix>/.incoming/` and, once the
//! snapshot's own trailer has checked out and the upload completed, one server-side copy makes
//! the final object appear at once with its metadata (`oxcd-sha256`, `oxcd-size`,
//! `oxcd-revision`, ...; see [`super::publish`]), and the staging object is deleted. Any failure aborts the multipart
//! upload (or deletes the staging object): no partial object is ever listed as a snapshot.

use std::io::Write;
use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::client::{S3CallError, S3Target};
use super::objects::{INCOMING, join, snapshot_key};
use super::publish::{PublishError, publish};
use super::sse;
use crate::snapshot::format::{BLOCK_LEN, HEADER_LEN, MAGIC, TRAILER_LEN, hex};
use crate::snapshot::member::{MemberError, SnapshotStream};

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// S3's largest object a single CopyObject may copy.
pub const MAX_SINGLE_COPY: u64 = 5 << 30;

/// How to upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Bytes per part (at least [`MIN_PART_SIZE`]).
    pub part_size: usize,
    /// gzip the snapshot.
    pub gzip: bool,
    /// Objects above this size are copied to their final key part by part.
    pub max_single_copy: u64,
}

/// What was uploaded: the JSON line `upload` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    /// The bucket.
    pub bucket: String,
    /// The final key.
    pub key: String,
    /// The store revision of the snapshot.
    pub revision: i64,
    /// The object's size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the object's bytes.
    pub sha256: String,
    /// Size of the snapshot itself (differs from `size` when compressed).
    pub snapshot_size: u64,
    /// `none` or `gzip`.
    pub compression: &'static str,
    /// Number of parts uploaded.
    pub parts: usize,
    /// The member it came from.
    pub member: String,
    /// The member's HashKV at `revision`, taken right after the snapshot; `None` when it no
    /// longer described the snapshot (a compaction ran in between) or could not be read.
    pub hash_kv: Option<u32>,
    /// The compaction revision of the snapshot (-1 before any compaction).
    pub compact_revision: i64,
}

/// Why an upload failed (the upload was aborted; nothing is listed).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The member's stream could not be opened or broke.
    #[error("failed to stream the snapshot from the member")]
    Member(#[from] MemberError),
    /// The member sent something that is not an oxcd snapshot.
    #[error("failed to recognise the stream from {endpoint} as an oxcd snapshot: {what}")]
    NotSnapshot {
        /// The member.
        endpoint: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The stream ended without a valid SHA-256 trailer.
    #[error("failed to verify the snapshot from {endpoint}: {what}")]
    Trailer {
        /// The member.
        endpoint: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The part size is below S3's minimum.
    #[error("failed to accept --part-size {size}: S3 needs at least {MIN_PART_SIZE} bytes")]
    PartSize {
        /// The size given.
        size: usize,
    },
    /// Compressing failed.
    #[error("failed to gzip the snapshot")]
    Gzip(#[source] std::io::Error),
    /// The server-side copy to the final key failed.
    #[error("failed to publish the uploaded snapshot")]
    Publish(#[from] PublishError),
    /// An S3 call failed after its retries.
    #[error(transparent)]
    S3(#[from] S3CallError),
}

/// Checks the snapshot as it flows: size rule and SHA-256 trailer, holding back the last 32
/// bytes, which are the trailer once the stream ends.
#[derive(Default)]
struct TrailerCheck {
    content: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl TrailerCheck {
    fn update(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        let hold = TRAILER_LEN as usize;
        if self.tail.len() > hold {
            let cut = self.tail.len() - hold;
            self.content.update(&self.tail[..cut]);
            self.tail.drain(..cut);
        }
    }

    fn finish(self) -> Result<u64, &'static str> {
        if self.total < TRAILER_LEN || !(self.total - TRAILER_LEN).is_multiple_of(BLOCK_LEN) {
            return Err("its size is not 512-byte blocks plus the 32-byte sha256 trailer");
        }
        if self.content.finalize().as_slice() != self.tail.as_slice() {
            return Err("its sha256 trailer does not match its content");
        }
        Ok(self.total)
    }
}

/// Reads until the header is in; returns the revision and the bytes read so far.
async fn read_header(stream: &mut SnapshotStream) -> Result<(i64, Vec<u8>), UploadError> {
    let mut head = Vec::new();
    while head.len() < HEADER_LEN as usize {
        match stream.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    let not = |what| UploadError::NotSnapshot {
        endpoint: stream.endpoint.clone(),
        what,
    };
    if head.len() < HEADER_LEN as usize {
        return Err(not("the stream ended before the header"));
    }
    if &head[..MAGIC.len()] != MAGIC {
        return Err(not("no OXCDSNAP header"));
    }
    Ok((header_i64(&head, 12), head))
}

/// The big-endian i64 at `at` of a header at least [`HEADER_LEN`] long.
fn header_i64(head: &[u8], at: usize) -> i64 {
    let mut field = [0u8; 8];
    if let Some(bytes) = head.get(at..at + 8) {
        field.copy_from_slice(bytes);
    }
    i64::from_be_bytes(field)
}

/// The member's HashKV at the snapshot's revision, if it still describes the snapshot: the
/// restore drill compares a restored member's HashKV against it. A compaction between the
/// snapshot and this call changes what the hash covers, so that hash is not recorded.
async fn snapshot_hash(
    stream: &SnapshotStream,
    revision: i64,
    compact_revision: i64,
) -> Option<u32> {
    match stream.hash_kv(revision).await {
        Ok((hash, compacted)) if compacted == compact_revision => Some(hash),
        Ok((_, compacted)) => {
            tracing::warn!(
                revision,
                compact_revision,
                compacted,
                "a compaction ran after the snapshot: its HashKV is not recorded"
            );
            None
        }
        Err(error) => {
            tracing::warn!(%error, revision, "no HashKV recorded for the snapshot");
            None
        }
    }
}

/// The multipart upload to the staging key, fed part by part.
struct Parts<'a> {
    target: &'a S3Target,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    part_size: usize,
    done: Vec<CompletedPart>,
    sha: Sha256,
    size: u64,
}

impl Parts<'_> {
    async fn push(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        self.buffer.extend_from_slice(bytes);
        while self.buffer.len() >= self.part_size {
            let rest = self.buffer.split_off(self.part_size);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, part: Vec<u8>) -> Result<(), UploadError> {
        self.sha.update(&part);
        self.size += part.len() as u64;
        let number = i32::try_from(self.done.len() + 1).unwrap_or(i32::MAX);
        let request = self
            .target
            .client
            .upload_part()
            .bucket(&self.target.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(part));
        let out = sse::upload_part(request, &self.target.sse)
            .send()
            .await
            .map_err(self.target.call_error("upload a part of", &self.key))?;
        self.done.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }
}

/// Streams the member's snapshot into `target`; see the module docs.
pub async fn upload(
    target: &S3Target,
    mut stream: SnapshotStream,
    opts: &UploadOptions,
) -> Result<Uploaded, UploadError> {
    if opts.part_size < MIN_PART_SIZE {
        return Err(UploadError::PartSize {
            size: opts.part_size,
        });
    }
    let (revision, head) = read_header(&mut stream).await?;
    let compact_revision = header_i64(&head, 20);
    let key = snapshot_key(&target.prefix, SystemTime::now(), revision, opts.gzip);
    let name = key.rsplit('/').next().unwrap_or(&key);
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    );
    let staging = join(&target.prefix, &format!("{INCOMING}/{name}.{nonce}"));
    let create = target
        .client
        .create_multipart_upload()
        .bucket(&target.bucket)
        .key(&staging);
    let created = sse::create_multipart(create, &target.sse)
        .send()
        .await
        .map_err(target.call_error("start a multipart upload to", &staging))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let mut parts = Parts {
        target,
        key: staging.clone(),
        upload_id: upload_id.clone(),
        buffer: Vec::with_capacity(opts.part_size),
        part_size: opts.part_size,
        done: Vec::new(),
        sha: Sha256::new(),
        size: 0,
    };
    let streamed = stream_parts(&mut stream, head, &mut parts, opts.gzip).await;
    let completed = match streamed {
        Ok(snapshot_size) => complete(&mut parts).await.map(|()| snapshot_size),
        Err(e) => Err(e),
    };
    let snapshot_size = match completed {
        Ok(s) => s,
        Err(e) => {
            // Best effort: an incomplete upload is invisible anyway, and a bucket lifecycle
            // rule (AbortIncompleteMultipartUpload) reclaims it if this fails too.
            let _ = target
                .client
                .abort_multipart_upload()
                .bucket(&target.bucket)
                .key(&staging)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(e);
        }
    };
    let hash_kv = snapshot_hash(&stream, revision, compact_revision).await;
    let result = Uploaded {
        bucket: target.bucket.clone(),
        key: key.clone(),
        revision,
        size: parts.size,
        sha256: hex(&std::mem::take(&mut parts.sha).finalize()),
        snapshot_size,
        compression: if opts.gzip { "gzip" } else { "none" },
        parts: parts.done.len(),
        member: stream.endpoint.clone(),
        hash_kv,
        compact_revision,
    };
    let published = publish(target, &staging, &result, opts).await;
    let _ = target
        .client
        .delete_object()
        .bucket(&target.bucket)
        .key(&staging)
        .send()
        .await;
    published?;
    Ok(result)
}

/// Feeds the stream (after `head`) into the parts; returns the snapshot's size once its
/// trailer checked out.
async fn stream_parts(
    stream: &mut SnapshotStream,
    head: Vec<u8>,
    parts: &mut Parts<'_>,
    gzip: bool,
) -> Result<u64, UploadError> {
    let mut check = TrailerCheck::default();
    let mut encoder = gzip.then(|| GzEncoder::new(Vec::new(), Compression::default()));
    let mut chunk = Some(head);
    while let Some(bytes) = chunk {
        check.update(&bytes);
        match encoder.as_mut() {
            Some(enc) => {
                enc.write_all(&bytes).map_err(UploadError::Gzip)?;
                let out = std::mem::take(enc.get_mut());
                parts.push(&out).await?;
            }
            None => parts.push(&bytes).await?,
        }
        chunk = stream.next_chunk().await?;
    }
    let size = check.finish().map_err(|what| UploadError::Trailer {
        endpoint: stream.endpoint.clone(),
        what,
    })?;
    if let Some(enc) = encoder {
        let rest = enc.finish().map_err(UploadError::Gzip)?;
        parts.push(&rest).await?;
    }
    Ok(size)
}

async fn complete(parts: &mut Parts<'_>) -> Result<(), UploadError> {
    let last = std::mem::take(&mut parts.buffer);
    if !last.is_empty() || parts.done.is_empty() {
        parts.send(last).await?;
    }
    parts
        .target
        .client
        .complete_multipart_upload()
        .bucket(&parts.target.bucket)
        .key(&parts.key)
        .upload_id(&parts.upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts.done.clone()))
                .build(),
        )
        .send()
        .await
        .map_err(
            parts
                .target
                .call_error("complete the multipart upload of", &parts.key),
        )?;
    Ok(())
}
