//! Certificate files as etcd's flags name them, read into rustls and tonic configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// Why certificate files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("cannot use {what} {path}: {why}")]
    File {
        /// Which flag's file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        why: String,
    },
    /// rustls refused the combination.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// The files of one side (client or peer), as etcd's flags name them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `--cert-file` / `--peer-cert-file`.
    pub cert: PathBuf,
    /// `--key-file` / `--peer-key-file`.
    pub key: PathBuf,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`.
    pub trusted_ca: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
}

/// Modification times and sizes of the files: a change means reload.
pub type Stamp = Vec<Option<(SystemTime, u64)>>;

fn file_err(what: &'static str, path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, path, e))?;
    if certs.is_empty() {
        return Err(file_err(what, path, "no certificate in it"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// The current stamp of the files.
    pub fn stamp(&self) -> Stamp {
        [Some(&self.cert), Some(&self.key), self.trusted_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let certs = read_certs("certificate", &self.cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_err("key", &self.key, e))?;
        Ok((certs, key))
    }

    fn roots(&self) -> Result<Option<rustls::RootCertStore>, TlsError> {
        let Some(ca) = &self.trusted_ca else {
            return Ok(None);
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs("trusted CA", ca)? {
            roots.add(cert).map_err(|e| file_err("trusted CA", ca, e))?;
        }
        Ok(Some(roots))
    }

    /// A server configuration: this side's certificate, and with client certificate
    /// authentication, only clients whose certificate the trusted CA signed.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let (certs, key) = self.identity()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.client_cert_auth {
            let roots = self.roots()?.ok_or_else(|| {
                TlsError::Config("client certificate authentication needs a trusted CA file".into())
            })?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        // gRPC clients (grpc-go in etcdctl and kube-apiserver) insist on ALPN h2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// A client configuration for connecting to peers: present this side's certificate and
    /// trust the trusted CA.
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let cert = std::fs::read(&self.cert).map_err(|e| file_err("certificate", &self.cert, e))?;
        let key = std::fs::read(&self.key).map_err(|e| file_err("key", &self.key, e))?;
        // Check that they parse, so a broken file fails here with its name.
        self.identity()?;
        let mut config = tonic::transport::ClientTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(ca) = &self.trusted_ca {
            read_certs("trusted CA", ca)?;
            let pem = std::fs::read(ca).map_err(|e| file_err("trusted CA", ca, e))?;
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        Ok(config)
    }
}
