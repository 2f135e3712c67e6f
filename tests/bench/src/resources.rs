//! Resource rows of the full profile: 1 M keys loaded, then peak RSS, data-dir size, and the
//! time to save a snapshot and to restore it into a new data dir, with each system's own tools
//! (etcdctl/etcdutl for etcd, `oxcd snapshot` for oxcd).

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::report::Report;
use crate::systems::{Binaries, Cluster, System};
use crate::workloads::{run_once, tool};

/// 1 M keys (full profile): load, then resources, snapshot save and restore times.
pub async fn million_keys(
    bins: &Binaries,
    cluster: &Cluster,
    report: &mut Report,
    system: System,
) -> Result<()> {
    let load = tool(
        "load 1M keys",
        256,
        &[
            "put",
            "--key-size",
            "8",
            "--val-size",
            "256",
            "--key-space-size",
            "1000000",
            "--sequential-keys",
            "--total",
            "1000000",
        ],
    );
    run_once(bins, cluster, &load).await?;
    report.resource(
        "1M keys: peak RSS (MB)",
        1,
        system,
        cluster.peak_rss() as f64 / 1e6,
    );
    report.resource(
        "1M keys: data dir (MB)",
        1,
        system,
        cluster.disk_usage() as f64 / 1e6,
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("snap.db");
    let endpoint = &cluster.endpoints()[0];
    let started = Instant::now();
    let save = match system {
        System::Etcd => Command::new(&bins.etcdctl)
            .args(["--endpoints", endpoint, "snapshot", "save"])
            .arg(&file)
            .output()?,
        System::Oxcd => Command::new(&bins.oxcd)
            .args(["snapshot", "save"])
            .arg(&file)
            .args(["--endpoints", endpoint])
            .output()?,
    };
    if !save.status.success() {
        bail!("snapshot save: {}", String::from_utf8_lossy(&save.stderr));
    }
    report.resource(
        "1M keys: snapshot save (s)",
        1,
        system,
        started.elapsed().as_secs_f64(),
    );
    let started = Instant::now();
    let target = dir.path().join("restored");
    let restore = match system {
        System::Etcd => Command::new(&bins.etcdutl)
            .args(["snapshot", "restore"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&target)
            .output()?,
        System::Oxcd => Command::new(&bins.oxcd)
            .args(["snapshot", "restore"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&target)
            .output()?,
    };
    if !restore.status.success() {
        bail!(
            "snapshot restore: {}",
            String::from_utf8_lossy(&restore.stderr)
        );
    }
    report.resource(
        "1M keys: snapshot restore (s)",
        1,
        system,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
