//! Version skew across real members (issue 11): each member advertises its oxcd version, the
//! cluster version is the lowest of them and rises after an upgrade, a member more than one
//! minor away (or below the cluster version) exits with the reason, and Maintenance.Downgrade
//! lowers the cluster version one minor, lets older members in and ends by itself.
//!
//! One build has one version, so members advertise others through the server's test-only
//! `OXCD_TEST_ADVERTISED_VERSION`; versions 1.x keep the tests independent of the workspace's.

use std::time::Duration;

use oxcd_server::proto::etcdserverpb::{
    DowngradeRequest, StatusRequest, downgrade_request::DowngradeAction,
    maintenance_client::MaintenanceClient,
};
use oxcd_tests::{CONVERGE_TIMEOUT, EtcdVersion, OxcdCluster, OxcdServer};
use serde_json::json;
use tonic::Code;

/// How long a refused member may take to catch up, see the cluster version and exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster of `versions.len()` members, member `i` advertising `versions[i]`, each serving
/// `/version` on its own port.
async fn cluster_of(versions: &[&'static str]) -> OxcdCluster {
    let versions = versions.to_vec();
    OxcdCluster::start_configured(versions.len(), &[], move |m| {
        let index: usize = m.name()[1..].parse().expect("members are m1, m2, ...");
        m.advertise_version(versions[index - 1]);
        m.serve_metrics().expect("a metrics port");
    })
    .await
    .expect("cluster starts")
}

async fn wait_cluster_version(members: &[OxcdServer], version: &str) {
    for m in members.iter().filter(|m| m.process().is_some()) {
        m.wait_version_field("oxcdcluster", json!(version), CONVERGE_TIMEOUT)
            .await
            .expect("cluster version");
    }
}

async fn downgrade(
    member: &OxcdServer,
    action: DowngradeAction,
    version: &str,
) -> Result<String, (Code, String)> {
    let channel = oxcd_tests::diff::channel(member.endpoint())
        .await
        .expect("connect");
    MaintenanceClient::new(channel)
        .downgrade(DowngradeRequest {
            action: action as i32,
            version: version.to_string(),
        })
        .await
        .map(|r| r.into_inner().version)
        .map_err(|s| (s.code(), s.message().to_string()))
}

async fn downgrade_info(member: &OxcdServer) -> (bool, String) {
    let channel = oxcd_tests::diff::channel(member.endpoint())
        .await
        .expect("connect");
    let status = MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.version.starts_with("3.6."),
        "etcd API version: {status:?}"
    );
    let info = status.downgrade_info.unwrap_or_default();
    (info.enabled, info.target_version)
}

/// Restarts member `i` of `cluster` as version `version`.
async fn replace_binary(cluster: &mut OxcdCluster, i: usize, version: &str) {
    let member = cluster.member(i);
    member.kill().expect("kill");
    member.advertise_version(version);
    member.restart().await.expect("restarts");
}

#[tokio::test]
async fn mixed_version_cluster_reports_the_lowest_version_until_every_member_is_upgraded() {
    let mut cluster = cluster_of(&["1.4.2", "1.5.0", "1.5.1"]).await;
    wait_cluster_version(cluster.members(), "1.4.0").await;
    for (m, own) in cluster.members().iter().zip(["1.4.2", "1.5.0", "1.5.1"]) {
        let versions = m.versions().await.expect("/version");
        assert_eq!(versions["oxcd"], json!(own), "{versions}");
        assert_eq!(versions["oxcdstorage"], json!(2), "{versions}");
        assert!(
            versions["etcdserver"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.6.")),
            "clients still see the etcd API version: {versions}"
        );
        let mut advertised: Vec<&str> = versions["oxcdmembers"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        advertised.sort_unstable();
        assert_eq!(advertised, ["1.4.2", "1.5.0", "1.5.1"], "{versions}");
    }
    let first = &cluster.members()[0];
    assert_eq!(
        downgrade(first, DowngradeAction::Validate, "1.3").await,
        Ok("1.4".to_string())
    );
    let metrics = first.metrics_get("/metrics").await.expect("/metrics");
    assert!(
        metrics.contains("oxcd_cluster_version{cluster_version=\"1.4\"} 1"),
        "{metrics}"
    );
    replace_binary(&mut cluster, 0, "1.5.0").await;
    wait_cluster_version(cluster.members(), "1.5.0").await;
}

#[tokio::test]
async fn members_more_than_one_minor_away_or_older_than_the_cluster_exit_with_the_reason() {
    let mut cluster = cluster_of(&["1.4.0"]).await;
    wait_cluster_version(cluster.members(), "1.4.0").await;
    for (version, reason) in [
        (
            "1.6.0",
            "server version 1.6.0 is more than one minor version away from the cluster version 1.4",
        ),
        (
            "1.3.9",
            "server version 1.3.9 is lower than the cluster version 1.4",
        ),
    ] {
        // As a learner, so the refused member does not take the quorum with it.
        let mut joining = cluster.prepare_join(true).await.expect("member add");
        joining.advertise_version(version);
        joining.spawn().expect("spawn");
        let (status, log) = joining.wait_exit(REFUSAL_TIMEOUT).await.expect("exits");
        assert!(!status.success(), "{version}: {status}\n{log}");
        assert!(log.contains(reason), "{version}: no {reason:?} in\n{log}");
        // Refused from the peers' answer, before it wrote a data dir or started Raft.
        assert!(log.contains("refusing to join the cluster"), "{log}");
        assert!(!joining.data_dir().join("oxcd").exists(), "{log}");
        let id = member_id_of(&cluster, &joining).await;
        let mut client = cluster.client().await.expect("client");
        client
            .member_remove(id)
            .await
            .expect("remove the refused member");
    }
    // A restart with a binary two minors up is refused before it starts anything.
    let member = cluster.member(0);
    member.kill().expect("kill");
    member.advertise_version("1.6.0");
    member.spawn().expect("spawn");
    let (status, log) = member.wait_exit(REFUSAL_TIMEOUT).await.expect("exits");
    assert!(!status.success(), "{status}\n{log}");
    assert!(log.contains("refusing to run in this cluster"), "{log}");
    // One minor up is an upgrade.
    replace_binary(&mut cluster, 0, "1.5.0").await;
    wait_cluster_version(cluster.members(), "1.5.0").await;
}

async fn member_id_of(cluster: &OxcdCluster, member: &OxcdServer) -> u64 {
    let mut client = cluster.client().await.expect("client");
    let list = client.member_list().await.expect("member list");
    list.members()
        .iter()
        .find(|m| m.peer_urls().contains(&member.peer_url()))
        .map(|m| m.id())
        .expect("the joining member is listed")
}

#[tokio::test]
async fn downgrade_lowers_the_cluster_version_admits_older_members_and_ends_by_itself() {
    let mut cluster = cluster_of(&["1.5.0", "1.5.0", "1.5.0"]).await;
    wait_cluster_version(cluster.members(), "1.5.0").await;
    let first = &cluster.members()[0];
    assert_eq!(
        downgrade(first, DowngradeAction::Enable, "1.4.0").await,
        Ok("1.5".to_string())
    );
    assert_eq!(downgrade_info(first).await, (true, "1.4.0".to_string()));
    wait_cluster_version(cluster.members(), "1.4.0").await;
    let in_process = (
        Code::FailedPrecondition,
        "etcdserver: cluster has a downgrade job in progress".to_string(),
    );
    assert_eq!(
        downgrade(first, DowngradeAction::Enable, "1.3").await,
        Err(in_process)
    );
    // The newer members keep running (one minor above); older ones replace them one by one.
    for i in 0..3 {
        replace_binary(&mut cluster, i, "1.4.0").await;
    }
    for m in cluster.members() {
        m.wait_version_field(
            "downgrade",
            json!({"target-version": "", "enabled": false}),
            CONVERGE_TIMEOUT,
        )
        .await
        .expect("the downgrade ends once every member runs 1.4");
    }
    wait_cluster_version(cluster.members(), "1.4.0").await;
    assert_eq!(
        downgrade_info(&cluster.members()[1]).await,
        (false, String::new())
    );
}

/// `etcdctl downgrade ...` against `member`: its exit success and the line it printed.
async fn etcdctl_downgrade(member: &OxcdServer, args: &[&str]) -> (bool, String) {
    let args: Vec<&str> = ["downgrade"].iter().chain(args).copied().collect();
    let out = oxcd_tests::etcdctl(EtcdVersion::V3_6, member.endpoint(), &args)
        .await
        .expect("etcdctl runs");
    // Its answer is the first line (etcdctl 3.6 may log warnings after it).
    let answer = out.stdout.lines().next().unwrap_or_default().to_string();
    (out.status.success(), answer)
}

#[tokio::test]
async fn downgrade_cancel_restores_the_cluster_version_with_etcdctl() {
    let cluster = cluster_of(&["1.5.0"]).await;
    wait_cluster_version(cluster.members(), "1.5.0").await;
    let only = &cluster.members()[0];
    assert_eq!(
        etcdctl_downgrade(only, &["validate", "1.4"]).await,
        (
            true,
            "Downgrade validate success, cluster version 1.5".to_string()
        )
    );
    assert_eq!(
        etcdctl_downgrade(only, &["enable", "1.4"]).await,
        (
            true,
            "Downgrade enable success, cluster version 1.5".to_string()
        )
    );
    wait_cluster_version(cluster.members(), "1.4.0").await;
    assert_eq!(
        etcdctl_downgrade(only, &["cancel"]).await,
        (
            true,
            "Downgrade cancel success, cluster version 1.4".to_string()
        )
    );
    assert_eq!(downgrade_info(only).await, (false, String::new()));
    wait_cluster_version(cluster.members(), "1.5.0").await;
}
