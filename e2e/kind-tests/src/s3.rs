//! A minimal S3 client for tests of the in-cluster S3 server (`e2e/kind/manifests/s3.yaml`):
//! path-style requests signed with AWS Signature Version 4, sent as HTTP/1.0 through a port-forward
//! of the server's pod (the API server's portforward subresource), so nothing but the cluster's
//! API server is contacted from the test.

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The credentials of `e2e/kind/manifests/s3.yaml` (its Secret `s3-credentials`).
pub const ACCESS_KEY: &str = "oxcd-e2e";
/// The secret key of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "oxcd-e2e-secret";
/// How long the server may take to be available (volume provisioning included).
const DEPLOY_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// Deploys the in-cluster S3 server (`e2e/kind/manifests/s3.yaml`) in `ns`, waits until it is
/// available, and returns how to reach it as Service `s3` on port 9000.
pub async fn deploy_s3(client: &kube::Client, ns: &str) -> anyhow::Result<S3Endpoint> {
    let image = format!("oxcd.local/s3:{}", crate::pinned_version("S3S_FS_VERSION")?);
    crate::apply_manifest(ns, "e2e/kind/manifests/s3.yaml", &[("@IMAGE@", &image)]).await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    crate::await_condition(
        &deployments,
        "s3",
        "available",
        DEPLOY_WAIT,
        crate::deployment_available,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=s3"))
        .await?
        .items
        .into_iter()
        .find_map(|p| p.metadata.name)
        .context("no pod of the s3 Deployment")?;
    Ok(S3Endpoint {
        pods,
        pod,
        port: 9000,
        host: "s3:9000".to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
    })
}

/// The signing region; the server accepts any region in the credential scope.
const REGION: &str = "us-east-1";

/// Where the S3 server listens and the keys it accepts.
#[derive(Debug, Clone)]
pub struct S3Endpoint {
    /// Pods of the server's namespace.
    pub pods: Api<Pod>,
    /// The server's pod.
    pub pod: String,
    /// The server's port in the pod.
    pub port: u16,
    /// The value of the Host header (signed).
    pub host: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

/// An HTTP response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Response {
    /// HTTP status code.
    pub status: u16,
    /// Response body.
    pub body: Vec<u8>,
}

impl S3Endpoint {
    /// Sends `method path` with `body`, signed, and returns the server's response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<S3Response> {
        let amz_date = Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let request = self.signed_request(method, path, body, &amz_date);
        let mut forwarder = self
            .pods
            .portforward(&self.pod, &[self.port])
            .await
            .with_context(|| format!("failed to port-forward to {}:{}", self.pod, self.port))?;
        let mut stream = forwarder
            .take_stream(self.port)
            .context("the port-forward gave no stream")?;
        stream.write_all(&request).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .context("failed to read the S3 response")?;
        // The server closed the connection (HTTP/1.0): the forwarder's own closing handshake
        // then fails, so it is stopped instead of joined.
        drop(stream);
        forwarder.abort();
        parse_response(&response)
    }

    /// The request line and headers of a SigV4-signed request (`amz_date` as
    /// `YYYYMMDDTHHMMSSZ`); the body follows them.
    fn signed_request(&self, method: &str, path: &str, body: &[u8], amz_date: &str) -> Vec<u8> {
        let date = &amz_date[..8];
        let payload_hash = hex(&Sha256::digest(body));
        let canonical = format!(
            "{method}\n{path}\n\nhost:{}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_hash}",
            self.host
        );
        let scope = format!("{date}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [REGION, "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nx-amz-date: {amz_date}\r\n\
             x-amz-content-sha256: {payload_hash}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={}/{scope}, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}\r\n\r\n",
            self.host,
            body.len(),
            self.access_key
        )
        .into_bytes()
    }
}

fn parse_response(raw: &[u8]) -> anyhow::Result<S3Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the S3 response has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or_default();
    let Some(code) = status_line.split_whitespace().nth(1) else {
        bail!("malformed status line {status_line:?}");
    };
    Ok(S3Response {
        status: code
            .parse()
            .with_context(|| format!("malformed status line {status_line:?}"))?,
        body: raw[split + 4..].to_vec(),
    })
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn parses_status_and_body() -> anyhow::Result<()> {
        let response = parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n<Error/>")?;
        assert_eq!(response.status, 404);
        assert_eq!(response.body, b"<Error/>");
        Ok(())
    }
}
