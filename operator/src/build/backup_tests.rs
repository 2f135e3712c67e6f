//! The backup CronJob and on-demand Job from YAML fixtures: schedule and concurrency, the
//! upload-drill-prune containers and their flags, the client certificate and S3 Secrets, the
//! locked-down pod, and the on-demand Job's name and lifetime.

use k8s_openapi::api::core::v1::EnvVar;

use super::*;
use crate::validate::fixtures::{MINIMAL, validated};

const BACKUP: &str = "
spec:
  version: 0.1.0
  backup:
    schedule: '0 */6 * * *'
    timeZone: Europe/Paris
    s3:
      bucket: snapshots
      endpoint: http://s3.storage.svc:9000
      region: eu-west-3
      forcePathStyle: true
      credentialsSecretRef: {name: s3-creds}
      sse: {mode: SSE-C, customerKeySecretRef: {name: sse-key, key: k}}
    retention: {maxCount: 7, maxAge: 30d}
";

fn cronjob(yaml: &str) -> CronJob {
    build_backup_cronjob(&validated(yaml)).unwrap_or_else(|| panic!("no CronJob"))
}

fn job_of(cronjob: &CronJob) -> JobSpec {
    cronjob
        .spec
        .as_ref()
        .and_then(|spec| spec.job_template.spec.clone())
        .unwrap_or_default()
}

fn pod_of(job: &JobSpec) -> PodSpec {
    job.template.spec.clone().unwrap_or_default()
}

fn env_map(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|EnvVar { name, value, .. }| (name.clone(), value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn no_backup_spec_means_no_cronjob_and_no_job() {
    let cluster = validated(MINIMAL);
    assert!(build_backup_cronjob(&cluster).is_none());
    assert!(build_backup_job(&cluster, "now").is_none());
}

#[test]
fn the_cronjob_runs_on_schedule_one_at_a_time_and_belongs_to_the_cluster() {
    let cronjob = cronjob(BACKUP);
    assert_eq!(cronjob.metadata.name.as_deref(), Some("demo-backup"));
    let owner = cronjob
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(owner.first().map(|o| o.kind.as_str()), Some("StoreCluster"));
    let spec = cronjob.spec.clone().unwrap_or_default();
    assert_eq!(spec.schedule, "0 */6 * * *");
    assert_eq!(spec.time_zone.as_deref(), Some("Europe/Paris"));
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let labels = cronjob.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some("demo")
    );
    // Backup pods must never match the members' selector (Services, PDB, StatefulSet).
    let pod_labels = job_of(&cronjob)
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        pod_labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("oxcd-backup")
    );
}

#[test]
fn the_pod_uploads_then_drills_then_prunes_with_the_retention() {
    let job = job_of(&cronjob(BACKUP));
    let pod = pod_of(&job);
    let init = pod.init_containers.clone().unwrap_or_default();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [UPLOAD_CONTAINER, DRILL_CONTAINER]);
    // The upload's result goes to its termination message and to the scratch volume, where
    // the drill reads the key it uploaded.
    assert_eq!(
        init[0].args.clone().unwrap_or_default(),
        [
            "snapshot",
            "upload",
            "--result-file",
            "/dev/termination-log,/tmp/oxcd-upload.json"
        ]
    );
    assert_eq!(
        init[1].args.clone().unwrap_or_default(),
        [
            "snapshot",
            "drill",
            "--upload-result",
            "/tmp/oxcd-upload.json",
            "--work-dir",
            "/tmp",
            "--result-file",
            "/dev/termination-log"
        ]
    );
    for container in &init {
        assert_eq!(container.image.as_deref(), Some("oxcd.local/oxcd:0.1.0"));
        assert_eq!(
            container.termination_message_path.as_deref(),
            Some(RESULT_FILE)
        );
        assert!(
            container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/tmp"),
            "{} shares the scratch volume",
            container.name
        );
    }
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(pod.containers[0].name, PRUNE_CONTAINER);
    assert_eq!(
        pod.containers[0].args.clone().unwrap_or_default(),
        [
            "snapshot",
            "prune",
            "--max-count",
            "7",
            "--max-age",
            "30d",
            "--result-file",
            "/dev/termination-log"
        ]
    );
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    // A failed drill or prune fails the Job instead of uploading again.
    let rules = job.pod_failure_policy.map(|p| p.rules).unwrap_or_default();
    let failing: Vec<Option<String>> = rules
        .iter()
        .map(|r| r.on_exit_codes.clone().and_then(|c| c.container_name))
        .collect();
    assert_eq!(
        failing,
        [
            Some(DRILL_CONTAINER.to_owned()),
            Some(PRUNE_CONTAINER.to_owned())
        ]
    );
    assert!(rules.iter().all(|r| r.action == "FailJob"));
}

#[test]
fn without_retention_the_drill_is_the_main_container() {
    let cronjob = cronjob(
        "
spec:
  version: 0.1.0
  backup: {schedule: '@daily', s3: {bucket: snapshots}}
",
    );
    let job = job_of(&cronjob);
    let pod = pod_of(&job);
    let init = pod.init_containers.clone().unwrap_or_default();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, UPLOAD_CONTAINER);
    assert_eq!(pod.containers[0].name, DRILL_CONTAINER);
    let rules = job.pod_failure_policy.map(|p| p.rules).unwrap_or_default();
    assert_eq!(rules.len(), 1);
    // The default prefix keeps clusters sharing a bucket apart.
    let env = env_map(&pod.containers[0]);
    assert_eq!(
        env.get("OXCD_S3_PREFIX").map(String::as_str),
        Some("prod/demo")
    );
    assert!(!env.contains_key("OXCD_S3_CREDENTIALS_DIR"));
    assert!(!env.contains_key("OXCD_S3_FORCE_PATH_STYLE"));
}

#[test]
fn s3_settings_and_member_tls_reach_every_container_as_files_and_variables() {
    let pod = pod_of(&job_of(&cronjob(BACKUP)));
    let init = pod.init_containers.clone().unwrap_or_default();
    for container in init.iter().chain(&pod.containers) {
        let env = env_map(container);
        let get = |name: &str| env.get(name).map(String::as_str);
        assert_eq!(
            get("ETCDCTL_ENDPOINTS"),
            Some(
                "https://demo-0.demo-peer.prod.svc:2379,https://demo-1.demo-peer.prod.svc:2379,\
                 https://demo-2.demo-peer.prod.svc:2379"
            )
        );
        assert_eq!(get("ETCDCTL_CERT"), Some("/etc/oxcd/client-tls/tls.crt"));
        assert_eq!(get("ETCDCTL_DIAL_TIMEOUT"), Some("60s"));
        assert_eq!(get("OXCD_S3_BUCKET"), Some("snapshots"));
        assert_eq!(get("OXCD_S3_ENDPOINT"), Some("http://s3.storage.svc:9000"));
        assert_eq!(get("OXCD_S3_REGION"), Some("eu-west-3"));
        assert_eq!(get("OXCD_S3_FORCE_PATH_STYLE"), Some("true"));
        assert_eq!(
            get("OXCD_S3_CREDENTIALS_DIR"),
            Some("/etc/oxcd/s3-credentials")
        );
        assert_eq!(get("OXCD_S3_SSE"), Some("sse-c"));
        assert_eq!(
            get("OXCD_S3_SSE_C_KEY_FILE"),
            Some("/etc/oxcd/s3-sse-c/key")
        );
        let mounts: Vec<String> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();
        for path in [
            "/tmp",
            CLIENT_TLS_MOUNT,
            "/etc/oxcd/s3-credentials",
            "/etc/oxcd/s3-sse-c",
        ] {
            assert!(mounts.iter().any(|m| m == path), "{path} not in {mounts:?}");
        }
    }
    let secret = |volume: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        secret("client-tls").secret_name.as_deref(),
        Some("demo-client-tls")
    );
    assert_eq!(
        secret("s3-credentials").secret_name.as_deref(),
        Some("s3-creds")
    );
    let key = secret("s3-sse-c").items.unwrap_or_default();
    assert_eq!((key[0].key.as_str(), key[0].path.as_str()), ("k", "key"));
}

#[test]
fn kms_encryption_passes_the_key_id_and_disabled_tls_mounts_no_certificate() {
    let pod = pod_of(&job_of(&cronjob(
        "
spec:
  version: 0.1.0
  tls: {mode: Disabled}
  backup:
    schedule: '@daily'
    s3: {bucket: snapshots, sse: {mode: SSE-KMS, kmsKeyId: alias/oxcd}}
",
    )));
    let env = env_map(&pod.containers[0]);
    assert_eq!(env.get("OXCD_S3_SSE").map(String::as_str), Some("aws-kms"));
    assert_eq!(
        env.get("OXCD_S3_SSE_KMS_KEY_ID").map(String::as_str),
        Some("alias/oxcd")
    );
    assert!(env["ETCDCTL_ENDPOINTS"].starts_with("http://demo-0."));
    assert!(!env.contains_key("ETCDCTL_CACERT"));
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "client-tls"));
}

#[test]
fn backup_pods_are_non_root_read_only_and_confined_like_the_members() {
    let pod = pod_of(&job_of(&cronjob(BACKUP)));
    let security = pod.security_context.clone().unwrap_or_default();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let init = pod.init_containers.clone().unwrap_or_default();
    for container in init.iter().chain(&pod.containers) {
        let context = container.security_context.clone().unwrap_or_default();
        assert_eq!(context.read_only_root_filesystem, Some(true));
        assert_eq!(context.allow_privilege_escalation, Some(false));
        let dropped = context
            .capabilities
            .and_then(|c| c.drop)
            .unwrap_or_default();
        assert_eq!(dropped, ["ALL"]);
    }
}

#[test]
fn the_on_demand_job_is_named_after_its_token_and_goes_a_day_after_it_finishes() {
    let cluster = validated(BACKUP);
    let job = build_backup_job(&cluster, "2026-11-24").unwrap_or_else(|| panic!("no Job"));
    assert_eq!(
        job.metadata.name,
        Some(cluster.names.backup_job("2026-11-24"))
    );
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(BACKUP_NOW_ANNOTATION).map(String::as_str),
        Some("2026-11-24")
    );
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("oxcd.io/backup").map(String::as_str),
        Some(ON_DEMAND)
    );
    let spec = job.spec.unwrap_or_default();
    assert_eq!(spec.ttl_seconds_after_finished, Some(ON_DEMAND_TTL_SECONDS));
    // Same pod as the scheduled backups.
    let scheduled = pod_of(&job_of(&cronjob(BACKUP)));
    assert_eq!(pod_of(&spec).containers, scheduled.containers);
    assert_eq!(pod_of(&spec).init_containers, scheduled.init_containers);
}
