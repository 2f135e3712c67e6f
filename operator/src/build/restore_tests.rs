//! The restore-source Job and the members' restore init container, from YAML fixtures.

use super::*;
use crate::build::build_statefulset;
use crate::validate::fixtures::{MINIMAL, cluster, settings, validated};
use crate::validate::validate;

const LATEST: &str = "
spec:
  version: 0.1.0
  bootstrap:
    restore:
      source:
        s3:
          bucket: backups
          endpoint: http://s3:9000
          forcePathStyle: true
          credentialsSecretRef: {name: s3-credentials}
          latest: true
";

/// `LATEST` with `status.restoredFrom` pinned to `key`.
fn pinned(key: &str) -> ValidatedCluster {
    let mut sc = cluster(LATEST);
    sc.status = Some(oxcd_crds::StoreClusterStatus {
        restored_from: Some(oxcd_crds::RestoredFrom {
            bucket: "backups".to_owned(),
            key: key.to_owned(),
            revision: 42,
            size: 4096,
            sha256: "ab".repeat(32),
        }),
        ..Default::default()
    });
    validate(&sc, &settings()).unwrap_or_else(|error| panic!("invalid: {error}"))
}

fn pod(job: &Job) -> PodSpec {
    job.spec
        .as_ref()
        .and_then(|spec| spec.template.spec.clone())
        .unwrap_or_default()
}

fn env(container: &Container) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.clone(), var.value.clone().unwrap_or_default()))
        .collect()
}

fn has(vars: &[(String, String)], name: &str, value: &str) -> bool {
    vars.iter().any(|(n, v)| n == name && v == value)
}

#[test]
fn the_source_job_resolves_latest_under_the_default_prefix_and_reports_through_its_message() {
    let job = build_restore_source_job(&validated(LATEST))
        .unwrap_or_else(|| panic!("a restore is declared"));
    assert_eq!(job.metadata.name.as_deref(), Some("demo-restore-source"));
    assert_eq!(
        job.metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("StoreCluster")
    );
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("oxcd-restore"),
        "no member selector may pick the Job's pod"
    );
    let pod = pod(&job);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let container = &pod.containers[0];
    assert_eq!(container.name, SOURCE_CONTAINER);
    assert_eq!(
        container.args.clone().unwrap_or_default(),
        [
            "snapshot",
            "download",
            "--s3-latest",
            "--result-file",
            "/dev/termination-log",
            "/tmp/snapshot"
        ]
    );
    assert_eq!(
        container.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    let vars = env(container);
    assert!(has(&vars, "OXCD_S3_BUCKET", "backups"));
    assert!(has(&vars, "OXCD_S3_PREFIX", "prod/demo"));
    assert!(has(&vars, "OXCD_S3_ENDPOINT", "http://s3:9000"));
    assert!(has(&vars, "OXCD_S3_FORCE_PATH_STYLE", "true"));
    assert!(has(
        &vars,
        "OXCD_S3_CREDENTIALS_DIR",
        "/etc/oxcd/s3-credentials"
    ));
    let volumes = pod.volumes.unwrap_or_default();
    assert!(volumes.iter().any(
        |v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("s3-credentials")
    ));
}

#[test]
fn a_declared_key_is_downloaded_by_key_and_no_restore_means_no_job() {
    let yaml = LATEST.replace("latest: true", "key: prod/demo/x-r9.snapshot");
    let job = build_restore_source_job(&validated(&yaml))
        .unwrap_or_else(|| panic!("a restore is declared"));
    let args = pod(&job).containers[0].args.clone().unwrap_or_default();
    assert_eq!(args[2..4], ["--s3-key", "prod/demo/x-r9.snapshot"]);
    assert!(build_restore_source_job(&validated(MINIMAL)).is_none());
}

#[test]
fn members_restore_the_pinned_key_only_into_an_empty_data_dir_of_a_new_cluster() {
    let sts = build_statefulset(&pinned("prod/demo/20261124T000000Z-r42.snapshot"), 1);
    let pod = sts
        .spec
        .and_then(|spec| spec.template.spec)
        .unwrap_or_default();
    let init = pod.init_containers.clone().unwrap_or_default();
    assert_eq!(init.len(), 1);
    let restore = &init[0];
    assert_eq!(restore.name, RESTORE_CONTAINER);
    let args = restore.args.clone().unwrap_or_default().join(" ");
    for expected in [
        "snapshot restore --s3-key prod/demo/20261124T000000Z-r42.snapshot",
        "--data-dir /var/lib/oxcd/data",
        "--name $(ETCD_NAME)",
        "--initial-cluster $(ETCD_INITIAL_CLUSTER)",
        "--initial-cluster-token $(ETCD_INITIAL_CLUSTER_TOKEN)",
        "--initial-advertise-peer-urls $(ETCD_INITIAL_ADVERTISE_PEER_URLS)",
        "--initial-cluster-state $(ETCD_INITIAL_CLUSTER_STATE)",
        "--skip-if-not-empty",
    ] {
        assert!(args.contains(expected), "{expected:?} missing from {args}");
    }
    // The same flags as the member: its env and the bootstrap ConfigMap.
    let main = &pod.containers[0];
    assert_eq!(restore.env_from, main.env_from);
    let vars = env(restore);
    for (name, value) in env(main) {
        assert!(
            has(&vars, &name, &value),
            "{name} differs from the member's"
        );
    }
    assert!(has(&vars, "OXCD_S3_BUCKET", "backups"));
    let mounts: Vec<String> = restore
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(mounts.contains(&"/var/lib/oxcd".to_owned()), "{mounts:?}");
    assert!(mounts.contains(&"/etc/oxcd/s3-credentials".to_owned()));
    let volumes = pod.volumes.unwrap_or_default();
    assert!(volumes.iter().any(|v| v.name == "s3-credentials"));
}

#[test]
fn members_have_no_restore_init_container_before_the_pin_or_without_a_restore() {
    for cluster in [validated(LATEST), validated(MINIMAL)] {
        let sts = build_statefulset(&cluster, 1);
        let pod = sts
            .spec
            .and_then(|spec| spec.template.spec)
            .unwrap_or_default();
        assert!(pod.init_containers.is_none());
    }
}
