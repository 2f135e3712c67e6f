//! The restore-source Job's result and the status before the first member, from YAML fixtures.

use super::*;

fn job(yaml: &str) -> Job {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|error| panic!("fixture: {error}"))
}

fn pod(created: &str, code: i32, message: &str) -> Pod {
    let yaml = format!(
        "
metadata: {{name: p, creationTimestamp: '{created}'}}
status:
  containerStatuses:
  - name: download
    state: {{terminated: {{exitCode: {code}, message: '{message}'}}}}
"
    );
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|error| panic!("fixture: {error}"))
}

fn now() -> Time {
    Time(jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default())
}

const COMPLETE: &str = "
metadata: {name: demo-restore-source}
status:
  conditions:
  - {type: Complete, status: 'True', lastTransitionTime: '2026-11-24T10:00:06Z'}
";

const FAILED: &str = "
metadata: {name: demo-restore-source}
status:
  conditions:
  - {type: Failed, status: 'True', reason: BackoffLimitExceeded,
     message: Job has reached the specified backoff limit,
     lastTransitionTime: '2026-11-24T10:01:00Z'}
";

const DOWNLOADED: &str = r#"{"bucket":"backups","key":"prod/demo/20261124T100001Z-r42.snapshot","revision":42,"size":4096,"sha256":"abcd","path":"/tmp/snapshot"}"#;

#[test]
fn a_running_job_is_still_resolving() {
    let running = job("metadata: {name: demo-restore-source}\nstatus: {active: 1}");
    assert_eq!(source_state(&running, &[]), SourceState::Resolving);
}

#[test]
fn a_complete_job_pins_the_key_revision_and_checksum_it_reported() {
    let state = source_state(
        &job(COMPLETE),
        &[pod("2026-11-24T10:00:00Z", 0, DOWNLOADED)],
    );
    assert_eq!(
        state,
        SourceState::Pinned(RestoredFrom {
            bucket: "backups".to_owned(),
            key: "prod/demo/20261124T100001Z-r42.snapshot".to_owned(),
            revision: 42,
            size: 4096,
            sha256: "abcd".to_owned(),
        })
    );
    let status = restoring_status(None, Some(1), &state, "demo-restore-source", &now());
    assert_eq!(status.restored_from.as_ref().map(|r| r.revision), Some(42));
    assert_eq!(status.phase, Some(Phase::Creating));
}

#[test]
fn a_failed_job_reports_the_newest_pods_error_as_restore_failed() {
    let pods = [
        pod("2026-11-24T10:00:00Z", 1, r#"{"error": "first attempt"}"#),
        pod(
            "2026-11-24T10:00:30Z",
            1,
            r#"{"error": "failed to download the snapshot: failed to verify s3://backups/k: received 9 bytes with sha256 00, its metadata says 4096 bytes with sha256 abcd"}"#,
        ),
    ];
    let state = source_state(&job(FAILED), &pods);
    let SourceState::Failed(error) = &state else {
        panic!("{state:?}");
    };
    assert!(error.contains("failed to verify"), "{error}");
    let status = restoring_status(None, Some(1), &state, "demo-restore-source", &now());
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::DEGRADED)
        .unwrap_or_else(|| panic!("no Degraded"));
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reason::RESTORE_FAILED)
    );
    assert!(degraded.message.contains("failed to verify"));
    assert!(degraded.message.contains("delete Job demo-restore-source"));
    assert!(status.restored_from.is_none());
    assert_eq!(status.phase, Some(Phase::Invalid));
}

#[test]
fn a_failure_without_a_pod_message_gives_the_jobs_reason_and_a_success_without_one_fails() {
    let state = source_state(&job(FAILED), &[]);
    assert!(
        matches!(&state, SourceState::Failed(e) if e.starts_with("BackoffLimitExceeded")),
        "{state:?}"
    );
    let state = source_state(&job(COMPLETE), &[pod("2026-11-24T10:00:00Z", 0, "garbage")]);
    assert!(matches!(state, SourceState::Failed(_)), "{state:?}");
}

#[test]
fn conditions_keep_their_transition_time_while_the_failure_stays() {
    let failed = SourceState::Failed("no snapshot under prod/demo".to_owned());
    let first = restoring_status(None, Some(1), &failed, "j", &now());
    let later = Time(jiff::Timestamp::from_second(1_800_000_600).unwrap_or_default());
    let again = restoring_status(Some(&first), Some(1), &failed, "j", &later);
    assert_eq!(first.conditions, again.conditions);
}
