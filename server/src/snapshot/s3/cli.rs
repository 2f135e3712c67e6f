//! Flags and runners of `oxcd snapshot upload|download|prune` and of restore's S3 source. Every
//! flag also reads an environment variable, and each command prints one JSON line on stdout
//! (and, with `--result-file`, writes it there too, e.g. `/dev/termination-log`) so a Job or an
//! operator can read the key, revision, size and SHA-256 without a shell. Restore from S3
//! checks its flags and the data dir first, then downloads and verifies, then restores.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::client::{S3Args, S3ConfigError};
use super::download::{DownloadError, Downloaded, Source, download};
use super::prune::{PruneError, Pruned, Retention, parse_duration, prune};
use super::upload::{MAX_SINGLE_COPY, UploadError, UploadOptions, Uploaded, upload};
use crate::error::chain;
use crate::snapshot::cli::{EXIT_ERROR, RestoreArgs, fail};
use crate::snapshot::member::MemberArgs;
use crate::snapshot::restore::{RestoreOptions, precheck, restore};
use crate::snapshot::staged;

/// Compression of uploaded snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    /// As the member sends it.
    None,
    /// gzip (snapshots of text-like values shrink several-fold).
    Gzip,
}

/// Flags of `oxcd snapshot upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The member(s) to stream from.
    #[command(flatten)]
    pub member: MemberArgs,
    /// Where to upload.
    #[command(flatten)]
    pub s3: S3Args,
    /// Compression of the object.
    #[arg(long, env = "OXCD_S3_COMPRESSION", value_enum, default_value = "none")]
    pub compression: CompressionArg,
    /// Multipart part size in bytes (S3's minimum is 5 MiB).
    #[arg(long, env = "OXCD_S3_PART_SIZE", default_value_t = 16 << 20, hide = true)]
    pub part_size: usize,
    /// Largest object published with one CopyObject (above: a multipart copy).
    #[arg(long, default_value_t = MAX_SINGLE_COPY, hide = true)]
    pub max_single_copy: u64,
    /// Also write the JSON result line to these files (repeat the flag, or comma-separated).
    #[arg(long, env = "OXCD_RESULT_FILE", value_delimiter = ',')]
    pub result_file: Vec<PathBuf>,
}

/// Which object: `--s3-key` or `--s3-latest`.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct ObjectArgs {
    /// Key of the snapshot object.
    #[arg(long = "s3-key", env = "OXCD_S3_KEY")]
    pub key: Option<String>,
    /// The newest snapshot under --s3-prefix.
    #[arg(long = "s3-latest", env = "OXCD_S3_LATEST")]
    pub latest: bool,
}

impl ObjectArgs {
    /// The source, if one was named.
    pub fn source(&self) -> Option<Source> {
        match (&self.key, self.latest) {
            (Some(k), _) => Some(Source::Key(k.clone())),
            (None, true) => Some(Source::Latest),
            (None, false) => None,
        }
    }
}

/// Flags of `oxcd snapshot download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The file to write (appears only once verified).
    pub filename: PathBuf,
    /// Which object.
    #[command(flatten)]
    pub object: ObjectArgs,
    /// Where it is.
    #[command(flatten)]
    pub s3: S3Args,
    /// Also write the JSON result line to these files (repeat the flag, or comma-separated).
    #[arg(long, env = "OXCD_RESULT_FILE", value_delimiter = ',')]
    pub result_file: Vec<PathBuf>,
}

/// Flags of `oxcd snapshot prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Where the snapshots are.
    #[command(flatten)]
    pub s3: S3Args,
    /// Keep at most this many snapshots.
    #[arg(long, env = "OXCD_RETENTION_MAX_COUNT")]
    pub max_count: Option<usize>,
    /// Delete snapshots older than this (`30d`, `12h`, `1d12h`).
    #[arg(long, env = "OXCD_RETENTION_MAX_AGE")]
    pub max_age: Option<String>,
    /// Only print what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the JSON result line to these files (repeat the flag, or comma-separated).
    #[arg(long, env = "OXCD_RESULT_FILE", value_delimiter = ',')]
    pub result_file: Vec<PathBuf>,
}

/// Why an S3 subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum S3CliError {
    /// The S3 flags are unusable.
    #[error("failed to set up the S3 client")]
    Config(#[from] S3ConfigError),
    /// Upload failed.
    #[error("failed to upload the snapshot")]
    Upload(#[from] UploadError),
    /// Download failed.
    #[error("failed to download the snapshot")]
    Download(#[from] DownloadError),
    /// Prune failed.
    #[error("failed to apply the retention")]
    Prune(#[from] PruneError),
    /// The restore drill failed.
    #[error("the restore drill failed")]
    Drill(#[source] Box<super::drill::DrillError>),
    /// Neither --s3-key nor --s3-latest.
    #[error("failed to pick an object: give --s3-key KEY or --s3-latest")]
    NoObject,
    /// The temporary file for the download cannot be created.
    #[error("failed to create a temporary file in {dir}")]
    TempFile {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The result file cannot be written.
    #[error("failed to write the result to {path}")]
    Result {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl From<super::drill::DrillError> for S3CliError {
    fn from(error: super::drill::DrillError) -> Self {
        Self::Drill(Box::new(error))
    }
}

/// Prints the JSON `line` and writes it to each of `files`.
pub fn report(line: &str, files: &[PathBuf]) -> Result<(), S3CliError> {
    println!("{line}");
    for path in files {
        std::fs::write(path, format!("{line}\n")).map_err(|source| S3CliError::Result {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// The JSON line of a failure, for `--result-file`.
pub fn error_line(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Runs `upload`.
pub async fn run_upload(args: &UploadArgs) -> Result<Uploaded, S3CliError> {
    let target = args.s3.connect().await?;
    let stream = args.member.open().await.map_err(UploadError::from)?;
    let opts = UploadOptions {
        part_size: args.part_size,
        gzip: args.compression == CompressionArg::Gzip,
        max_single_copy: args.max_single_copy,
    };
    Ok(upload(&target, stream, &opts).await?)
}

/// Runs `download`.
pub async fn run_download(args: &DownloadArgs) -> Result<Downloaded, S3CliError> {
    let source = args.object.source().ok_or(S3CliError::NoObject)?;
    let target = args.s3.connect().await?;
    Ok(download(&target, &source, &args.filename).await?)
}

/// Runs `prune`.
pub async fn run_prune(args: &PruneArgs) -> Result<Pruned, S3CliError> {
    let retention = Retention {
        max_count: args.max_count,
        max_age: args.max_age.as_deref().map(parse_duration).transpose()?,
    };
    let target = args.s3.connect().await?;
    Ok(prune(&target, &retention, args.dry_run).await?)
}

/// Downloads and verifies `source` into a temporary file in `dir` for restore; the file is
/// removed when the returned handle drops.
pub async fn fetch_for_restore(
    s3: &S3Args,
    source: &Source,
    dir: &Path,
) -> Result<(tempfile::TempPath, Downloaded), S3CliError> {
    let target = s3.connect().await?;
    let place = tempfile::Builder::new()
        .prefix(".oxcd-restore-")
        .tempfile_in(dir)
        .map_err(|source| S3CliError::TempFile {
            dir: dir.to_path_buf(),
            source,
        })?
        .into_temp_path();
    let downloaded = download(&target, source, &place).await?;
    Ok((place, downloaded))
}

/// A single-threaded runtime, as the snapshot commands use.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs an S3 subcommand: its result as one JSON line (stdout and `files`), or the error on
/// stderr (and as `{"error": ...}` in `files`) with exit code 1.
pub fn json_result<T: serde::Serialize>(
    files: &[PathBuf],
    work: impl FnOnce(&tokio::runtime::Runtime) -> Result<T, S3CliError>,
) -> ExitCode {
    let outcome = runtime()
        .map_err(|e| chain(&e))
        .and_then(|rt| work(&rt).map_err(|e| chain(&e)))
        .and_then(|value| serde_json::to_string(&value).map_err(|e| chain(&e)));
    match outcome {
        Ok(line) => match report(&line, files) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_ERROR, &e),
        },
        Err(message) => {
            for path in files {
                let _ = std::fs::write(path, format!("{}\n", error_line(&message)));
            }
            eprintln!("Error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `restore`: from a file, or from S3 after a verified download into a temporary file.
pub fn run_restore(args: RestoreArgs) -> ExitCode {
    let source = args.object.source();
    let snapshot = match (&args.filename, &source) {
        (Some(f), None) => f.clone(),
        (None, Some(_)) => PathBuf::new(),
        _ => {
            eprintln!(
                "Error: restore needs exactly one of a snapshot file, --s3-key or --s3-latest"
            );
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", args.name)));
    if let Some(skip) = staged::skip(
        args.initial_cluster_state,
        &data_dir,
        args.skip_if_not_empty,
    ) {
        eprintln!("{skip}");
        return ExitCode::SUCCESS;
    }
    // Skipping a non-empty data dir needs every restore to appear at once: stage it.
    let staging = match args.skip_if_not_empty.then(|| staged::prepare(&data_dir)) {
        Some(Err(e)) => return fail(EXIT_ERROR, &e),
        Some(Ok(staging)) => Some(staging),
        None => None,
    };
    let mut opts = RestoreOptions {
        snapshot,
        data_dir: staging.clone().unwrap_or_else(|| data_dir.clone()),
        initial_cluster: args
            .initial_cluster
            .unwrap_or_else(|| format!("{}=http://localhost:2380", args.name)),
        name: args.name,
        initial_cluster_token: args.initial_cluster_token,
        peer_urls: args.initial_advertise_peer_urls,
        bump_revision: args.bump_revision,
        mark_compacted: args.mark_compacted,
    };
    let mut fetched = None;
    if let Some(source) = source {
        // Refuse a non-empty data dir or bad flags before downloading anything.
        if let Err(e) = precheck(&opts) {
            return fail(EXIT_ERROR, &e);
        }
        let dir = args.download_dir.unwrap_or_else(std::env::temp_dir);
        let got = runtime().map_err(|e| chain(&e)).and_then(|rt| {
            rt.block_on(fetch_for_restore(&args.s3, &source, &dir))
                .map_err(|e| chain(&e))
        });
        match got {
            Ok((path, downloaded)) => {
                opts.snapshot = path.to_path_buf();
                fetched = Some((path, downloaded));
            }
            Err(message) => {
                eprintln!("Error: {message}");
                return ExitCode::from(EXIT_ERROR);
            }
        }
    }
    let restored = restore(&opts);
    if let (Ok(_), Some(staging)) = (&restored, &staging) {
        if let Err(e) = staged::commit(staging, &data_dir) {
            return fail(EXIT_ERROR, &e);
        }
        opts.data_dir = data_dir;
    }
    match restored {
        Ok(r) => {
            eprintln!(
                "restored snapshot {} into {}: revision {}, compact revision {}, {} records, member {:x}",
                opts.snapshot.display(),
                opts.data_dir.display(),
                r.revision,
                r.compact_revision,
                r.records,
                r.member_id
            );
            if let Some((_, d)) = &fetched {
                let line = serde_json::json!({
                    "bucket": d.bucket,
                    "key": d.key,
                    "revision": r.revision,
                    "size": d.size,
                    "sha256": d.sha256,
                    "data_dir": opts.data_dir,
                    "member_id": format!("{:x}", r.member_id),
                });
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_ERROR, &e),
    }
}
