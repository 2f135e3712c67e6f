//! `oxcd snapshot prune`: retention of the snapshot objects under a prefix. Keeps at most
//! `--max-count` of them and none older than `--max-age`, deleting the oldest first, and never
//! deletes the newest snapshot whatever the limits say. It also removes staging objects that an
//! upload could not clean up (under `<prefix>/.incoming/`, older than a day).

use std::time::{Duration, SystemTime};

use super::client::{S3CallError, S3Target};
use super::objects::{INCOMING, ObjectsError, SnapshotObject, join, list_snapshots};

/// Staging objects older than this are leftovers of failed uploads (none runs this long).
const STALE_INCOMING: Duration = Duration::from_secs(86_400);

/// The retention limits.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// Keep at most this many snapshots (the newest ones).
    pub max_count: Option<usize>,
    /// Delete snapshots taken longer ago than this.
    pub max_age: Option<Duration>,
}

/// What prune did: the JSON line it prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pruned {
    /// Keys deleted, oldest first.
    pub deleted: Vec<String>,
    /// Keys kept, oldest first.
    pub kept: Vec<String>,
    /// Leftover staging objects deleted.
    pub deleted_incoming: Vec<String>,
    /// True when nothing was actually deleted (`--dry-run`).
    pub dry_run: bool,
}

/// Why pruning failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A duration that does not parse.
    #[error("failed to parse --max-age {value:?}: expected e.g. 30d, 12h, 90m, 3600s")]
    Duration {
        /// The value.
        value: String,
    },
    /// Neither limit given, or a count of zero.
    #[error("failed to prune: give --max-count (at least 1) and/or --max-age")]
    NoLimit,
    /// Listing failed.
    #[error("failed to list the snapshots to prune")]
    List(#[from] ObjectsError),
    /// A DeleteObject call failed (after retries); earlier deletions stand.
    #[error(transparent)]
    Delete(#[from] S3CallError),
}

/// Parses `30d`, `12h`, `90m`, `45s` (or combinations such as `1d12h`).
pub fn parse_duration(value: &str) -> Result<Duration, PruneError> {
    let bad = || PruneError::Duration {
        value: value.to_string(),
    };
    let mut total = 0u64;
    let mut number = String::new();
    for c in value.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Splits `snapshots` (oldest first) into (delete, keep) under `retention` at `now`.
pub fn plan(
    snapshots: Vec<SnapshotObject>,
    retention: &Retention,
    now: SystemTime,
) -> (Vec<SnapshotObject>, Vec<SnapshotObject>) {
    let n = snapshots.len();
    let by_count = retention.max_count.map_or(0, |max| n.saturating_sub(max));
    let mut delete = Vec::new();
    let mut keep = Vec::new();
    for (i, s) in snapshots.into_iter().enumerate() {
        let newest = i + 1 == n;
        let too_old = retention
            .max_age
            .is_some_and(|age| now.duration_since(s.taken).is_ok_and(|d| d > age));
        if !newest && (i < by_count || too_old) {
            delete.push(s);
        } else {
            keep.push(s);
        }
    }
    (delete, keep)
}

/// Applies `retention` to the snapshots under the target's prefix.
pub async fn prune(
    target: &S3Target,
    retention: &Retention,
    dry_run: bool,
) -> Result<Pruned, PruneError> {
    if retention.max_count == Some(0)
        || (retention.max_count.is_none() && retention.max_age.is_none())
    {
        return Err(PruneError::NoLimit);
    }
    let snapshots = list_snapshots(target).await?;
    let (delete, keep) = plan(snapshots, retention, SystemTime::now());
    let mut deleted = Vec::new();
    for s in delete {
        if !dry_run {
            delete_key(target, &s.key).await?;
        }
        deleted.push(s.key);
    }
    let mut deleted_incoming = Vec::new();
    for key in stale_incoming(target).await? {
        if !dry_run {
            delete_key(target, &key).await?;
        }
        deleted_incoming.push(key);
    }
    Ok(Pruned {
        deleted,
        kept: keep.into_iter().map(|s| s.key).collect(),
        deleted_incoming,
        dry_run,
    })
}

async fn delete_key(target: &S3Target, key: &str) -> Result<(), PruneError> {
    target
        .client
        .delete_object()
        .bucket(&target.bucket)
        .key(key)
        .send()
        .await
        .map_err(target.call_error("delete", key))?;
    Ok(())
}

/// Staging objects last modified more than [`STALE_INCOMING`] ago.
async fn stale_incoming(target: &S3Target) -> Result<Vec<String>, PruneError> {
    let prefix = format!("{}/", join(&target.prefix, INCOMING));
    let cutoff = SystemTime::now() - STALE_INCOMING;
    let mut stale = Vec::new();
    let mut pages = target
        .client
        .list_objects_v2()
        .bucket(&target.bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ObjectsError::List {
            bucket: target.bucket.clone(),
            prefix: prefix.clone(),
            endpoint: target.endpoint.clone(),
            attempts: target.max_attempts,
            source: Box::new(e),
        })?;
        for object in page.contents() {
            let old = object
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .is_some_and(|t| t < cutoff);
            if let (true, Some(key)) = (old, object.key()) {
                stale.push(key.to_string());
            }
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snaps(ages_days: &[u64], now: SystemTime) -> Vec<SnapshotObject> {
        ages_days
            .iter()
            .enumerate()
            .map(|(i, d)| SnapshotObject {
                key: format!("k{i}"),
                taken: now - Duration::from_secs(d * 86_400),
                revision: i as i64,
            })
            .collect()
    }

    fn keys(v: &[SnapshotObject]) -> Vec<&str> {
        v.iter().map(|s| s.key.as_str()).collect()
    }

    #[test]
    fn count_and_age_delete_the_oldest_but_never_the_newest() {
        let now = SystemTime::now();
        let r = Retention {
            max_count: Some(2),
            max_age: None,
        };
        let (d, k) = plan(snaps(&[9, 5, 3, 1], now), &r, now);
        assert_eq!((keys(&d), keys(&k)), (vec!["k0", "k1"], vec!["k2", "k3"]));
        let r = Retention {
            max_count: None,
            max_age: Some(Duration::from_secs(4 * 86_400)),
        };
        let (d, _) = plan(snaps(&[9, 5, 3, 1], now), &r, now);
        assert_eq!(keys(&d), vec!["k0", "k1"]);
        // Everything is too old: the newest stays.
        let (d, k) = plan(snaps(&[9, 8, 7], now), &r, now);
        assert_eq!((keys(&d), keys(&k)), (vec!["k0", "k1"], vec!["k2"]));
    }

    #[test]
    fn durations_parse_with_units_and_refuse_garbage() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("1d12h").unwrap(),
            Duration::from_secs(36 * 3_600)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5_400));
        for bad in ["", "10", "d", "5x", "0s", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
