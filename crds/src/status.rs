//! The observed state of a `StoreCluster`: conditions, phase, the members table, the leader and
//! the endpoints clients use. Written only by the operator, through the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BackupStatus, RestoredFrom};

/// What the operator last observed of a StoreCluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Members in the cluster's membership (voters and learners).
    #[serde(default)]
    pub replicas: i32,
    /// Members that are healthy voters.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default)]
    pub ready: String,
    /// Label selector of the member pods (for the scale subresource).
    #[serde(default)]
    pub selector: String,
    /// One-word summary: `Creating`, `Running`, `Scaling`, `Updating`, `Degraded` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Name of the member that leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Cluster version reported by the members (the lowest member version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Every member, as the cluster reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// URLs clients use (the client Service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_endpoints: Vec<String>,
    /// Secret holding the client certificate for kube-apiserver (`tls.crt`, `tls.key`, `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_secret: Option<String>,
    /// The last backups, when `spec.backup` is set or was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The snapshot the cluster was restored from (`spec.bootstrap.restore`), pinned before
    /// its first member started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<RestoredFrom>,
    /// `Available`, `Progressing` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The rollout of a new version or pod template, while one is under way or stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,
}

/// A rollout: members restarted one at a time onto the StatefulSet's current pod template (a
/// new version, resources or configuration), followers first and the leader last.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// Cluster version when the rollout began (the lowest member version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Version the members move to (`spec.version`).
    pub to: String,
    /// StatefulSet revision (pod template) the members move to.
    pub revision: String,
    /// Where the rollout is.
    pub phase: UpgradePhase,
    /// Members already running the new template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updated: Vec<String>,
}

/// Where a rollout is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradePhase {
    /// Followers are restarted one at a time, each once every member is ready and caught up.
    Followers,
    /// Only the leader is left: the leadership moves to an updated member, then it restarts.
    Leader,
    /// A restarted member did not become ready; nothing else is touched (quorum intact).
    Stalled,
}

/// A one-word summary of a StoreCluster's conditions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The first members are starting; the cluster has not served yet.
    Creating,
    /// Every member is healthy and the spec is carried out.
    Running,
    /// Members are being added or removed.
    Scaling,
    /// Members are restarted one at a time onto a new version or pod template.
    Updating,
    /// The cluster serves, but a member is unhealthy or a change is stuck.
    Degraded,
    /// The spec cannot be carried out (see the conditions).
    Invalid,
}

/// One member as the cluster's membership and health report it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member name (its pod name).
    pub name: String,
    /// Member id, in hex as etcdctl prints it.
    pub id: String,
    /// `Leader`, `Follower` or `Learner`.
    pub role: MemberRole,
    /// Server version the member reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the member answered its status request.
    pub healthy: bool,
    /// Raft index the member has applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_applied_index: Option<i64>,
}

/// A member's role in Raft.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// The member that leads.
    Leader,
    /// A voting member that follows.
    Follower,
    /// A non-voting member catching up.
    Learner,
}

/// Condition types of a StoreCluster.
pub mod condition {
    /// Clients can use the cluster: a quorum of healthy voters and a leader.
    pub const AVAILABLE: &str = "Available";
    /// The operator is changing something (creating, scaling, rolling).
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong that the operator cannot (yet) fix by itself.
    pub const DEGRADED: &str = "Degraded";
}

/// Reasons of the conditions (CamelCase, as Kubernetes expects).
pub mod reason {
    /// Available: quorum and a leader.
    pub const QUORUM_HEALTHY: &str = "QuorumHealthy";
    /// Available false: no quorum of healthy voters or no leader.
    pub const QUORUM_LOST: &str = "QuorumLost";
    /// Available false: the members have not formed a cluster yet.
    pub const MEMBERS_STARTING: &str = "MembersStarting";
    /// Progressing: a member is being added (learner).
    pub const ADDING_MEMBER: &str = "AddingMember";
    /// Progressing: a learner is being promoted.
    pub const PROMOTING_LEARNER: &str = "PromotingLearner";
    /// Progressing: a member is being removed.
    pub const REMOVING_MEMBER: &str = "RemovingMember";
    /// Progressing: a failed member is being replaced.
    pub const REPLACING_MEMBER: &str = "ReplacingMember";
    /// Progressing: pods are rolling out.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// Progressing false: the spec is carried out.
    pub const RECONCILED: &str = "Reconciled";
    /// Degraded false: everything healthy.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Degraded: a member does not answer.
    pub const MEMBER_UNHEALTHY: &str = "MemberUnhealthy";
    /// Degraded: the spec fails validation the API server cannot express.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Degraded: applying a child object failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Degraded: the members cannot be reached through the etcd API.
    pub const MEMBERS_UNREACHABLE: &str = "MembersUnreachable";
    /// Degraded: a member restarted onto the new template did not become ready; the rollout
    /// halted with the other members (and the quorum) untouched.
    pub const UPGRADE_STALLED: &str = "UpgradeStalled";
    /// Degraded: `spec.version` is more than one minor above a member's version; the rollout
    /// waits for an intermediate version.
    pub const VERSION_SKEW: &str = "VersionSkew";
    /// Degraded: the last backups failed one after the other.
    pub const BACKUP_FAILING: &str = "BackupFailing";
    /// Progressing: the snapshot to restore is being resolved and verified; no member yet.
    pub const RESTORING: &str = "Restoring";
    /// Degraded: the snapshot to restore is missing, corrupt or unreachable; the cluster is
    /// not created.
    pub const RESTORE_FAILED: &str = "RestoreFailed";
}
