//! Harness of the end-to-end tests that run on a kind cluster made by `e2e/kind/up`: a client for
//! the cluster that `KUBECONFIG` names (or a reason to skip), temporary namespaces that are deleted
//! whatever the test's outcome, bounded waits for conditions, commands run in pods, manifests of
//! the repository applied, a small S3 client for the in-cluster S3 server, and etcdctl for the
//! oxcd storage under the cluster's kube-apiserver (`e2e/kind/up --control-plane-storage=oxcd`).

pub mod cluster;
pub mod exec;
pub mod manifest;
pub mod namespace;
pub mod operator;
pub mod port_forward;
pub mod s3;
pub mod storage;
pub mod store_cluster;
pub mod wait;

pub use cluster::{BUSYBOX_IMAGE_ENV, busybox_image, kind_client};
pub use exec::{ExecOutput, exec};
pub use manifest::{apply_manifest, pinned_version, repo_root};
pub use namespace::with_temp_ns;
pub use wait::{await_condition, deployment_available, pod_running};
