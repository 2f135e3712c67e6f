//! Test harness of oxcd: starts real processes (the reference etcd, later oxcd members) on random
//! loopback ports, runs etcdctl, and leaves nothing running behind, even when a test panics.
//!
//! Binaries come from the toolchain cache that `e2e/toolchain/install` fills (see [`bin_dir`]).

mod cluster;
pub mod ctl_session;
pub mod diff;
mod error;
mod etcd;
mod etcdctl;
mod http;
mod net;
mod oxcd;
mod partition;
mod paths;
pub mod pki;
mod process;
pub mod s3;
mod skew;

pub use cluster::{CONVERGE_TIMEOUT, OxcdCluster};
pub use error::{HarnessError, Result};
pub use etcd::{EtcdServer, EtcdVersion, READY_TIMEOUT, kv_answers};
pub use etcdctl::{CtlOutput, etcdctl, etcdctl_with_input};
pub use http::{HTTP_TIMEOUT, HttpAnswer, http_request};
pub use net::{free_port, free_ports};
pub use oxcd::{ClientTls, OxcdServer, oxcd_binary};
pub use partition::Partition;
pub use paths::{bin_dir, tool, workspace_root};
pub use process::ManagedProcess;
pub use skew::ADVERTISED_VERSION_VAR;
