//! `spec.bootstrap` and `status.restoredFrom` of a StoreCluster: a new cluster whose first
//! member starts from a snapshot in S3 (a key, or the newest under a prefix) instead of empty.
//! The operator pins the object (resolving `latest`, verifying size and SHA-256) before any
//! member exists, records it in `status.restoredFrom`, and the first member restores exactly
//! that object; the other members join it as learners.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::S3Spec;

/// How a new cluster starts. Set only when the StoreCluster is created, and never changed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec.bootstrap is immutable"))]
pub struct BootstrapSpec {
    /// Start from a snapshot instead of an empty store.
    pub restore: RestoreSpec,
}

/// A restore of a snapshot into a new cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// Where the snapshot is.
    pub source: RestoreSource,
}

/// Where the snapshot to restore is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// A snapshot uploaded by `oxcd snapshot upload` (or a backup of a StoreCluster).
    pub s3: S3RestoreSource,
}

/// A snapshot object in S3: the bucket settings of backups, and the object's `key` or
/// `latest: true` (the newest snapshot under `prefix`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.key) != (has(self.latest) && self.latest)").message("bootstrap.restore.source.s3 needs exactly one of key or latest: true"))]
pub struct S3RestoreSource {
    /// The bucket, prefix (default `<namespace>/<name>`, where this StoreCluster's backups
    /// go), endpoint, credentials and encryption, as in `spec.backup.s3`.
    #[serde(flatten)]
    pub location: S3Spec,
    /// Key of the snapshot object (absolute in the bucket, as `status.backup.lastKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,
    /// Restore the newest snapshot under `prefix`, resolved once when the cluster is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<bool>,
}

/// The snapshot a StoreCluster was restored from, pinned before its first member started.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredFrom {
    /// Bucket of the snapshot object.
    pub bucket: String,
    /// Key of the snapshot object.
    pub key: String,
    /// Store revision of the snapshot: the restored cluster serves it, and continues above it.
    pub revision: i64,
    /// Size in bytes of the snapshot object.
    pub size: i64,
    /// Lower-case hex SHA-256 of the snapshot object, verified before the restore.
    pub sha256: String,
}
