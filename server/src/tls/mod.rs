//! TLS with etcd's flags: `--cert-file --key-file --trusted-ca-file --client-cert-auth` for
//! https client URLs and the `--peer-*` equivalents for https peer URLs and for the connections
//! to peers. Certificate files are watched: when one changes, new connections use the new files
//! without a restart (connections already open keep theirs, as with etcd).

pub mod accept;
pub mod files;
pub mod flags;

pub use files::{TlsError, TlsFiles};

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_rustls::rustls;

/// How often the certificate files are looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// A server configuration rebuilt when its files change.
pub struct ReloadingServerConfig {
    files: TlsFiles,
    state: Mutex<ServerState>,
}

struct ServerState {
    stamp: files::Stamp,
    config: Arc<rustls::ServerConfig>,
    checked: Instant,
}

impl ReloadingServerConfig {
    /// Loads `files` (failing when they are unusable, so a bad start is refused).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let config = Arc::new(files.server_config()?);
        Ok(Self {
            files,
            state: Mutex::new(ServerState {
                stamp,
                config,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration for a new connection: re-read when the files changed (a broken new
    /// set of files is reported and the previous configuration kept).
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let mut state = self.state.lock();
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamp = self.files.stamp();
            if stamp != state.stamp {
                match self.files.server_config() {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "certificate files changed: reloaded");
                        state.config = Arc::new(config);
                        state.stamp = stamp;
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::error::chain(&e), "certificate files changed but cannot be used; keeping the previous ones");
                    }
                }
            }
        }
        state.config.clone()
    }
}

/// Client-side TLS for connections to peers, rebuilt when its files change.
pub struct ReloadingClientConfig {
    files: TlsFiles,
    state: Mutex<ClientState>,
}

struct ClientState {
    stamp: files::Stamp,
    config: tonic::transport::ClientTlsConfig,
    checked: Instant,
    generation: u64,
}

impl ReloadingClientConfig {
    /// Loads `files`.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let config = files.client_config()?;
        Ok(Self {
            files,
            state: Mutex::new(ClientState {
                stamp,
                config,
                checked: Instant::now(),
                generation: 0,
            }),
        })
    }

    /// The current configuration and its generation (which changes when files are reloaded,
    /// so callers know to drop connections made with the old files).
    pub fn current(&self) -> (tonic::transport::ClientTlsConfig, u64) {
        let mut state = self.state.lock();
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamp = self.files.stamp();
            if stamp != state.stamp {
                match self.files.client_config() {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "peer certificate files changed: reloaded");
                        state.config = config;
                        state.stamp = stamp;
                        state.generation += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::error::chain(&e), "peer certificate files changed but cannot be used; keeping the previous ones");
                    }
                }
            }
        }
        (state.config.clone(), state.generation)
    }
}
