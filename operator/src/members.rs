//! The operator's only way to a cluster's members: the etcd v3 API through the `etcd-client`
//! crate (never the server's code). Reads the membership and each member's status, and makes
//! the membership changes the plan decides: add a learner, promote it, remove a member, move
//! the leadership.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, DowngradeOptions, Identity, MemberAddOptions, TlsOptions,
};

use crate::names::{METRICS_PORT, Names};

/// How long connecting to a member may take; unreachable members must not stall a reconcile.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// PEM material of the client certificate the operator presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// CA that signed the members' server certificates.
    pub ca: String,
    /// Client certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
}

/// What a member reported about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHealth {
    /// The version to show: its oxcd release version when known, else the etcd API version
    /// Status reports.
    pub version: String,
    /// Its oxcd release version (from `GET /version`), when it could be read.
    pub release: Option<String>,
    /// Raft index the member has applied.
    pub applied_index: u64,
    /// The leader it knows (0: none).
    pub leader: u64,
    /// The downgrade target (an oxcd release version) as this member has applied it, while a
    /// downgrade is enabled.
    pub downgrade: Option<String>,
}

/// One member of the membership, with its status when it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedMember {
    /// Member id.
    pub id: u64,
    /// Name (empty until an added member has started).
    pub name: String,
    /// Ordinal of its pod, read from its peer URL.
    pub ordinal: Option<u32>,
    /// Whether it is a learner.
    pub is_learner: bool,
    /// Its status, or `None` when it did not answer.
    pub health: Option<MemberHealth>,
    /// Its pod reports that it lost its data dir (see `reconcile::lost_members`): it has to be
    /// replaced. Not known from the etcd API; the reconciler fills it in.
    pub lost_data: bool,
}

/// The membership as the cluster reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Every member.
    pub members: Vec<ObservedMember>,
}

impl Membership {
    /// The leader id a healthy member reports, if any.
    pub fn leader(&self) -> Option<u64> {
        self.members
            .iter()
            .filter_map(|member| member.health.as_ref())
            .map(|health| health.leader)
            .find(|&leader| leader != 0)
    }

    /// The member with id `id`.
    pub fn member(&self, id: u64) -> Option<&ObservedMember> {
        self.members.iter().find(|member| member.id == id)
    }
}

/// Why talking to the members failed.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// No member answered the membership request.
    #[error("failed to reach any member at {endpoints:?}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// The last error.
        #[source]
        source: Option<etcd_client::Error>,
    },
    /// A membership change was refused.
    #[error("failed to {action} member {member_id:x}")]
    Change {
        /// What was attempted.
        action: &'static str,
        /// The member.
        member_id: u64,
        /// The etcd error.
        #[source]
        source: etcd_client::Error,
    },
    /// Enabling a downgrade of the cluster version was refused.
    #[error("failed to enable the downgrade of the cluster version to {target}")]
    Downgrade {
        /// The target, `major.minor`.
        target: String,
        /// The etcd error.
        #[source]
        source: etcd_client::Error,
    },
    /// Adding a learner was refused.
    #[error("failed to add a learner at {peer_url}")]
    AddLearner {
        /// Its peer URL.
        peer_url: String,
        /// The etcd error.
        #[source]
        source: etcd_client::Error,
    },
}

/// A connection to one cluster's members.
pub struct Members {
    names: Names,
    tls: Option<ClientTls>,
    endpoints: Vec<String>,
}

impl Members {
    /// Members of the cluster `names`, reached at the client URLs of ordinals `0..count`.
    pub fn new(names: Names, tls: Option<ClientTls>, count: u32) -> Self {
        let endpoints = (0..count)
            .map(|ordinal| names.member_client_url(ordinal, tls.is_some()))
            .collect();
        Self {
            names,
            tls,
            endpoints,
        }
    }

    fn options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        if let Some(tls) = &self.tls {
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca))
                    .identity(Identity::from_pem(&tls.cert, &tls.key)),
            );
        }
        options
    }

    async fn connect(&self, endpoints: &[String]) -> Result<Client, etcd_client::Error> {
        Client::connect(endpoints, Some(self.options())).await
    }

    /// A client for the whole cluster: the first member that answers.
    async fn any(&self) -> Result<Client, MembersError> {
        let mut last = None;
        for endpoint in &self.endpoints {
            match self.connect(std::slice::from_ref(endpoint)).await {
                Ok(mut client) => match client.member_list().await {
                    Ok(_) => return Ok(client),
                    Err(error) => last = Some(error),
                },
                Err(error) => last = Some(error),
            }
        }
        Err(MembersError::Unreachable {
            endpoints: self.endpoints.clone(),
            source: last,
        })
    }

    /// The membership, with the status of every member that answers.
    pub async fn observe(&self) -> Result<Membership, MembersError> {
        let mut client = self.any().await?;
        let list = client
            .member_list()
            .await
            .map_err(|source| MembersError::Unreachable {
                endpoints: self.endpoints.clone(),
                source: Some(source),
            })?;
        let mut members = Vec::new();
        for member in list.members() {
            let ordinal = member
                .peer_urls()
                .iter()
                .find_map(|url| self.ordinal_of_url(url));
            let health = match member.client_urls().first() {
                Some(url) => self.health(url).await,
                None => None,
            };
            members.push(ObservedMember {
                id: member.id(),
                name: member.name().to_owned(),
                ordinal,
                is_learner: member.is_learner(),
                health,
                lost_data: false,
            });
        }
        // The members' oxcd release versions (Status only knows the etcd API version), from any
        // member that answered; without them the versions stay as Status reported them.
        let answering = members
            .iter()
            .filter(|m| m.health.is_some())
            .find_map(|m| m.ordinal);
        if let Some(ordinal) = answering {
            let port = u16::try_from(METRICS_PORT).unwrap_or_default();
            match crate::versions::read(&self.names.member_host(ordinal), port).await {
                Ok(versions) => {
                    for member in &mut members {
                        if let (Some(health), Some(version)) =
                            (member.health.as_mut(), versions.member(member.id))
                        {
                            version.clone_into(&mut health.version);
                            health.release = Some(version.to_owned());
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(error = %crate::error_chain(&error), "member versions unknown");
                }
            }
        }
        Ok(Membership { members })
    }

    fn ordinal_of_url(&self, url: &str) -> Option<u32> {
        let host = url.split("://").nth(1)?.split(':').next()?;
        let pod = host.split('.').next()?;
        self.names.ordinal(pod)
    }

    async fn health(&self, client_url: &str) -> Option<MemberHealth> {
        let mut client = self.connect(&[client_url.to_owned()]).await.ok()?;
        let status = client.status().await.ok()?;
        Some(MemberHealth {
            version: status.version().to_owned(),
            release: None,
            applied_index: status.raft_applied_index(),
            leader: status.leader(),
            downgrade: status
                .downgrade_info()
                .filter(|info| info.enabled())
                .map(|info| info.target_version().to_owned()),
        })
    }

    /// Adds member `ordinal` as a learner.
    pub async fn add_learner(&self, ordinal: u32) -> Result<u64, MembersError> {
        let peer_url = self.names.peer_url(ordinal, self.tls.is_some());
        let add_error = |source| MembersError::AddLearner {
            peer_url: peer_url.clone(),
            source,
        };
        let mut client = self.any().await?;
        let response = client
            .member_add(
                [peer_url.as_str()],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await
            .map_err(add_error)?;
        Ok(response.member().map_or(0, |member| member.id()))
    }

    /// Promotes learner `member_id` to a voter.
    pub async fn promote(&self, member_id: u64) -> Result<(), MembersError> {
        let mut client = self.any().await?;
        client
            .member_promote(member_id)
            .await
            .map(drop)
            .map_err(|source| MembersError::Change {
                action: "promote",
                member_id,
                source,
            })
    }

    /// Removes member `member_id`.
    pub async fn remove(&self, member_id: u64) -> Result<(), MembersError> {
        let mut client = self.any().await?;
        client
            .member_remove(member_id)
            .await
            .map(drop)
            .map_err(|source| MembersError::Change {
                action: "remove",
                member_id,
                source,
            })
    }

    /// Moves the leadership to `member_id`; must be sent to the leader, at `leader_url`.
    pub async fn move_leader(&self, leader_url: &str, member_id: u64) -> Result<(), MembersError> {
        let change = |source| MembersError::Change {
            action: "move the leadership to",
            member_id,
            source,
        };
        let mut client = self
            .connect(&[leader_url.to_owned()])
            .await
            .map_err(change)?;
        client
            .move_leader(member_id)
            .await
            .map(drop)
            .map_err(change)
    }

    /// Enables the downgrade of the cluster version to `target` (`major.minor`, etcd's
    /// `downgrade enable`) unless one to it is under way already; returns whether it enabled it.
    /// Members older than the cluster version are refused until it is.
    pub async fn ensure_downgrade(&self, target: &str) -> Result<bool, MembersError> {
        let refused = |source| MembersError::Downgrade {
            target: target.to_owned(),
            source,
        };
        let mut client = self.any().await?;
        let status = client.status().await.map_err(refused)?;
        let prefix = format!("{target}.");
        if status
            .downgrade_info()
            .is_some_and(|info| info.enabled() && info.target_version().starts_with(&prefix))
        {
            return Ok(false);
        }
        client
            .maintenance_client()
            .downgrade(DowngradeOptions::Enable(target.to_owned()))
            .await
            .map_err(refused)?;
        Ok(true)
    }

    /// The client URL of the member with ordinal `ordinal`.
    pub fn client_url(&self, ordinal: u32) -> String {
        self.names.member_client_url(ordinal, self.tls.is_some())
    }
}
