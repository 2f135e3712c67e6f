//! The metrics and health listener (`--listen-metrics-urls`): `/health` (also as kubeadm's probe
//! calls it), `/livez`, `/readyz`, `/version` and `/metrics` on oxcd, and the same answers from
//! etcd 3.6 where etcd serves them.

use std::collections::BTreeSet;

use oxcd_tests::{EtcdServer, EtcdVersion, HttpAnswer, OxcdServer, free_port, http_request};

/// One HTTP/1.1 answer (the harness's).
type Answer = HttpAnswer;

/// Sends `method path` to 127.0.0.1:`port`; panics when no HTTP answer comes.
async fn request(port: u16, method: &str, path: &str) -> Answer {
    http_request(port, method, path)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn get(port: u16, path: &str) -> Answer {
    request(port, "GET", path).await
}

/// The top-level keys of a JSON object, e.g. `{"health":"true","reason":""}`.
fn json_keys(body: &str) -> BTreeSet<String> {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        other => panic!("not a JSON object: {body:?} ({other:?})"),
    }
}

/// The value of the first sample of `series` (name and labels, exactly as written).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

async fn oxcd_with_metrics() -> (OxcdServer, u16) {
    let port = free_port().expect("a free port");
    let url = format!("http://127.0.0.1:{port}");
    let server = OxcdServer::start_with(&["--listen-metrics-urls", &url])
        .await
        .expect("oxcd starts");
    (server, port)
}

#[tokio::test]
async fn health_endpoints_answer_like_etcd_on_a_healthy_member() {
    let (_oxcd, port) = oxcd_with_metrics().await;
    let healthy = r#"{"health":"true","reason":""}"#;
    for path in [
        "/health",
        "/health?serializable=true",
        "/health?exclude=NOSPACE&serializable=true",
    ] {
        let answer = get(port, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, healthy),
            "{path}"
        );
    }
    for path in [
        "/livez",
        "/readyz",
        "/livez/serializable_read",
        "/readyz/linearizable_read",
    ] {
        let answer = get(port, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "ok\n"),
            "{path}"
        );
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    let verbose = get(port, "/readyz?verbose&exclude=non_learner").await;
    assert_eq!(
        verbose.body,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n"
    );
    assert_eq!(request(port, "POST", "/health").await.status, 405);
    assert_eq!(get(port, "/readyz/no_such_check").await.status, 404);
}

#[tokio::test]
async fn version_names_the_etcd_api_version_as_json() {
    let (_oxcd, port) = oxcd_with_metrics().await;
    let answer = get(port, "/version").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(
        answer.body.contains(r#""etcdserver":"3.6."#),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains(r#""oxcd":""#),
        "oxcd's own version: {}",
        answer.body
    );
    for field in [
        r#""oxcdcluster":"#,
        r#""oxcdstorage":2"#,
        r#""downgrade":{"target-version":"#,
    ] {
        assert!(answer.body.contains(field), "{field} in {}", answer.body);
    }
}

#[tokio::test]
async fn metrics_expose_etcd_gauges_and_grpc_counters() {
    let (oxcd, port) = oxcd_with_metrics().await;
    let mut client = oxcd.client().await.expect("client");
    client.put("metrics-key", "v", None).await.expect("put");
    client.get("metrics-key", None).await.expect("get");
    let answer = get(port, "/metrics").await;
    assert_eq!(answer.status, 200);
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = answer.body;
    assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample(&text, "etcd_server_is_leader"), Some(1.0));
    assert!(sample(&text, "etcd_server_leader_changes_seen_total") >= Some(1.0));
    assert!(sample(&text, "etcd_mvcc_db_total_size_in_bytes") > Some(0.0));
    assert!(sample(&text, "etcd_debugging_mvcc_keys_total") >= Some(1.0));
    assert!(sample(&text, "etcd_debugging_mvcc_current_revision") >= Some(2.0));
    let range = r#"grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Range""#;
    let started = sample(&text, &format!("grpc_server_started_total{{{range}}}"));
    let ok = sample(
        &text,
        &format!(r#"grpc_server_handled_total{{{range},grpc_code="OK"}}"#),
    );
    assert!(ok >= Some(1.0), "Range OK count {ok:?} in\n{text}");
    assert!(started >= ok);
    let put =
        r#"grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK""#;
    assert_eq!(
        sample(&text, &format!("grpc_server_handled_total{{{put}}}")),
        Some(1.0)
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn health_answers_match_etcd_3_6() {
    let etcd_port = free_port().expect("a free port");
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    // The last --listen-metrics-urls wins in etcd, replacing the harness's own.
    let etcd = EtcdServer::start_with(EtcdVersion::V3_6, &["--listen-metrics-urls", &etcd_url])
        .await
        .expect("etcd starts");
    let (_oxcd, port) = oxcd_with_metrics().await;
    for path in [
        "/health",
        "/health?exclude=NOSPACE&serializable=true",
        "/livez",
        "/readyz",
    ] {
        let (theirs, ours) = (get(etcd_port, path).await, get(port, path).await);
        assert_eq!(
            (ours.status, &ours.body),
            (theirs.status, &theirs.body),
            "{path}"
        );
        assert_eq!(
            ours.header("content-type"),
            theirs.header("content-type"),
            "{path}"
        );
    }
    let health = (get(etcd_port, "/health").await, get(port, "/health").await);
    assert_eq!(json_keys(&health.1.body), json_keys(&health.0.body));
    let lines = |body: &str| body.lines().map(String::from).collect::<BTreeSet<_>>();
    let verbose = (
        get(etcd_port, "/readyz?verbose").await,
        get(port, "/readyz?verbose").await,
    );
    assert_eq!(lines(&verbose.1.body), lines(&verbose.0.body));
    for (method, path) in [("POST", "/health"), ("GET", "/no-such-path")] {
        let (theirs, ours) = (
            request(etcd_port, method, path).await,
            request(port, method, path).await,
        );
        assert_eq!(
            (ours.status, &ours.body),
            (theirs.status, &theirs.body),
            "{method} {path}"
        );
    }
    // etcd serves /version on its client URL only; oxcd's client URL is gRPC-only, so oxcd
    // serves it on the metrics URL.
    let client_port: u16 = etcd
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let version = (
        get(client_port, "/version").await,
        get(port, "/version").await,
    );
    assert_eq!(
        version.1.header("content-type"),
        version.0.header("content-type")
    );
    // etcd's keys, plus oxcd's own versions (`oxcd_server::version`).
    let mut expected = json_keys(&version.0.body);
    for own in [
        "oxcd",
        "oxcdcluster",
        "oxcdstorage",
        "oxcdmembers",
        "downgrade",
    ] {
        expected.insert(own.to_string());
    }
    assert_eq!(json_keys(&version.1.body), expected);
}

#[tokio::test]
async fn nospace_alarm_fails_health_unless_excluded_as_kubeadm_does() {
    let port = free_port().expect("a free port");
    let url = format!("http://127.0.0.1:{port}");
    let oxcd = OxcdServer::start_with(&[
        "--listen-metrics-urls",
        &url,
        "--quota-backend-bytes",
        "300000",
    ])
    .await
    .expect("oxcd starts");
    let mut client = oxcd.client().await.expect("client");
    let value = "v".repeat(10_000);
    let mut filled = false;
    for i in 0..100 {
        if client
            .put(format!("q/{i:03}"), value.clone(), None)
            .await
            .is_err()
        {
            filled = true;
            break;
        }
    }
    assert!(filled, "the quota stopped the writes");
    let health = get(port, "/health").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n")
    );
    let kubeadm = get(port, "/health?exclude=NOSPACE&serializable=true").await;
    assert_eq!(kubeadm.status, 200, "{}", kubeadm.body);
    assert_eq!(
        get(port, "/readyz").await.status,
        200,
        "NOSPACE is not corruption"
    );
}
