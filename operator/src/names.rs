//! Names of everything the operator creates for a StoreCluster, the labels that select them and
//! the URLs members and clients use, in one place so builders and the membership code agree.

use std::collections::BTreeMap;

/// Port clients (kube-apiserver) use.
pub const CLIENT_PORT: i32 = 2379;
/// Port members replicate on.
pub const PEER_PORT: i32 = 2380;
/// Port of `/metrics`, `/livez` and `/readyz`.
pub const METRICS_PORT: i32 = 2381;
/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "oxcd-operator";
/// Label every child carries with the StoreCluster's name (orphans are found by it).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming who manages the object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`NAME_LABEL`] on members.
pub const APP_NAME: &str = "oxcd";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "oxcd-operator";
/// Label naming the part of the application.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// [`NAME_LABEL`] of backup Jobs and their pods: not [`APP_NAME`], so that no member selector
/// (Services, the PodDisruptionBudget, the StatefulSet) ever picks a backup pod.
pub const BACKUP_APP_NAME: &str = "oxcd-backup";
/// Label of backup Jobs: `scheduled` (made by the CronJob) or `on-demand`.
pub const BACKUP_LABEL: &str = "oxcd.io/backup";
/// Annotation on a StoreCluster asking for one backup now; a new value asks again.
pub const BACKUP_NOW_ANNOTATION: &str = "oxcd.io/backup-now";
/// [`NAME_LABEL`] of the Job that pins the snapshot to restore (not [`APP_NAME`], for the
/// same reason as [`BACKUP_APP_NAME`]).
pub const RESTORE_APP_NAME: &str = "oxcd-restore";
/// Label of the Job that pins the snapshot of `spec.bootstrap.restore` (value `source`).
pub const RESTORE_LABEL: &str = "oxcd.io/restore";
/// Longest CronJob name (its Jobs get 11 more characters and must fit in a label value).
const MAX_CRONJOB_NAME: usize = 52;
/// Longest Job name (its pods carry it in the `job-name` label).
const MAX_JOB_NAME: usize = 63;

/// 64-bit FNV-1a: stable across processes and releases (unlike std's hasher), for hashes
/// that are stored (annotations) or become names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `name` if it has at most `max` characters, else its start and a hash of all of it, so
/// that distinct long names stay distinct.
fn fit(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let hash = format!("{:08x}", fnv1a(name.as_bytes()) as u32);
    let start = name[..max - hash.len() - 1].trim_end_matches('-');
    format!("{start}-{hash}")
}

/// The names derived from a StoreCluster's name and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The StoreCluster's name (also the StatefulSet's).
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// Names for StoreCluster `cluster` in `namespace`.
    pub fn new(cluster: &str, namespace: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The StatefulSet (and PodDisruptionBudget, NetworkPolicy, ServiceAccount).
    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }

    /// The headless Service that gives every member a DNS name.
    pub fn peer_service(&self) -> String {
        format!("{}-peer", self.cluster)
    }

    /// The Service clients use.
    pub fn client_service(&self) -> String {
        format!("{}-client", self.cluster)
    }

    /// The ConfigMap with the bootstrap settings of new members.
    pub fn bootstrap_config(&self) -> String {
        format!("{}-bootstrap", self.cluster)
    }

    /// The Secret of the CA (mode Operator).
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }

    /// The Secret of the members' server certificate (port 2379).
    pub fn server_secret(&self) -> String {
        format!("{}-server-tls", self.cluster)
    }

    /// The Secret of the members' peer certificate (port 2380).
    pub fn peer_secret(&self) -> String {
        format!("{}-peer-tls", self.cluster)
    }

    /// The Secret of the client certificate for kube-apiserver and the operator.
    pub fn client_secret(&self) -> String {
        format!("{}-client-tls", self.cluster)
    }

    /// The CronJob of the scheduled backups.
    pub fn backup_cronjob(&self) -> String {
        fit(format!("{}-backup", self.cluster), MAX_CRONJOB_NAME)
    }

    /// The Job of the on-demand backup asked for with `token`.
    pub fn backup_job(&self, token: &str) -> String {
        let hash = format!("{:08x}", fnv1a(token.as_bytes()) as u32);
        fit(format!("{}-backup-{hash}", self.cluster), MAX_JOB_NAME)
    }

    /// Labels that select this cluster's backup pods (scheduled and on demand).
    pub fn backup_selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_owned(), BACKUP_APP_NAME.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.cluster.clone()),
        ])
    }

    /// Labels of backup CronJobs, Jobs and their pods (`kind`: `scheduled` or `on-demand`).
    pub fn backup_labels(&self, kind: &str) -> BTreeMap<String, String> {
        let mut labels = self.backup_selector_labels();
        labels.extend([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            (COMPONENT_LABEL.to_owned(), "backup".to_owned()),
            (BACKUP_LABEL.to_owned(), kind.to_owned()),
        ]);
        labels
    }

    /// The Job that resolves, downloads and verifies the snapshot of `spec.bootstrap.restore`.
    pub fn restore_job(&self) -> String {
        fit(format!("{}-restore-source", self.cluster), MAX_JOB_NAME)
    }

    /// Labels of the restore-source Job and its pod.
    pub fn restore_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_owned(), RESTORE_APP_NAME.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.cluster.clone()),
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            (COMPONENT_LABEL.to_owned(), "restore".to_owned()),
            (RESTORE_LABEL.to_owned(), "source".to_owned()),
        ])
    }

    /// Pod (and member) name of ordinal `ordinal`.
    pub fn member(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// The ordinal of member `name`, when it is one of this cluster's pod names.
    pub fn ordinal(&self, name: &str) -> Option<u32> {
        let suffix = name.strip_prefix(&self.cluster)?.strip_prefix('-')?;
        if suffix.is_empty() || (suffix.len() > 1 && suffix.starts_with('0')) {
            return None;
        }
        suffix.parse().ok()
    }

    /// DNS name of member `ordinal` (through the peer Service).
    pub fn member_host(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.member(ordinal),
            self.peer_service(),
            self.namespace
        )
    }

    /// Peer URL of member `ordinal`.
    pub fn peer_url(&self, ordinal: u32, tls: bool) -> String {
        format!(
            "{}://{}:{PEER_PORT}",
            scheme(tls),
            self.member_host(ordinal)
        )
    }

    /// Client URL of member `ordinal`.
    pub fn member_client_url(&self, ordinal: u32, tls: bool) -> String {
        format!(
            "{}://{}:{CLIENT_PORT}",
            scheme(tls),
            self.member_host(ordinal)
        )
    }

    /// Client URL of the client Service.
    pub fn service_client_url(&self, tls: bool) -> String {
        format!(
            "{}://{}.{}.svc:{CLIENT_PORT}",
            scheme(tls),
            self.client_service(),
            self.namespace
        )
    }

    /// Labels that select this cluster's member pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.cluster.clone()),
        ])
    }

    /// Labels on every child object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
        labels
    }

    /// The selector of [`Names::selector_labels`] as a label-selector string.
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_read_back_only_from_this_clusters_pod_names() {
        let names = Names::new("demo", "ns");
        assert_eq!(names.ordinal("demo-0"), Some(0));
        assert_eq!(names.ordinal("demo-12"), Some(12));
        assert_eq!(names.ordinal("demo-01"), None);
        assert_eq!(names.ordinal("demo-x-1"), None);
        assert_eq!(names.ordinal("other-1"), None);
        assert_eq!(names.ordinal("demo"), None);
    }

    #[test]
    fn backup_names_fit_kubernetes_limits_even_for_the_longest_cluster_names() {
        let names = Names::new("demo", "ns");
        assert_eq!(names.backup_cronjob(), "demo-backup");
        assert_eq!(names.backup_job("t1"), names.backup_job("t1"));
        assert_ne!(names.backup_job("t1"), names.backup_job("t2"));
        assert!(names.backup_job("t1").starts_with("demo-backup-"));
        let long = Names::new(&"x".repeat(52), "ns");
        assert!(
            long.backup_cronjob().len() <= 52,
            "{}",
            long.backup_cronjob()
        );
        assert!(long.backup_job("t").len() <= 63);
        assert!(!long.backup_cronjob().contains("--"));
        assert_ne!(
            Names::new(&"x".repeat(51), "ns").backup_cronjob(),
            long.backup_cronjob()
        );
    }

    #[test]
    fn the_restore_job_name_fits_a_label_value() {
        assert_eq!(
            Names::new("demo", "ns").restore_job(),
            "demo-restore-source"
        );
        let long = Names::new(&"x".repeat(52), "ns").restore_job();
        assert!(long.len() <= 63 && long.starts_with("xxx"), "{long}");
    }

    #[test]
    fn member_urls_go_through_the_peer_service() {
        let names = Names::new("demo", "ns");
        assert_eq!(
            names.peer_url(2, true),
            "https://demo-2.demo-peer.ns.svc:2380"
        );
        assert_eq!(
            names.member_client_url(0, false),
            "http://demo-0.demo-peer.ns.svc:2379"
        );
        assert_eq!(
            names.service_client_url(true),
            "https://demo-client.ns.svc:2379"
        );
    }
}
