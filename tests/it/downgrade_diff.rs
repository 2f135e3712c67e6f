//! Differential Maintenance.Downgrade suite: the same VALIDATE / ENABLE / CANCEL script against
//! a fresh etcd 3.6 and a fresh oxcd must give the same codes, messages and answers.
//!
//! The two servers speak of different versions (etcd of its 3.6 cluster version, oxcd of its own
//! release version, see `oxcd_server::version`), so a script names versions relative to each
//! side's cluster version and answers are compared with those versions replaced by placeholders.
//! Not compared: requests right after ENABLE whose answer depends on whether the leader has
//! lowered the cluster version yet (etcd looks every 4 s, oxcd every 0.5 s).

use std::time::Duration;

use oxcd_server::proto::etcdserverpb::{
    DowngradeRequest, StatusRequest, downgrade_request::DowngradeAction,
    maintenance_client::MaintenanceClient,
};
use oxcd_server::version::Version;
use oxcd_tests::diff::Pair;
use tonic::transport::Channel;

/// One side of the comparison: its client and cluster version.
struct Side {
    client: MaintenanceClient<Channel>,
    cluster: Version,
}

/// What a request answered, with the side's versions replaced by placeholders.
type Answer = Result<String, (tonic::Code, String)>;

impl Side {
    async fn new(endpoint: &str, cluster: Version) -> Self {
        let channel = oxcd_tests::diff::channel(endpoint).await.expect("connect");
        Self {
            client: MaintenanceClient::new(channel),
            cluster,
        }
    }

    /// `template` with `{cur}` (the cluster version), `{lower}` (one minor below), `{higher}`
    /// (one minor above) and `{major}` filled in, as `major.minor` (oxcd's minor must be ≥ 1).
    fn fill(&self, template: &str) -> String {
        let Version { major, minor, .. } = self.cluster;
        template
            .replace("{cur}", &format!("{major}.{minor}"))
            .replace("{lower}", &format!("{major}.{}", minor - 1))
            .replace("{higher}", &format!("{major}.{}", minor + 1))
            .replace("{major}", &major.to_string())
    }

    /// `answer` with this side's versions replaced by `<cur>` and `<lower>`.
    fn normalize(&self, answer: &str) -> String {
        let Version { major, minor, .. } = self.cluster;
        answer
            .replace(&format!("{major}.{}", minor - 1), "<lower>")
            .replace(&format!("{major}.{minor}"), "<cur>")
    }

    async fn downgrade(&mut self, action: i32, template: &str) -> Answer {
        let request = DowngradeRequest {
            action,
            version: self.fill(template),
        };
        match self.client.downgrade(request).await {
            Ok(r) => Ok(self.normalize(&r.into_inner().version)),
            Err(s) => Err((s.code(), s.message().to_string())),
        }
    }

    async fn downgrade_info(&mut self) -> String {
        let status = self
            .client
            .status(StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        self.normalize(&format!("{:?}", status.downgrade_info))
    }

    /// Waits until the cluster version is decided (Downgrade answers anything but "cluster
    /// version not found").
    async fn wait_cluster_version(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .downgrade(DowngradeAction::Validate as i32, "{cur}")
                .await;
            if !matches!(&answer, Err((_, m)) if m.contains("cluster version not found")) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no cluster version: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

const VALIDATE: i32 = DowngradeAction::Validate as i32;
const ENABLE: i32 = DowngradeAction::Enable as i32;
const CANCEL: i32 = DowngradeAction::Cancel as i32;

#[tokio::test]
async fn downgrade_validate_enable_and_cancel_answer_as_etcd_does() {
    let pair = Pair::start().await.expect("start etcd and oxcd");
    let etcd_version = Version {
        major: 3,
        minor: 6,
        patch: 0,
    };
    let mut etcd = Side::new(pair.etcd.endpoint(), etcd_version).await;
    let mut oxcd = Side::new(pair.oxcd.endpoint(), oxcd_server::version::binary_version()).await;
    etcd.wait_cluster_version().await;
    oxcd.wait_cluster_version().await;
    let script: &[(i32, &str)] = &[
        (VALIDATE, "{lower}"),
        (VALIDATE, "{lower}.7"),
        (VALIDATE, "{cur}"),
        (VALIDATE, "{higher}.0"),
        (VALIDATE, "not-a-version"),
        (VALIDATE, ""),
        (VALIDATE, "v{lower}"),
        (VALIDATE, "{major}"),
        (VALIDATE, "{lower}.0.1"),
        (CANCEL, ""),
        (7, "{lower}"),
        (ENABLE, "not-a-version"),
        (ENABLE, "{cur}"),
        (ENABLE, "{higher}"),
    ];
    let mut differences = String::new();
    let mut compare = |what: String, e: String, o: String| {
        if e != o {
            differences.push_str(&format!("{what}\n  etcd: {e}\n  oxcd: {o}\n"));
        }
    };
    compare(
        "Status.downgradeInfo before".into(),
        etcd.downgrade_info().await,
        oxcd.downgrade_info().await,
    );
    for (action, template) in script {
        let (e, o) = (
            etcd.downgrade(*action, template).await,
            oxcd.downgrade(*action, template).await,
        );
        compare(
            format!("action {action} {template:?}"),
            format!("{e:?}"),
            format!("{o:?}"),
        );
    }
    let (e, o) = (
        etcd.downgrade(ENABLE, "{lower}").await,
        oxcd.downgrade(ENABLE, "{lower}").await,
    );
    compare("ENABLE {lower}".into(), format!("{e:?}"), format!("{o:?}"));
    compare(
        "Status.downgradeInfo enabled".into(),
        etcd.downgrade_info().await,
        oxcd.downgrade_info().await,
    );
    // Answered with the cluster version, lowered or not yet: compare only success.
    let (e, o) = (
        etcd.downgrade(CANCEL, "").await.is_ok(),
        oxcd.downgrade(CANCEL, "").await.is_ok(),
    );
    compare("CANCEL".into(), e.to_string(), o.to_string());
    compare(
        "Status.downgradeInfo cancelled".into(),
        etcd.downgrade_info().await,
        oxcd.downgrade_info().await,
    );
    assert!(
        differences.is_empty(),
        "oxcd differs from etcd:\n{differences}"
    );
}
