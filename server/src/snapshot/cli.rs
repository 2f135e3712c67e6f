//! `oxcd snapshot save|restore|status`: etcdctl's `snapshot save` and etcdutl's `snapshot
//! restore` and `snapshot status`, with their flags, output and exit codes, for oxcd snapshots;
//! and the S3 subcommands `upload|download|prune` (their flags live in [`super::s3::cli`]).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::format::{SnapshotError, verify_trailer};
use super::s3::cli::{
    DownloadArgs, ObjectArgs, PruneArgs, UploadArgs, json_result, run_download, run_prune,
    run_restore, run_upload, runtime,
};
use super::s3::client::S3Args;
use super::s3::drill::{DrillArgs, run_drill};
use super::status::{OutputFormat, render, status};
use crate::error::chain;
use crate::proto::etcdserverpb::SnapshotRequest;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;

/// etcd's exit codes (cobrautl): a general error, an unsupported output format, a failed save.
pub(crate) const EXIT_ERROR: u8 = 1;
const EXIT_BAD_FEATURE: u8 = 4;
const EXIT_INTERRUPTED: u8 = 5;

/// `oxcd snapshot`: saves, restores and inspects snapshots.
#[derive(Debug, Parser)]
#[command(name = "oxcd snapshot", about = "Manages oxcd member snapshots")]
pub struct SnapshotCli {
    /// Output format of `status`: simple, table, json or fields.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    pub write_out: OutputFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// The snapshot subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stores a snapshot of a running member in a file (as `etcdctl snapshot save`).
    Save(SaveArgs),
    /// Creates a new member data dir from a snapshot (as `etcdutl snapshot restore`).
    Restore(RestoreArgs),
    /// Prints a snapshot's hash, revision, total keys, total size and version.
    Status(StatusArgs),
    /// Streams a member's snapshot into S3 (multipart, verified, never partially visible).
    Upload(UploadArgs),
    /// Fetches a snapshot from S3, verifying size and sha256 before the file appears.
    Download(DownloadArgs),
    /// Deletes old snapshots in S3 (oldest first, never the newest).
    Prune(PruneArgs),
    /// Restores a snapshot from S3 into an ephemeral member and checks its revision and
    /// HashKV against what the upload recorded.
    Drill(DrillArgs),
}

/// Flags of `oxcd snapshot save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The file to write.
    pub filename: PathBuf,
    /// The member to take the snapshot from (exactly one client URL).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// How long to wait for the connection (`2s`, `500ms`).
    #[arg(long, default_value = "2s")]
    pub dial_timeout: String,
}

/// Flags of `oxcd snapshot restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file (or restore from S3 with --s3-key / --s3-latest).
    pub filename: Option<PathBuf>,
    /// The S3 object to restore from, instead of a file.
    #[command(flatten)]
    pub object: ObjectArgs,
    /// Where the S3 object is.
    #[command(flatten)]
    pub s3: S3Args,
    /// Directory for the verified download when restoring from S3 (default: the system's
    /// temporary directory).
    #[arg(long = "s3-download-dir", env = "OXCD_S3_DOWNLOAD_DIR")]
    pub download_dir: Option<PathBuf>,
    /// The data dir to create (default: `<name>.oxcd`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Name of the new member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration (default: `<name>=http://localhost:2380`).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster token of the new cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs (comma-separated).
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// How much to increase the restored revision.
    #[arg(long, default_value_t = 0)]
    pub bump_revision: u64,
    /// Compact at the restored (bumped) revision; required with --bump-revision.
    #[arg(long)]
    pub mark_compacted: bool,
    /// `new` restores; `existing` restores nothing and exits successfully (a member joining a
    /// running cluster gets the data from its leader), for an init container on every member.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: crate::config::InitialClusterState,
    /// Exit successfully without touching a data dir that already holds something; the restore
    /// is staged beside the data dir and renamed into place once complete.
    #[arg(long)]
    pub skip_if_not_empty: bool,
}

/// Flags of `oxcd snapshot status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file.
    pub filename: PathBuf,
}

/// Why `snapshot save` failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Not exactly one endpoint.
    #[error("snapshot must be requested to one selected node, not multiple {endpoints:?}")]
    Endpoints {
        /// The endpoints given.
        endpoints: Vec<String>,
    },
    /// An endpoint or duration that does not parse, or needs TLS.
    #[error("invalid {flag} {value:?}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// The member cannot be reached.
    #[error("failed to connect to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The Snapshot RPC failed.
    #[error("failed to receive the snapshot from {endpoint}")]
    Rpc {
        /// The endpoint.
        endpoint: String,
        /// The status.
        #[source]
        source: tonic::Status,
    },
    /// The file cannot be written.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// What arrived is not a complete snapshot.
    #[error("the received snapshot failed its check")]
    Check(#[from] SnapshotError),
}

/// Parses `500ms`, `2s`, `1m` (or bare seconds).
pub(crate) fn parse_timeout(value: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else {
        (value, 1.0)
    };
    let secs = number.parse::<f64>().ok()? * scale;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Fetches a snapshot from the one endpoint in `args` into `args.filename`; returns the version
/// the member reported. The file appears only once complete and checked.
pub async fn save(args: &SaveArgs) -> Result<String, SaveError> {
    let [endpoint] = args.endpoints.as_slice() else {
        return Err(SaveError::Endpoints {
            endpoints: args.endpoints.clone(),
        });
    };
    let bad = |flag, value: &str| SaveError::Flag {
        flag,
        value: value.to_string(),
    };
    let url = if endpoint.contains("://") {
        endpoint.clone()
    } else {
        format!("http://{endpoint}")
    };
    if !url.starts_with("http://") {
        return Err(bad("--endpoints (only http:// is supported)", endpoint));
    }
    let dial = parse_timeout(&args.dial_timeout)
        .ok_or_else(|| bad("--dial-timeout", &args.dial_timeout))?;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|_| bad("--endpoints", endpoint))?
        .connect_timeout(dial)
        .connect()
        .await
        .map_err(|source| SaveError::Connect {
            endpoint: url.clone(),
            source,
        })?;
    let part = PathBuf::from(format!("{}.part", args.filename.display()));
    let result = receive(channel, &url, &part, &args.filename).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

async fn receive(
    channel: tonic::transport::Channel,
    url: &str,
    part: &Path,
    target: &Path,
) -> Result<String, SaveError> {
    let rpc = |source| SaveError::Rpc {
        endpoint: url.to_string(),
        source,
    };
    let write = |source| SaveError::Write {
        path: part.to_path_buf(),
        source,
    };
    let mut client = MaintenanceClient::new(channel).max_decoding_message_size(usize::MAX);
    let mut stream = client
        .snapshot(SnapshotRequest {})
        .await
        .map_err(rpc)?
        .into_inner();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .map_err(write)?;
    let mut version = None;
    while let Some(message) = stream.message().await.map_err(rpc)? {
        version.get_or_insert(message.version);
        file.write_all(&message.blob).map_err(write)?;
    }
    file.sync_all().map_err(write)?;
    drop(file);
    verify_trailer(part)?;
    std::fs::rename(part, target).map_err(|source| SaveError::Write {
        path: target.to_path_buf(),
        source,
    })?;
    Ok(version.unwrap_or_default())
}

pub(crate) fn fail(code: u8, e: &dyn std::error::Error) -> ExitCode {
    eprintln!("Error: {}", chain(e));
    ExitCode::from(code)
}

/// Runs `oxcd snapshot ...`; `args` starts with the program name.
pub fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = SnapshotCli::parse_from(args);
    match cli.command {
        SnapshotCommand::Save(args) => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(EXIT_ERROR, &e),
            };
            match runtime.block_on(save(&args)) {
                Ok(version) => {
                    println!("Snapshot saved at {}", args.filename.display());
                    if !version.is_empty() {
                        println!("Server version {version}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_INTERRUPTED, &e),
            }
        }
        SnapshotCommand::Restore(args) => run_restore(args),
        SnapshotCommand::Upload(args) => {
            json_result(&args.result_file, |rt| rt.block_on(run_upload(&args)))
        }
        SnapshotCommand::Download(args) => {
            json_result(&args.result_file, |rt| rt.block_on(run_download(&args)))
        }
        SnapshotCommand::Prune(args) => {
            json_result(&args.result_file, |rt| rt.block_on(run_prune(&args)))
        }
        SnapshotCommand::Drill(args) => {
            json_result(&args.result_file, |rt| rt.block_on(run_drill(&args)))
        }
        SnapshotCommand::Status(args) => match status(&args.filename) {
            Err(e) => fail(EXIT_ERROR, &e),
            Ok(s) => match render(&s, cli.write_out) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_BAD_FEATURE, &e),
            },
        },
    }
}
