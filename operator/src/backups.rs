//! What the backup Jobs say, as `status.backup`: a finished Job is read once (its finish time
//! and name order them), its pod's `upload` termination message gives the snapshot's key,
//! revision, size and SHA-256 or the error, the `drill` one whether that snapshot restored to
//! the recorded revision and HashKV, and failures count up until the next success.
//! Pure: the reconcile lists the Jobs and pods and writes the result.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use oxcd_crds::{BackupStatus, DrillResult, DrillStatus};
use serde::Deserialize;

use crate::build::backup::{DRILL_CONTAINER, UPLOAD_CONTAINER};

/// Consecutive failed backups from which the cluster is Degraded (`BackupFailing`): one
/// failure may be a member restarting; three in a row is something an operator must fix.
pub const FAILURES_DEGRADED: i32 = 3;
/// Longest `lastError` kept (a termination message may hold 4 KiB of logs).
const MAX_ERROR_LEN: usize = 1024;

/// A snapshot the upload reported.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Uploaded {
    /// Object key.
    pub key: String,
    /// Store revision.
    pub revision: i64,
    /// Object size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the object.
    pub sha256: String,
}

/// A restore drill that passed, as `oxcd snapshot drill` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Drilled {
    /// Object key.
    pub key: String,
    /// The revision the restored member served.
    pub revision: i64,
    /// Its HashKV at that revision.
    pub hash_kv: u32,
    /// Whether the HashKV was compared with the source member's.
    pub hash_compared: bool,
}

/// What the drill of a finished backup came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drill {
    /// The snapshot restored to what was recorded.
    Passed(Drilled),
    /// It did not: why.
    Failed(String),
}

/// A backup Job that finished, as the status needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedBackup {
    /// The Job.
    pub job: String,
    /// When it finished.
    pub finished: Time,
    /// The snapshot, when the upload succeeded (even if the retention then failed).
    pub uploaded: Option<Uploaded>,
    /// The restore drill, when it ran.
    pub drill: Option<Drill>,
    /// Why the Job failed, when it did.
    pub error: Option<String>,
}

/// When `job` finished and whether it succeeded; `None` while it runs.
pub fn job_finish(job: &Job) -> Option<(Time, bool)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        .find_map(|c| {
            let time = c.last_transition_time.clone()?;
            Some((time, c.type_ == "Complete"))
        })
}

/// Whether the Job `name` finished at `finished` comes after what `previous` accounted for.
pub fn is_new(previous: Option<&BackupStatus>, name: &str, finished: &Time) -> bool {
    let last = previous.and_then(|p| Some((p.last_job_time.as_ref()?, p.last_job.as_deref()?)));
    match last {
        Some((time, job)) => (&finished.0, name) > (&time.0, job),
        None => true,
    }
}

fn terminated<'a>(pod: &'a Pod, name: &str) -> Option<(i32, String)> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    all.filter(|c: &&'a ContainerStatus| c.name == name)
        .find_map(|c| {
            let state = c.state.as_ref()?.terminated.as_ref()?;
            Some((state.exit_code, state.message.clone().unwrap_or_default()))
        })
}

/// The error in a termination message: `{"error": ...}` from oxcd, or the raw text (logs
/// when oxcd died before writing its result).
fn message_error(message: &str) -> String {
    #[derive(Deserialize)]
    struct Failure {
        error: String,
    }
    let text = serde_json::from_str::<Failure>(message.trim())
        .map(|f| f.error)
        .unwrap_or_else(|_| message.trim().to_owned());
    let mut cut = text.len().min(MAX_ERROR_LEN);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

/// Reads finished `job` and its `pods` (any order); `None` while the Job runs.
pub fn finished_backup(job: &Job, pods: &[Pod]) -> Option<FinishedBackup> {
    let (finished, succeeded) = job_finish(job)?;
    let name = job.metadata.name.clone().unwrap_or_default();
    // The newest pod is the last attempt; an earlier one may have uploaded before failing.
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let uploaded = pods.iter().rev().find_map(|pod| {
        let (code, message) = terminated(pod, UPLOAD_CONTAINER)?;
        (code == 0).then(|| serde_json::from_str::<Uploaded>(message.trim()).ok())?
    });
    let drill = pods.iter().rev().find_map(|pod| {
        let (code, message) = terminated(pod, DRILL_CONTAINER)?;
        Some(match serde_json::from_str::<Drilled>(message.trim()) {
            Ok(drilled) if code == 0 => Drill::Passed(drilled),
            _ => Drill::Failed(message_error(&message)),
        })
    });
    let error = (!succeeded).then(|| {
        let from_pod = pods.iter().rev().find_map(|pod| {
            let status = pod.status.as_ref()?;
            let names = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten())
                .map(|c| c.name.clone());
            names
                .filter_map(|n| terminated(pod, &n))
                .find(|(code, _)| *code != 0)
                .map(|(_, message)| message_error(&message))
                .filter(|m| !m.is_empty())
        });
        from_pod.unwrap_or_else(|| job_failure(job))
    });
    Some(FinishedBackup {
        job: name,
        finished,
        uploaded,
        drill,
        error,
    })
}

/// The Job's own reason for failing (deadline, backoff limit) when no pod says more.
fn job_failure(job: &Job) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Failed"))
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_default();
            match c.message.as_deref() {
                Some(message) if !message.is_empty() => format!("{reason}: {message}"),
                _ => reason,
            }
        })
        .unwrap_or_else(|| "the backup Job failed".to_owned())
}

/// `previous` with `finished` (newly finished Jobs, any order) accounted for.
pub fn fold(previous: Option<&BackupStatus>, mut finished: Vec<FinishedBackup>) -> BackupStatus {
    let mut status = previous.cloned().unwrap_or_default();
    finished.sort_by(|a, b| (&a.finished.0, &a.job).cmp(&(&b.finished.0, &b.job)));
    for backup in finished {
        if let Some(uploaded) = backup.uploaded {
            status.last_success_time = Some(backup.finished.clone());
            status.last_key = Some(uploaded.key);
            status.revision = Some(uploaded.revision);
            status.size = Some(uploaded.size);
            status.sha256 = Some(uploaded.sha256);
        }
        match backup.drill {
            Some(Drill::Passed(drilled)) => {
                status.last_drill = Some(DrillStatus {
                    time: backup.finished.clone(),
                    result: DrillResult::Passed,
                    key: Some(drilled.key),
                    revision: Some(drilled.revision),
                    hash_kv: Some(i64::from(drilled.hash_kv)),
                    hash_compared: drilled.hash_compared,
                    message: None,
                });
            }
            Some(Drill::Failed(message)) => {
                status.last_drill = Some(DrillStatus {
                    time: backup.finished.clone(),
                    result: DrillResult::Failed,
                    key: status.last_key.clone(),
                    revision: None,
                    hash_kv: None,
                    hash_compared: false,
                    message: Some(message),
                });
            }
            None => {}
        }
        match backup.error {
            Some(error) => {
                status.last_error = Some(error);
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
            }
            None => {
                status.last_error = None;
                status.consecutive_failures = 0;
            }
        }
        status.last_job = Some(backup.job);
        status.last_job_time = Some(backup.finished);
    }
    status
}

#[cfg(test)]
#[path = "backups_tests.rs"]
mod tests;
