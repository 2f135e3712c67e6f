//! Services whose RPCs are not implemented yet (Lease, Auth). They are registered so that
//! every call answers `Unimplemented` at once instead of an unknown-service error or a hang.

use crate::proto::etcdserverpb::{auth_server::Auth, lease_server::Lease};

/// Lease service placeholder: every RPC answers `Unimplemented`.
pub struct PendingLease;
/// Auth service placeholder: every RPC answers `Unimplemented`.
pub struct PendingAuth;

#[tonic::async_trait]
impl Lease for PendingLease {}
#[tonic::async_trait]
impl Auth for PendingAuth {}
