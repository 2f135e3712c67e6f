//! Kubernetes on oxcd: the harness of the suite in `tests/`, which runs the real kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok fake nodes (brought up by `e2e/local/up`) on
//! oxcd and, for reference, on etcd 3.6, and checks what Kubernetes needs from its storage.

mod control_plane;
mod wait;

pub use control_plane::{ControlPlane, Storage, workspace_root};
pub use wait::eventually;
