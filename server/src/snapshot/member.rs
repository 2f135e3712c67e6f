//! Opens the Maintenance.Snapshot stream of a running member, over plain HTTP or TLS with
//! etcdctl's client flags (`--endpoints --cacert --cert --key --dial-timeout`, also read from
//! etcdctl's `ETCDCTL_*` environment variables so a Job can set them without a shell).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::cli::parse_timeout;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{HashKvRequest, SnapshotRequest, SnapshotResponse};

/// First pause before another round of connection attempts.
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between rounds of connection attempts.
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Which member to take the snapshot from, and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// Client URLs of the members, tried in order until one streams a snapshot.
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) that signed the members' server certificates (https endpoints).
    #[arg(long, env = "ETCDCTL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) presented to members that require client auth.
    #[arg(long, env = "ETCDCTL_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Key (PEM) of --cert.
    #[arg(long, env = "ETCDCTL_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// How long to wait for a member to accept a connection (`2s`, `500ms`), refused
    /// connections included.
    #[arg(long, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s")]
    pub dial_timeout: String,
}

/// Why no member's snapshot stream could be opened.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// A flag value that does not parse.
    #[error("failed to parse {flag} {value:?}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// A TLS file cannot be read.
    #[error("failed to read {path}")]
    ReadTls {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TLS settings the transport rejects.
    #[error("failed to configure TLS for {endpoint}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
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
    /// The member refused or broke the Snapshot RPC.
    #[error("failed to receive the snapshot from {endpoint}")]
    Rpc {
        /// The endpoint.
        endpoint: String,
        /// The status.
        #[source]
        source: tonic::Status,
    },
    /// No endpoint given.
    #[error("failed to pick a member: --endpoints is empty")]
    NoEndpoints,
}

/// An open snapshot stream and the member it comes from.
pub struct SnapshotStream {
    /// The client URL of the member.
    pub endpoint: String,
    /// The messages (chunks, then the SHA-256 trailer).
    pub stream: Streaming<SnapshotResponse>,
    /// The connection to the member, for calls about the same snapshot (HashKV).
    pub channel: Channel,
}

impl SnapshotStream {
    /// The next chunk of bytes, or `None` at the end of the stream.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, MemberError> {
        match self.stream.message().await {
            Ok(Some(m)) => Ok(Some(m.blob)),
            Ok(None) => Ok(None),
            Err(source) => Err(MemberError::Rpc {
                endpoint: self.endpoint.clone(),
                source,
            }),
        }
    }

    /// The member's HashKV at `revision`: the hash and the compaction revision it covers.
    pub async fn hash_kv(&self, revision: i64) -> Result<(u32, i64), MemberError> {
        let mut client = MaintenanceClient::new(self.channel.clone());
        let response = client
            .hash_kv(HashKvRequest { revision })
            .await
            .map_err(|source| MemberError::Rpc {
                endpoint: self.endpoint.clone(),
                source,
            })?
            .into_inner();
        Ok((response.hash, response.compact_revision))
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, MemberError> {
    std::fs::read(path).map_err(|source| MemberError::ReadTls {
        path: path.clone(),
        source,
    })
}

impl MemberArgs {
    /// The endpoint of `raw` as a URL: https when a CA is given and no scheme is.
    fn url(&self, raw: &str) -> String {
        if raw.contains("://") {
            raw.to_string()
        } else if self.cacert.is_some() {
            format!("https://{raw}")
        } else {
            format!("http://{raw}")
        }
    }

    async fn connect(&self, url: &str) -> Result<Channel, MemberError> {
        let dial = parse_timeout(&self.dial_timeout).ok_or_else(|| MemberError::Flag {
            flag: "--dial-timeout",
            value: self.dial_timeout.clone(),
        })?;
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|_| MemberError::Flag {
                flag: "--endpoints",
                value: url.to_string(),
            })?
            .connect_timeout(dial);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.cacert {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| MemberError::Tls {
                    endpoint: url.to_string(),
                    source,
                })?;
        }
        endpoint
            .connect()
            .await
            .map_err(|source| MemberError::Connect {
                endpoint: url.to_string(),
                source,
            })
    }

    /// Opens the Snapshot RPC on the first endpoint that answers. As etcdctl's blocking dial
    /// does, connections refused or timed out are tried again, round after round with a
    /// growing pause, until `--dial-timeout` has passed: a pod that has just started may not
    /// be admitted by the NetworkPolicy enforcer yet, and a member may be restarting.
    pub async fn open(&self) -> Result<SnapshotStream, MemberError> {
        let dial = parse_timeout(&self.dial_timeout).ok_or_else(|| MemberError::Flag {
            flag: "--dial-timeout",
            value: self.dial_timeout.clone(),
        })?;
        let deadline = tokio::time::Instant::now() + dial;
        let mut pause = RETRY_FIRST_PAUSE;
        loop {
            match self.open_once().await {
                Err(error @ MemberError::Connect { .. })
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %error, ?pause, "no member answers yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX_PAUSE);
                }
                outcome => return outcome,
            }
        }
    }

    /// One round over the endpoints; the last failure when none answers.
    async fn open_once(&self) -> Result<SnapshotStream, MemberError> {
        let mut last = MemberError::NoEndpoints;
        for raw in &self.endpoints {
            let url = self.url(raw);
            let channel = match self.connect(&url).await {
                Ok(c) => c,
                Err(e @ (MemberError::Flag { .. } | MemberError::ReadTls { .. })) => return Err(e),
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut client =
                MaintenanceClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
            match client.snapshot(SnapshotRequest {}).await {
                Ok(response) => {
                    return Ok(SnapshotStream {
                        endpoint: url,
                        stream: response.into_inner(),
                        channel,
                    });
                }
                Err(source) => {
                    last = MemberError::Rpc {
                        endpoint: url,
                        source,
                    }
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(endpoint: String, dial_timeout: &str) -> MemberArgs {
        MemberArgs {
            endpoints: vec![endpoint],
            cacert: None,
            cert: None,
            key: None,
            dial_timeout: dial_timeout.to_owned(),
        }
    }

    #[tokio::test]
    async fn refused_connections_are_tried_again_until_the_dial_timeout() {
        // A port nothing listens on: each attempt is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let started = std::time::Instant::now();
        let outcome = args(format!("127.0.0.1:{port}"), "800ms").open().await;
        let waited = started.elapsed();
        assert!(
            matches!(outcome, Err(MemberError::Connect { .. })),
            "{:?}",
            outcome.err()
        );
        assert!(
            waited >= Duration::from_millis(500),
            "gave up after {waited:?}"
        );
        assert!(waited < Duration::from_secs(3), "took {waited:?}");
    }

    #[tokio::test]
    async fn a_bad_dial_timeout_is_refused_before_connecting() {
        let outcome = args("127.0.0.1:1".to_owned(), "soon").open().await;
        assert!(matches!(outcome, Err(MemberError::Flag { .. })));
    }
}
