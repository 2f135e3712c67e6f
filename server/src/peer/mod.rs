//! The member-to-member transport on the peer URLs: one gRPC channel per peer, shared by Raft
//! replication (`raft::network`), snapshot transfer and the requests a follower hands to its
//! leader (`forward`); the receiving side is `service`.

pub mod append_stream;
pub mod forward;
pub mod read_index;
pub mod service;
pub mod transfer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::proto::peerpb::PeerHeader;
use crate::proto::peerpb::peer_client::PeerClient;
use crate::raft::MemberNode;
use crate::tls::ReloadingClientConfig;

/// gRPC metadata key a member sets on an answer meaning "I am not the leader (any more)".
pub const NOT_LEADER: &str = "oxcd-not-leader";
/// How long connecting to a peer may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Raft messages carry batches of entries; the Raft configuration bounds them, not gRPC.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Why a peer could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The member has no usable peer URL.
    #[error("member {member} has no usable peer URL ({urls:?})")]
    NoUrl {
        /// Its name.
        member: String,
        /// Its URLs.
        urls: Vec<String>,
    },
    /// The request failed.
    #[error("peer request failed: {0}")]
    Status(#[from] tonic::Status),
}

/// The channels to this member's peers.
pub struct Peers {
    /// This member's id.
    pub self_id: u64,
    /// The cluster's id, sent with every request.
    pub cluster_id: u64,
    tls: Option<Arc<ReloadingClientConfig>>,
    /// Channels by URL, and the TLS generation they were made with.
    channels: Mutex<(u64, HashMap<String, Channel>)>,
}

impl Peers {
    /// Peers of member `self_id` in cluster `cluster_id`, dialed with `tls` (the peer TLS
    /// flags) for https peer URLs.
    pub fn new(self_id: u64, cluster_id: u64, tls: Option<Arc<ReloadingClientConfig>>) -> Self {
        Self {
            self_id,
            cluster_id,
            tls,
            channels: Mutex::new((0, HashMap::new())),
        }
    }

    /// The header of a request to member `to`.
    pub fn header(&self, to: u64) -> Option<PeerHeader> {
        Some(PeerHeader {
            cluster_id: self.cluster_id,
            from: self.self_id,
            to,
        })
    }

    /// A client for `node`, over a channel that reconnects by itself.
    pub fn client(&self, node: &MemberNode) -> Result<PeerClient<Channel>, PeerError> {
        let no_url = || PeerError::NoUrl {
            member: node.name.clone(),
            urls: node.peer_urls.clone(),
        };
        let url = node.peer_urls.first().ok_or_else(no_url)?;
        let tls = self.tls.as_ref().map(|t| t.current());
        let mut channels = self.channels.lock();
        let generation = tls.as_ref().map_or(0, |(_, g)| *g);
        if channels.0 != generation {
            // Certificate files changed: new connections use the new ones.
            channels.1.clear();
            channels.0 = generation;
        }
        let channel = match channels.1.get(url) {
            Some(c) => c.clone(),
            None => {
                let channel = endpoint(url, tls.map(|(config, _)| config))
                    .ok_or_else(no_url)?
                    .connect_lazy();
                channels.1.insert(url.clone(), channel.clone());
                channel
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// An endpoint for a peer URL (`http://`, or `https://` with `tls`).
pub fn endpoint(url: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> Option<Endpoint> {
    let mut ep = Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        ep = ep.tls_config(tls?).ok()?;
    }
    Some(ep)
}

/// A "not the leader" answer.
pub fn not_leader() -> tonic::Status {
    let mut status = tonic::Status::failed_precondition("etcdserver: not leader");
    status
        .metadata_mut()
        .insert(NOT_LEADER, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// True for an answer from a member that is not (or no longer) the leader.
pub fn is_not_leader(status: &tonic::Status) -> bool {
    status.metadata().contains_key(NOT_LEADER)
}
