//! The metrics and health listener (`--listen-metrics-urls`, etcd's port 2381): `/health`,
//! `/livez`, `/readyz`, `/version` and `/metrics` over plain HTTP/1.1 with etcd's paths, bodies
//! and status codes, so kubeadm's probes, Prometheus and etcd dashboards work against oxcd.

pub mod grpc;
pub mod health;
pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::Member;
use crate::api::maintenance::ETCD_API_VERSION;
use crate::proto::etcdserverpb::AlarmType;
use crate::raft::{MemberNode, OxRaft};

pub use grpc::GrpcMetricsLayer;
pub use metrics::Metrics;

/// How long open connections may finish their request after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Go's `http.Error` content type, which every etcd health answer but `/version` carries.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What the endpoints need from a member beyond [`Member`]'s public fields.
pub trait MemberProbe: Send + Sync {
    /// The alarms raised in the cluster, one entry per raising member (as `Alarm(GET)` lists).
    fn active_alarms(&self) -> Vec<AlarmType>;

    /// Bytes of the database logically in use; `None` reports the on-disk size instead.
    fn db_size_in_use(&self) -> Option<u64> {
        None
    }
}

/// The probe of a member that cannot raise alarms: none raised, in-use size unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAlarms;

impl MemberProbe for NoAlarms {
    fn active_alarms(&self) -> Vec<AlarmType> {
        Vec::new()
    }
}

/// This member's Raft state, read once from openraft's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftView {
    /// This member's id.
    pub member_id: u64,
    /// The leader this member knows, if any.
    pub leader: Option<u64>,
    /// True when this member is a learner (a non-voting member).
    pub is_learner: bool,
    /// True once Raft stopped (shut down or failed).
    pub stopped: bool,
    /// Index of the last applied log entry.
    pub applied_index: u64,
    /// Index of the last log entry this member holds.
    pub last_log_index: u64,
}

impl RaftView {
    /// The view of openraft's current metrics.
    pub fn from_metrics(m: &openraft::RaftMetrics<u64, MemberNode>) -> Self {
        Self {
            member_id: m.id,
            leader: m.current_leader,
            is_learner: m
                .membership_config
                .membership()
                .learner_ids()
                .any(|id| id == m.id),
            stopped: m.running_state.is_err() || m.state == openraft::ServerState::Shutdown,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
        }
    }

    /// The view of `raft` now.
    pub fn of(raft: &OxRaft) -> Self {
        Self::from_metrics(&raft.metrics().borrow())
    }

    /// True while this member knows a leader.
    pub fn has_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// True while this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.member_id)
    }
}

/// Everything a request handler reads.
struct Ctx {
    member: Arc<Member>,
    probe: Arc<dyn MemberProbe>,
    metrics: Arc<Metrics>,
}

/// Serves the endpoints on `listener` until `shutdown` resolves, then lets open requests finish
/// for a short grace period. Accept failures are logged and retried, never fatal.
pub async fn serve(
    listener: TcpListener,
    member: Arc<Member>,
    probe: Arc<dyn MemberProbe>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = Arc::new(Ctx {
        member,
        probe,
        metrics,
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener failed to accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        let service = hyper::service::service_fn(move |request| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(route(request, &ctx).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "metrics connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics connections still open at shutdown were dropped");
    }
}

/// Dispatches one request, as etcd's `http.ServeMux` for the metrics listener would.
async fn route(request: Request<Incoming>, ctx: &Ctx) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let query = Query::parse(request.uri().query());
    let is_get = request.method() == Method::GET;
    if path == "/metrics" {
        ctx.metrics.refresh(&ctx.member, ctx.probe.as_ref());
        return respond(StatusCode::OK, metrics::CONTENT_TYPE, ctx.metrics.encode());
    }
    let Some(endpoint) = health::Endpoint::from_path(path) else {
        return match path {
            "/version" if is_get => respond(
                StatusCode::OK,
                "application/json",
                version_json(&ctx.member),
            ),
            "/version" => method_not_allowed(),
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        };
    };
    if !is_get {
        return method_not_allowed();
    }
    let probe = ctx.probe.as_ref();
    match endpoint {
        health::Endpoint::Health => health::health(&ctx.member, probe, &ctx.metrics, &query).await,
        health::Endpoint::Probe(kind, only) => {
            health::probe(&ctx.member, probe, &ctx.metrics, kind, only, &query).await
        }
    }
}

/// etcd's `/version` body (`version.Versions`): the etcd API version oxcd implements, for the
/// server, the cluster and the storage format, then oxcd's own versions (`crate::version`):
/// `oxcd` this member's release version, `oxcdcluster` the cluster version (null until decided),
/// `oxcdstorage` the data dir format, `oxcdmembers` what every member advertised (as this member
/// has applied it) and `downgrade` (etcd's `DowngradeInfo` JSON). etcd's
/// clients decode only the fields they know, so the extra fields are safe.
pub fn version_json(member: &Member) -> String {
    serde_json::to_string(&versions(member)).unwrap_or_default()
}

#[derive(Debug, serde::Serialize)]
struct Versions {
    etcdserver: &'static str,
    etcdcluster: &'static str,
    storage: &'static str,
    oxcd: String,
    oxcdcluster: Option<String>,
    oxcdstorage: u32,
    /// Every current member's advertised release, by member id in hex (etcdctl's form).
    oxcdmembers: std::collections::BTreeMap<String, String>,
    downgrade: Downgrade,
}

/// etcd's `DowngradeInfo` JSON (`/downgrade/enabled` and member attributes use these names).
#[derive(Debug, serde::Serialize)]
struct Downgrade {
    #[serde(rename = "target-version")]
    target_version: String,
    enabled: bool,
}

fn versions(member: &Member) -> Versions {
    let state = member.versions().unwrap_or_default();
    Versions {
        etcdserver: ETCD_API_VERSION,
        etcdcluster: ETCD_API_VERSION,
        storage: ETCD_API_VERSION,
        oxcd: member.server_version.to_string(),
        oxcdcluster: state.cluster_version().map(|v| v.to_string()),
        oxcdstorage: crate::datadir::FORMAT,
        oxcdmembers: member
            .member_ids()
            .into_iter()
            .filter_map(|id| {
                let advertised = state.members.get(&id)?;
                Some((format!("{id:x}"), advertised.server.clone()))
            })
            .collect(),
        downgrade: Downgrade {
            enabled: state.downgrade.is_some(),
            target_version: state.downgrade.unwrap_or_default(),
        },
    }
}

/// A response with `body` of `content_type`.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A plain-text response as Go's `http.Error` writes it (with `nosniff`).
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = respond(status, TEXT_PLAIN, body);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// etcd's answer to anything but GET on its handlers.
fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed\n".into(),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

/// A URL query decoded as Go's `url.ParseQuery` does (`+` is a space, `%XX` a byte).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the part of a URL after `?`; pairs that do not decode are dropped, as Go does.
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.contains(';'))
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                Some((unescape(key)?, unescape(value)?))
            })
            .collect();
        Self(pairs)
    }

    /// The first value of `key` (Go's `Query().Get`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `key`, in order.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// True when `key` appears at all, with or without a value.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

/// Decodes one query component; `None` for a bad escape or non-UTF-8 bytes.
fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decodes_like_go_and_keeps_repeated_keys() {
        let q = Query::parse(Some(
            "exclude=NOSPACE&serializable=true&exclude=CORRUPT&verbose",
        ));
        assert_eq!(q.get("serializable"), Some("true"));
        assert_eq!(
            q.values("exclude").collect::<Vec<_>>(),
            ["NOSPACE", "CORRUPT"]
        );
        assert!(q.has("verbose"));
        assert!(!q.has("serializable=true"));
        let q = Query::parse(Some("a=b%20c+d&bad=%zz&semi=1;x=2&exclude="));
        assert_eq!(q.get("a"), Some("b c d"));
        assert_eq!(q.get("bad"), None);
        assert_eq!(q.get("semi"), None);
        assert_eq!(q.values("exclude").count(), 0);
        assert_eq!(Query::parse(None), Query::default());
    }

    #[test]
    fn raft_view_names_the_leader_and_learners() {
        let view = RaftView {
            member_id: 7,
            leader: Some(7),
            ..RaftView::default()
        };
        assert!(view.has_leader() && view.is_leader());
        let follower = RaftView {
            leader: Some(3),
            ..view
        };
        assert!(follower.has_leader() && !follower.is_leader());
        assert!(!RaftView::default().has_leader());
    }
}
