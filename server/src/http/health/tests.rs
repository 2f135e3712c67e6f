//! Unit tests of the health verdicts and bodies: pure functions over observed state.

use http_body_util::BodyExt;

use super::*;

fn leader_view() -> RaftView {
    RaftView {
        member_id: 1,
        leader: Some(1),
        ..RaftView::default()
    }
}

async fn body_of(response: Response<Full<Bytes>>) -> (StatusCode, String) {
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn healthy_member_reports_etcds_exact_json() {
    let verdict = local_health(&[], &[], &leader_view(), false);
    assert_eq!(
        serde_json::to_string(&verdict).ok().as_deref(),
        Some(r#"{"health":"true","reason":""}"#)
    );
}

#[test]
fn raised_alarm_fails_health_unless_excluded() {
    let alarms = [AlarmType::Nospace];
    let verdict = local_health(&alarms, &[], &leader_view(), true);
    assert_eq!(verdict, Health::failed("ALARM NOSPACE"));
    assert!(local_health(&alarms, &["NOSPACE"], &leader_view(), true).is_ok());
    let both = [AlarmType::Nospace, AlarmType::Corrupt];
    assert_eq!(alarm_reason(&both, &["NOSPACE"]), Some("ALARM CORRUPT"));
    assert_eq!(alarm_reason(&[AlarmType::None], &[]), Some("ALARM UNKNOWN"));
}

#[test]
fn missing_leader_fails_health_only_when_not_serializable() {
    let no_leader = RaftView::default();
    assert_eq!(
        local_health(&[], &[], &no_leader, false),
        Health::failed("RAFT NO LEADER")
    );
    assert!(local_health(&[], &[], &no_leader, true).is_ok());
}

#[test]
fn alarms_are_reported_before_a_missing_leader() {
    let verdict = local_health(&[AlarmType::Corrupt], &[], &RaftView::default(), false);
    assert_eq!(verdict.reason, "ALARM CORRUPT");
}

#[test]
fn failed_read_reason_carries_etcds_error_text() {
    assert_eq!(
        range_failure(&EtcdError::Timeout).reason,
        "RANGE ERROR:etcdserver: request timed out"
    );
}

#[tokio::test]
async fn unhealthy_json_is_a_503_with_a_trailing_newline() {
    let (status, body) = body_of(Health::failed("RAFT NO LEADER").response()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n"
    );
    let (status, body) = body_of(Health::ok().response()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"health":"true","reason":""}"#);
}

#[tokio::test]
async fn passing_probe_says_ok_and_lists_checks_only_when_verbose() {
    let outcomes = [
        (Check::SerializableRead, Ok(())),
        (Check::NonLearner, Ok(())),
    ];
    let r = report(&outcomes);
    assert!(r.ok);
    assert_eq!(body_of(report_response(&r, false)).await.1, "ok\n");
    assert_eq!(
        body_of(report_response(&r, true)).await.1,
        "[+]serializable_read ok\n[+]non_learner ok\nok\n"
    );
}

#[tokio::test]
async fn failing_probe_is_a_503_listing_every_check() {
    let outcomes = [
        (Check::DataCorruption, Ok(())),
        (
            Check::LinearizableRead,
            Err("etcdserver: no leader".to_string()),
        ),
    ];
    let (status, body) = body_of(report_response(&report(&outcomes), false)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "[+]data_corruption ok\n[-]linearizable_read failed: etcdserver: no leader\n\n"
    );
}

#[test]
fn paths_map_to_etcds_endpoints_and_checks() {
    assert_eq!(Endpoint::from_path("/health"), Some(Endpoint::Health));
    assert_eq!(
        Endpoint::from_path("/livez"),
        Some(Endpoint::Probe(ProbeKind::Livez, None))
    );
    assert_eq!(
        Endpoint::from_path("/readyz/linearizable_read"),
        Some(Endpoint::Probe(
            ProbeKind::Readyz,
            Some(Check::LinearizableRead)
        ))
    );
    assert_eq!(Endpoint::from_path("/livez/non_learner"), None);
    assert_eq!(Endpoint::from_path("/readyz/"), None);
    assert_eq!(Endpoint::from_path("/readyzz"), None);
    assert_eq!(Endpoint::from_path("/health/"), None);
}

#[test]
fn readyz_runs_etcds_four_checks_and_livez_one() {
    let names = |k: ProbeKind| k.checks().iter().map(|c| c.name()).collect::<Vec<_>>();
    assert_eq!(
        names(ProbeKind::Readyz),
        [
            "data_corruption",
            "serializable_read",
            "linearizable_read",
            "non_learner"
        ]
    );
    assert_eq!(names(ProbeKind::Livez), ["serializable_read"]);
}
