//! The operator's Prometheus metrics: reconciles by result, their duration, every write it
//! sends to the API server (a steady cluster must cause none) and the membership changes it
//! makes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels of a write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Kind of the object written.
    pub kind: String,
    /// `apply`, `delete` or `status`.
    pub verb: &'static str,
}

/// Labels of a membership change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    /// `add_learner`, `promote`, `move_leader` or `remove`.
    pub action: &'static str,
}

/// Every metric of the operator, registered in one registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_seconds: Histogram,
    writes: Family<WriteLabels, Counter>,
    membership_changes: Family<ChangeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oxcd_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of StoreClusters by result",
            reconciles.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            reconcile_seconds.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Writes sent to the Kubernetes API (a steady cluster causes none)",
            writes.clone(),
        );
        let membership_changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "membership_changes",
            "Membership changes made through the etcd API",
            membership_changes.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_seconds,
            writes,
            membership_changes,
        }
    }
}

impl Metrics {
    /// Counts a finished reconcile.
    pub fn reconciled(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Counts a write of `kind`.
    pub fn wrote(&self, kind: &str, verb: &'static str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_owned(),
                verb,
            })
            .inc();
    }

    /// Counts a membership change.
    pub fn changed_membership(&self, action: &'static str) {
        self.membership_changes
            .get_or_create(&ChangeLabels { action })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "failed to encode metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_by_kind_and_verb() {
        let metrics = Metrics::default();
        metrics.wrote("StatefulSet", "apply");
        metrics.wrote("StatefulSet", "apply");
        let text = metrics.encode();
        assert!(
            text.contains(r#"oxcd_operator_writes_total{kind="StatefulSet",verb="apply"} 2"#),
            "{text}"
        );
    }
}
