//! Bootstrapping a member the way etcd does: `--initial-cluster` names every member of a new
//! cluster with its peer URLs, ids are derived from those URLs and `--initial-cluster-token`, and
//! `--initial-cluster-state existing` joins a running cluster (after `member add`) by asking its
//! members who this member is; a member the cluster knows as started cannot join again with an
//! empty data dir. A restarted member ignores these flags beyond checking that its data dir
//! belongs to the same member and cluster token.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::{InitialClusterState, MemberConfig};
use crate::datadir::{Identity, cluster_id, fresh_identity, member_id};
use crate::proto::peerpb::peer_client::PeerClient;
use crate::proto::peerpb::{ClusterInfoReply, ClusterInfoRequest};
use crate::raft::MemberNode;
use crate::version::Version;

/// How long a joining member keeps asking the cluster about itself.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);
/// Pause between rounds of asking.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// Why a member cannot be bootstrapped from its flags.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The cluster's version does not admit this member's (`crate::version`).
    #[error("refusing to join the cluster")]
    Skew(#[from] crate::version::SkewError),
    /// `--initial-cluster` does not parse.
    #[error("invalid --initial-cluster {value:?}: expected name=peer-url[,name=peer-url...]")]
    Syntax {
        /// The flag's value.
        value: String,
    },
    /// This member is not named in `--initial-cluster`.
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    MissingMember {
        /// `--name`.
        name: String,
    },
    /// This member's URLs differ between the flags.
    #[error(
        "--initial-cluster has {name}={cluster_urls} but missing from --initial-advertise-peer-urls={peer_urls}"
    )]
    PeerUrls {
        /// `--name`.
        name: String,
        /// URLs in `--initial-cluster`.
        cluster_urls: String,
        /// `--initial-advertise-peer-urls`.
        peer_urls: String,
    },
    /// Two members share a peer URL.
    #[error("--initial-cluster has duplicate peer URL {url}")]
    DuplicateUrl {
        /// The URL.
        url: String,
    },
    /// No member of the existing cluster answered.
    #[error(
        "could not join the existing cluster: no member of --initial-cluster answered at {urls} within {secs} s ({last})"
    )]
    NoPeer {
        /// URLs asked.
        urls: String,
        /// Patience.
        secs: u64,
        /// The last failure.
        last: String,
    },
    /// A member of the cluster refused this one.
    #[error("could not join the existing cluster: {url} refused: {why}")]
    Refused {
        /// The member asked.
        url: String,
        /// Its answer.
        why: String,
    },
    /// The cluster does not list this member's peer URLs.
    #[error(
        "the existing cluster has no member with peer URLs {urls}: add it first (etcdctl member add {name} --peer-urls={urls})"
    )]
    NotAdded {
        /// `--name`.
        name: String,
        /// This member's peer URLs.
        urls: String,
    },
    /// The cluster lists this member as one that has already started (it published its
    /// client URLs), yet this member starts with an empty data dir: its raft state (votes,
    /// log) is gone, and rejoining under the same id could elect two leaders in one term or
    /// lose acknowledged writes. It has to be removed and added again as a new member.
    #[error(
        "member {id:x} has already been bootstrapped, but its data dir is empty: remove it (etcdctl member remove {id:x}) and add it again (etcdctl member add {name} --peer-urls={urls})"
    )]
    AlreadyBootstrapped {
        /// The member's id.
        id: u64,
        /// `--name`.
        name: String,
        /// This member's peer URLs.
        urls: String,
    },
}

/// The members named by `--initial-cluster`, in order: name and peer URLs.
pub fn parse_initial_cluster(value: &str) -> Result<Vec<(String, Vec<String>)>, BootstrapError> {
    let bad = || BootstrapError::Syntax {
        value: value.to_string(),
    };
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').ok_or_else(bad)?;
        if name.is_empty() || url.is_empty() {
            return Err(bad());
        }
        if !seen.insert(url.to_string()) {
            return Err(BootstrapError::DuplicateUrl {
                url: url.to_string(),
            });
        }
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if members.is_empty() {
        return Err(bad());
    }
    Ok(members)
}

/// What the flags say about the cluster this member starts in.
pub struct Bootstrap {
    /// Every member of `--initial-cluster`: name and peer URLs.
    pub members: Vec<(String, Vec<String>)>,
    /// `new` or `existing`.
    pub state: InitialClusterState,
}

/// Refuses, before anything is written, a cluster whose version does not admit `server`
/// (a peer that answers no cluster version leaves the check to the running member).
fn check_join_skew(server: Version, reply: &ClusterInfoReply) -> Result<(), BootstrapError> {
    let Ok(cluster) = reply.cluster_version.parse::<Version>() else {
        return Ok(());
    };
    let downgrade = reply.downgrade_target.parse().ok();
    Ok(crate::version::check_skew(server, cluster, downgrade)?)
}

impl Bootstrap {
    /// Reads and checks the cluster flags of `cfg`.
    pub fn from_flags(cfg: &MemberConfig) -> Result<Self, BootstrapError> {
        let members = match &cfg.initial_cluster {
            Some(v) => parse_initial_cluster(v)?,
            None => vec![(cfg.name.clone(), cfg.initial_advertise_peer_urls.clone())],
        };
        let own = members
            .iter()
            .find(|(n, _)| *n == cfg.name)
            .map(|(_, urls)| urls)
            .ok_or_else(|| BootstrapError::MissingMember {
                name: cfg.name.clone(),
            })?;
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        if set(own) != set(&cfg.initial_advertise_peer_urls) {
            return Err(BootstrapError::PeerUrls {
                name: cfg.name.clone(),
                cluster_urls: own.join(","),
                peer_urls: cfg.initial_advertise_peer_urls.join(","),
            });
        }
        Ok(Self {
            members,
            state: cfg.initial_cluster_state,
        })
    }

    /// The identity of a new member of a new cluster.
    pub fn new_identity(&self, cfg: &MemberConfig) -> Identity {
        let token = &cfg.initial_cluster_token;
        let ids: Vec<u64> = self
            .members
            .iter()
            .map(|(_, urls)| member_id(urls, token))
            .collect();
        let mut identity = fresh_identity(&cfg.name, &cfg.initial_advertise_peer_urls, token);
        identity.cluster_id = cluster_id(&ids, token);
        identity
    }

    /// The first membership of a new cluster, this member (`self_id`) included. Every member
    /// must build exactly the same one (it is log entry 0 everywhere), so it holds only what
    /// all of them know from the flags: names and peer URLs. Client URLs arrive when each
    /// member publishes them, as etcd's members publish their attributes.
    pub fn initial_members(&self, cfg: &MemberConfig, self_id: u64) -> BTreeMap<u64, MemberNode> {
        self.members
            .iter()
            .map(|(name, urls)| {
                let id = if *name == cfg.name {
                    self_id
                } else {
                    member_id(urls, &cfg.initial_cluster_token)
                };
                let node = MemberNode {
                    name: name.clone(),
                    peer_urls: urls.clone(),
                    client_urls: Vec::new(),
                };
                (id, node)
            })
            .collect()
    }

    /// Asks the other members for the cluster's id and this member's id (assigned by
    /// `member add`), retrying for a while since they may be starting too.
    pub async fn join_identity(
        &self,
        cfg: &MemberConfig,
        tls: Option<&crate::tls::ReloadingClientConfig>,
        server_version: Version,
    ) -> Result<Identity, BootstrapError> {
        let urls: Vec<String> = self
            .members
            .iter()
            .filter(|(n, _)| *n != cfg.name)
            .flat_map(|(_, urls)| urls.iter().cloned())
            .collect();
        let own: BTreeSet<&String> = cfg.initial_advertise_peer_urls.iter().collect();
        let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
        let mut last = String::from("no peers named");
        loop {
            for url in &urls {
                let tls = tls.map(|t| t.current().0);
                let Some(endpoint) = crate::peer::endpoint(url, tls) else {
                    last = format!("{url}: not a URL (or https without --peer-cert-file)");
                    continue;
                };
                let mut client = PeerClient::new(endpoint.connect_lazy());
                let request = ClusterInfoRequest {
                    token: cfg.initial_cluster_token.clone(),
                };
                match client.cluster_info(request).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        let me = reply
                            .members
                            .iter()
                            .find(|m| m.peer_ur_ls.iter().collect::<BTreeSet<_>>() == own);
                        let Some(me) = me else {
                            return Err(BootstrapError::NotAdded {
                                name: cfg.name.clone(),
                                urls: cfg.initial_advertise_peer_urls.join(","),
                            });
                        };
                        if !me.client_ur_ls.is_empty() {
                            return Err(BootstrapError::AlreadyBootstrapped {
                                id: me.id,
                                name: cfg.name.clone(),
                                urls: cfg.initial_advertise_peer_urls.join(","),
                            });
                        }
                        check_join_skew(server_version, &reply)?;
                        let mut identity = fresh_identity(
                            &cfg.name,
                            &cfg.initial_advertise_peer_urls,
                            &cfg.initial_cluster_token,
                        );
                        identity.member_id = me.id;
                        identity.cluster_id = reply.cluster_id;
                        return Ok(identity);
                    }
                    // A member that answers and refuses (another cluster token) is final.
                    Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                        return Err(BootstrapError::Refused {
                            url: url.clone(),
                            why: status.message().to_string(),
                        });
                    }
                    Err(status) => last = format!("{url}: {}", status.message()),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BootstrapError::NoPeer {
                    urls: urls.join(","),
                    secs: JOIN_PATIENCE.as_secs(),
                    last,
                });
            }
            tokio::time::sleep(JOIN_RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn initial_cluster_parses_names_and_urls() {
        let m = parse_initial_cluster("a=http://1:2380,b=http://2:2380,a=http://3:2380").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, vec!["http://1:2380", "http://3:2380"]);
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("=http://x:1").is_err());
        assert!(matches!(
            parse_initial_cluster("a=http://x:1,b=http://x:1"),
            Err(BootstrapError::DuplicateUrl { .. })
        ));
    }
}
