//! etcd's TLS flags (and their `ETCD_*` variables) for clients and peers.

use std::path::PathBuf;

use clap::Args;

use super::{ReloadingClientConfig, ReloadingServerConfig, TlsError, TlsFiles};

/// The TLS flags of a member.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub client_cert_auth: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub peer_client_cert_auth: bool,
}

/// The TLS a member serves and dials with.
pub struct MemberTls {
    /// For https client URLs.
    pub client: Option<std::sync::Arc<ReloadingServerConfig>>,
    /// For https peer URLs.
    pub peer_server: Option<std::sync::Arc<ReloadingServerConfig>>,
    /// For connecting to peers.
    pub peer_client: Option<std::sync::Arc<ReloadingClientConfig>>,
}

fn files(
    side: &'static str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
    auth: bool,
) -> Result<Option<TlsFiles>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            trusted_ca: ca.clone(),
            client_cert_auth: auth,
        })),
        (None, None) if !auth => Ok(None),
        (None, None) => Err(TlsError::Config(format!(
            "--{side}client-cert-auth needs --{side}cert-file and --{side}key-file"
        ))),
        _ => Err(TlsError::Config(format!(
            "--{side}cert-file and --{side}key-file go together"
        ))),
    }
}

impl TlsFlags {
    /// Loads the configured files; `https_clients` / `https_peers` say whether any client or
    /// peer URL needs them (etcd refuses https URLs without certificates).
    pub fn load(&self, https_clients: bool, https_peers: bool) -> Result<MemberTls, TlsError> {
        let client = files(
            "",
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
        )?;
        let peer = files(
            "peer-",
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )?;
        if https_clients && client.is_none() {
            return Err(TlsError::Config(
                "TLS key/cert (--cert-file, --key-file) must be provided for https client URLs"
                    .into(),
            ));
        }
        if https_peers && peer.is_none() {
            return Err(TlsError::Config(
                "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for https peer URLs"
                    .into(),
            ));
        }
        let client = client
            .map(ReloadingServerConfig::load)
            .transpose()?
            .map(std::sync::Arc::new);
        let (peer_server, peer_client) = match peer {
            Some(files) => (
                Some(std::sync::Arc::new(ReloadingServerConfig::load(
                    files.clone(),
                )?)),
                Some(std::sync::Arc::new(ReloadingClientConfig::load(files)?)),
            ),
            None => (None, None),
        };
        Ok(MemberTls {
            client,
            peer_server,
            peer_client,
        })
    }
}
