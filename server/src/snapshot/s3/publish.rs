//! Publishing an uploaded snapshot: the server-side copy from its staging key to its final key
//! with the metadata (`oxcd-sha256`, `oxcd-size`, `oxcd-revision`, ...) that S3 only accepts
//! when an object is created. One CopyObject makes the object appear whole; above CopyObject's
//! 5 GiB limit a multipart copy (UploadPartCopy) does, aborted on failure.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};

use super::client::{S3CallError, S3Target};
use super::objects::{
    META_COMPRESSION, META_HASH_KV, META_REVISION, META_SHA256, META_SIZE, META_SNAPSHOT_SIZE,
};
use super::sse;
use super::upload::{MIN_PART_SIZE, UploadOptions, Uploaded};

/// Why publishing failed (the final key was not created).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An S3 call failed after its retries.
    #[error(transparent)]
    S3(#[from] S3CallError),
}

/// Copies the staging object to its final key with the metadata: one CopyObject, or a
/// multipart copy above `max_single_copy` (CopyObject's 5 GiB limit).
pub async fn publish(
    target: &S3Target,
    staging: &str,
    up: &Uploaded,
    opts: &UploadOptions,
) -> Result<(), PublishError> {
    let source = format!("{}/{}", target.bucket, staging);
    let mut meta = vec![
        (META_SHA256, up.sha256.clone()),
        (META_SIZE, up.size.to_string()),
        (META_REVISION, up.revision.to_string()),
        (META_COMPRESSION, up.compression.to_string()),
        (META_SNAPSHOT_SIZE, up.snapshot_size.to_string()),
    ];
    if let Some(hash) = up.hash_kv {
        meta.push((META_HASH_KV, hash.to_string()));
    }
    if up.size <= opts.max_single_copy {
        let mut copy = target
            .client
            .copy_object()
            .bucket(&target.bucket)
            .key(&up.key)
            .copy_source(&source)
            .metadata_directive(MetadataDirective::Replace);
        for (k, v) in &meta {
            copy = copy.metadata(*k, v);
        }
        sse::copy_object(copy, &target.sse)
            .send()
            .await
            .map_err(target.call_error("publish", &up.key))?;
        return Ok(());
    }
    let mut create = target
        .client
        .create_multipart_upload()
        .bucket(&target.bucket)
        .key(&up.key);
    for (k, v) in &meta {
        create = create.metadata(*k, v);
    }
    let created = sse::create_multipart(create, &target.sse)
        .send()
        .await
        .map_err(target.call_error("start the multipart copy to", &up.key))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let copied = copy_parts(target, &source, &up.key, &upload_id, up.size, opts).await;
    if copied.is_err() {
        let _ = target
            .client
            .abort_multipart_upload()
            .bucket(&target.bucket)
            .key(&up.key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    copied
}

async fn copy_parts(
    target: &S3Target,
    source: &str,
    key: &str,
    upload_id: &str,
    size: u64,
    opts: &UploadOptions,
) -> Result<(), PublishError> {
    let step = opts.max_single_copy.max(MIN_PART_SIZE as u64);
    let mut done = Vec::new();
    let mut start = 0u64;
    while start < size {
        let end = (start + step).min(size) - 1;
        let number = i32::try_from(done.len() + 1).unwrap_or(i32::MAX);
        let request = target
            .client
            .upload_part_copy()
            .bucket(&target.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(source)
            .copy_source_range(format!("bytes={start}-{end}"));
        let out = sse::upload_part_copy(request, &target.sse)
            .send()
            .await
            .map_err(target.call_error("copy a part to", key))?;
        let e_tag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string);
        done.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(e_tag)
                .build(),
        );
        start = end + 1;
    }
    target
        .client
        .complete_multipart_upload()
        .bucket(&target.bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .map_err(target.call_error("complete the multipart copy to", key))?;
    Ok(())
}
