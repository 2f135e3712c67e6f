//! The members' ServiceAccount: its own identity without API access (the token is not even
//! mounted), so pod security policies and audit logs can tell members apart.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The ServiceAccount member pods run as.
pub fn build_service_account(cluster: &ValidatedCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(cluster, cluster.names.statefulset()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{MINIMAL, validated};

    #[test]
    fn service_account_is_owned_and_mounts_no_token() {
        let account = build_service_account(&validated(MINIMAL));
        assert_eq!(account.metadata.name.as_deref(), Some("demo"));
        assert_eq!(account.automount_service_account_token, Some(false));
        assert_eq!(account.metadata.owner_references.map(|o| o.len()), Some(1));
    }
}
