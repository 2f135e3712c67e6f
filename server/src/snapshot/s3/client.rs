//! Where snapshots live in S3 and how to reach it: the `--s3-*` flags (each also an `OXCD_S3_*`
//! environment variable, so a CronJob, Job or init container needs no shell), the S3 client they
//! build (custom endpoint, path-style addressing, region, credentials from the standard chain or
//! from a mounted Secret's files, bounded retries with exponential backoff) and the server-side
//! encryption settings every request carries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use clap::{Args, ValueEnum};
use md5::{Digest, Md5};

/// Region used when neither `--s3-region` nor the standard chain names one.
const DEFAULT_REGION: &str = "us-east-1";

/// The `--s3-*` flags shared by upload, download, prune and restore.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// Bucket holding the snapshots.
    #[arg(long = "s3-bucket", env = "OXCD_S3_BUCKET")]
    pub bucket: Option<String>,
    /// Key prefix ("folder") of the snapshots, without a trailing slash.
    #[arg(long = "s3-prefix", env = "OXCD_S3_PREFIX", default_value = "")]
    pub prefix: String,
    /// S3 endpoint URL for S3-compatible servers (default: AWS).
    #[arg(long = "s3-endpoint", env = "OXCD_S3_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Region (default: the standard chain's; us-east-1 with --s3-endpoint or when none is found).
    #[arg(long = "s3-region", env = "OXCD_S3_REGION")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), as most S3-compatible servers need.
    #[arg(long = "s3-force-path-style", env = "OXCD_S3_FORCE_PATH_STYLE")]
    pub force_path_style: bool,
    /// Directory with files `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
    /// `AWS_SESSION_TOKEN` (a mounted Secret); default: the standard credentials chain.
    #[arg(long = "s3-credentials-dir", env = "OXCD_S3_CREDENTIALS_DIR")]
    pub credentials_dir: Option<PathBuf>,
    /// Extra CA bundle (PEM) to trust for an https endpoint, besides the system roots.
    #[arg(long = "s3-ca-file", env = "OXCD_S3_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Attempts per S3 request before giving up (transient errors are retried with backoff).
    #[arg(
        long = "s3-max-attempts",
        env = "OXCD_S3_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// First retry backoff in milliseconds (doubles per attempt, jittered, at most 20 s).
    #[arg(long = "s3-initial-backoff-ms", hide = true, default_value_t = 500)]
    pub initial_backoff_ms: u64,
    /// Server-side encryption.
    #[command(flatten)]
    pub sse: SseArgs,
}

/// Server-side encryption modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SseMode {
    /// SSE-S3: S3-managed keys (`AES256`).
    Aes256,
    /// SSE-KMS: `aws:kms` with `--s3-sse-kms-key-id` (or the bucket's default key).
    AwsKms,
    /// SSE-C: a customer key from `--s3-sse-c-key-file`, sent with every request.
    SseC,
}

/// The server-side encryption flags.
#[derive(Debug, Clone, Args)]
pub struct SseArgs {
    /// Server-side encryption of uploaded objects.
    #[arg(long = "s3-sse", env = "OXCD_S3_SSE", value_enum)]
    pub mode: Option<SseMode>,
    /// KMS key id or ARN for `--s3-sse aws-kms`.
    #[arg(long = "s3-sse-kms-key-id", env = "OXCD_S3_SSE_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// File holding the 256-bit SSE-C key: 32 raw bytes or their base64.
    #[arg(long = "s3-sse-c-key-file", env = "OXCD_S3_SSE_C_KEY_FILE")]
    pub sse_c_key_file: Option<PathBuf>,
}

/// Server-side encryption to apply, resolved from [`SseArgs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sse {
    /// None requested (the bucket's default applies).
    #[default]
    None,
    /// SSE-S3.
    Aes256,
    /// SSE-KMS with an optional key id.
    Kms(Option<String>),
    /// SSE-C: base64 of the key and base64 of its MD5, as the headers carry them.
    Customer {
        /// Base64 of the 32-byte key.
        key: String,
        /// Base64 of the key's MD5.
        key_md5: String,
    },
}

/// Why the S3 settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    /// A required flag is missing.
    #[error("failed to find {flag}: it is required here")]
    Missing {
        /// The flag.
        flag: &'static str,
    },
    /// A file named by a flag cannot be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The SSE-C key is not 32 bytes (raw or base64).
    #[error("failed to load the SSE-C key from {path}: expected 32 raw bytes or their base64")]
    SseCKey {
        /// The file.
        path: PathBuf,
    },
    /// A flag value that does not fit the others.
    #[error("failed to accept {flag}: {why}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The TLS trust store cannot be built.
    #[error("failed to configure TLS for the S3 endpoint")]
    Tls(#[source] aws_smithy_http_client::HttpClientError),
}

/// A ready S3 client and what it points at (for error messages and object keys).
#[derive(Debug, Clone)]
pub struct S3Target {
    /// The client.
    pub client: aws_sdk_s3::Client,
    /// The bucket.
    pub bucket: String,
    /// The prefix, without leading or trailing slashes.
    pub prefix: String,
    /// The endpoint, for messages (`AWS` when none was given).
    pub endpoint: String,
    /// Attempts per request, for messages.
    pub max_attempts: u32,
    /// Server-side encryption.
    pub sse: Sse,
}

fn read_file(path: &Path) -> Result<Vec<u8>, S3ConfigError> {
    std::fs::read(path).map_err(|source| S3ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_trimmed(path: &Path) -> Result<String, S3ConfigError> {
    let bytes = read_file(path)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

impl SseArgs {
    /// Resolves the flags, reading the SSE-C key file.
    pub fn resolve(&self) -> Result<Sse, S3ConfigError> {
        if self.kms_key_id.is_some() && self.mode != Some(SseMode::AwsKms) {
            return Err(S3ConfigError::Invalid {
                flag: "--s3-sse-kms-key-id",
                why: "it needs --s3-sse aws-kms",
            });
        }
        if self.sse_c_key_file.is_some() && self.mode != Some(SseMode::SseC) {
            return Err(S3ConfigError::Invalid {
                flag: "--s3-sse-c-key-file",
                why: "it needs --s3-sse sse-c",
            });
        }
        Ok(match self.mode {
            None => Sse::None,
            Some(SseMode::Aes256) => Sse::Aes256,
            Some(SseMode::AwsKms) => Sse::Kms(self.kms_key_id.clone()),
            Some(SseMode::SseC) => {
                let path = self.sse_c_key_file.as_ref().ok_or(S3ConfigError::Missing {
                    flag: "--s3-sse-c-key-file",
                })?;
                let raw = read_file(path)?;
                let key = if raw.len() == 32 {
                    raw
                } else {
                    let text = String::from_utf8_lossy(&raw);
                    aws_smithy_types::base64::decode(text.trim())
                        .ok()
                        .filter(|k| k.len() == 32)
                        .ok_or_else(|| S3ConfigError::SseCKey { path: path.clone() })?
                };
                Sse::Customer {
                    key: aws_smithy_types::base64::encode(&key),
                    key_md5: aws_smithy_types::base64::encode(Md5::digest(&key)),
                }
            }
        })
    }
}

impl S3Args {
    /// The prefix without leading or trailing slashes.
    pub fn clean_prefix(&self) -> String {
        self.prefix.trim_matches('/').to_string()
    }

    /// Builds the client; needs `--s3-bucket`.
    pub async fn connect(&self) -> Result<S3Target, S3ConfigError> {
        let bucket = self.bucket.clone().ok_or(S3ConfigError::Missing {
            flag: "--s3-bucket",
        })?;
        if self.max_attempts == 0 {
            return Err(S3ConfigError::Invalid {
                flag: "--s3-max-attempts",
                why: "at least 1 attempt is needed",
            });
        }
        let sse = self.sse.resolve()?;
        let mut trust = TrustStore::empty().with_native_roots(true);
        if let Some(ca) = &self.ca_file {
            trust = trust.with_pem_certificate(read_file(ca)?);
        }
        let tls_context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(S3ConfigError::Tls)?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context)
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(Duration::from_millis(self.initial_backoff_ms))
            .with_max_backoff(Duration::from_secs(20));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(retry)
            .timeout_config(timeouts);
        // With a custom endpoint and no region, skip the chain's lookup (which may probe the
        // EC2 metadata service): S3-compatible servers take any region.
        let region = self.region.clone().or_else(|| {
            let from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .any(|v| std::env::var_os(v).is_some());
            (self.endpoint.is_some() && !from_env).then(|| DEFAULT_REGION.to_string())
        });
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(dir) = &self.credentials_dir {
            let id = read_trimmed(&dir.join("AWS_ACCESS_KEY_ID"))?;
            let secret = read_trimmed(&dir.join("AWS_SECRET_ACCESS_KEY"))?;
            let token_path = dir.join("AWS_SESSION_TOKEN");
            let token = if token_path.exists() {
                Some(read_trimmed(&token_path)?)
            } else {
                None
            };
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                token,
                None,
                "oxcd-credentials-dir",
            ));
        }
        let shared = loader.load().await;
        let mut config =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(self.force_path_style);
        if shared.region().is_none() {
            config = config.region(Region::new(DEFAULT_REGION));
        }
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        Ok(S3Target {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket,
            prefix: self.clean_prefix(),
            endpoint: self.endpoint.clone().unwrap_or_else(|| "AWS".into()),
            max_attempts: self.max_attempts,
            sse,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_sse_c_key_is_read_raw_or_base64_and_carries_its_md5() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        let b64 = dir.path().join("b64");
        std::fs::write(&b64, aws_smithy_types::base64::encode([7u8; 32]) + "\n").unwrap();
        let args = |p: &Path| SseArgs {
            mode: Some(SseMode::SseC),
            kms_key_id: None,
            sse_c_key_file: Some(p.to_path_buf()),
        };
        let a = args(&raw).resolve().unwrap();
        assert_eq!(a, args(&b64).resolve().unwrap());
        let Sse::Customer { key_md5, .. } = a else {
            panic!("not SSE-C")
        };
        assert_eq!(aws_smithy_types::base64::decode(key_md5).unwrap().len(), 16);
        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").unwrap();
        assert!(matches!(
            args(&short).resolve(),
            Err(S3ConfigError::SseCKey { .. })
        ));
    }
}

/// An S3 request that failed after its retries, naming what, where and how often.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to {action} s3://{bucket}/{key} at {endpoint} (up to {attempts} attempts per request)"
)]
pub struct S3CallError {
    /// What was being done.
    pub action: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The endpoint.
    pub endpoint: String,
    /// Attempts per request.
    pub attempts: u32,
    /// The SDK error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl S3Target {
    /// Turns an SDK error of request `action` on `key` into an [`S3CallError`].
    pub fn call_error<E: std::error::Error + Send + Sync + 'static>(
        &self,
        action: &'static str,
        key: &str,
    ) -> impl FnOnce(E) -> S3CallError {
        let (bucket, endpoint, attempts) = (
            self.bucket.clone(),
            self.endpoint.clone(),
            self.max_attempts,
        );
        let key = key.to_string();
        move |e| S3CallError {
            action,
            bucket,
            key,
            endpoint,
            attempts,
            source: Box::new(e),
        }
    }
}
