//! Wiring of one member: data dir, engine, store, Raft, the gRPC listeners and background tasks,
//! and an orderly shutdown that leaves everything flushed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::transport::Server;

use crate::api::cluster::ClusterService;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::maintenance::MaintenanceService;
use crate::api::unimplemented::PendingAuth;
use crate::api::watch::WatchService;
use crate::api::{GRPC_OVERHEAD_BYTES, Limits, Member};
use crate::bootstrap::{Bootstrap, BootstrapError};
use crate::config::{ConfigError, InitialClusterState, MemberConfig, listen_addr};
use crate::datadir::{DataDir, DataDirError};
use crate::http::{GrpcMetricsLayer, MemberProbe, Metrics};
use crate::mvcc::MvccStore;
use crate::mvcc::watch_hub::WatchHub;
use crate::peer::service::PeerService;
use crate::peer::{MAX_MESSAGE_BYTES, Peers};
use crate::proto::etcdserverpb::Member as PbMember;
use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::peerpb::peer_server::PeerServer;
use crate::raft::snapshot::Snapshots;
use crate::raft::{RaftPaths, RaftSettings, RaftState, StartError};
use crate::storage::sled_engine::SledEngine;
use crate::storage::{Engine, StorageError};

/// Why a member could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A flag value is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The data dir cannot be used.
    #[error("cannot use the data dir")]
    DataDir(#[from] DataDirError),
    /// The storage engine failed to open (a corrupt or foreign database).
    #[error("failed to open the store at {path}")]
    Storage {
        /// Database directory.
        path: std::path::PathBuf,
        /// Engine error.
        #[source]
        source: StorageError,
    },
    /// The Raft log of a format 1 data dir could not be moved into the WAL.
    #[error("cannot move the raft log of the data dir into its WAL")]
    MoveLog(#[source] crate::raft::legacy_log::MoveError),
    /// The cluster flags do not describe a cluster this member can start in.
    #[error("cannot bootstrap")]
    Bootstrap(#[from] BootstrapError),
    /// The TLS flags or files cannot be used.
    #[error("cannot set up TLS")]
    Tls(#[source] crate::tls::TlsError),
    /// The snapshot directory cannot be used.
    #[error("cannot use the snapshot directory")]
    Snapshots(#[source] crate::raft::snapshot::SnapshotError),
    /// Raft failed to start.
    #[error("failed to start replication")]
    Raft(#[from] StartError),
    /// A listener could not be bound.
    #[error("failed to listen on {url}")]
    Listen {
        /// The URL from the flags.
        url: String,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("client listener failed")]
    Serve(#[source] tonic::transport::Error),
    /// The version to advertise (test override) does not parse.
    #[error("cannot determine the server version")]
    Version(#[from] crate::version::ParseVersionError),
    /// This member's version is too far from the cluster version.
    #[error("refusing to run in this cluster")]
    Skew(#[from] crate::version::SkewError),
}

/// Where metrics and health are served when `--listen-metrics-urls` is not given.
const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:2381";

/// Binds every URL of `flag`; each listener says whether its URL is https.
async fn bind_all(
    flag: &'static str,
    urls: &[String],
) -> Result<Vec<(bool, TcpListener)>, ServerError> {
    let mut listeners = Vec::new();
    for url in urls {
        let https = url.starts_with("https://");
        let host_port = listen_addr(flag, url)?;
        let listen_err = |source| ServerError::Listen {
            url: url.clone(),
            source,
        };
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host(&host_port)
            .await
            .map_err(listen_err)?
            .collect();
        addrs.sort();
        addrs.dedup();
        for addr in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Listen {
                    url: url.clone(),
                    source,
                })?;
            tracing::info!(%addr, flag, https, "listening");
            listeners.push((https, listener));
        }
    }
    Ok(listeners)
}

/// Opens the member described by `cfg` and serves until `shutdown` resolves.
pub async fn run(
    cfg: MemberConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    cfg.validate()?;
    let server_version = crate::version::advertised()?;
    let bootstrap = Bootstrap::from_flags(&cfg)?;
    let https = |urls: &[String]| urls.iter().any(|u| u.starts_with("https://"));
    let tls = cfg
        .tls
        .load(
            https(&cfg.listen_client_urls),
            https(&cfg.listen_peer_urls) || https(&cfg.initial_advertise_peer_urls),
        )
        .map_err(ServerError::Tls)?;
    let root = cfg.data_dir();
    // A member joining a running cluster learns its id from it; everyone else derives ids
    // from the flags, as etcd does.
    let fresh = if !DataDir::exists(&root) && bootstrap.state == InitialClusterState::Existing {
        bootstrap
            .join_identity(&cfg, tls.peer_client.as_deref(), server_version)
            .await?
    } else {
        bootstrap.new_identity(&cfg)
    };
    let mut data_dir = DataDir::open(&root, fresh)?;
    let db_path = data_dir.db_path();
    let storage_err = |source| ServerError::Storage {
        path: db_path.clone(),
        source,
    };
    let engine: Arc<dyn Engine> =
        Arc::new(SledEngine::open(&db_path, cfg.backend_cache_bytes).map_err(storage_err)?);
    if data_dir.identity.format == crate::datadir::FORMAT_LOG_IN_ENGINE {
        crate::raft::legacy_log::move_into_wal(engine.as_ref(), &data_dir.wal_path())
            .map_err(ServerError::MoveLog)?;
        data_dir.record_current_format()?;
        tracing::info!(wal = %data_dir.wal_path().display(), "moved the raft log into the WAL (data dir format 1 to 2)");
    }
    let mvcc_ks = engine.keyspace("mvcc").map_err(storage_err)?;
    let store = Arc::new(MvccStore::open(mvcc_ks).map_err(storage_err)?);
    // A restart with a binary the cluster cannot accept stops before anything else starts.
    let versions = crate::version::state::load(&store).map_err(|e| {
        storage_err(StorageError::Corrupt {
            what: format!("the version record ({e})"),
        })
    })?;
    crate::version::monitor::check_state(server_version, &versions)?;
    let settings = RaftSettings {
        heartbeat_ms: cfg.heartbeat_interval,
        election_ms: cfg.election_timeout,
        snapshot_count: cfg.snapshot_count.max(1),
    };
    let identity = data_dir.identity.clone();
    let hub = Arc::new(WatchHub::new(crate::mvcc::KvRead::rev(store.as_ref())));
    let metrics = Arc::new(Metrics::new());
    let snapshots = Arc::new(
        Snapshots::new(
            data_dir.snapshot_dir(),
            store.clone(),
            engine.clone(),
            hub.clone(),
        )
        .map_err(ServerError::Snapshots)?,
    );
    let peers = Arc::new(Peers::new(
        identity.member_id,
        identity.cluster_id,
        tls.peer_client.clone(),
    ));
    // Listeners first: a port in use fails the start before anything is initialized.
    let peer_listeners = bind_all("--listen-peer-urls", &cfg.listen_peer_urls).await?;
    let listeners = bind_all("--listen-client-urls", &cfg.listen_client_urls).await?;
    let applied = Arc::new(crate::raft::watermark::AppliedIndex::default());
    let state = RaftState {
        engine: engine.clone(),
        store: store.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        snapshots: snapshots.clone(),
        peers: peers.clone(),
        applied: applied.clone(),
    };
    let paths = RaftPaths {
        watermark: data_dir.watermark_path(),
        wal: data_dir.wal_path(),
        db: db_path.clone(),
        restored_marker: data_dir.restored_marker(),
    };
    let initial = (bootstrap.state == InitialClusterState::New)
        .then(|| bootstrap.initial_members(&cfg, identity.member_id));
    let raft = crate::raft::start(identity.member_id, initial, state, &settings, &paths).await?;
    let announced = PbMember {
        id: identity.member_id,
        name: cfg.name.clone(),
        peer_ur_ls: cfg.initial_advertise_peer_urls.clone(),
        client_ur_ls: cfg.advertise_client_urls.clone(),
        is_learner: false,
    };
    let member = Arc::new_cyclic(|weak| Member {
        raft: raft.clone(),
        applied,
        store,
        engine: engine.clone(),
        hub,
        identity,
        metrics: metrics.clone(),
        proposer: crate::api::proposer::Proposer::start(weak.clone()),
        limits: Limits {
            max_request_bytes: cfg.max_request_bytes as usize,
            max_txn_ops: cfg.max_txn_ops as usize,
            quota_bytes: cfg.quota_bytes(),
            min_lease_ttl: cfg.min_lease_ttl(),
        },
        peers,
        snapshots,
        announced,
        max_learners: cfg.max_learners,
        election_timeout: std::time::Duration::from_millis(cfg.election_timeout),
        leadership: Default::default(),
        reads: crate::peer::read_index::ReadIndexBatcher::start(weak.clone()),
        server_version,
    });
    let publish_version = tokio::spawn(crate::version::monitor::publish(member.clone()));
    let cluster_version = tokio::spawn(crate::version::monitor::decide_cluster_version(
        member.clone(),
    ));
    let skew_guard = crate::version::monitor::guard(member.clone());
    let quorum_check = tokio::spawn(crate::api::leadership::check_quorum(member.clone()));
    let publish = tokio::spawn(crate::api::membership::publish(member.clone()));
    let raft_metrics = tokio::spawn(metrics.clone().follow_raft(raft.clone()));
    let probe: Arc<dyn MemberProbe> = member.clone();
    let compactor = tokio::spawn(crate::compactor::run(member.clone(), cfg.retention()?));
    let lease_expiry = tokio::spawn(crate::api::lease::expire_leases(member.clone()));

    let metrics_listeners = if cfg.listen_metrics_urls.is_empty() {
        let default = [DEFAULT_METRICS_URL.to_string()];
        bind_all("--listen-metrics-urls", &default)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %crate::error::chain(&e), "serving no metrics: the default metrics URL is unavailable");
                Vec::new()
            })
    } else {
        bind_all("--listen-metrics-urls", &cfg.listen_metrics_urls).await?
    };
    let grpc_metrics = GrpcMetricsLayer::new(metrics.clone());
    // Snapshot images are staged beside the store, where there is room for a copy of it.
    let scratch_dir = db_path
        .parent()
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let max_decode = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (https, listener) in listeners {
        let router = Server::builder()
            .layer(grpc_metrics.clone())
            .layer(tower::util::MapResponseLayer::new(
                crate::api::grpc_status::etcd_oversize_status,
            ))
            .add_service(
                KvServer::new(KvService::new(member.clone())).max_decoding_message_size(max_decode),
            )
            .add_service(
                WatchServer::new(WatchService::new(
                    member.clone(),
                    cfg.watch_progress_notify_interval()?,
                ))
                .max_decoding_message_size(max_decode),
            )
            .add_service(LeaseServer::new(LeaseService::new(member.clone())))
            .add_service(ClusterServer::new(ClusterService::new(member.clone())))
            .add_service(MaintenanceServer::new(
                MaintenanceService::new(member.clone()).with_scratch_dir(scratch_dir.clone()),
            ))
            .add_service(AuthServer::new(PendingAuth));
        let mut stop = stop_rx.clone();
        let tls = if https { tls.client.clone() } else { None };
        // Client connections batch their responses into fewer writes (see `coalesce`).
        let incoming = crate::tls::accept::incoming(listener, tls)
            .map(|conn| conn.map(crate::coalesce::Coalescing::new));
        servers.spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    for (https, listener) in peer_listeners {
        let router = Server::builder().add_service(
            PeerServer::new(PeerService::new(member.clone(), stop_rx.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
        let mut stop = stop_rx.clone();
        let tls = if https { tls.peer_server.clone() } else { None };
        servers.spawn(router.serve_with_incoming_shutdown(
            crate::tls::accept::incoming(listener, tls),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }
    let mut http_servers = tokio::task::JoinSet::new();
    for (_, listener) in metrics_listeners {
        let mut stop = stop_rx.clone();
        http_servers.spawn(crate::http::serve(
            listener,
            member.clone(),
            probe.clone(),
            metrics.clone(),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }
    tracing::info!(name = %cfg.name, member_id = %format!("{:x}", member.identity.member_id), "ready to serve client requests");

    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        e = skew_guard => {
            tracing::error!(error = %e, "this member's version cannot run in this cluster; stopping");
            Err(ServerError::Skew(e))
        },
        Some(joined) = servers.join_next() => match joined {
            Ok(Err(e)) => Err(ServerError::Serve(e)),
            _ => Ok(()),
        },
    };
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    while http_servers.join_next().await.is_some() {}
    raft_metrics.abort();
    compactor.abort();
    lease_expiry.abort();
    publish.abort();
    publish_version.abort();
    cluster_version.abort();
    quorum_check.abort();
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not shut down cleanly");
    }
    engine.flush().map_err(|source| ServerError::Storage {
        path: db_path,
        source,
    })?;
    tracing::info!("stopped");
    outcome
}
