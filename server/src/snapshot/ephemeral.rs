//! A throwaway single member started from a restored data dir, on loopback ports nobody else
//! uses, so the restore drill can ask it what any client would: its revision (Status) and its
//! HashKV. It runs as a child process of this very binary (the image has nothing else) and is
//! killed when dropped, on every path.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{HashKvRequest, StatusRequest};

/// How often the drill asks whether the member answers yet.
const POLL: Duration = Duration::from_millis(200);
/// Lines of the member's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// Why the ephemeral member could not be started or asked.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// No free loopback port, or the log file cannot be created.
    #[error("failed to prepare the ephemeral member")]
    Prepare(#[source] std::io::Error),
    /// The binary could not be started.
    #[error("failed to start the ephemeral member ({binary})")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It stopped before answering.
    #[error("the ephemeral member exited ({status}) before answering; its log ends with:\n{log}")]
    Exited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// It did not answer in time.
    #[error("the ephemeral member did not answer within {timeout:?}; its log ends with:\n{log}")]
    NotReady {
        /// How long the drill waited.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
    /// A call to it failed.
    #[error("the ephemeral member refused {call}")]
    Call {
        /// The RPC.
        call: &'static str,
        /// Its status.
        #[source]
        source: tonic::Status,
    },
}

/// Loopback URLs of one member.
#[derive(Debug, Clone)]
pub struct LoopbackUrls {
    /// Client URL.
    pub client: String,
    /// Peer URL (its `--initial-cluster` entry).
    pub peer: String,
    /// Metrics URL (kept off the default 2381 another process may hold).
    pub metrics: String,
}

impl LoopbackUrls {
    /// Three free loopback ports. Another process could take one before the member binds
    /// it; the member then fails to start and says so, which the drill reports.
    pub fn pick() -> Result<Self, EphemeralError> {
        let free = || -> std::io::Result<u16> {
            Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let holders = (free(), free(), free());
        match holders {
            (Ok(c), Ok(p), Ok(m)) if c != p && p != m && c != m => Ok(Self {
                client: format!("http://127.0.0.1:{c}"),
                peer: format!("http://127.0.0.1:{p}"),
                metrics: format!("http://127.0.0.1:{m}"),
            }),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(EphemeralError::Prepare(e)),
            _ => Err(EphemeralError::Prepare(std::io::Error::other(
                "the system handed out the same port twice",
            ))),
        }
    }
}

/// A running ephemeral member; killed on drop.
pub struct EphemeralMember {
    child: Child,
    urls: LoopbackUrls,
    log: PathBuf,
}

impl EphemeralMember {
    /// Starts `binary` as member `name` on `data_dir` (restored for `urls.peer`, with `name` as
    /// its cluster token), with its log
    /// in `log`. The `ETCD_*` variables of this process (a Job's settings) are not passed on:
    /// the member must run with exactly these flags.
    pub fn start(
        binary: &Path,
        name: &str,
        data_dir: &Path,
        urls: &LoopbackUrls,
        log: &Path,
    ) -> Result<Self, EphemeralError> {
        let out = std::fs::File::create(log).map_err(EphemeralError::Prepare)?;
        let err = out.try_clone().map_err(EphemeralError::Prepare)?;
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &urls.client])
            .args(["--advertise-client-urls", &urls.client])
            .args(["--listen-peer-urls", &urls.peer])
            .args(["--initial-advertise-peer-urls", &urls.peer])
            .args(["--initial-cluster", &format!("{name}={}", urls.peer)])
            .args(["--initial-cluster-token", name])
            .args(["--listen-metrics-urls", &urls.metrics])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| EphemeralError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        Ok(Self {
            child,
            urls: urls.clone(),
            log: log.to_path_buf(),
        })
    }

    /// Waits until the member answers Status; returns its revision.
    pub async fn ready(&mut self, timeout: Duration) -> Result<i64, EphemeralError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(EphemeralError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if let Ok(mut client) = self.client().await
                && let Ok(reply) = client.status(StatusRequest {}).await
            {
                let revision = reply.into_inner().header.map(|h| h.revision);
                return Ok(revision.unwrap_or_default());
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Err(EphemeralError::NotReady {
                    timeout,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// HashKV at `revision`: the hash and the compaction revision it covers.
    pub async fn hash_kv(&self, revision: i64) -> Result<(u32, i64), EphemeralError> {
        let call = |source| EphemeralError::Call {
            call: "HashKV",
            source,
        };
        let mut client = self
            .client()
            .await
            .map_err(|e| call(tonic::Status::unavailable(e.to_string())))?;
        let reply = client
            .hash_kv(HashKvRequest { revision })
            .await
            .map_err(call)?
            .into_inner();
        Ok((reply.hash, reply.compact_revision))
    }

    async fn client(&self) -> Result<MaintenanceClient<Channel>, tonic::transport::Error> {
        let channel = Endpoint::from_shared(self.urls.client.clone())?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await?;
        Ok(MaintenanceClient::new(channel))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for EphemeralMember {
    fn drop(&mut self) {
        // Nothing of it is kept: the data dir is a temporary copy.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
