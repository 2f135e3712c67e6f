//! Unit tests of the gRPC metrics layer over a fake service answering like tonic does.

use std::convert::Infallible;

use bytes::Bytes;
use futures::stream;
use http::HeaderValue;
use http_body_util::{BodyExt, StreamBody};
use tower::ServiceExt;

use super::*;

type FakeBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A unary success: headers without a status, one message, trailers with `grpc-status: 0`.
fn unary_ok() -> Response<FakeBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
        Ok(Frame::trailers(trailers)),
    ];
    Response::new(StreamBody::new(stream::iter(frames)))
}

/// A trailers-only error: the status in the headers and an empty body.
fn trailers_only(code: &'static str) -> Response<FakeBody> {
    let mut response = Response::new(StreamBody::new(stream::iter(Vec::new())));
    response
        .headers_mut()
        .insert(GRPC_STATUS, HeaderValue::from_static(code));
    response
}

fn handled(text: &str, method: &str, code: &str) -> Option<u64> {
    let series = format!(
        "grpc_server_handled_total{{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"{method}\",grpc_code=\"{code}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
}

fn started(text: &str, method: &str) -> Option<u64> {
    let series = format!(
        "grpc_server_started_total{{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"{method}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
}

async fn call(
    metrics: &Arc<Metrics>,
    path: &str,
    answer: fn() -> Response<FakeBody>,
) -> Response<CountedBody<FakeBody>> {
    let inner =
        tower::service_fn(move |_: Request<()>| async move { Ok::<_, Infallible>(answer()) });
    let service = GrpcMetricsLayer::new(metrics.clone()).layer(inner);
    let request = Request::builder().uri(path).body(()).unwrap_or_default();
    match service.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[tokio::test]
async fn unary_success_counts_ok_once_its_trailers_are_sent() {
    let metrics = Arc::new(Metrics::new());
    let response = call(&metrics, "/etcdserverpb.KV/Range", unary_ok).await;
    assert_eq!(started(&metrics.encode(), "Range"), Some(1));
    assert_eq!(handled(&metrics.encode(), "Range", "OK"), Some(0));
    let collected = response.into_body().collect().await;
    assert!(collected.is_ok());
    let text = metrics.encode();
    assert_eq!(handled(&text, "Range", "OK"), Some(1));
    assert_eq!(handled(&text, "Range", "Canceled"), Some(0));
}

#[tokio::test]
async fn trailers_only_error_counts_its_code_from_the_headers() {
    let metrics = Arc::new(Metrics::new());
    let response = call(&metrics, "/etcdserverpb.KV/Put", || trailers_only("11")).await;
    drop(response);
    let text = metrics.encode();
    assert_eq!(handled(&text, "Put", "OutOfRange"), Some(1));
    assert_eq!(handled(&text, "Put", "Canceled"), Some(0));
}

#[tokio::test]
async fn body_dropped_before_its_status_counts_as_canceled() {
    let metrics = Arc::new(Metrics::new());
    drop(call(&metrics, "/etcdserverpb.KV/Txn", unary_ok).await);
    let text = metrics.encode();
    assert_eq!(handled(&text, "Txn", "Canceled"), Some(1));
    assert_eq!(handled(&text, "Txn", "OK"), Some(0));
}

#[tokio::test]
async fn non_grpc_paths_are_not_counted() {
    let metrics = Arc::new(Metrics::new());
    let _registers_etcd_methods = GrpcMetricsLayer::new(metrics.clone());
    let before = metrics.encode();
    let response = call(&metrics, "/health", unary_ok).await;
    assert!(response.into_body().collect().await.is_ok());
    assert_eq!(metrics.encode(), before);
}

#[test]
fn paths_and_codes_use_go_grpc_prometheus_labels() {
    let watch = method_labels("/etcdserverpb.Watch/Watch");
    assert_eq!(watch.map(|l| l.grpc_type), Some("bidi_stream"));
    let snapshot = method_labels("/etcdserverpb.Maintenance/Snapshot");
    assert_eq!(snapshot.map(|l| l.grpc_type), Some("server_stream"));
    let range = method_labels("/etcdserverpb.KV/Range");
    assert_eq!(
        range.map(|l| (l.grpc_type, l.grpc_service, l.grpc_method)),
        Some(("unary", "etcdserverpb.KV".into(), "Range".into()))
    );
    assert_eq!(method_labels("/metrics"), None);
    assert_eq!(method_labels("/a/b/c"), None);
    assert_eq!(code_name(b"0"), "OK");
    assert_eq!(code_name(b"8"), "ResourceExhausted");
    assert_eq!(code_name(b"16"), "Unauthenticated");
    assert_eq!(code_name(b"17"), "Unknown");
    assert_eq!(code_name(b"x"), "Unknown");
}

#[test]
fn every_etcd_method_starts_at_zero_for_every_code() {
    let metrics = Arc::new(Metrics::new());
    let _layer = GrpcMetricsLayer::new(metrics.clone());
    let text = metrics.encode();
    assert_eq!(started(&text, "Compact"), Some(0));
    assert_eq!(handled(&text, "Compact", "Unavailable"), Some(0));
    let methods: usize = ETCD_METHODS.iter().map(|(_, m)| m.len()).sum();
    let handled_series = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .count();
    assert_eq!(handled_series, methods * CODE_NAMES.len());
}

#[test]
fn counters_carry_go_grpc_prometheus_labels() {
    let metrics = Metrics::new();
    let range = MethodLabels {
        grpc_type: "unary",
        grpc_service: "etcdserverpb.KV".into(),
        grpc_method: "Range".into(),
    };
    metrics
        .grpc()
        .register_method(&range, &["OK", "OutOfRange"]);
    metrics.grpc().started(&range);
    metrics.grpc().handled(&range, "OK");
    let text = metrics.encode();
    assert!(
        text.lines()
            .any(|l| l == "# TYPE grpc_server_handled counter")
    );
    assert_eq!(started(&text, "Range"), Some(1));
    assert_eq!(handled(&text, "Range", "OK"), Some(1));
    assert_eq!(handled(&text, "Range", "OutOfRange"), Some(0));
}
