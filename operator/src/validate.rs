//! Validation of a StoreCluster beyond what its CEL rules can say (names that fit Kubernetes'
//! limits, a usable image, consistent TLS settings, a backup schedule the CronJob controller
//! accepts), producing the [`ValidatedCluster`] every
//! builder takes. Pure: no client, unit-tested from YAML.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use oxcd_crds::{RestoredFrom, StoreCluster, StoreClusterSpec, TlsMode};

use crate::names::Names;

/// Longest StoreCluster name: StatefulSet pods get a `controller-revision-hash` label of the
/// StatefulSet name plus 11 characters, and label values stop at 63.
pub const MAX_NAME_LEN: usize = 52;

/// Operator-wide settings the builders need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Repository of the oxcd image; the tag is the StoreCluster's version.
    pub image_repository: String,
    /// Namespace the operator runs in (its pods may reach the members' client port).
    pub operator_namespace: String,
    /// How long a member restarted onto a new pod template may take to become ready before
    /// the rollout halts as stalled.
    pub rollout_stall_after: jiff::SignedDuration,
}

/// Where the certificates of each role come from, when TLS is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSecretNames {
    /// Server certificate of the members (2379).
    pub server: String,
    /// Peer certificate of the members (2380).
    pub peer: String,
    /// Client certificate for kube-apiserver and the operator.
    pub client: String,
}

/// A StoreCluster that passed validation, with everything derived from it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCluster {
    /// Names of the children.
    pub names: Names,
    /// The StoreCluster's uid (owner references).
    pub uid: String,
    /// metadata.generation, for observedGeneration.
    pub generation: Option<i64>,
    /// The validated spec.
    pub spec: StoreClusterSpec,
    /// The member image.
    pub image: String,
    /// Certificate Secrets, or `None` when TLS is disabled.
    pub tls: Option<TlsSecretNames>,
    /// Operator-wide settings.
    pub settings: Settings,
    /// The snapshot pinned for `spec.bootstrap.restore` (`status.restoredFrom`), once pinned:
    /// what the first member restores.
    pub restored_from: Option<RestoredFrom>,
}

impl ValidatedCluster {
    /// Whether members talk TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The owner reference every child carries (controller, blocking deletion of the owner in
    /// foreground deletion).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!("{}/{}", oxcd_crds::GROUP, oxcd_crds::VERSION),
            kind: StoreCluster::kind(&()).into_owned(),
            name: self.names.cluster.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Number of voters needed for quorum at the desired size.
    pub fn quorum(&self) -> i32 {
        self.spec.replicas / 2 + 1
    }
}

/// Why a StoreCluster cannot be carried out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    /// metadata.name or namespace missing (never true of a stored object).
    #[error("the StoreCluster has no name, namespace or uid")]
    MissingMetadata,
    /// The name is too long for the pods' labels.
    #[error("metadata.name {name:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong {
        /// The name.
        name: String,
    },
    /// replicas out of range (CEL refuses this too; checked again for objects stored earlier).
    #[error("spec.replicas {replicas} must be odd and between 1 and 7")]
    Replicas {
        /// The value.
        replicas: i32,
    },
    /// The image has no tag or digest and cannot be derived.
    #[error("spec.image {image:?} is not a valid image reference")]
    Image {
        /// The value.
        image: String,
    },
    /// The backup schedule is not a five-field cron schedule or a macro Kubernetes knows.
    #[error("spec.backup.schedule {schedule:?} is not a valid cron schedule: {why}")]
    BackupSchedule {
        /// The value.
        schedule: String,
        /// What the cron parser said.
        why: String,
    },
    /// The retention's maximum age is zero.
    #[error("spec.backup.retention.maxAge {max_age:?} must be longer than zero")]
    RetentionAge {
        /// The value.
        max_age: String,
    },
    /// A TLS mode's settings are missing.
    #[error("spec.tls.{field} is required when spec.tls.mode is {mode:?}")]
    TlsSettings {
        /// The missing field.
        field: &'static str,
        /// The mode.
        mode: TlsMode,
    },
}

/// Validates `cluster` and derives what the builders need.
pub fn validate(
    cluster: &StoreCluster,
    settings: &Settings,
) -> Result<ValidatedCluster, ValidationError> {
    let meta = &cluster.metadata;
    let (Some(name), Some(namespace), Some(uid)) = (&meta.name, &meta.namespace, &meta.uid) else {
        return Err(ValidationError::MissingMetadata);
    };
    if name.len() > MAX_NAME_LEN {
        return Err(ValidationError::NameTooLong { name: name.clone() });
    }
    let spec = &cluster.spec;
    if !(1..=7).contains(&spec.replicas) || spec.replicas % 2 == 0 {
        return Err(ValidationError::Replicas {
            replicas: spec.replicas,
        });
    }
    let image = match &spec.image {
        Some(image) if image.trim().is_empty() || image.contains(char::is_whitespace) => {
            return Err(ValidationError::Image {
                image: image.clone(),
            });
        }
        Some(image) => image.clone(),
        None => format!(
            "{}:{}",
            settings.image_repository,
            spec.version.trim_start_matches('v')
        ),
    };
    if let Some(backup) = &spec.backup {
        check_schedule(&backup.schedule)?;
        let age = backup.retention.as_ref().and_then(|r| r.max_age.as_ref());
        if let Some(age) = age.filter(|age| !age.chars().any(|c| ('1'..='9').contains(&c))) {
            return Err(ValidationError::RetentionAge {
                max_age: age.clone(),
            });
        }
    }
    let names = Names::new(name, namespace);
    let tls = tls_secret_names(spec, &names)?;
    Ok(ValidatedCluster {
        names,
        uid: uid.clone(),
        generation: meta.generation,
        spec: spec.clone(),
        image,
        tls,
        settings: settings.clone(),
        restored_from: cluster
            .status
            .as_ref()
            .and_then(|status| status.restored_from.clone()),
    })
}

fn check_schedule(schedule: &str) -> Result<(), ValidationError> {
    crate::cron::check_schedule(schedule).map_err(|why| ValidationError::BackupSchedule {
        schedule: schedule.to_owned(),
        why,
    })
}

fn tls_secret_names(
    spec: &StoreClusterSpec,
    names: &Names,
) -> Result<Option<TlsSecretNames>, ValidationError> {
    let mode = spec.tls.mode;
    Ok(match mode {
        TlsMode::Disabled => None,
        TlsMode::Operator | TlsMode::CertManager => {
            if mode == TlsMode::CertManager && spec.tls.cert_manager.is_none() {
                return Err(ValidationError::TlsSettings {
                    field: "certManager",
                    mode,
                });
            }
            Some(TlsSecretNames {
                server: names.server_secret(),
                peer: names.peer_secret(),
                client: names.client_secret(),
            })
        }
        TlsMode::Secrets => {
            let secrets = spec
                .tls
                .secrets
                .as_ref()
                .ok_or(ValidationError::TlsSettings {
                    field: "secrets",
                    mode,
                })?;
            Some(TlsSecretNames {
                server: secrets.server.clone(),
                peer: secrets.peer.clone(),
                client: secrets.client.clone(),
            })
        }
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! StoreClusters from YAML, as the tests of every builder use them.
    use super::*;

    /// Operator settings of the tests.
    pub fn settings() -> Settings {
        Settings {
            image_repository: "oxcd.local/oxcd".to_owned(),
            operator_namespace: "oxcd-system".to_owned(),
            rollout_stall_after: crate::rollout::STALL_AFTER,
        }
    }

    /// A StoreCluster from YAML (metadata filled in when absent).
    pub fn cluster(yaml: &str) -> StoreCluster {
        let mut value: serde_json::Value =
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|error| panic!("fixture: {error}"));
        if let Some(object) = value.as_object_mut() {
            object
                .entry("apiVersion")
                .or_insert("oxcd.io/v1alpha1".into());
            object.entry("kind").or_insert("StoreCluster".into());
            object.entry("metadata").or_insert(serde_json::json!({}));
        }
        let mut cluster: StoreCluster =
            serde_json::from_value(value).unwrap_or_else(|error| panic!("fixture: {error}"));
        let meta = &mut cluster.metadata;
        meta.name.get_or_insert_with(|| "demo".to_owned());
        meta.namespace.get_or_insert_with(|| "prod".to_owned());
        meta.uid.get_or_insert_with(|| "0b7c-uid".to_owned());
        meta.generation.get_or_insert(1);
        cluster
    }

    /// A validated StoreCluster from YAML.
    pub fn validated(yaml: &str) -> ValidatedCluster {
        validate(&cluster(yaml), &settings()).unwrap_or_else(|error| panic!("invalid: {error}"))
    }

    /// The minimal StoreCluster of deploy/examples.
    pub const MINIMAL: &str = "
apiVersion: oxcd.io/v1alpha1
kind: StoreCluster
metadata: {name: demo, namespace: prod}
spec: {version: 0.1.0}
";
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn minimal_cluster_gets_the_versioned_image_and_operator_tls() {
        let cluster = validated(MINIMAL);
        assert_eq!(cluster.image, "oxcd.local/oxcd:0.1.0");
        assert_eq!(
            cluster.tls.as_ref().map(|t| t.client.as_str()),
            Some("demo-client-tls")
        );
        assert_eq!(cluster.quorum(), 2);
        let owner = cluster.owner_reference();
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StoreCluster", Some(true))
        );
    }

    #[test]
    fn even_replicas_stored_before_the_cel_rule_are_refused() {
        let mut sc = cluster(MINIMAL);
        sc.spec.replicas = 2;
        assert_eq!(
            validate(&sc, &settings()),
            Err(ValidationError::Replicas { replicas: 2 })
        );
    }

    #[test]
    fn long_names_are_refused() {
        let mut sc = cluster(MINIMAL);
        sc.metadata.name = Some("x".repeat(53));
        assert!(matches!(
            validate(&sc, &settings()),
            Err(ValidationError::NameTooLong { .. })
        ));
    }

    #[test]
    fn secrets_mode_uses_the_users_secrets() {
        let cluster = validated(
            "
spec:
  version: 0.1.0
  tls: {mode: Secrets, secrets: {server: s, peer: p, client: c}}
",
        );
        let tls = cluster.tls.unwrap_or_else(|| panic!("tls"));
        assert_eq!((tls.server.as_str(), tls.peer.as_str()), ("s", "p"));
    }

    #[test]
    fn a_backup_with_a_bad_schedule_or_a_zero_age_is_refused() {
        let spec = |schedule: &str, age: &str| {
            format!(
                "
spec:
  version: 0.1.0
  backup:
    schedule: '{schedule}'
    s3: {{bucket: snapshots}}
    retention: {{maxAge: '{age}'}}
"
            )
        };
        assert!(matches!(
            validate(&cluster(&spec("0 0 * *", "30d")), &settings()),
            Err(ValidationError::BackupSchedule { .. })
        ));
        assert_eq!(
            validate(&cluster(&spec("@daily", "0d0h")), &settings()),
            Err(ValidationError::RetentionAge {
                max_age: "0d0h".to_owned()
            })
        );
        assert!(validate(&cluster(&spec("@daily", "1d12h")), &settings()).is_ok());
    }

    #[test]
    fn disabled_tls_has_no_secrets_and_an_explicit_image_wins() {
        let cluster = validated(
            "
spec: {version: 0.1.0, image: 'registry.example/oxcd@sha256:abc', tls: {mode: Disabled}}
",
        );
        assert!(cluster.tls.is_none());
        assert_eq!(cluster.image, "registry.example/oxcd@sha256:abc");
    }
}
