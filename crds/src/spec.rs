//! The desired state of a `StoreCluster`: size, version, storage, TLS, network policy, pod
//! placement, server configuration, backups and a restore source, with the CEL rules the API server enforces on
//! them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BackupSpec, BootstrapSpec, StoreClusterStatus};

/// A cluster of oxcd members (an etcd-compatible store) run by the oxcd operator.
// clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oxcd.io",
    version = "v1alpha1",
    kind = "StoreCluster",
    plural = "storeclusters",
    doc = "A cluster of oxcd members (an etcd-compatible store) run by the oxcd operator",
    // Not `sc`: that is StorageClass's short name, and kubectl resolves built-in short names
    // first (`kubectl get sc` lists StorageClasses, with a warning).
    shortname = "oxsc",
    category = "oxcd",
    namespaced,
    status = "StoreClusterStatus",
    derive = "PartialEq",
    cel,
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "ready members / desired members"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        description = "desired oxcd version"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "the member that leads"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "summary of the conditions"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// Version skew, as etcd allows it: members move one minor release at a time (checked against
// the previous spec; the operator checks the running cluster version too).
#[x_kube(validation = Rule::new("self.version == oldSelf.version || (int(self.version.split('.')[0].replace('v', '')) == int(oldSelf.version.split('.')[0].replace('v', '')) && (int(self.version.split('.')[1]) == int(oldSelf.version.split('.')[1]) || int(self.version.split('.')[1]) == int(oldSelf.version.split('.')[1]) + 1 || (int(self.version.split('.')[1]) + 1 == int(oldSelf.version.split('.')[1]) && has(self.allowDowngrade) && self.allowDowngrade)))").message("spec.version may change to another patch release or to the next minor release only (no skipped minor, no major change); one minor lower needs spec.allowDowngrade: true"))]
// A restore happens once, when the cluster is created: bootstrap cannot be added or removed.
#[x_kube(validation = Rule::new("has(self.bootstrap) == has(oldSelf.bootstrap)").message("spec.bootstrap can be set only when the StoreCluster is created, and not removed"))]
pub struct StoreClusterSpec {
    /// Number of members: 1, 3, 5 or 7. Odd, because an even member adds no fault tolerance.
    /// Changed one membership change at a time: a learner is added and promoted, or a member is
    /// removed before its pod.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 7))]
    #[x_kube(validation = Rule::new("self % 2 == 1").message("replicas must be odd (1, 3, 5 or 7)"))]
    pub replicas: i32,
    /// oxcd version the members run (semantic version such as `0.1.0`); the image tag unless
    /// `image` is set.
    /// Changes roll out one member at a time, followers first and the leader last: to another
    /// patch release or the next minor release (one minor lower only with `allowDowngrade`).
    #[schemars(
        regex(pattern = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"),
        length(max = 64)
    )]
    pub version: String,
    /// Permits setting `version` one minor release lower than before (a downgrade, as etcd
    /// supports it: one minor at a time). Without it a lower minor is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_downgrade: Option<bool>,
    /// Container image of the members; default: the operator's oxcd image repository tagged
    /// with `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Persistent volume of each member (its data dir).
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory requests and limits of the oxcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Transport security of client (2379) and peer (2380) traffic.
    #[serde(default)]
    pub tls: TlsSpec,
    /// The NetworkPolicy that restricts who reaches the members.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Scheduling overrides for the member pods.
    #[serde(default)]
    pub pod_template: PodTemplateOverrides,
    /// Server settings passed to every member as etcd-compatible flags.
    #[serde(default)]
    pub config: StoreConfig,
    /// Scheduled snapshots uploaded to S3; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How the cluster starts: from a snapshot in S3 (`restore`) instead of empty. Set only at
    /// creation; immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
}

fn default_replicas() -> i32 {
    3
}

/// Where and how large each member's data volume is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0").message("storage.size cannot shrink"))]
pub struct StorageSpec {
    /// StorageClass of the member volumes; default: the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Size of each member volume (a quantity such as `8Gi`); it may grow, never shrink.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("storage.size must be a quantity such as 8Gi"))]
    pub size: String,
    /// What deleting the StoreCluster does to the member volumes: `Retain` (default) keeps
    /// them, `Delete` removes them.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

fn default_storage_size() -> String {
    "8Gi".to_owned()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            size: default_storage_size(),
            reclaim_policy: ReclaimPolicy::default(),
        }
    }
}

/// What happens to member volumes when their StoreCluster is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// Keep the PersistentVolumeClaims (and the data) after the StoreCluster is deleted.
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaims with the StoreCluster.
    Delete,
}

/// Transport security. The mode cannot change once the cluster exists.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode == oldSelf.mode").message("tls.mode is immutable"),
    validation = Rule::new("self.mode != 'CertManager' || has(self.certManager)").message("tls.certManager is required when tls.mode is CertManager"),
    validation = Rule::new("self.mode != 'Secrets' || has(self.secrets)").message("tls.secrets is required when tls.mode is Secrets")
)]
pub struct TlsSpec {
    /// Who provides the certificates: `Operator` (default; a CA and certificates made and
    /// renewed by the operator), `CertManager` (Certificate resources), `Secrets` (yours), or
    /// `Disabled` (plain text; for development only).
    #[serde(default)]
    pub mode: TlsMode,
    /// cert-manager issuer used when `mode` is `CertManager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerTls>,
    /// Your Secrets used when `mode` is `Secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<TlsSecrets>,
}

/// Source of the members' certificates.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// The operator makes a CA and the server, peer and client certificates, and renews them.
    #[default]
    Operator,
    /// cert-manager issues them from Certificate resources the operator creates.
    CertManager,
    /// Secrets you provide (`tls.crt`, `tls.key`, `ca.crt` each).
    Secrets,
    /// No TLS: clients and peers talk plain text. For development only.
    Disabled,
}

/// The cert-manager issuer that signs the members' certificates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerTls {
    /// Name of the Issuer or ClusterIssuer.
    pub issuer_name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    pub issuer_kind: String,
    /// API group of the issuer (default `cert-manager.io`).
    #[serde(default = "default_issuer_group")]
    pub issuer_group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".to_owned()
}

fn default_issuer_group() -> String {
    "cert-manager.io".to_owned()
}

/// Secrets (type kubernetes.io/tls plus `ca.crt`) holding certificates you manage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecrets {
    /// Secret with the server certificate members present on 2379.
    pub server: String,
    /// Secret with the certificate members use between each other on 2380.
    pub peer: String,
    /// Secret with a client certificate the operator uses to reach the members.
    pub client: String,
}

/// Who may reach the members. Everything not listed is denied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods allowed on the client port 2379 (besides the operator): default `component:
    /// kube-apiserver` pods in the `kube-system` namespace.
    #[serde(default = "PeerSelector::kube_apiserver")]
    pub api_server: PeerSelector,
    /// Further pods allowed on the client port 2379.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_clients: Vec<PeerSelector>,
    /// Pods allowed on the metrics and health port 2381 (monitoring); none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<PeerSelector>,
}

fn default_true() -> bool {
    true
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            api_server: PeerSelector::kube_apiserver(),
            additional_clients: Vec::new(),
            monitoring: None,
        }
    }
}

/// Pods selected by namespace labels and pod labels (both must match).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerSelector {
    /// Namespaces of the pods; unset means the StoreCluster's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels of the pods; unset means every pod of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

impl PeerSelector {
    /// kube-apiserver static pods: `component: kube-apiserver` in `kube-system`.
    pub fn kube_apiserver() -> Self {
        let labels = |key: &str, value: &str| LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
            ..LabelSelector::default()
        };
        Self {
            namespace_selector: Some(labels("kubernetes.io/metadata.name", "kube-system")),
            pod_selector: Some(labels("component", "kube-apiserver")),
        }
    }
}

/// Scheduling settings applied to the member pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Affinity of the member pods; default: members prefer different nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the member pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node labels the member pods require.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// PriorityClass of the member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra labels on the member pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the member pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Server settings, passed to every member as etcd's flags of the same meaning.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.heartbeatIntervalMs) || !has(self.electionTimeoutMs) || self.electionTimeoutMs >= 5 * self.heartbeatIntervalMs").message("config.electionTimeoutMs must be at least 5 times config.heartbeatIntervalMs"))]
pub struct StoreConfig {
    /// Backend size at which the NOSPACE alarm is raised (`--quota-backend-bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub quota_backend_bytes: Option<i64>,
    /// `periodic` or `revision` (`--auto-compaction-mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction_mode: Option<AutoCompactionMode>,
    /// What compaction keeps: a duration such as `1h` (periodic) or a revision count
    /// (`--auto-compaction-retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction_retention: Option<String>,
    /// Leader heartbeat interval in milliseconds (`--heartbeat-interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 10000))]
    pub heartbeat_interval_ms: Option<i32>,
    /// Election timeout in milliseconds (`--election-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 50000))]
    pub election_timeout_ms: Option<i32>,
}

/// etcd's auto-compaction modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoCompactionMode {
    /// Keep a time window of history.
    Periodic,
    /// Keep a number of revisions of history.
    Revision,
}
