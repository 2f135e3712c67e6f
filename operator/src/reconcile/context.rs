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
        self.publish(cluster, type_, reason, action, note, None)
            .await;
    }

    /// Publishes a Normal Event about `cluster` and the member pod `pod` it concerns.
    pub async fn member_event(
        &self,
        cluster: &StoreCluster,
        pod: &str,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let related = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.to_owned()),
            namespace: cluster.metadata.namespace.clone(),
            ..ObjectReference::default()
        };
        self.publish(
            cluster,
            EventType::Normal,
            reason,
            action,
            note,
            Some(related),
        )
        .await;
    }

    async fn publish(
        &self,
        cluster: &StoreCluster,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        let reference: ObjectReference = cluster.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary,
        };
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => self.metrics.wrote("Event", "apply"),
            Err(error) => tracing::warn!(%error, "failed to publish an event"),
        }
    }
}
