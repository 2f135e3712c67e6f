//! How a pod running `oxcd snapshot ...` reaches an S3 bucket described by an [`S3Spec`]: the
//! `OXCD_S3_*` environment (bucket, prefix, endpoint, region, path style, SSE) and the Secret
//! volumes of the credentials and of an SSE-C key, mounted read-only.

use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use oxcd_crds::{S3Spec, SseMode};

use super::pod::{env, mount, secret_volume};

const CREDENTIALS_MOUNT: &str = "/etc/oxcd/s3-credentials";
const SSE_C_MOUNT: &str = "/etc/oxcd/s3-sse-c";

/// The `OXCD_S3_*` variables for `s3`, with key prefix `prefix`.
pub fn s3_env(s3: &S3Spec, prefix: String) -> Vec<EnvVar> {
    let mut vars = vec![
        env("OXCD_S3_BUCKET", s3.bucket.clone()),
        env("OXCD_S3_PREFIX", prefix),
    ];
    if let Some(endpoint) = &s3.endpoint {
        vars.push(env("OXCD_S3_ENDPOINT", endpoint.clone()));
    }
    if let Some(region) = &s3.region {
        vars.push(env("OXCD_S3_REGION", region.clone()));
    }
    if s3.force_path_style {
        vars.push(env("OXCD_S3_FORCE_PATH_STYLE", "true"));
    }
    if s3.credentials_secret_ref.is_some() {
        vars.push(env("OXCD_S3_CREDENTIALS_DIR", CREDENTIALS_MOUNT));
    }
    if let Some(sse) = &s3.sse {
        let mode = match sse.mode {
            SseMode::SseS3 => "aes256",
            SseMode::SseKms => "aws-kms",
            SseMode::SseC => "sse-c",
        };
        vars.push(env("OXCD_S3_SSE", mode));
        if let Some(key) = &sse.kms_key_id {
            vars.push(env("OXCD_S3_SSE_KMS_KEY_ID", key.clone()));
        }
        if sse.customer_key_secret_ref.is_some() {
            vars.push(env("OXCD_S3_SSE_C_KEY_FILE", format!("{SSE_C_MOUNT}/key")));
        }
    }
    vars
}

/// The Secret volumes `s3` needs and their read-only mounts (none without credentials or an
/// SSE-C key).
pub fn s3_volumes(s3: &S3Spec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(secret) = &s3.credentials_secret_ref {
        volumes.push(secret_volume("s3-credentials", &secret.name));
        mounts.push(mount("s3-credentials", CREDENTIALS_MOUNT, true));
    }
    if let Some(key) = s3
        .sse
        .as_ref()
        .and_then(|sse| sse.customer_key_secret_ref.as_ref())
    {
        volumes.push(Volume {
            name: "s3-sse-c".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(key.name.clone()),
                default_mode: Some(0o440),
                items: Some(vec![KeyToPath {
                    key: key.key.clone(),
                    path: "key".to_owned(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("s3-sse-c", SSE_C_MOUNT, true));
    }
    (volumes, mounts)
}
