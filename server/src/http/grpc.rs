//! A tower layer over the gRPC server that counts go-grpc-prometheus's `grpc_server_started_total`
//! and `grpc_server_handled_total`, as etcd's interceptors do, from the request path
//! (`/etcdserverpb.KV/Range`) and the `grpc-status` of the response: in the headers of a
//! trailers-only (error) response, otherwise in the trailers at the end of the body. A call whose
//! body is dropped before its status (the client went away) counts as `Canceled`, as grpc-go
//! reports it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

use super::metrics::Metrics;

const GRPC_STATUS: &str = "grpc-status";

/// grpc-go's names of the status codes, indexed by code.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The etcd methods oxcd serves, by service; their series exist at zero from startup.
pub const ETCD_METHODS: &[(&str, &[&str])] = &[
    (
        "etcdserverpb.KV",
        &["Range", "Put", "DeleteRange", "Txn", "Compact"],
    ),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
            "Downgrade",
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
];

/// The labels go-grpc-prometheus puts on `grpc_server_started_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabels {
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub grpc_type: &'static str,
    /// The fully qualified service, e.g. `etcdserverpb.KV`.
    pub grpc_service: String,
    /// The method, e.g. `Range`.
    pub grpc_method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

impl HandledLabels {
    fn new(method: &MethodLabels, grpc_code: &'static str) -> Self {
        Self {
            grpc_type: method.grpc_type,
            grpc_service: method.grpc_service.clone(),
            grpc_method: method.grpc_method.clone(),
            grpc_code,
        }
    }
}

/// go-grpc-prometheus's `grpc_server_started_total` and `grpc_server_handled_total`.
#[derive(Debug)]
pub struct GrpcCounters {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
}

impl GrpcCounters {
    /// Registers both counters in `registry` (OpenMetrics adds the `_total`).
    pub(super) fn register(registry: &mut Registry) -> Self {
        let counters = Self {
            started: Family::default(),
            handled: Family::default(),
        };
        let started_help = "Total number of RPCs started on the server";
        registry.register(
            "grpc_server_started",
            started_help,
            counters.started.clone(),
        );
        let handled_help =
            "Total number of RPCs completed on the server, regardless of success or failure";
        registry.register(
            "grpc_server_handled",
            handled_help,
            counters.handled.clone(),
        );
        counters
    }

    /// Counts an RPC that started.
    pub fn started(&self, method: &MethodLabels) {
        self.started.get_or_create(method).inc();
    }

    /// Counts an RPC that completed with `code` (grpc-go's name, e.g. `OK`, `OutOfRange`).
    pub fn handled(&self, method: &MethodLabels, code: &'static str) {
        self.handled
            .get_or_create(&HandledLabels::new(method, code))
            .inc();
    }

    /// Creates the series of `method` at zero for `codes`, as go-grpc-prometheus does at startup.
    pub fn register_method(&self, method: &MethodLabels, codes: &[&'static str]) {
        drop(self.started.get_or_create(method));
        for code in codes {
            drop(
                self.handled
                    .get_or_create(&HandledLabels::new(method, code)),
            );
        }
    }
}

/// grpc-go's name of the code in a `grpc-status` value (`Unknown` if it is not a known code).
pub fn code_name(status: &[u8]) -> &'static str {
    std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .and_then(|code| CODE_NAMES.get(code).copied())
        .unwrap_or("Unknown")
}

/// The labels of the call at `path` (`/package.Service/Method`); `None` if it is not a gRPC path.
pub fn method_labels(path: &str) -> Option<MethodLabels> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    let grpc_type = match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") => "server_stream",
        _ => "unary",
    };
    Some(MethodLabels {
        grpc_type,
        grpc_service: service.to_string(),
        grpc_method: method.to_string(),
    })
}

fn status_of(headers: &HeaderMap) -> Option<&'static str> {
    headers.get(GRPC_STATUS).map(|v| code_name(v.as_bytes()))
}

/// Counts started and handled RPCs into [`Metrics`]; add it outermost, so it sees the status
/// clients see.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    /// A layer counting into `metrics`; creates the series of [`ETCD_METHODS`] at zero.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        for (service, methods) in ETCD_METHODS {
            for method in *methods {
                if let Some(labels) = method_labels(&format!("/{service}/{method}")) {
                    metrics.grpc().register_method(&labels, &CODE_NAMES);
                }
            }
        }
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = method_labels(request.uri().path()).map(|labels| {
            self.metrics.grpc().started(&labels);
            Call {
                metrics: self.metrics.clone(),
                labels,
                done: false,
            }
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut call = call;
            let response = match response.await {
                Ok(response) => response,
                Err(error) => {
                    if let Some(call) = &mut call {
                        call.finish("Unknown");
                    }
                    return Err(error);
                }
            };
            if let (Some(call), Some(code)) = (&mut call, status_of(response.headers())) {
                call.finish(code);
            }
            Ok(response.map(|inner| CountedBody { inner, call }))
        })
    }
}

/// One counted call; counts as `Canceled` if dropped before it finished.
#[derive(Debug)]
struct Call {
    metrics: Arc<Metrics>,
    labels: MethodLabels,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: &'static str) {
        if !self.done {
            self.done = true;
            self.metrics.grpc().handled(&self.labels, code);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish("Canceled");
    }
}

/// A response body that counts its call when the trailers carrying `grpc-status` pass.
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(call) = &mut this.call {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        call.finish(status_of(trailers).unwrap_or("Unknown"));
                    }
                }
                Poll::Ready(Some(Err(_))) => call.finish("Internal"),
                Poll::Ready(None) => call.finish("Unknown"),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
