//! What every reconcile shares: the API client, the operator's settings, its metrics and the
//! Kubernetes event recorder.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use oxcd_crds::StoreCluster;

use crate::metrics::Metrics;
use crate::validate::Settings;

/// Shared by every reconcile.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Operator-wide settings.
    pub settings: Settings,
    /// The operator's metrics.
    pub metrics: Metrics,
    recorder: Recorder,
}

impl Context {
    /// A context for the operator instance `instance` (its pod name).
    pub fn new(client: Client, settings: Settings, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: crate::names::MANAGED_BY.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics: Metrics::default(),
        }
    }

    /// Publishes a Kubernetes Event about `cluster`; failures are logged, never fatal.
    pub async fn event(
        &self,
        cluster: &StoreCluster,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference: ObjectReference = cluster.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => self.metrics.wrote("Event", "apply"),
            Err(error) => tracing::warn!(%error, "failed to publish an event"),
        }
    }
}
