//! Names of snapshot objects and how to find them: `<prefix>/<UTC time>-r<revision>.snapshot`
//! (plus `.gz` when compressed), so that keys sort by time and say the revision; the metadata
//! each object carries; and the listing that `--latest` and retention read. Objects being
//! uploaded live under `<prefix>/.incoming/` and are never listed as snapshots.

use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::client::S3Target;

/// Metadata key (`x-amz-meta-…`): lower-case hex SHA-256 of the object's bytes.
pub const META_SHA256: &str = "oxcd-sha256";
/// Metadata key: the object's size in bytes.
pub const META_SIZE: &str = "oxcd-size";
/// Metadata key: the store revision of the snapshot.
pub const META_REVISION: &str = "oxcd-revision";
/// Metadata key: `none` or `gzip`.
pub const META_COMPRESSION: &str = "oxcd-compression";
/// Metadata key: the size of the snapshot file itself (after decompression).
pub const META_SNAPSHOT_SIZE: &str = "oxcd-snapshot-size";
/// Metadata key: the member's HashKV (decimal) at the snapshot's revision, which a restore
/// of the snapshot must reproduce; absent when a compaction ran before it could be taken.
pub const META_HASH_KV: &str = "oxcd-hashkv";
/// Folder under the prefix where uploads are staged until complete.
pub const INCOMING: &str = ".incoming";
const SUFFIX: &str = ".snapshot";
const GZIP_SUFFIX: &str = ".gz";

/// A snapshot object found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotObject {
    /// Its key (sorting keys sorts by time).
    pub key: String,
    /// When it was taken, from its name.
    pub taken: SystemTime,
    /// The revision, from its name.
    pub revision: i64,
}

/// Why listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The ListObjectsV2 call failed (after retries).
    #[error(
        "failed to list s3://{bucket}/{prefix} at {endpoint} (up to {attempts} attempts per request)"
    )]
    List {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
        /// The endpoint.
        endpoint: String,
        /// Attempts per request.
        attempts: u32,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--latest` found nothing.
    #[error("failed to find any snapshot under s3://{bucket}/{prefix} at {endpoint}")]
    NoSnapshot {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
        /// The endpoint.
        endpoint: String,
    },
}

/// `20261124T123456.789Z`: RFC 3339 in UTC with milliseconds, without `-` and `:`.
pub fn compact_time(t: SystemTime) -> String {
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let dt = DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX));
    let text = dt.fmt(Format::DateTime).unwrap_or_default();
    // `fmt` drops a zero fraction; put it back so every key has the same width.
    let text = match text.strip_suffix('Z') {
        Some(t) if !t.contains('.') => format!("{t}.000Z"),
        Some(t) => format!("{t:0<23}Z"),
        None => text,
    };
    text.replace(['-', ':'], "")
}

/// The inverse of [`compact_time`].
pub fn parse_compact_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..19]
    );
    let dt = DateTime::from_str(&rfc, Format::DateTime).ok()?;
    let millis = u64::try_from(dt.to_millis().ok()?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
}

/// `prefix/name` (or `name` with no prefix).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The key of a snapshot taken at `taken` with `revision`.
pub fn snapshot_key(prefix: &str, taken: SystemTime, revision: i64, gzip: bool) -> String {
    let ext = if gzip { GZIP_SUFFIX } else { "" };
    join(
        prefix,
        &format!("{}-r{revision}{SUFFIX}{ext}", compact_time(taken)),
    )
}

/// Parses a key directly under `prefix` named by [`snapshot_key`]; `None` for anything else.
pub fn parse_key(prefix: &str, key: &str) -> Option<SnapshotObject> {
    let name = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let stem = name.strip_suffix(GZIP_SUFFIX).unwrap_or(name);
    let stem = stem.strip_suffix(SUFFIX)?;
    let (time, revision) = stem.split_once("-r")?;
    Some(SnapshotObject {
        key: key.to_string(),
        taken: parse_compact_time(time)?,
        revision: revision.parse().ok().filter(|r: &i64| *r >= 0)?,
    })
}

/// Every snapshot object directly under the target's prefix, oldest first.
pub async fn list_snapshots(target: &S3Target) -> Result<Vec<SnapshotObject>, ObjectsError> {
    let list_prefix = if target.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", target.prefix)
    };
    let mut found = Vec::new();
    let mut pages = target
        .client
        .list_objects_v2()
        .bucket(&target.bucket)
        .prefix(&list_prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ObjectsError::List {
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
            endpoint: target.endpoint.clone(),
            attempts: target.max_attempts,
            source: Box::new(e),
        })?;
        found.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| parse_key(&target.prefix, k)),
        );
    }
    found.sort();
    Ok(found)
}

/// The newest snapshot object under the target's prefix.
pub async fn latest(target: &S3Target) -> Result<SnapshotObject, ObjectsError> {
    list_snapshots(target)
        .await?
        .pop()
        .ok_or_else(|| ObjectsError::NoSnapshot {
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
            endpoint: target.endpoint.clone(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_sort_by_time_and_round_trip_time_and_revision() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_000);
        let t1 = t0 + Duration::from_millis(1);
        let t2 = t0 + Duration::from_secs(86_400 * 400);
        let keys: Vec<_> = [t0, t1, t2]
            .iter()
            .enumerate()
            .map(|(i, t)| snapshot_key("backups/c1", *t, 10 - i as i64, i == 1))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys[0].starts_with("backups/c1/"), "{}", keys[0]);
        assert!(keys[0].ends_with(".000Z-r10.snapshot"), "{}", keys[0]);
        let parsed = parse_key("backups/c1", &keys[1]).unwrap();
        assert_eq!((parsed.taken, parsed.revision), (t1, 9));
        assert_eq!(
            parse_key("", &snapshot_key("", t2, 8, false))
                .unwrap()
                .taken,
            t2
        );
    }

    #[test]
    fn foreign_and_nested_keys_are_not_snapshots() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let good = snapshot_key("p", t, 5, false);
        assert!(parse_key("p", &good).is_some());
        assert!(parse_key("q", &good).is_none());
        assert!(parse_key("p", "p/notes.txt").is_none());
        assert!(parse_key("p", "p/20261124T000000.000Z-rX.snapshot").is_none());
        let name = good.trim_start_matches("p/");
        assert!(parse_key("p", &format!("p/{INCOMING}/{name}")).is_none());
    }
}
