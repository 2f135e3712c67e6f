//! A real S3 API on loopback for the snapshot-in-S3 tests: moto's server (installed by
//! `e2e/toolchain/install`) on a random port, with an S3 client to arrange and inspect buckets
//! directly, and a TCP proxy that cuts connections after a number of bytes to break an upload
//! midway (in front of the member or of S3). Everything stops when dropped.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::HarnessError;
use crate::net::free_port;
use crate::paths::tool;
use crate::process::ManagedProcess;

/// How long moto may take to listen.
const MOTO_READY: Duration = Duration::from_secs(30);
/// The fake credentials moto accepts (any work); passed to oxcd through a credentials dir.
const ACCESS_KEY: &str = "oxcdtest";
const SECRET_KEY: &str = "oxcdtestsecret";

/// Why the S3 harness failed.
#[derive(Debug, thiserror::Error)]
pub enum S3HarnessError {
    /// Starting or probing a process failed.
    #[error("failed to run moto_server")]
    Harness(#[from] HarnessError),
    /// Creating the bucket failed.
    #[error("failed to create bucket {bucket}")]
    CreateBucket {
        /// The bucket.
        bucket: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The proxy's listener failed.
    #[error("failed to listen for the cutting proxy")]
    Listen(#[source] std::io::Error),
}

/// moto's S3 server on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    process: ManagedProcess,
    port: u16,
    client: aws_sdk_s3::Client,
    dir: TempDir,
}

impl MotoServer {
    /// Starts moto and waits until it accepts connections.
    pub async fn start() -> Result<Self, S3HarnessError> {
        let program = tool("moto_server")?;
        let dir = tempfile::Builder::new()
            .prefix("oxcd-moto-")
            .tempdir()
            .map_err(HarnessError::CreateTempDir)?;
        std::fs::write(dir.path().join("AWS_ACCESS_KEY_ID"), ACCESS_KEY)
            .map_err(HarnessError::CreateTempDir)?;
        std::fs::write(dir.path().join("AWS_SECRET_ACCESS_KEY"), SECRET_KEY)
            .map_err(HarnessError::CreateTempDir)?;
        let port = free_port()?;
        let mut command = Command::new(program);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut process = ManagedProcess::spawn("moto_server", command, &dir.path().join("log"))?;
        process
            .wait_ready(MOTO_READY, || async move {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .is_ok()
            })
            .await?;
        let endpoint = format!("http://127.0.0.1:{port}");
        Ok(Self {
            process,
            port,
            client: client_for(&endpoint),
            dir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client talking to it directly.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3HarnessError> {
        self.client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| S3HarnessError::CreateBucket {
                bucket: bucket.to_string(),
                source: Box::new(e),
            })?;
        Ok(())
    }

    /// The `--s3-*` flags of oxcd for `bucket`/`prefix` here (credentials from files).
    pub fn oxcd_args(&self, bucket: &str, prefix: &str) -> Vec<String> {
        s3_args(&self.endpoint(), bucket, prefix, &self.credentials_dir())
    }

    /// The directory with the credential files oxcd reads.
    pub fn credentials_dir(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// Stops it (SIGKILL).
    pub fn kill(&mut self) -> Result<(), S3HarnessError> {
        Ok(self.process.kill()?)
    }
}

/// The `--s3-*` flags for any endpoint (e.g. a proxy or a port where nothing listens).
pub fn s3_args(endpoint: &str, bucket: &str, prefix: &str, credentials_dir: &str) -> Vec<String> {
    [
        "--s3-endpoint",
        endpoint,
        "--s3-force-path-style",
        "--s3-region",
        "us-east-1",
        "--s3-bucket",
        bucket,
        "--s3-prefix",
        prefix,
        "--s3-credentials-dir",
        credentials_dir,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn client_for(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Which way the bytes [`CutProxy`] counts flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the upstream server to the client (a member's snapshot stream).
    Downstream,
    /// From the client to the upstream server (an upload to S3).
    Upstream,
}

/// Most bytes of requests a [`CutProxy`] keeps for [`CutProxy::requests`].
const CAPTURE_LIMIT: usize = 1 << 20;

/// A loopback TCP proxy to `127.0.0.1:<upstream>` that, once `limit` bytes have flowed in
/// `direction` (over all connections), closes every connection and refuses new ones. It keeps
/// the start of what clients sent, to check the headers of plain-HTTP requests.
#[derive(Debug)]
pub struct CutProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    captured: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl CutProxy {
    /// Starts the proxy.
    pub async fn start(
        upstream: u16,
        direction: Direction,
        limit: u64,
    ) -> Result<Self, S3HarnessError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(S3HarnessError::Listen)?;
        let port = listener
            .local_addr()
            .map_err(S3HarnessError::Listen)?
            .port();
        let cut = Arc::new(AtomicBool::new(false));
        let counted = Arc::new(AtomicU64::new(0));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let capture = captured.clone();
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else {
                    continue;
                };
                let (flag, counted, capture) = (flag.clone(), counted.clone(), capture.clone());
                connections.push(tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let (down, up) = (
                        direction == Direction::Downstream,
                        direction == Direction::Upstream,
                    );
                    let c = (flag.clone(), counted.clone(), limit);
                    tokio::select! {
                        _ = pump(sr, cw, down.then(|| c.clone()), None) => {},
                        _ = pump(cr, sw, up.then_some(c), Some(capture)) => {},
                    }
                }));
            }
            for c in connections {
                c.abort();
            }
        });
        Ok(Self {
            port,
            cut,
            captured,
            task,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What clients sent (the first MiB), lower-cased: request lines and headers of HTTP/1.1.
    pub fn requests(&self) -> String {
        let bytes = self.captured.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).to_lowercase()
    }

    /// Whether it has cut the connections.
    pub fn has_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Counter = (Arc<AtomicBool>, Arc<AtomicU64>, u64);

/// Copies `from` to `to` until either ends or the shared count passes its limit.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Option<Counter>,
    capture: Option<Arc<Mutex<Vec<u8>>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some((cut, _, _)) = &counter
            && cut.load(Ordering::SeqCst)
        {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some((cut, count, limit)) = &counter {
            let total = count.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if total > *limit {
                cut.store(true, Ordering::SeqCst);
                return;
            }
        }
        if let Some(Ok(mut kept)) = capture.as_ref().map(|c| c.lock())
            && kept.len() < CAPTURE_LIMIT
        {
            kept.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
