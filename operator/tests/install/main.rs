//! Installing the operator on a real API server (the local control plane of `e2e/local/up`, on
//! oxcd): by Helm and by `kubectl apply -f deploy/`, each checked object by object and removed
//! again, and the StoreCluster CRD's own rules (CEL, defaults, printer columns, scale) as the API
//! server enforces them. One control plane for the whole file; each check runs in turn, a failed
//! check does not stop the others, and the test fails listing every failed check.
//!
//! helm and kubectl come from `$OXCD_BIN_DIR` (default `$OXCD_CACHE/bin`, as
//! `e2e/toolchain/install` leaves them); the oxcd binary from `target/debug/oxcd` (`$OXCD_BIN`).

mod crd_rules;
mod cx;
mod installs;
mod objects;

use std::time::{Duration, Instant};

use oxcd_k8s_suite::{ControlPlane, Storage};

use crate::cx::Cx;

/// Name of the StoreCluster CRD.
pub(crate) const CRD_NAME: &str = "storeclusters.oxcd.io";
/// Bound of every wait.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn operator_installs_by_helm_and_by_deploy_manifests_and_the_crd_enforces_its_rules() {
    let started = Instant::now();
    let plane = ControlPlane::up(Storage::Oxcd, &[])
        .await
        .unwrap_or_else(|e| panic!("control plane: {e:#}"));
    let cx = Cx::new(&plane).unwrap_or_else(|e| panic!("{e:#}"));
    let mut failed = Vec::new();
    macro_rules! check {
        ($name:literal, $call:expr) => {{
            let at = Instant::now();
            match $call.await {
                Ok(()) => eprintln!("{}: ok ({:.1} s)", $name, at.elapsed().as_secs_f64()),
                Err(e) => {
                    eprintln!(
                        "{}: FAILED ({:.1} s): {e:#}",
                        $name,
                        at.elapsed().as_secs_f64()
                    );
                    failed.push(format!("{}: {e:#}", $name));
                }
            }
        }};
    }
    check!(
        "helm_install_then_uninstall",
        installs::helm_install_then_uninstall(&cx)
    );
    check!(
        "helm_install_watching_namespaces_grants_only_those",
        installs::helm_install_watching_namespaces_grants_only_those(&cx)
    );
    check!(
        "kubectl_apply_deploy_then_delete",
        installs::kubectl_apply_deploy_then_delete(&cx)
    );
    check!(
        "crd_rules_enforced_by_the_api_server",
        crd_rules::crd_rules_enforced_by_the_api_server(&cx)
    );
    eprintln!(
        "install tests took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(plane);
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
}
