//! `oxcd snapshot drill`: proves a snapshot in S3 restores. It downloads the object (size and
//! SHA-256 checked), restores it into a temporary data dir, starts an ephemeral member on
//! loopback from it, and compares the member's revision and HashKV with what the upload
//! recorded. A backup Job runs it right after the upload (reading the key from the upload's
//! result file), so a snapshot that cannot be restored fails its backup instead of being
//! found out during a disaster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::cli::{ObjectArgs, S3CliError};
use super::client::S3Args;
use super::download::{Source, download};
use crate::snapshot::cli::parse_timeout;
use crate::snapshot::ephemeral::{EphemeralError, EphemeralMember, LoopbackUrls};
use crate::snapshot::restore::{RestoreError, RestoreOptions, restore};

/// Name of the ephemeral member.
const MEMBER: &str = "restore-drill";

/// Flags of `oxcd snapshot drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Which object (or --upload-result).
    #[command(flatten)]
    pub object: ObjectArgs,
    /// The JSON result file of `oxcd snapshot upload`: drill the object it uploaded.
    #[arg(long, env = "OXCD_DRILL_UPLOAD_RESULT", conflicts_with_all = ["key", "latest"])]
    pub upload_result: Option<PathBuf>,
    /// Where the object is.
    #[command(flatten)]
    pub s3: S3Args,
    /// Directory for the download and the restored data dir (default: the system's
    /// temporary directory); everything in it is removed afterwards.
    #[arg(long, env = "OXCD_DRILL_DIR")]
    pub work_dir: Option<PathBuf>,
    /// How long the ephemeral member may take to answer.
    #[arg(long, env = "OXCD_DRILL_START_TIMEOUT", default_value = "120s")]
    pub start_timeout: String,
    /// Also write the JSON result line to these files (repeat the flag, or comma-separated).
    #[arg(long, env = "OXCD_RESULT_FILE", value_delimiter = ',')]
    pub result_file: Vec<PathBuf>,
}

/// A passed drill: the JSON line `drill` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Drilled {
    /// The object's key.
    pub key: String,
    /// The revision the upload recorded and the restored member serves.
    pub revision: i64,
    /// The restored member's HashKV at `revision`.
    pub hash_kv: u32,
    /// Whether the upload recorded a HashKV to compare with (it does not when a compaction
    /// ran between the snapshot and the hash); the revision is always compared.
    pub hash_compared: bool,
    /// The restored member's compaction revision.
    pub compact_revision: i64,
}

/// Why a drill failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The upload's result file is unreadable or says no key.
    #[error("failed to read the upload result {path}: {what}")]
    UploadResult {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// `--start-timeout` does not parse.
    #[error("invalid --start-timeout {0:?}")]
    Timeout(String),
    /// The working directory cannot be made.
    #[error("failed to create a working directory in {dir}")]
    WorkDir {
        /// The parent.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// This binary's own path is unknown (it starts the member).
    #[error("failed to find this binary to start the ephemeral member")]
    Binary(#[source] std::io::Error),
    /// The restore itself failed.
    #[error("failed to restore s3://{bucket}/{key}")]
    Restore {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: RestoreError,
    },
    /// The ephemeral member failed.
    #[error(transparent)]
    Member(#[from] EphemeralError),
    /// The restored member serves another revision.
    #[error(
        "restore drill of {key} failed: the restored member is at revision {found}, the backup recorded {expected}"
    )]
    Revision {
        /// The key.
        key: String,
        /// What the member serves.
        found: i64,
        /// What the upload recorded.
        expected: i64,
    },
    /// The restored member hashes differently.
    #[error(
        "restore drill of {key} failed: HashKV at revision {revision} is {found} after the restore, the backup recorded {expected}"
    )]
    Hash {
        /// The key.
        key: String,
        /// The revision.
        revision: i64,
        /// The restored member's.
        found: u32,
        /// The source member's.
        expected: u32,
    },
}

/// The part of `upload`'s result line the drill needs.
#[derive(Deserialize)]
struct UploadResult {
    key: Option<String>,
    error: Option<String>,
}

fn source_of(args: &DrillArgs) -> Result<Source, S3CliError> {
    let Some(path) = &args.upload_result else {
        return args.object.source().ok_or(S3CliError::NoObject);
    };
    let bad = |what: String| DrillError::UploadResult {
        path: path.clone(),
        what,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let result: UploadResult = serde_json::from_str(text.trim()).map_err(|e| bad(e.to_string()))?;
    match (result.key, result.error) {
        (Some(key), _) => Ok(Source::Key(key)),
        (None, Some(error)) => Err(bad(format!("the upload failed: {error}")).into()),
        (None, None) => Err(bad("no key in it".to_owned()).into()),
    }
}

/// Runs `drill`.
pub async fn run_drill(args: &DrillArgs) -> Result<Drilled, S3CliError> {
    let timeout = parse_timeout(&args.start_timeout)
        .ok_or_else(|| DrillError::Timeout(args.start_timeout.clone()))?;
    let source = source_of(args)?;
    let target = args.s3.connect().await?;
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("oxcd-drill-")
        .tempdir_in(&parent)
        .map_err(|source| DrillError::WorkDir {
            dir: parent.clone(),
            source,
        })?;
    let snapshot = work.path().join("snapshot");
    let downloaded = download(&target, &source, &snapshot).await?;
    Ok(drill(&downloaded, work.path(), timeout).await?)
}

/// Restores `downloaded` under `work`, starts a member from it and compares.
async fn drill(
    downloaded: &super::download::Downloaded,
    work: &Path,
    timeout: Duration,
) -> Result<Drilled, DrillError> {
    let urls = LoopbackUrls::pick()?;
    let data_dir = work.join("member");
    let restored = restore(&RestoreOptions {
        snapshot: downloaded.path.clone(),
        data_dir: data_dir.clone(),
        name: MEMBER.to_owned(),
        initial_cluster: format!("{MEMBER}={}", urls.peer),
        initial_cluster_token: MEMBER.to_owned(),
        peer_urls: vec![urls.peer.clone()],
        bump_revision: 0,
        mark_compacted: false,
    })
    .map_err(|source| DrillError::Restore {
        bucket: downloaded.bucket.clone(),
        key: downloaded.key.clone(),
        source,
    })?;
    // The snapshot file is no longer needed: free its space before the member writes.
    let _ = std::fs::remove_file(&downloaded.path);
    let binary = std::env::current_exe().map_err(DrillError::Binary)?;
    let mut member =
        EphemeralMember::start(&binary, MEMBER, &data_dir, &urls, &work.join("member.log"))?;
    let serving = member.ready(timeout).await?;
    let key = downloaded.key.clone();
    if serving != downloaded.revision || restored.revision != downloaded.revision {
        return Err(DrillError::Revision {
            key,
            found: serving,
            expected: downloaded.revision,
        });
    }
    let (hash_kv, compact_revision) = member.hash_kv(downloaded.revision).await?;
    if let Some(expected) = downloaded.hash_kv
        && expected != hash_kv
    {
        return Err(DrillError::Hash {
            key,
            revision: downloaded.revision,
            found: hash_kv,
            expected,
        });
    }
    Ok(Drilled {
        key,
        revision: downloaded.revision,
        hash_kv,
        hash_compared: downloaded.hash_kv.is_some(),
        compact_revision,
    })
}
