//! What the restore-source Job says, and the status of a restored cluster before its first
//! member exists: `Progressing` (`Restoring`) while the snapshot is resolved and verified,
//! `Degraded` (`RestoreFailed`, with the tool's error) when it is missing, corrupt or
//! unreachable, and `status.restoredFrom` once pinned. Pure: the reconcile reads the Job and
//! its pods and writes the result.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use oxcd_crds::{Phase, RestoredFrom, StoreClusterStatus, condition, reason};
use serde::Deserialize;

use crate::backups::job_finish;
use crate::build::restore::SOURCE_CONTAINER;
use crate::status::set_condition;

/// Longest error kept in a condition (a termination message may hold 4 KiB of logs).
const MAX_ERROR_LEN: usize = 1024;

/// Where the restore-source Job is.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceState {
    /// The Job was just created or runs.
    Resolving,
    /// The snapshot was found and verified.
    Pinned(RestoredFrom),
    /// It failed; the message says why.
    Failed(String),
}

#[derive(Deserialize)]
struct Downloaded {
    bucket: String,
    key: String,
    revision: i64,
    size: i64,
    sha256: String,
}

#[derive(Deserialize)]
struct Failure {
    error: String,
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The termination messages of the download container, newest pod first.
fn messages(pods: &[Pod]) -> Vec<(i32, String)> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    pods.iter()
        .rev()
        .filter_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            let status = statuses.iter().find(|c| c.name == SOURCE_CONTAINER)?;
            let done = status.state.as_ref()?.terminated.as_ref()?;
            Some((done.exit_code, done.message.clone().unwrap_or_default()))
        })
        .collect()
}

/// Reads the restore-source `job` and its `pods`.
pub fn source_state(job: &Job, pods: &[Pod]) -> SourceState {
    let Some((_, succeeded)) = job_finish(job) else {
        return SourceState::Resolving;
    };
    let messages = messages(pods);
    if succeeded {
        let pinned = messages.iter().find_map(|(code, message)| {
            let d: Downloaded = serde_json::from_str(message.trim())
                .ok()
                .filter(|_| *code == 0)?;
            Some(RestoredFrom {
                bucket: d.bucket,
                key: d.key,
                revision: d.revision,
                size: d.size,
                sha256: d.sha256,
            })
        });
        return pinned.map_or_else(
            || {
                SourceState::Failed(
                    "the restore-source Job completed without reporting a snapshot".to_owned(),
                )
            },
            SourceState::Pinned,
        );
    }
    let from_pod = messages.iter().find_map(|(code, message)| {
        let text = serde_json::from_str::<Failure>(message.trim())
            .map(|f| f.error)
            .unwrap_or_else(|_| message.trim().to_owned());
        (*code != 0 && !text.is_empty()).then(|| cut(&text))
    });
    let from_job = || {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Failed"))
            .map(|c| {
                format!(
                    "{}: {}",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "the restore-source Job failed".to_owned())
    };
    SourceState::Failed(from_pod.unwrap_or_else(from_job))
}

/// The status while a restored cluster has no member yet: conditions for `state` (`job` is
/// the restore-source Job's name), and `restoredFrom` once pinned.
pub fn restoring_status(
    previous: Option<&StoreClusterStatus>,
    generation: Option<i64>,
    state: &SourceState,
    job: &str,
    now: &Time,
) -> StoreClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let mut set = |type_: &str, value: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            type_,
            value,
            reason,
            message,
            generation,
            now,
        );
    };
    set(
        condition::AVAILABLE,
        false,
        reason::MEMBERS_STARTING,
        "no member yet: the snapshot to restore comes first".to_owned(),
    );
    let phase = match state {
        SourceState::Resolving | SourceState::Pinned(_) => {
            let message = match state {
                SourceState::Pinned(p) => format!(
                    "restoring s3://{}/{} (revision {}) into the first member",
                    p.bucket, p.key, p.revision
                ),
                _ => format!("Job {job} resolves, downloads and verifies the snapshot"),
            };
            set(condition::PROGRESSING, true, reason::RESTORING, message);
            set(
                condition::DEGRADED,
                false,
                reason::AS_EXPECTED,
                "the members are starting".to_owned(),
            );
            Phase::Creating
        }
        SourceState::Failed(error) => {
            set(
                condition::DEGRADED,
                true,
                reason::RESTORE_FAILED,
                format!(
                    "the snapshot to restore cannot be used, so no member is created: {error} (fix the source, then delete Job {job} to try again)"
                ),
            );
            set(
                condition::PROGRESSING,
                false,
                reason::RESTORE_FAILED,
                "waiting for a usable snapshot".to_owned(),
            );
            Phase::Invalid
        }
    };
    if let SourceState::Pinned(pinned) = state {
        status.restored_from = Some(pinned.clone());
    }
    status.observed_generation = generation;
    status.phase = Some(phase);
    status
}

#[cfg(test)]
#[path = "restores_tests.rs"]
mod tests;
