//! The kube-apiserver log after the whole suite: no watch-cache inconsistency and no storage
//! errors. The watch cache compares itself with the storage every 5 minutes (and only logs the
//! outcome), so `consistent_reads` also compares the two directly.

use anyhow::{Result, ensure};
use oxcd_k8s_suite::ControlPlane;

/// Lines that must never appear: the cache consistency checker's verdicts, errors the storage
/// returned (etcd client error strings), and the apiserver's storage-layer complaints.
const FORBIDDEN: &[&str] = &[
    "Cache consistency check failed",
    "Cache consistency check error",
    "etcdserver:",
    "mvcc: ",
    "rpc error: code =",
    "watch chan error",
    "Failed to get current RV",
    "storage is (re)initializing",
    "Timeout: Too large resource version",
    "apiserver was unable to write a JSON response",
];

/// Lines the suite causes on purpose: its own compaction makes a watch and a list at a
/// compacted revision fail with 410 Gone.
const EXPECTED: &[&str] = &["required revision has been compacted"];

/// Lines the suite's compaction may cause besides: it compacts at the newest revision (the
/// kube-apiserver itself never compacts so recent a revision), so a watch-cache consistency
/// check running just then cannot list the storage at the cache's revision and says so. That
/// is the check failing to run, not an inconsistency ("Cache consistency check failed" stays
/// forbidden).
const CAUSED_BY_COMPACTION: &[&str] = &["The resourceVersion for the provided list is too old"];

/// Lines of kube-apiserver closing one of its own storage clients (its etcd client retries a
/// request on a connection it is shutting down): no request reached the storage.
const CLIENT_CLOSING: &[&str] = &["grpc: the client connection is closing"];

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let log = cp.apiserver_log().await?;
    // The watch check's compaction shows in this log: proof that it is the right log, read whole.
    ensure!(
        EXPECTED.iter().all(|e| log.contains(e)),
        "the kube-apiserver log lacks the compaction error the watch check provokes"
    );
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| FORBIDDEN.iter().any(|f| l.contains(f)))
        .filter(|l| {
            !EXPECTED
                .iter()
                .chain(CAUSED_BY_COMPACTION)
                .chain(CLIENT_CLOSING)
                .any(|e| l.contains(e))
        })
        .take(20)
        .collect();
    ensure!(
        bad.is_empty(),
        "kube-apiserver log on {} has storage errors:\n{}",
        cp.label(),
        bad.join("\n")
    );
    Ok(())
}
