//! Custom resource types of the oxcd operator. The `StoreCluster` kind arrives with the operator
//! issue; this crate holds the API group and version every other crate refers to.

/// API group of every oxcd custom resource.
pub const GROUP: &str = "oxcd.io";

/// Served and stored API version of the oxcd custom resources.
pub const VERSION: &str = "v1alpha1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_group_slash_version() {
        assert_eq!(format!("{GROUP}/{VERSION}"), "oxcd.io/v1alpha1");
    }
}
