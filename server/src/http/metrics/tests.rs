//! Unit tests of the metric names, types and hooks, read back from the encoded text.

use super::*;

fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

fn view(leader: Option<u64>) -> RaftView {
    RaftView {
        member_id: 1,
        leader,
        ..RaftView::default()
    }
}

#[test]
fn encoded_text_uses_etcds_names_and_types() {
    let text = Metrics::new().encode();
    for line in [
        "# TYPE etcd_server_has_leader gauge",
        "# TYPE etcd_server_leader_changes_seen counter",
        "# TYPE etcd_server_proposals_committed_total gauge",
        "# TYPE etcd_server_proposals_failed counter",
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge",
        "# TYPE etcd_debugging_mvcc_keys_total gauge",
        "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
        "# TYPE etcd_disk_backend_commit_duration_seconds histogram",
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "etcd_server_leader_changes_seen_total"),
        Some("0")
    );
    assert_eq!(
        sample(&text, "etcd_server_proposals_failed_total"),
        Some("0")
    );
    assert!(!text.contains("_total_total"));
}

#[test]
fn version_gauges_name_etcds_server_and_cluster_versions() {
    let text = Metrics::new().encode();
    let server = format!("etcd_server_version{{server_version=\"{ETCD_API_VERSION}\"}}");
    assert_eq!(sample(&text, &server), Some("1"));
    assert_eq!(
        sample(&text, "etcd_cluster_version{cluster_version=\"3.6\"}"),
        Some("1")
    );
}

#[test]
fn disk_histograms_use_etcds_buckets() {
    let metrics = Metrics::new();
    metrics.observe_wal_fsync(Duration::from_millis(3));
    metrics.observe_backend_commit(Duration::from_secs(20));
    let text = metrics.encode();
    let fsync = "etcd_disk_wal_fsync_duration_seconds_bucket";
    assert_eq!(
        sample(&text, &format!("{fsync}{{le=\"0.002\"}}")),
        Some("0")
    );
    assert_eq!(
        sample(&text, &format!("{fsync}{{le=\"0.004\"}}")),
        Some("1")
    );
    assert_eq!(
        sample(&text, &format!("{fsync}{{le=\"8.192\"}}")),
        Some("1")
    );
    let buckets = text.lines().filter(|l| l.starts_with(fsync)).count();
    assert_eq!(buckets, 15, "14 bounds and +Inf");
    let commit = "etcd_disk_backend_commit_duration_seconds_bucket";
    assert_eq!(
        sample(&text, &format!("{commit}{{le=\"8.192\"}}")),
        Some("0")
    );
    assert_eq!(
        sample(&text, &format!("{commit}{{le=\"+Inf\"}}")),
        Some("1")
    );
}

#[test]
fn leader_changes_count_each_new_leader_like_etcd() {
    let metrics = Metrics::new();
    metrics.observe_raft(&view(None));
    metrics.observe_raft(&view(Some(1)));
    metrics.observe_raft(&view(Some(1)));
    metrics.observe_raft(&view(None));
    metrics.observe_raft(&view(Some(1)));
    metrics.observe_raft(&view(Some(2)));
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "etcd_server_leader_changes_seen_total"),
        Some("3")
    );
    assert_eq!(sample(&text, "etcd_server_has_leader"), Some("1"));
    assert_eq!(sample(&text, "etcd_server_is_leader"), Some("0"));
}

#[test]
fn committed_index_never_falls_below_applied_or_goes_back() {
    let metrics = Metrics::new();
    metrics.set_committed_index(10);
    metrics.set_committed_index(8);
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "etcd_server_proposals_committed_total"),
        Some("10")
    );
    metrics.observe_raft(&RaftView {
        applied_index: 12,
        ..view(Some(1))
    });
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "etcd_server_proposals_committed_total"),
        Some("12")
    );
    assert_eq!(
        sample(&text, "etcd_server_proposals_applied_total"),
        Some("12")
    );
}

#[test]
fn pending_proposals_drop_when_their_guard_drops() {
    let metrics = Metrics::new();
    let first = metrics.proposal_pending();
    let second = metrics.proposal_pending();
    assert_eq!(
        sample(&metrics.encode(), "etcd_server_proposals_pending"),
        Some("2")
    );
    drop(first);
    drop(second);
    metrics.proposal_failed();
    let text = metrics.encode();
    assert_eq!(sample(&text, "etcd_server_proposals_pending"), Some("0"));
    assert_eq!(
        sample(&text, "etcd_server_proposals_failed_total"),
        Some("1")
    );
}

#[test]
fn health_answers_and_checks_are_counted_under_etcds_names() {
    let metrics = Metrics::new();
    metrics.record_health(true);
    metrics.record_health(false);
    metrics.record_check("readyz", "linearizable_read", false);
    let text = metrics.encode();
    assert_eq!(sample(&text, "etcd_server_health_success"), Some("1"));
    assert_eq!(sample(&text, "etcd_server_health_failures"), Some("1"));
    assert_eq!(
        sample(
            &text,
            "etcd_server_healthcheck{type=\"readyz\",name=\"linearizable_read\"}"
        ),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            "etcd_server_healthchecks_total{type=\"readyz\",name=\"linearizable_read\",status=\"error\"}"
        ),
        Some("1")
    );
}
