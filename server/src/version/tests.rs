//! Unit tests of version parsing, the skew rules and the feature gate.

use super::*;

fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn versions_parse_with_or_without_patch_and_order_numerically() {
    assert_eq!(v("0.1.0"), v("0.1"));
    assert_eq!(v("v3.6.16-rc.1").to_string(), "3.6.16");
    assert!(v("0.10.0") > v("0.9.3"));
    for bad in ["", "3", "a.b", "3.6.x", "1.2.3.4", "3..1"] {
        assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn the_binary_version_is_the_workspace_version() {
    assert_eq!(binary_version().to_string(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_member_may_run_at_the_cluster_version_or_one_minor_above() {
    let cluster = v("0.3.0");
    assert_eq!(check_skew(v("0.3.7"), cluster, None), Ok(()));
    assert_eq!(check_skew(v("0.4.0"), cluster, None), Ok(()));
    assert!(matches!(
        check_skew(v("0.5.0"), cluster, None),
        Err(SkewError::TooNew { .. })
    ));
    assert!(matches!(
        check_skew(v("1.3.0"), cluster, None),
        Err(SkewError::TooNew { .. })
    ));
    assert!(matches!(
        check_skew(v("0.2.9"), cluster, None),
        Err(SkewError::TooOld { .. })
    ));
}

#[test]
fn an_older_member_may_run_only_at_the_enabled_downgrade_target() {
    let cluster = v("0.3.0");
    assert_eq!(check_skew(v("0.2.1"), cluster, Some(v("0.2.0"))), Ok(()));
    assert!(check_skew(v("0.1.0"), cluster, Some(v("0.2.0"))).is_err());
}

#[test]
fn skew_errors_say_what_to_do() {
    let err = check_skew(v("0.3.0"), v("0.1.0"), None).map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("server version 0.3.0 is more than one minor version away from the cluster version 0.1: upgrade the cluster one minor version at a time".to_string())
    );
}

#[test]
fn downgrade_targets_are_one_minor_lower() {
    assert_eq!(v("0.3.2").downgrade_target(), Some(v("0.2.0")));
    assert_eq!(v("1.0.0").downgrade_target(), None);
    assert_eq!(v("3.6.0").cluster_string(), "3.6");
}

#[test]
fn features_wait_for_a_decided_cluster_version_that_has_them() {
    assert!(!Feature::Downgrade.enabled(None));
    assert!(Feature::Downgrade.enabled(Some(v("0.1.0"))));
    assert!(!Feature::Downgrade.enabled(Some(v("0.0.9"))));
}
