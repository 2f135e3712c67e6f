//! Kubernetes on oxcd: the harness of the suite in `tests/`, which runs the real kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok fake nodes (brought up by `e2e/local/up`) on
//! oxcd and, for reference, on etcd 3.6, and checks what Kubernetes needs from its storage. The
//! same checks also run on an existing cluster (`KUBECONFIG`) whose storage is reachable, such as
//! the kind cluster of `e2e/kind/up --control-plane-storage=oxcd`.

mod control_plane;
mod existing;
mod wait;

pub use control_plane::{ControlPlane, Storage, workspace_root};
pub use wait::eventually;
