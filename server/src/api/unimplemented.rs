//! Services whose RPCs are not implemented yet (Auth). They are registered so that
//! every call answers `Unimplemented` at once instead of an unknown-service error or a hang.

use crate::proto::etcdserverpb::auth_server::Auth;

/// Auth service placeholder: every RPC answers `Unimplemented`.
pub struct PendingAuth;

#[tonic::async_trait]
impl Auth for PendingAuth {}
