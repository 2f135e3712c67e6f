//! The StatefulSet of the members: identity from the pod name, data on a PVC, etcd-compatible
//! flags as environment variables, probes on the metrics port, a locked-down security context
//! and members spread over nodes. Its replica count is the membership's size, which the
//! operator changes one member at a time; the pod template depends only on the spec (and, for
//! a restored cluster, on the snapshot pinned in its status, which never changes).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, Volume,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use oxcd_crds::{AutoCompactionMode, ReclaimPolicy};

use super::child_meta;
use super::pod::{
    container_security_context, env, mount, pod_security_context, scratch_volume, secret_volume,
};
use crate::names::{CLIENT_PORT, METRICS_PORT, PEER_PORT};
use crate::validate::ValidatedCluster;

/// Where the data volume is mounted.
const DATA_MOUNT: &str = "/var/lib/oxcd";
/// The member's data dir: a directory on the volume (ext4 volumes have `lost+found` at the
/// root, and the data dir must start empty).
pub const DATA_DIR: &str = "/var/lib/oxcd/data";
/// Where the server and peer certificates are mounted.
const TLS_MOUNT: &str = "/etc/oxcd/tls";

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The member's flags as environment variables (`$(ETCD_NAME)` is expanded by the kubelet).
fn member_env(cluster: &ValidatedCluster) -> Vec<EnvVar> {
    let tls = cluster.tls_enabled();
    let scheme = if tls { "https" } else { "http" };
    let host = format!(
        "$(ETCD_NAME).{}.{}.svc",
        cluster.names.peer_service(),
        cluster.names.namespace
    );
    let mut vars = vec![
        env_from_field("ETCD_NAME", "metadata.name"),
        env("ETCD_DATA_DIR", DATA_DIR),
        env(
            "ETCD_LISTEN_CLIENT_URLS",
            format!("{scheme}://0.0.0.0:{CLIENT_PORT}"),
        ),
        env(
            "ETCD_ADVERTISE_CLIENT_URLS",
            format!("{scheme}://{host}:{CLIENT_PORT}"),
        ),
        env(
            "ETCD_LISTEN_PEER_URLS",
            format!("{scheme}://0.0.0.0:{PEER_PORT}"),
        ),
        env(
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            format!("{scheme}://{host}:{PEER_PORT}"),
        ),
        env(
            "ETCD_LISTEN_METRICS_URLS",
            format!("http://0.0.0.0:{METRICS_PORT}"),
        ),
        env(
            "ETCD_INITIAL_CLUSTER_TOKEN",
            format!("{}/{}", cluster.names.namespace, cluster.names.cluster),
        ),
    ];
    if tls {
        for (prefix, role) in [("ETCD_", "server"), ("ETCD_PEER_", "peer")] {
            vars.push(env(
                &format!("{prefix}CERT_FILE"),
                format!("{TLS_MOUNT}/{role}/tls.crt"),
            ));
            vars.push(env(
                &format!("{prefix}KEY_FILE"),
                format!("{TLS_MOUNT}/{role}/tls.key"),
            ));
            vars.push(env(
                &format!("{prefix}TRUSTED_CA_FILE"),
                format!("{TLS_MOUNT}/{role}/ca.crt"),
            ));
            vars.push(env(&format!("{prefix}CLIENT_CERT_AUTH"), "true"));
        }
    }
    let config = &cluster.spec.config;
    if let Some(bytes) = config.quota_backend_bytes {
        vars.push(env("ETCD_QUOTA_BACKEND_BYTES", bytes.to_string()));
    }
    if let Some(mode) = config.auto_compaction_mode {
        let mode = match mode {
            AutoCompactionMode::Periodic => "periodic",
            AutoCompactionMode::Revision => "revision",
        };
        vars.push(env("ETCD_AUTO_COMPACTION_MODE", mode));
    }
    if let Some(retention) = &config.auto_compaction_retention {
        vars.push(env("ETCD_AUTO_COMPACTION_RETENTION", retention.clone()));
    }
    if let Some(ms) = config.heartbeat_interval_ms {
        vars.push(env("ETCD_HEARTBEAT_INTERVAL", ms.to_string()));
    }
    if let Some(ms) = config.election_timeout_ms {
        vars.push(env("ETCD_ELECTION_TIMEOUT", ms.to_string()));
    }
    vars
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(METRICS_PORT),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn container(cluster: &ValidatedCluster) -> Container {
    let mut mounts = vec![
        mount("data", DATA_MOUNT, false),
        mount("tmp", "/tmp", false),
    ];
    if cluster.tls_enabled() {
        mounts.push(mount("server-tls", &format!("{TLS_MOUNT}/server"), true));
        mounts.push(mount("peer-tls", &format!("{TLS_MOUNT}/peer"), true));
    }
    Container {
        name: "oxcd".to_owned(),
        image: Some(cluster.image.clone()),
        env: Some(member_env(cluster)),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: cluster.names.bootstrap_config(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(vec![
            port("client", CLIENT_PORT),
            port("peer", PEER_PORT),
            port("metrics", METRICS_PORT),
        ]),
        // Startup allows a minute for replay and joining before liveness counts.
        startup_probe: Some(probe("/livez", 2, 30)),
        liveness_probe: Some(probe("/livez", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        resources: cluster.spec.resources.clone(),
        // A member that exits names why in its last log lines; kept as the termination message,
        // the operator reads them (a member that lost its data is replaced from its refusal).
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(mounts),
        security_context: Some(container_security_context()),
        ..Container::default()
    }
}

/// Members prefer different nodes unless the spec says otherwise.
fn default_affinity(cluster: &ValidatedCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(cluster.names.selector_labels()),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn volumes(cluster: &ValidatedCluster) -> Vec<Volume> {
    let mut volumes = vec![scratch_volume("tmp")];
    if let Some(tls) = &cluster.tls {
        volumes.push(secret_volume("server-tls", &tls.server));
        volumes.push(secret_volume("peer-tls", &tls.peer));
    }
    volumes
}

fn pod_template(cluster: &ValidatedCluster) -> PodTemplateSpec {
    let overrides = &cluster.spec.pod_template;
    let mut labels = overrides.labels.clone();
    labels.extend(cluster.names.labels());
    let non_empty = |map: &BTreeMap<String, String>| (!map.is_empty()).then(|| map.clone());
    let main = container(cluster);
    let mut volumes = volumes(cluster);
    // A restored cluster's first member starts from the pinned snapshot (see `restore`).
    let init_containers = super::restore::build_restore_init_container(
        cluster,
        main.env.clone().unwrap_or_default(),
        main.env_from.clone().unwrap_or_default(),
        vec![
            mount("data", DATA_MOUNT, false),
            mount("tmp", "/tmp", false),
        ],
        DATA_DIR,
        DATA_MOUNT,
    )
    .map(|(restore, needs)| {
        volumes.extend(needs);
        vec![restore]
    });
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: non_empty(&overrides.annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(cluster.names.statefulset()),
            automount_service_account_token: Some(false),
            init_containers,
            containers: vec![main],
            volumes: Some(volumes),
            affinity: Some(
                overrides
                    .affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(cluster)),
            ),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            node_selector: non_empty(&overrides.node_selector),
            priority_class_name: overrides.priority_class_name.clone(),
            termination_grace_period_seconds: Some(30),
            security_context: Some(pod_security_context()),
            ..PodSpec::default()
        }),
    }
}

fn volume_claim(cluster: &ValidatedCluster) -> PersistentVolumeClaim {
    let storage = &cluster.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(cluster.names.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The StatefulSet running `members` pods (the membership's size, not necessarily the spec's).
pub fn build_statefulset(cluster: &ValidatedCluster, members: i32) -> StatefulSet {
    let when_deleted = match cluster.spec.storage.reclaim_policy {
        ReclaimPolicy::Retain => "Retain",
        ReclaimPolicy::Delete => "Delete",
    };
    StatefulSet {
        metadata: child_meta(cluster, cluster.names.statefulset()),
        spec: Some(StatefulSetSpec {
            replicas: Some(members),
            service_name: Some(cluster.names.peer_service()),
            // Members of a new cluster must start together: none is ready before a quorum is.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(cluster.names.selector_labels()),
                ..LabelSelector::default()
            },
            template: pod_template(cluster),
            // Pods change only when the operator deletes them: one at a time, each once the
            // cluster is healthy and caught up, the leader last (see `rollout`).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            volume_claim_templates: Some(vec![volume_claim(cluster)]),
            // A member removed by scale-in must not come back with its old data.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(when_deleted.to_owned()),
                    when_scaled: Some("Delete".to_owned()),
                },
            ),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
