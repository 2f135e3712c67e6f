//! The CRD YAML in the repository matches the types, and the CEL rules in it accept and refuse
//! what they should (evaluated client-side by kube's CEL engine; the API server itself is
//! exercised by the operator's integration tests).

use oxcd_crds::{CRD_FILE_NAME, StoreCluster, crd_yaml};

fn committed(dir: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join(CRD_FILE_NAME);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn committed_crd_yaml_matches_the_types() {
    let generated = crd_yaml().unwrap_or_else(|error| panic!("render: {error}"));
    for dir in ["crds", "charts/oxcd-operator/crds"] {
        assert!(
            committed(dir) == generated,
            "{dir}/{CRD_FILE_NAME} drifted from crds/src: run `cargo run -p oxcd-crds --bin crdgen`"
        );
    }
}

#[test]
fn generated_schema_has_no_unsigned_formats_and_every_field_is_described() {
    let yaml = crd_yaml().unwrap_or_else(|error| panic!("render: {error}"));
    assert!(
        !yaml.contains("format: uint"),
        "unsigned formats left in the schema"
    );
    let crd: serde_json::Value =
        serde_yaml_ng::from_str(&yaml).unwrap_or_else(|error| panic!("parse: {error}"));
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let properties = spec["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("spec has no properties"));
    for (name, field) in properties {
        assert!(
            field.get("description").is_some(),
            "spec.{name} has no description (kubectl explain would be empty)"
        );
    }
}

fn cluster(yaml: &str) -> StoreCluster {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|error| panic!("fixture: {error}"))
}

const MINIMAL: &str = "
apiVersion: oxcd.io/v1alpha1
kind: StoreCluster
metadata: {name: demo, namespace: default}
spec: {version: 0.1.0}
";

#[test]
fn minimal_spec_gets_three_members_operator_tls_and_a_policy() {
    let sc = cluster(MINIMAL);
    assert_eq!(sc.spec.replicas, 3);
    assert_eq!(sc.spec.tls.mode, oxcd_crds::TlsMode::Operator);
    assert!(sc.spec.network_policy.enabled);
    assert_eq!(sc.spec.storage.size, "8Gi");
    assert!(sc.validate_cel().is_ok(), "{:?}", sc.validate_cel());
}

#[test]
fn even_replicas_are_refused() {
    let mut sc = cluster(MINIMAL);
    sc.spec.replicas = 4;
    let errors = format!("{:?}", sc.validate_cel());
    assert!(errors.contains("replicas must be odd"), "{errors}");
}

#[test]
fn tls_mode_cannot_change() {
    let old = cluster(MINIMAL);
    let mut new = old.clone();
    new.spec.tls.mode = oxcd_crds::TlsMode::Disabled;
    let errors = format!("{:?}", new.validate_cel_update(&old));
    assert!(errors.contains("tls.mode is immutable"), "{errors}");
    assert!(old.validate_cel_update(&old.clone()).is_ok());
}

#[test]
fn secrets_mode_needs_the_secret_names() {
    let mut sc = cluster(MINIMAL);
    sc.spec.tls.mode = oxcd_crds::TlsMode::Secrets;
    let errors = format!("{:?}", sc.validate_cel());
    assert!(errors.contains("tls.secrets is required"), "{errors}");
}

#[test]
fn election_timeout_must_be_five_heartbeats() {
    let mut sc = cluster(MINIMAL);
    sc.spec.config.heartbeat_interval_ms = Some(100);
    sc.spec.config.election_timeout_ms = Some(400);
    let errors = format!("{:?}", sc.validate_cel());
    assert!(errors.contains("at least 5 times"), "{errors}");
    sc.spec.config.election_timeout_ms = Some(500);
    assert!(sc.validate_cel().is_ok());
}

#[test]
fn version_moves_one_minor_at_a_time_and_down_only_when_allowed() {
    let at = |version: &str, allow_downgrade: Option<bool>| {
        let mut sc = cluster(MINIMAL);
        sc.spec.version = version.to_owned();
        sc.spec.allow_downgrade = allow_downgrade;
        sc
    };
    let refused = |from: &StoreCluster, to: &StoreCluster| {
        format!("{:?}", to.validate_cel_update(from)).contains("may change to another patch")
    };
    let old = at("0.1.0", None);
    for allowed in ["0.1.0", "0.1.7", "0.2.0", "v0.2.1"] {
        let new = at(allowed, None);
        assert!(
            !refused(&old, &new),
            "0.1.0 → {allowed}: {:?}",
            new.validate_cel_update(&old)
        );
    }
    for skew in ["0.3.0", "1.1.0", "0.0.9"] {
        assert!(refused(&old, &at(skew, None)), "0.1.0 → {skew} accepted");
    }
    let running = at("0.2.3", None);
    assert!(
        refused(&running, &at("0.1.0", None)),
        "silent downgrade accepted"
    );
    assert!(refused(&running, &at("0.1.0", Some(false))));
    assert!(
        !refused(&running, &at("0.1.9", Some(true))),
        "explicit downgrade refused"
    );
    assert!(
        refused(&running, &at("0.0.9", Some(true))),
        "two-minor downgrade accepted"
    );
}

const WITH_BACKUP: &str = "
apiVersion: oxcd.io/v1alpha1
kind: StoreCluster
metadata: {name: demo, namespace: default}
spec:
  version: 0.1.0
  backup:
    schedule: '0 */6 * * *'
    s3: {bucket: snapshots, sse: {mode: SSE-KMS, kmsKeyId: alias/oxcd}}
    retention: {maxCount: 7}
";

#[test]
fn a_backup_with_kms_encryption_and_a_count_retention_is_accepted() {
    let sc = cluster(WITH_BACKUP);
    assert!(sc.validate_cel().is_ok(), "{:?}", sc.validate_cel());
}

#[test]
fn sse_settings_must_fit_the_mode() {
    let mut sc = cluster(WITH_BACKUP);
    let sse = sc
        .spec
        .backup
        .as_mut()
        .and_then(|b| b.s3.sse.as_mut())
        .unwrap_or_else(|| panic!("fixture has sse"));
    sse.mode = oxcd_crds::SseMode::SseC;
    let errors = format!("{:?}", sc.validate_cel());
    assert!(errors.contains("kmsKeyId needs mode SSE-KMS"), "{errors}");
    assert!(
        errors.contains("customerKeySecretRef is required"),
        "{errors}"
    );
}

#[test]
fn a_retention_without_limits_and_a_schedule_with_a_time_zone_are_refused() {
    let mut sc = cluster(WITH_BACKUP);
    let backup = sc
        .spec
        .backup
        .as_mut()
        .unwrap_or_else(|| panic!("fixture has a backup"));
    backup.retention = Some(oxcd_crds::RetentionSpec {
        max_count: None,
        max_age: None,
    });
    backup.schedule = "CRON_TZ=UTC 0 * * * *".to_owned();
    let errors = format!("{:?}", sc.validate_cel());
    assert!(errors.contains("needs maxCount or maxAge"), "{errors}");
    assert!(errors.contains("set backup.timeZone"), "{errors}");
}

const RESTORED: &str = "
apiVersion: oxcd.io/v1alpha1
kind: StoreCluster
metadata: {name: demo, namespace: default}
spec:
  version: 0.1.0
  bootstrap:
    restore:
      source:
        s3: {bucket: backups, endpoint: 'http://s3:9000', forcePathStyle: true, latest: true}
";

fn restore_source(sc: &mut StoreCluster) -> &mut oxcd_crds::S3RestoreSource {
    &mut sc
        .spec
        .bootstrap
        .as_mut()
        .unwrap_or_else(|| panic!("fixture has a bootstrap"))
        .restore
        .source
        .s3
}

#[test]
fn a_restore_source_reuses_the_backup_bucket_settings_and_names_key_or_latest() {
    let mut sc = cluster(RESTORED);
    assert!(sc.validate_cel().is_ok(), "{:?}", sc.validate_cel());
    let source = restore_source(&mut sc);
    assert_eq!(source.location.bucket, "backups");
    assert!(source.location.force_path_style);
    assert_eq!(source.latest, Some(true));

    source.key = Some("default/demo/20261124T000000Z-r42.snapshot".to_owned());
    let both = format!("{:?}", sc.validate_cel());
    assert!(both.contains("exactly one of key or latest"), "{both}");
    restore_source(&mut sc).latest = Some(false);
    assert!(sc.validate_cel().is_ok(), "{:?}", sc.validate_cel());
    restore_source(&mut sc).key = None;
    let neither = format!("{:?}", sc.validate_cel());
    assert!(
        neither.contains("exactly one of key or latest"),
        "{neither}"
    );
}

#[test]
fn bootstrap_is_set_at_creation_only_and_never_changes() {
    let plain = cluster(MINIMAL);
    let restored = cluster(RESTORED);
    let added = format!("{:?}", restored.validate_cel_update(&plain));
    assert!(
        added.contains("only when the StoreCluster is created"),
        "{added}"
    );
    let removed = format!("{:?}", plain.validate_cel_update(&restored));
    assert!(
        removed.contains("only when the StoreCluster is created"),
        "{removed}"
    );

    let mut changed = restored.clone();
    restore_source(&mut changed).location.bucket = "other".to_owned();
    let errors = format!("{:?}", changed.validate_cel_update(&restored));
    assert!(errors.contains("spec.bootstrap is immutable"), "{errors}");

    let mut scaled = restored.clone();
    scaled.spec.replicas = 5;
    assert!(
        scaled.validate_cel_update(&restored).is_ok(),
        "{:?}",
        scaled.validate_cel_update(&restored)
    );
}
