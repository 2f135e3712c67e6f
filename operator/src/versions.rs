//! A cluster's oxcd release versions: each member's and the cluster version. The etcd gRPC API
//! cannot tell them (its Status reports the etcd API version oxcd implements, the same for every
//! oxcd release), so they come from a member's `GET /version` on its metrics port (2381): etcd's
//! JSON fields plus oxcd's, where one member's answer lists every member's advertised version as
//! that member has applied them.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// How long reading the versions may take: a slow member must not stall a reconcile.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer accepted (one short line per member).
const MAX_BODY: usize = 64 << 10;

/// What `GET /version` says about oxcd's versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ClusterVersions {
    /// The cluster version (`major.minor.0`), once the leader has decided it.
    #[serde(rename = "oxcdcluster", default)]
    pub cluster: Option<String>,
    /// Every member's advertised release version, by member id in hex.
    #[serde(rename = "oxcdmembers", default)]
    pub members: BTreeMap<String, String>,
}

impl ClusterVersions {
    /// The release version member `id` advertised, if known.
    pub fn member(&self, id: u64) -> Option<&str> {
        self.members.get(&format!("{id:x}")).map(String::as_str)
    }
}

/// Why the versions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    /// No connection.
    #[error("failed to connect to {address}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("GET /version from {address} failed")]
    Http {
        /// `host:port`.
        address: String,
        /// The HTTP error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The member answered with an error status.
    #[error("GET /version from {address} answered {status}")]
    Status {
        /// `host:port`.
        address: String,
        /// The HTTP status.
        status: hyper::StatusCode,
    },
    /// The answer is not the JSON expected.
    #[error("GET /version from {address} answered undecodable JSON")]
    Decode {
        /// `host:port`.
        address: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No answer in time.
    #[error("GET /version from {address} timed out after {TIMEOUT:?}")]
    Timeout {
        /// `host:port`.
        address: String,
    },
}

/// Reads the versions from the member at `host`, metrics port `port` (plain HTTP, as
/// `--listen-metrics-urls` serves it).
pub async fn read(host: &str, port: u16) -> Result<ClusterVersions, VersionsError> {
    let address = format!("{host}:{port}");
    tokio::time::timeout(TIMEOUT, fetch(host, &address))
        .await
        .map_err(|_| VersionsError::Timeout {
            address: address.clone(),
        })?
}

async fn fetch(host: &str, address: &str) -> Result<ClusterVersions, VersionsError> {
    let http = |source: Box<dyn std::error::Error + Send + Sync>| VersionsError::Http {
        address: address.to_owned(),
        source,
    };
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| VersionsError::Connect {
            address: address.to_owned(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(e.into()))?;
    // Drives the connection; it ends once the answer is read and the sender dropped.
    tokio::spawn(connection);
    let request = hyper::Request::get("/version")
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(e.into()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http(e.into()))?;
    if !response.status().is_success() {
        return Err(VersionsError::Status {
            address: address.to_owned(),
            status: response.status(),
        });
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|source| VersionsError::Decode {
        address: address.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_answer_names_the_cluster_version_and_each_members() {
        let answer = r#"{"etcdserver":"3.6.16","etcdcluster":"3.6.0","storage":"3.6.0",
            "oxcd":"0.2.0","oxcdcluster":"0.1.0","oxcdstorage":1,
            "oxcdmembers":{"a0":"0.1.0","a1":"0.2.0"},
            "downgrade":{"target-version":"","enabled":false}}"#;
        let versions: ClusterVersions = serde_json::from_str(answer).unwrap();
        assert_eq!(versions.cluster.as_deref(), Some("0.1.0"));
        assert_eq!(versions.member(0xa1), Some("0.2.0"));
        assert_eq!(versions.member(0xb0), None);
        // An etcd (or an older oxcd) answers without oxcd's fields: nothing is known.
        let etcd: ClusterVersions =
            serde_json::from_str(r#"{"etcdserver":"3.6.16","etcdcluster":"3.6.0"}"#).unwrap();
        assert_eq!(etcd, ClusterVersions::default());
    }

    #[tokio::test]
    async fn a_member_that_does_not_answer_is_an_error_not_a_hang() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let error = read("127.0.0.1", port).await.unwrap_err();
        assert!(matches!(error, VersionsError::Connect { .. }), "{error}");
    }
}
