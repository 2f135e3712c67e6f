//! The StatefulSet builder from YAML fixtures: identity, flags, probes, security, placement,
//! volumes and the PVC retention policy.

use super::*;
use crate::validate::fixtures::{MINIMAL, validated};

fn pod_spec(sts: &StatefulSet) -> PodSpec {
    sts.spec
        .as_ref()
        .and_then(|spec| spec.template.spec.clone())
        .unwrap_or_default()
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|var| var.name == name)
        .and_then(|var| var.value.clone())
}

#[test]
fn members_take_their_name_from_the_pod_and_advertise_through_the_peer_service() {
    let sts = build_statefulset(&validated(MINIMAL), 3);
    let spec = sts.spec.clone().unwrap_or_default();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peer"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let container = &pod_spec(&sts).containers[0];
    let name = container.env.as_ref().and_then(|env| env.first().cloned());
    let field = name
        .and_then(|var| var.value_from)
        .and_then(|source| source.field_ref)
        .map(|field| field.field_path);
    assert_eq!(field.as_deref(), Some("metadata.name"));
    assert_eq!(
        env_value(container, "ETCD_ADVERTISE_CLIENT_URLS").as_deref(),
        Some("https://$(ETCD_NAME).demo-peer.prod.svc:2379")
    );
    assert_eq!(
        env_value(container, "ETCD_INITIAL_ADVERTISE_PEER_URLS").as_deref(),
        Some("https://$(ETCD_NAME).demo-peer.prod.svc:2380")
    );
    assert_eq!(
        env_value(container, "ETCD_DATA_DIR").as_deref(),
        Some(DATA_DIR)
    );
    assert_eq!(container.image.as_deref(), Some("oxcd.local/oxcd:0.1.0"));
    let from = container.env_from.clone().unwrap_or_default();
    assert_eq!(
        from[0].config_map_ref.as_ref().map(|c| c.name.as_str()),
        Some("demo-bootstrap")
    );
}

#[test]
fn tls_flags_point_at_mounted_secrets_and_require_client_certificates() {
    let sts = build_statefulset(&validated(MINIMAL), 3);
    let pod = pod_spec(&sts);
    let container = &pod.containers[0];
    assert_eq!(
        env_value(container, "ETCD_CERT_FILE").as_deref(),
        Some("/etc/oxcd/tls/server/tls.crt")
    );
    assert_eq!(
        env_value(container, "ETCD_CLIENT_CERT_AUTH").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_value(container, "ETCD_PEER_CLIENT_CERT_AUTH").as_deref(),
        Some("true")
    );
    let secrets: Vec<String> = pod
        .volumes
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
        .collect();
    assert_eq!(secrets, ["demo-server-tls", "demo-peer-tls"]);
}

#[test]
fn plain_text_members_have_no_certificates() {
    let sts = build_statefulset(
        &validated("spec: {version: 0.1.0, tls: {mode: Disabled}}"),
        3,
    );
    let pod = pod_spec(&sts);
    let container = &pod.containers[0];
    assert_eq!(env_value(container, "ETCD_CERT_FILE"), None);
    assert_eq!(
        env_value(container, "ETCD_LISTEN_CLIENT_URLS").as_deref(),
        Some("http://0.0.0.0:2379")
    );
    assert_eq!(pod.volumes.map(|v| v.len()), Some(1));
}

#[test]
fn probes_use_livez_and_readyz_on_the_metrics_port() {
    let sts = build_statefulset(&validated(MINIMAL), 3);
    let container = pod_spec(&sts).containers[0].clone();
    let target = |probe: Option<Probe>| {
        probe
            .and_then(|p| p.http_get)
            .map(|get| (get.path.unwrap_or_default(), get.port))
    };
    assert_eq!(
        target(container.liveness_probe),
        Some(("/livez".to_owned(), IntOrString::Int(2381)))
    );
    assert_eq!(
        target(container.readiness_probe),
        Some(("/readyz".to_owned(), IntOrString::Int(2381)))
    );
    assert_eq!(
        target(container.startup_probe),
        Some(("/livez".to_owned(), IntOrString::Int(2381)))
    );
}

#[test]
fn pods_run_as_non_root_with_a_read_only_root_and_no_capabilities() {
    let pod = pod_spec(&build_statefulset(&validated(MINIMAL), 3));
    let security = pod.security_context.clone().unwrap_or_default();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let container = pod.containers[0]
        .security_context
        .clone()
        .unwrap_or_default();
    assert_eq!(container.read_only_root_filesystem, Some(true));
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(
        container.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name.as_deref(), Some("demo"));
    // Why a member exited stays readable in its status (a lost member is replaced from it).
    assert_eq!(
        pod.containers[0].termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
}

#[test]
fn members_prefer_distinct_nodes_unless_affinity_is_overridden() {
    let pod = pod_spec(&build_statefulset(&validated(MINIMAL), 3));
    let preferred = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    assert_eq!(
        preferred[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );

    let overridden = validated(
        "
spec:
  version: 0.1.0
  podTemplate:
    affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
    tolerations: [{key: dedicated, operator: Equal, value: store, effect: NoSchedule}]
    nodeSelector: {disk: ssd}
    priorityClassName: system-cluster-critical
",
    );
    let pod = pod_spec(&build_statefulset(&overridden, 3));
    let affinity = pod.affinity.unwrap_or_default();
    assert!(affinity.pod_anti_affinity.is_none() && affinity.node_affinity.is_some());
    assert_eq!(pod.tolerations.map(|t| t.len()), Some(1));
    assert_eq!(
        pod.node_selector
            .and_then(|n| n.get("disk").cloned())
            .as_deref(),
        Some("ssd")
    );
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
}

#[test]
fn volumes_follow_the_storage_spec_and_scaled_in_members_lose_their_claim() {
    let cluster = validated(
        "spec: {version: 0.1.0, storage: {storageClassName: fast, size: 20Gi, reclaimPolicy: Delete}}",
    );
    let spec = build_statefulset(&cluster, 3).spec.unwrap_or_default();
    let claim = spec.volume_claim_templates.unwrap_or_default()[0].clone();
    let claim_spec = claim.spec.unwrap_or_default();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    let size = claim_spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned());
    assert_eq!(size, Some(Quantity("20Gi".to_owned())));
    let retention = spec
        .persistent_volume_claim_retention_policy
        .unwrap_or_default();
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));

    let kept = build_statefulset(&validated(MINIMAL), 3)
        .spec
        .unwrap_or_default();
    let retention = kept
        .persistent_volume_claim_retention_policy
        .unwrap_or_default();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
}

#[test]
fn config_becomes_etcd_flags() {
    let cluster = validated(
        "
spec:
  version: 0.1.0
  config: {quotaBackendBytes: 8589934592, autoCompactionMode: periodic, autoCompactionRetention: 1h, heartbeatIntervalMs: 100, electionTimeoutMs: 1000}
",
    );
    let container = pod_spec(&build_statefulset(&cluster, 3)).containers[0].clone();
    assert_eq!(
        env_value(&container, "ETCD_QUOTA_BACKEND_BYTES").as_deref(),
        Some("8589934592")
    );
    assert_eq!(
        env_value(&container, "ETCD_AUTO_COMPACTION_MODE").as_deref(),
        Some("periodic")
    );
    assert_eq!(
        env_value(&container, "ETCD_AUTO_COMPACTION_RETENTION").as_deref(),
        Some("1h")
    );
    assert_eq!(
        env_value(&container, "ETCD_ELECTION_TIMEOUT").as_deref(),
        Some("1000")
    );
}

#[test]
fn the_pod_template_does_not_depend_on_the_member_count() {
    let cluster = validated(MINIMAL);
    let three = build_statefulset(&cluster, 3).spec.map(|s| s.template);
    let four = build_statefulset(&cluster, 4).spec.map(|s| s.template);
    assert_eq!(three, four);
}
