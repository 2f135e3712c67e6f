//! `status.backup` from Jobs and pods as the API server reports them (YAML fixtures).

use super::*;

fn job(yaml: &str) -> Job {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|error| panic!("fixture: {error}"))
}

fn pod(yaml: &str) -> Pod {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|error| panic!("fixture: {error}"))
}

fn at(seconds: i64) -> Time {
    Time(jiff::Timestamp::from_second(seconds).unwrap_or_default())
}

const COMPLETE: &str = "
metadata: {name: demo-backup-29000000}
status:
  conditions:
  - {type: SuccessCriteriaMet, status: 'True', lastTransitionTime: '2026-11-24T10:00:05Z'}
  - {type: Complete, status: 'True', lastTransitionTime: '2026-11-24T10:00:06Z'}
";

const FAILED: &str = "
metadata: {name: demo-backup-29000360}
status:
  conditions:
  - {type: Failed, status: 'True', reason: BackoffLimitExceeded,
     message: Job has reached the specified backoff limit,
     lastTransitionTime: '2026-11-24T16:00:30Z'}
";

const UPLOADED_POD: &str = r#"
metadata: {name: p1, creationTimestamp: '2026-11-24T10:00:00Z'}
status:
  initContainerStatuses:
  - name: upload
    state:
      terminated:
        exitCode: 0
        message: |
          {"bucket":"snapshots","key":"prod/demo/snap-20261124T100001Z-rev000042.db","revision":42,"size":20480,"sha256":"ab12","snapshot_size":20480,"compression":"none","parts":1,"member":"https://demo-0","hash_kv":3735928559,"compact_revision":-1}
  - name: drill
    state:
      terminated:
        exitCode: 0
        message: |
          {"key":"prod/demo/snap-20261124T100001Z-rev000042.db","revision":42,"hash_kv":3735928559,"hash_compared":true,"compact_revision":-1}
  containerStatuses:
  - name: prune
    state: {terminated: {exitCode: 0, message: '{"deleted":[],"kept":[]}'}}
"#;

fn failed_pod(name: &str, created: &str, message: &str) -> Pod {
    pod(&format!(
        "
metadata: {{name: {name}, creationTimestamp: '{created}'}}
status:
  initContainerStatuses:
  - name: upload
    state: {{terminated: {{exitCode: 1, message: '{message}'}}}}
"
    ))
}

#[test]
fn a_running_job_is_not_read() {
    assert!(finished_backup(&job("metadata: {name: j}\nstatus: {active: 1}"), &[]).is_none());
}

#[test]
fn a_complete_job_reports_the_uploaded_snapshot_from_the_termination_message() {
    let backup =
        finished_backup(&job(COMPLETE), &[pod(UPLOADED_POD)]).unwrap_or_else(|| panic!("finished"));
    assert_eq!(backup.job, "demo-backup-29000000");
    assert_eq!(backup.error, None);
    let uploaded = backup
        .uploaded
        .clone()
        .unwrap_or_else(|| panic!("uploaded"));
    assert_eq!(uploaded.key, "prod/demo/snap-20261124T100001Z-rev000042.db");
    assert_eq!((uploaded.revision, uploaded.size), (42, 20480));
    assert_eq!(backup.finished.0.to_string(), "2026-11-24T10:00:06Z");
    let Some(Drill::Passed(drilled)) = backup.drill.clone() else {
        panic!("drill: {:?}", backup.drill)
    };
    assert_eq!((drilled.revision, drilled.hash_kv), (42, 3_735_928_559));
    let status = fold(None, vec![backup]);
    let drill = status.last_drill.unwrap_or_else(|| panic!("last drill"));
    assert_eq!(drill.result, DrillResult::Passed);
    assert_eq!(drill.hash_kv, Some(3_735_928_559));
    assert!(drill.hash_compared);
    assert_eq!(drill.time.0.to_string(), "2026-11-24T10:00:06Z");
}

#[test]
fn a_failed_drill_fails_the_backup_and_says_why_in_the_drill_status() {
    let message = "the restore drill failed: restore drill of k failed: HashKV at revision 42 is 1 after the restore, the backup recorded 2";
    let drill_line = r#"exitCode: 0
        message: |
          {"key":"prod/demo/snap-20261124T100001Z-rev000042.db","revision":42,"hash_kv":3735928559,"hash_compared":true,"compact_revision":-1}"#;
    assert!(UPLOADED_POD.contains(drill_line));
    let pod = pod(&UPLOADED_POD.replace(
        drill_line,
        &format!(
            r#"exitCode: 1
        message: |
          {{"error":"{message}"}}"#
        ),
    ));
    let backup = finished_backup(&job(FAILED), &[pod]).unwrap_or_else(|| panic!("finished"));
    assert!(backup.uploaded.is_some());
    assert_eq!(backup.error.as_deref(), Some(message));
    assert_eq!(backup.drill, Some(Drill::Failed(message.to_owned())));
    let status = fold(None, vec![backup]);
    assert_eq!(status.consecutive_failures, 1);
    let drill = status.last_drill.unwrap_or_else(|| panic!("last drill"));
    assert_eq!(drill.result, DrillResult::Failed);
    assert_eq!(drill.message.as_deref(), Some(message));
    assert_eq!(
        drill.key.as_deref(),
        Some("prod/demo/snap-20261124T100001Z-rev000042.db")
    );
}

#[test]
fn a_failed_job_reports_the_newest_pods_error_and_falls_back_to_the_job_reason() {
    let pods = [
        failed_pod(
            "b",
            "2026-11-24T16:00:20Z",
            r#"{"error": "failed to upload: S3 unreachable"}"#,
        ),
        failed_pod(
            "a",
            "2026-11-24T16:00:01Z",
            r#"{"error": "an older attempt"}"#,
        ),
    ];
    let backup = finished_backup(&job(FAILED), &pods).unwrap_or_else(|| panic!("finished"));
    assert_eq!(
        backup.error.as_deref(),
        Some("failed to upload: S3 unreachable")
    );
    assert!(backup.uploaded.is_none());
    // Logs instead of JSON (oxcd died before writing its result).
    let logs = failed_pod("c", "2026-11-24T16:00:25Z", "error: unexpected argument");
    let backup = finished_backup(&job(FAILED), &[logs]).unwrap_or_else(|| panic!("finished"));
    assert_eq!(backup.error.as_deref(), Some("error: unexpected argument"));
    // No pod left (deadline exceeded): the Job's condition.
    let backup = finished_backup(&job(FAILED), &[]).unwrap_or_else(|| panic!("finished"));
    assert_eq!(
        backup.error.as_deref(),
        Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
    );
}

#[test]
fn a_failed_retention_after_an_upload_reports_both_the_snapshot_and_the_error() {
    let pod = pod(&UPLOADED_POD.replace(
        r#"{terminated: {exitCode: 0, message: '{"deleted":[],"kept":[]}'}}"#,
        r#"{terminated: {exitCode: 1, message: '{"error":"failed to apply the retention"}'}}"#,
    ));
    let backup = finished_backup(&job(FAILED), &[pod]).unwrap_or_else(|| panic!("finished"));
    assert!(backup.uploaded.is_some());
    assert_eq!(
        backup.error.as_deref(),
        Some("failed to apply the retention")
    );
}

fn finished(job: &str, second: i64, ok: bool) -> FinishedBackup {
    FinishedBackup {
        job: job.to_owned(),
        finished: at(second),
        uploaded: ok.then(|| Uploaded {
            key: format!("key-{job}"),
            revision: second,
            size: 10,
            sha256: "ab".to_owned(),
        }),
        drill: None,
        error: (!ok).then(|| format!("{job} failed")),
    }
}

#[test]
fn failures_count_up_in_finish_order_and_a_success_resets_them() {
    let status = fold(
        None,
        vec![
            finished("c", 30, false),
            finished("a", 10, true),
            finished("b", 20, false),
        ],
    );
    assert_eq!(status.consecutive_failures, 2);
    assert_eq!(status.last_error.as_deref(), Some("c failed"));
    assert_eq!(status.last_key.as_deref(), Some("key-a"));
    assert_eq!(status.last_success_time, Some(at(10)));
    assert_eq!(
        (status.last_job.as_deref(), status.last_job_time.clone()),
        (Some("c"), Some(at(30)))
    );
    let status = fold(Some(&status), vec![finished("d", 40, true)]);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.last_error, None);
    assert_eq!(status.revision, Some(40));
}

#[test]
fn only_jobs_after_the_last_accounted_one_are_new() {
    let status = fold(None, vec![finished("b", 20, true)]);
    assert!(!is_new(Some(&status), "b", &at(20)));
    assert!(!is_new(Some(&status), "a", &at(20)));
    assert!(!is_new(Some(&status), "z", &at(19)));
    assert!(is_new(Some(&status), "c", &at(20)));
    assert!(is_new(Some(&status), "a", &at(21)));
    assert!(is_new(None, "a", &at(1)));
    // Folding the same Jobs again changes nothing: a steady cluster writes no status.
    assert_eq!(fold(Some(&status), Vec::new()), status);
}
