//! Membership changes as etcd's Cluster API describes them, carried out by the leader with
//! openraft's membership changes: MemberAdd (a learner first; a voter is a learner promoted at
//! once), MemberPromote (only once the learner has caught up), MemberRemove, MemberUpdate, and
//! the attributes (name, client URLs) each member publishes when it starts. A follower hands the
//! request to the leader (`peer::forward`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ChangeMembers;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use tokio::time::Instant;
use tonic::Status;

use super::{Member, REQUEST_TIMEOUT};
use crate::error::EtcdError;
use crate::peer::forward::{Route, retryable};
use crate::peer::is_not_leader;
use crate::proto::etcdserverpb::Member as PbMember;
use crate::proto::peerpb::membership_request::Request as Change;
use crate::proto::peerpb::{MembershipReply, MembershipRequest};
use crate::raft::MemberNode;

/// etcd promotes a learner once its log reaches this share of the leader's.
const PROMOTE_READY_SHARE: f64 = 0.9;

/// Pause between attempts while another membership change is still being committed.
const IN_FLIGHT_PAUSE: Duration = Duration::from_millis(20);

type MembershipResult<T> = Result<T, RaftError<u64, ClientWriteError<u64, MemberNode>>>;

/// Runs `attempt` (one openraft membership call) until no other change is in flight, at most
/// until `deadline`. openraft takes one configuration change at a time, and a member publishes
/// its name and client URLs as one when it starts or catches up as a learner; etcd carries that
/// publication as an ordinary entry, so a client's change right after it must wait, not fail.
async fn when_no_change_in_flight<T, F, Fut>(
    deadline: Instant,
    mut attempt: F,
) -> MembershipResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = MembershipResult<T>>,
{
    loop {
        match attempt().await {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if Instant::now() + IN_FLIGHT_PAUSE < deadline => {
                tokio::time::sleep(IN_FLIGHT_PAUSE).await;
            }
            result => return result,
        }
    }
}

fn raft_error(e: RaftError<u64, ClientWriteError<u64, MemberNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => crate::peer::not_leader(),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(format!("oxcd: membership change refused: {e}"))
        }
        RaftError::Fatal(_) => EtcdError::Stopped.into(),
    }
}

/// True when `url` is an http(s) URL with a host and port, as etcd requires of member URLs.
fn valid_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let host_port = rest.trim_end_matches('/');
    match host_port.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

impl Member {
    /// The members as this member's Raft state knows them, in etcd's form.
    pub fn members(&self) -> Vec<PbMember> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let config = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = config.voter_ids().collect();
        config
            .nodes()
            .map(|(id, node)| PbMember {
                id: *id,
                name: node.name.clone(),
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: node.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }

    /// Carries out `change`, on the leader or through it.
    pub async fn change_membership(&self, change: Change) -> Result<MembershipReply, Status> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.route(deadline).await? {
                Route::Local => match self.change_membership_local(change.clone()).await {
                    Err(s) if is_not_leader(&s) => {}
                    other => return other,
                },
                Route::Remote(mut client, header) => {
                    let mut req = tonic::Request::new(MembershipRequest {
                        header,
                        request: Some(change.clone()),
                    });
                    req.set_timeout(deadline.saturating_duration_since(Instant::now()));
                    match client.change_membership(req).await {
                        Ok(reply) => return Ok(reply.into_inner()),
                        Err(s) if is_not_leader(&s) => {}
                        Err(s) if retryable(&s) => return Err(EtcdError::LeaderChanged.into()),
                        Err(s) => return Err(s),
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::Timeout.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
    }

    /// Carries out `change` on this member, which must lead.
    pub async fn change_membership_local(&self, change: Change) -> Result<MembershipReply, Status> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let _permit = tokio::time::timeout_at(deadline, self.leadership.append_permit())
            .await
            .map_err(|_| Status::from(EtcdError::Timeout))?;
        let (nodes, voters) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let config = metrics.membership_config.membership();
            let nodes: BTreeMap<u64, MemberNode> =
                config.nodes().map(|(id, n)| (*id, n.clone())).collect();
            let voters: BTreeSet<u64> = config.voter_ids().collect();
            (nodes, voters)
        };
        let url_taken = |urls: &[String], except: u64| {
            nodes
                .iter()
                .any(|(id, n)| *id != except && n.peer_urls.iter().any(|u| urls.contains(u)))
        };
        let (id, changes) = match change {
            Change::Add(add) => {
                if add.peer_ur_ls.is_empty() || !add.peer_ur_ls.iter().all(|u| valid_url(u)) {
                    return Err(EtcdError::MemberBadUrls.into());
                }
                if url_taken(&add.peer_ur_ls, 0) {
                    return Err(EtcdError::PeerUrlExists.into());
                }
                let learners = nodes.keys().filter(|id| !voters.contains(id)).count();
                if add.is_learner && learners >= self.max_learners {
                    return Err(EtcdError::TooManyLearners.into());
                }
                let id = self.new_member_id(&add.peer_ur_ls, &nodes);
                let node = MemberNode {
                    name: String::new(),
                    peer_urls: add.peer_ur_ls.clone(),
                    client_urls: Vec::new(),
                };
                when_no_change_in_flight(deadline, || {
                    self.raft.add_learner(id, node.clone(), false)
                })
                .await
                .map_err(raft_error)?;
                if add.is_learner {
                    return Ok(self.reply(id));
                }
                (id, ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            }
            Change::Remove(r) => {
                if !nodes.contains_key(&r.id) {
                    return Err(EtcdError::MemberNotFound.into());
                }
                let change = if voters.contains(&r.id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([r.id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([r.id]))
                };
                (r.id, change)
            }
            Change::Promote(p) => {
                if !nodes.contains_key(&p.id) {
                    return Err(EtcdError::MemberNotFound.into());
                }
                if voters.contains(&p.id) {
                    return Err(EtcdError::MemberNotLearner.into());
                }
                if !self.learner_ready(p.id) {
                    return Err(EtcdError::LearnerNotReady.into());
                }
                (p.id, ChangeMembers::AddVoterIds(BTreeSet::from([p.id])))
            }
            Change::Update(u) => {
                let Some(node) = nodes.get(&u.id) else {
                    return Err(EtcdError::MemberNotFound.into());
                };
                if u.peer_ur_ls.is_empty() || !u.peer_ur_ls.iter().all(|x| valid_url(x)) {
                    return Err(EtcdError::MemberBadUrls.into());
                }
                if url_taken(&u.peer_ur_ls, u.id) {
                    return Err(EtcdError::PeerUrlExists.into());
                }
                let node = MemberNode {
                    peer_urls: u.peer_ur_ls.clone(),
                    ..node.clone()
                };
                (
                    u.id,
                    ChangeMembers::SetNodes(BTreeMap::from([(u.id, node)])),
                )
            }
            Change::Publish(m) => {
                let Some(node) = nodes.get(&m.id) else {
                    return Err(EtcdError::MemberNotFound.into());
                };
                let node = MemberNode {
                    name: m.name.clone(),
                    client_urls: m.client_ur_ls.clone(),
                    ..node.clone()
                };
                (
                    m.id,
                    ChangeMembers::SetNodes(BTreeMap::from([(m.id, node)])),
                )
            }
        };
        // Removing a member drops it from the configuration entirely (etcd keeps no trace).
        when_no_change_in_flight(deadline, || {
            self.raft.change_membership(changes.clone(), false)
        })
        .await
        .map_err(raft_error)?;
        Ok(self.reply(id))
    }

    fn reply(&self, id: u64) -> MembershipReply {
        let members = self.members();
        let member = members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .or(Some(PbMember {
                id,
                ..Default::default()
            }));
        MembershipReply { member, members }
    }

    /// A fresh member id, as etcd derives one from the peer URLs, the cluster and the time.
    fn new_member_id(&self, urls: &[String], nodes: &BTreeMap<u64, MemberNode>) -> u64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut salt = nanos;
        loop {
            let token = format!("{}/{salt}", self.identity.cluster_token);
            let id = crate::datadir::member_id(urls, &token);
            if id != 0 && !nodes.contains_key(&id) {
                return id;
            }
            salt += 1;
        }
    }

    /// True when learner `id` has replicated at least etcd's share of the leader's log.
    fn learner_ready(&self, id: u64) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader_last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        (matched as f64) >= (leader_last as f64) * PROMOTE_READY_SHARE && matched > 0
    }
}

/// Pause between attempts to publish this member's attributes.
const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Publishes this member's name and client URLs to the cluster once it is a member of it (etcd
/// members publish their attributes the same way; until then MemberList shows them unstarted).
pub async fn publish(member: std::sync::Arc<Member>) {
    loop {
        let current = member
            .members()
            .into_iter()
            .find(|m| m.id == member.identity.member_id);
        match current {
            Some(m)
                if m.name == member.announced.name
                    && m.client_ur_ls == member.announced.client_ur_ls =>
            {
                return;
            }
            Some(_) => {
                if let Err(e) = member
                    .change_membership(Change::Publish(member.announced.clone()))
                    .await
                {
                    tracing::debug!(error = %e.message(), "publishing member attributes failed; retrying");
                }
            }
            None => {}
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}
