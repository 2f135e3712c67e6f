//! `spec.backup` and `status.backup` of a StoreCluster: scheduled snapshots streamed from a
//! member into S3 (or an S3-compatible server) by a CronJob running `oxcd snapshot upload`,
//! retention applied after each upload, and what the operator observed of the last backups.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Scheduled backups: a CronJob takes a snapshot from a member, uploads it to S3 with its
/// SHA-256, then applies the retention. Annotate the StoreCluster with
/// `oxcd.io/backup-now=<any new token>` for an extra backup now.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When to back up: a five-field cron schedule (`0 */6 * * *`: minute, hour, day of month,
    /// month, day of week) or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[x_kube(validation = Rule::new("!self.contains('TZ=')").message("backup.schedule takes no TZ=: set backup.timeZone"))]
    pub schedule: String,
    /// Time zone of `schedule` (an IANA name such as `Europe/Paris`); default: the time zone
    /// of kube-controller-manager (UTC on most clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Where the snapshots are stored.
    pub s3: S3Spec,
    /// Which snapshots to keep; without it every snapshot is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
}

/// An S3 bucket (AWS or an S3-compatible server) and how to reach it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Bucket holding the snapshots.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix ("folder") of the snapshots, without a trailing slash; default:
    /// `<namespace>/<name>` of the StoreCluster, so that clusters sharing a bucket never prune
    /// each other's snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.endsWith('/') && !self.startsWith('/')").message("backup.s3.prefix must not start or end with /"))]
    pub prefix: Option<String>,
    /// Endpoint URL of an S3-compatible server (`https://minio.storage.svc:9000`); default: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("backup.s3.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// Region of the bucket; default: `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Secret in the StoreCluster's namespace with the keys `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`, mounted as files; default:
    /// the AWS SDK's standard credentials chain (e.g. web identity of the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Server-side encryption of the uploaded snapshots; default: the bucket's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<SseSpec>,
}

/// A Secret in the StoreCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the StoreCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Server-side encryption: S3-managed keys, a KMS key, or your own key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode == 'SSE-KMS' || !has(self.kmsKeyId)").message("backup.s3.sse.kmsKeyId needs mode SSE-KMS"),
    validation = Rule::new("(self.mode == 'SSE-C') == has(self.customerKeySecretRef)").message("backup.s3.sse.customerKeySecretRef is required with mode SSE-C and only then")
)]
pub struct SseSpec {
    /// `SSE-S3` (S3-managed keys), `SSE-KMS` (a KMS key) or `SSE-C` (your key, sent with
    /// every request; a restore needs the same key).
    pub mode: SseMode,
    /// KMS key id or ARN for `SSE-KMS`; default: the bucket's KMS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Secret key holding the 256-bit `SSE-C` key (32 raw bytes or their base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key_secret_ref: Option<SecretKeyRef>,
}

/// S3 server-side encryption modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseMode {
    /// Keys managed by S3 (`AES256`).
    #[serde(rename = "SSE-S3")]
    SseS3,
    /// A key in AWS KMS (`aws:kms`).
    #[serde(rename = "SSE-KMS")]
    SseKms,
    /// A customer-provided key.
    #[serde(rename = "SSE-C")]
    SseC,
}

/// Which snapshots to keep: older ones beyond `maxCount` or `maxAge` are deleted after each
/// successful upload; the newest snapshot is never deleted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxCount) || has(self.maxAge)").message("backup.retention needs maxCount or maxAge"))]
pub struct RetentionSpec {
    /// Keep at most this many snapshots (the newest ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_count: Option<i32>,
    /// Delete snapshots older than this: a duration such as `30d`, `12h`, `2w` or `1d12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[wdhms])+$"))]
    pub max_age: Option<String>,
}

/// What the operator observed of the backups (scheduled and on demand).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// When the last snapshot was uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// Object key of the last uploaded snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<String>,
    /// Store revision of the last uploaded snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Size in bytes of the last uploaded snapshot object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Lower-case hex SHA-256 of the last uploaded snapshot object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why the last backup failed; cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Backups failed since the last success; from 3 on, the cluster is Degraded
    /// (`BackupFailing`).
    #[serde(default)]
    pub consecutive_failures: i32,
    /// The last backup Job the operator accounted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// When that Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_time: Option<Time>,
    /// The last `oxcd.io/backup-now` token a Job was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_token: Option<String>,
    /// The last restore drill: each backup Job restores the snapshot it uploaded into an
    /// ephemeral member and compares revision and HashKV with the source member's before the
    /// retention may delete older snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillStatus>,
}

/// The outcome of a restore drill.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// When the backup Job that ran it finished.
    pub time: Time,
    /// `Passed` or `Failed`.
    pub result: DrillResult,
    /// The snapshot drilled, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The revision the restored member served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The restored member's HashKV at that revision.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "hashKV")]
    pub hash_kv: Option<i64>,
    /// Whether the HashKV was compared with the source member's (it is not when a compaction
    /// ran between the snapshot and the hash; the revision always is).
    #[serde(default)]
    pub hash_compared: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Result of a restore drill.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillResult {
    /// The snapshot restored to the recorded revision and HashKV.
    Passed,
    /// It did not restore, or not to what was recorded.
    Failed,
}
