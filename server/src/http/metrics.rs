//! etcd's Prometheus metrics under etcd's names and types, so etcd dashboards and alerts work on
//! oxcd: gauges read from the member at scrape time ([`Metrics::refresh`]), hooks the Raft and
//! storage code calls (fsync and commit latencies, proposals), and go-grpc-prometheus's
//! `grpc_server_*` counters fed by [`super::GrpcMetricsLayer`].
//!
//! The text is OpenMetrics (what `prometheus-client` writes): a counter named `x` is sampled as
//! `x_total`, so counters are registered without the suffix. etcd's few counters that lack it
//! (`etcd_server_health_success`/`_failures`) are gauges here, to keep their sample names. Like
//! etcd, `etcd_server_proposals_{committed,applied}_total` are gauges holding log indexes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::grpc::GrpcCounters;
use super::{MemberProbe, RaftView};
use crate::api::Member;
use crate::api::maintenance::ETCD_API_VERSION;
use crate::raft::OxRaft;

/// The content type of [`Metrics::encode`]'s text (Prometheus 2.5+ negotiates and parses it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type InfoFamily = Family<[(&'static str, String); 1], Gauge>;

/// All metrics of one member; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    has_leader: Gauge,
    is_leader: Gauge,
    is_learner: Gauge,
    leader_changes: Counter,
    proposals_committed: Gauge,
    proposals_applied: Gauge,
    proposals_pending: Gauge,
    proposals_failed: Counter,
    db_total_size: Gauge,
    db_in_use: Gauge,
    keys: Gauge,
    current_revision: Gauge,
    compact_revision: Gauge,
    quota_backend_bytes: Gauge,
    server_id: InfoFamily,
    oxcd_cluster_version: InfoFamily,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    health_success: Gauge,
    health_failures: Gauge,
    healthcheck: Family<[(&'static str, &'static str); 2], Gauge>,
    healthchecks: Family<[(&'static str, &'static str); 3], Counter>,
    grpc: GrpcCounters,
    last_leader: Mutex<Option<u64>>,
    committed_index: AtomicU64,
}

/// A metric registered under `name` with `help` (the library appends the final period).
fn register<M: prometheus_client::registry::Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// etcd's disk latency buckets: 1 ms doubling to about 8 s.
fn disk_histogram(registry: &mut Registry, name: &str, help: &str) -> Histogram {
    let histogram = Histogram::new(exponential_buckets(0.001, 2.0, 14));
    registry.register(name, help, histogram.clone());
    histogram
}

/// An info gauge `name{label="value"} 1`.
fn info(registry: &mut Registry, name: &str, help: &str, label: &'static str, value: &str) {
    let family = InfoFamily::default();
    family.get_or_create(&[(label, value.to_string())]).set(1);
    registry.register(name, help, family);
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric, at zero except the version gauges.
    pub fn new() -> Self {
        let r = &mut Registry::default();
        let (major_minor, _) = ETCD_API_VERSION
            .rsplit_once('.')
            .unwrap_or((ETCD_API_VERSION, ""));
        info(
            r,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version",
            "server_version",
            ETCD_API_VERSION,
        );
        info(
            r,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            major_minor,
        );
        info(
            r,
            "oxcd_build_info",
            "The oxcd release serving the etcd API. 1 for 'version' label with the release",
            "version",
            env!("CARGO_PKG_VERSION"),
        );
        Self {
            has_leader: register(
                r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not",
            ),
            is_leader: register(
                r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise",
            ),
            is_learner: register(
                r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise",
            ),
            leader_changes: register(
                r,
                "etcd_server_leader_changes_seen",
                "The number of leader changes seen",
            ),
            proposals_committed: register(
                r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed",
            ),
            proposals_applied: register(
                r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied",
            ),
            proposals_pending: register(
                r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit",
            ),
            proposals_failed: register(
                r,
                "etcd_server_proposals_failed",
                "The total number of failed proposals seen",
            ),
            db_total_size: register(
                r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes",
            ),
            db_in_use: register(
                r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes",
            ),
            keys: register(r, "etcd_debugging_mvcc_keys_total", "Total number of keys"),
            current_revision: register(
                r,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store",
            ),
            compact_revision: register(
                r,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store",
            ),
            quota_backend_bytes: register(
                r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes",
            ),
            server_id: register(
                r,
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID",
            ),
            oxcd_cluster_version: register(
                r,
                "oxcd_cluster_version",
                "The cluster version in oxcd releases (the lowest member release). 1 for 'cluster_version' label with it",
            ),
            wal_fsync: disk_histogram(
                r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL",
            ),
            backend_commit: disk_histogram(
                r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend",
            ),
            health_success: register(
                r,
                "etcd_server_health_success",
                "The total number of successful health checks",
            ),
            health_failures: register(
                r,
                "etcd_server_health_failures",
                "The total number of failed health checks",
            ),
            healthcheck: register(
                r,
                "etcd_server_healthcheck",
                "The result of each kind of healthcheck",
            ),
            healthchecks: register(
                r,
                "etcd_server_healthchecks",
                "The total number of each kind of healthcheck",
            ),
            grpc: GrpcCounters::register(r),
            registry: std::mem::take(r),
            last_leader: Mutex::new(None),
            committed_index: AtomicU64::new(0),
        }
    }

    /// The metrics in OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "failed to encode metrics");
        }
        text
    }

    /// Reads the gauges that mirror member state; called before every scrape.
    pub fn refresh(&self, member: &Member, probe: &dyn MemberProbe) {
        self.observe_raft(&RaftView::of(&member.raft));
        let store = member.store.as_ref();
        self.keys.set(to_i64(store.key_count() as u64));
        self.current_revision.set(crate::mvcc::KvRead::rev(store));
        self.compact_revision
            .set(crate::mvcc::KvRead::compact_rev(store));
        self.quota_backend_bytes.set(member.limits.quota_bytes);
        self.server_id
            .get_or_create(&[("server_id", format!("{:x}", member.identity.member_id))])
            .set(1);
        // One series only, as etcd resets its cluster version gauge before setting it.
        self.oxcd_cluster_version.clear();
        if let Some(cluster) = member.cluster_version() {
            self.oxcd_cluster_version
                .get_or_create(&[("cluster_version", cluster.cluster_string())])
                .set(1);
        }
        match member.engine.size_on_disk() {
            Ok(size) => {
                self.db_total_size.set(to_i64(size));
                self.db_in_use
                    .set(to_i64(probe.db_size_in_use().unwrap_or(size)));
            }
            Err(error) => tracing::debug!(%error, "failed to read the database size"),
        }
    }

    /// Updates the leadership gauges and indexes from `view`; counts a leader change whenever a
    /// leader appears that differs from the last one seen (a leader after none counts, as in etcd).
    pub fn observe_raft(&self, view: &RaftView) {
        {
            let mut last = self.last_leader.lock();
            if view.leader.is_some() && *last != view.leader {
                self.leader_changes.inc();
            }
            *last = view.leader;
        }
        self.has_leader.set(i64::from(view.has_leader()));
        self.is_leader.set(i64::from(view.is_leader()));
        self.is_learner.set(i64::from(view.is_learner));
        self.proposals_applied.set(to_i64(view.applied_index));
        // Applied entries are committed: the applied index bounds the commit index from below.
        let committed = self
            .committed_index
            .fetch_max(view.applied_index, Ordering::Relaxed);
        self.proposals_committed
            .set(to_i64(committed.max(view.applied_index)));
    }

    /// Follows `raft`'s metrics until Raft stops, so leader changes between scrapes are counted.
    pub async fn follow_raft(self: std::sync::Arc<Self>, raft: OxRaft) {
        let mut updates = raft.metrics();
        loop {
            let view = RaftView::from_metrics(&updates.borrow_and_update());
            self.observe_raft(&view);
            if updates.changed().await.is_err() {
                return;
            }
        }
    }

    /// Hook: Raft committed the log up to `index` (call from the log store's `save_committed`).
    pub fn set_committed_index(&self, index: u64) {
        let previous = self.committed_index.fetch_max(index, Ordering::Relaxed);
        self.proposals_committed.set(to_i64(previous.max(index)));
    }

    /// Hook: a proposal failed (rejected by Raft or timed out).
    pub fn proposal_failed(&self) {
        self.proposals_failed.inc();
    }

    /// Hook: a proposal is waiting for its entry to apply until the guard drops.
    pub fn proposal_pending(&self) -> PendingProposal<'_> {
        self.proposals_pending.inc();
        PendingProposal(&self.proposals_pending)
    }

    /// Hook: sets the number of pending proposals outright.
    pub fn set_pending(&self, pending: i64) {
        self.proposals_pending.set(pending);
    }

    /// Hook: one durable log write (the WAL fsync of etcd) took `took`.
    pub fn observe_wal_fsync(&self, took: Duration) {
        self.wal_fsync.observe(took.as_secs_f64());
    }

    /// Hook: one commit of applied state to the storage engine took `took`.
    pub fn observe_backend_commit(&self, took: Duration) {
        self.backend_commit.observe(took.as_secs_f64());
    }

    /// Counts one `/health` answer.
    pub fn record_health(&self, healthy: bool) {
        if healthy {
            self.health_success.inc();
        } else {
            self.health_failures.inc();
        }
    }

    /// Records one `/livez` or `/readyz` check (`kind` is `livez` or `readyz`).
    pub fn record_check(&self, kind: &'static str, name: &'static str, ok: bool) {
        let status = if ok { "success" } else { "error" };
        self.healthcheck
            .get_or_create(&[("type", kind), ("name", name)])
            .set(i64::from(ok));
        self.healthchecks
            .get_or_create(&[("type", kind), ("name", name), ("status", status)])
            .inc();
    }

    /// go-grpc-prometheus's counters, fed by [`super::GrpcMetricsLayer`].
    pub fn grpc(&self) -> &GrpcCounters {
        &self.grpc
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps `etcd_server_proposals_pending` one higher while alive.
#[derive(Debug)]
pub struct PendingProposal<'a>(&'a Gauge);

impl Drop for PendingProposal<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
