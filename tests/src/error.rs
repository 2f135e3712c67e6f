//! The harness's error type: one variant per action that can fail.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Result of a harness operation.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A tool binary is not in the bin dir.
    #[error("binary {path} not found: run e2e/toolchain/install (or set OXCD_BIN_DIR)")]
    MissingBinary {
        /// Where the binary was looked for.
        path: PathBuf,
    },
    /// No free loopback port could be reserved.
    #[error("failed to reserve a free port on 127.0.0.1")]
    ReservePort(#[source] std::io::Error),
    /// The temporary directory of a process could not be created.
    #[error("failed to create a temporary directory")]
    CreateTempDir(#[source] std::io::Error),
    /// The log file of a process could not be created.
    #[error("failed to create log file {path}")]
    CreateLog {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("failed to spawn {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state of a process could not be queried, or it could not be killed or reaped.
    #[error("failed to signal or wait for {name} (pid {pid})")]
    WaitProcess {
        /// The process's name in the harness.
        name: String,
        /// Its pid.
        pid: u32,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A member was asked to serve before it was started.
    #[error("{name} was not started")]
    NotStarted {
        /// The member's name.
        name: String,
    },
    /// A cluster operation failed.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A process exited while the harness waited for it to become ready.
    #[error("{name} exited with {status} before it was ready; its log:\n{log}")]
    ExitedBeforeReady {
        /// The process's name in the harness.
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// A process did not become ready in time.
    #[error("{name} was not ready within {timeout:?}; its log:\n{log}")]
    NotReady {
        /// The process's name in the harness.
        name: String,
        /// How long the harness waited.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
    /// The oxcd binary under test is missing.
    #[error("oxcd binary {path} not found: run `cargo build --bin oxcd` (or set OXCD_BIN)")]
    MissingOxcd {
        /// Where the binary was looked for.
        path: PathBuf,
    },
    /// A raw gRPC channel could not be opened.
    #[error("failed to open a gRPC channel to {endpoint}: {message}")]
    Grpc {
        /// The endpoint.
        endpoint: String,
        /// What tonic said.
        message: String,
    },
    /// An etcd client could not be created.
    #[error("failed to connect an etcd client to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: etcd_client::Error,
    },
    /// A command run to completion (etcdctl) failed to run or to take its input.
    #[error("failed to run {program}")]
    RunCommand {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command run to completion did not finish in time (it was killed).
    #[error("{program} did not finish within {timeout:?}")]
    CommandTimeout {
        /// The program.
        program: PathBuf,
        /// How long the harness waited.
        timeout: Duration,
    },
}
