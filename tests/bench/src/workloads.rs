//! The comparison: which workloads, on which cluster sizes, how they are run (etcd's
//! `benchmark` tool or our load generator), alternating the two systems round by round, and
//! the resource rows (peak RSS, disk; 1 M keys, snapshot save and restore in the full profile).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::loadgen::{self, Op, Sample, Spec};
use crate::report::{Report, Row};
use crate::systems::{Binaries, Cluster, System};

/// What `compare` was asked for.
#[derive(Debug)]
pub struct Options {
    /// The short profile.
    pub quick: bool,
    /// Rounds per workload and system.
    pub rounds: usize,
    /// Where to write the markdown table.
    pub markdown: Option<PathBuf>,
    /// Where to write the chart.
    pub chart: Option<PathBuf>,
    /// The cluster sizes to run.
    pub members: Vec<usize>,
    /// Workload names to run (from the full profile); empty for the whole profile.
    pub only: Vec<String>,
}

/// How a workload is driven.
#[derive(Debug, Clone)]
enum Driver {
    /// etcd's benchmark tool with these arguments (after the global flags).
    Tool(Vec<String>),
    /// Our load generator.
    Rust(Spec),
}

#[derive(Debug, Clone)]
pub(crate) struct Workload {
    name: String,
    driver: Driver,
}

pub(crate) fn tool(name: &str, clients: usize, args: &[&str]) -> Workload {
    let mut all: Vec<String> = vec![
        "--clients".into(),
        clients.to_string(),
        "--conns".into(),
        clients.clamp(1, 16).to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    Workload {
        name: name.into(),
        driver: Driver::Tool(all),
    }
}

fn rust(name: &str, op: Op, clients: usize, total: usize) -> Workload {
    Workload {
        name: name.into(),
        driver: Driver::Rust(Spec {
            op,
            clients,
            conns: clients.clamp(1, 16),
            total,
        }),
    }
}

/// The workloads to run for one cluster size: the profile's, or the named ones of the full
/// profile (at the quick profile's request counts when `quick`).
fn selected(opts: &Options, size: usize) -> Vec<Workload> {
    if opts.only.is_empty() {
        return workloads(opts.quick, size);
    }
    workloads_scaled(opts.quick, size, false)
        .into_iter()
        .filter(|w| opts.only.contains(&w.name))
        .collect()
}

/// The workloads of a profile for one cluster size.
fn workloads(quick: bool, size: usize) -> Vec<Workload> {
    workloads_scaled(quick, size, quick)
}

/// The workloads of the quick profile (`subset`) or of the full one, with request counts
/// halved when `quick`.
fn workloads_scaled(quick: bool, size: usize, subset: bool) -> Vec<Workload> {
    let scale = |n: usize| if quick { n / 2 } else { n };
    let put = |clients: usize, total: usize, txn: bool| {
        let total = scale(total).to_string();
        let cmd = if txn { "txn-put" } else { "put" };
        let mut args = vec![
            cmd,
            "--key-size",
            "8",
            "--val-size",
            "256",
            "--key-space-size",
            "100000",
            "--total",
        ];
        args.push(&total);
        let name = format!("{cmd}@{clients}");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool(&name, clients, &args)
    };
    if subset {
        let mut list = vec![put(256, 40_000, true)];
        if size == 1 {
            list.insert(0, put(1, 4_000, false));
            list.push(tool(
                "range-linearizable@256",
                256,
                &[
                    "range",
                    "00000001",
                    "--consistency",
                    "l",
                    "--total",
                    "10000",
                ],
            ));
            list.push(rust("txn-put@256 (rust)", Op::TxnPut, 256, 20_000));
        }
        return list;
    }
    let mut list = Vec::new();
    for clients in [1, 16, 256] {
        let total = match clients {
            1 => 5_000,
            16 => 30_000,
            _ => 80_000,
        };
        list.push(put(clients, total, false));
        list.push(put(clients, total, true));
    }
    list.push(tool(
        "range-linearizable@256",
        256,
        &[
            "range",
            "00000001",
            "--consistency",
            "l",
            "--total",
            "60000",
        ],
    ));
    list.push(tool(
        "range-serializable@256",
        256,
        &[
            "range",
            "00000001",
            "--consistency",
            "s",
            "--total",
            "60000",
        ],
    ));
    list.push(tool(
        "watch-latency (1000 watchers)",
        1,
        &[
            "watch-latency",
            "--streams",
            "10",
            "--watchers-per-stream",
            "100",
            "--put-total",
            "1000",
            "--put-rate",
            "200",
            "--key-size",
            "8",
            "--val-size",
            "256",
        ],
    ));
    list.push(rust("put@256 (rust)", Op::Put, 256, 40_000));
    list.push(rust("txn-put@256 (rust)", Op::TxnPut, 256, 40_000));
    list.push(rust(
        "range-linearizable@256 (rust)",
        Op::RangeLinearizable,
        256,
        40_000,
    ));
    list.push(rust(
        "range-serializable@256 (rust)",
        Op::RangeSerializable,
        256,
        40_000,
    ));
    list.push(rust(
        "kubernetes-shaped@64 (rust)",
        Op::Kubernetes,
        64,
        30_000,
    ));
    list
}

/// Parses the benchmark tool's summary: throughput and the 50th/99th latency percentiles of
/// its last report (watch-latency prints the put report, then the watch one).
fn parse_tool(stdout: &str) -> Option<Sample> {
    let mut sample = Sample::default();
    let mut seen = false;
    for line in stdout.lines().map(str::trim) {
        let secs = |s: &str| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            sample.qps = v.trim().parse().ok()?;
            seen = true;
        } else if let Some(v) = line.strip_prefix("50% in ") {
            sample.p50_ms = secs(v)? * 1000.0;
        } else if let Some(v) = line.strip_prefix("99% in ") {
            sample.p99_ms = secs(v)? * 1000.0;
        }
    }
    seen.then_some(sample)
}

pub(crate) async fn run_once(bins: &Binaries, cluster: &Cluster, w: &Workload) -> Result<Sample> {
    match &w.driver {
        Driver::Rust(spec) => loadgen::run(cluster.endpoints(), *spec).await,
        Driver::Tool(args) => {
            let endpoints = cluster.endpoints().join(",");
            let out = tokio::process::Command::new(&bins.benchmark)
                .arg("--endpoints")
                .arg(&endpoints)
                .args(args)
                .kill_on_drop(true)
                .output()
                .await
                .context("running etcd's benchmark tool")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                bail!(
                    "benchmark {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            parse_tool(&stdout).with_context(|| format!("unparsable benchmark output:\n{stdout}"))
        }
    }
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.qps.total_cmp(&b.qps));
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the comparison and prints (and writes) the report.
pub async fn compare(opts: Options) -> Result<()> {
    let bins = Binaries::locate()?;
    let mut report = Report::default();
    let started = Instant::now();
    for &size in &opts.members {
        eprintln!("== {size} member(s): starting etcd and oxcd");
        let etcd = Cluster::start(System::Etcd, size, &bins).await?;
        let oxcd = Cluster::start(System::Oxcd, size, &bins).await?;
        for w in selected(&opts, size) {
            let mut samples = (Vec::new(), Vec::new());
            for round in 0..opts.rounds {
                // Alternate which system goes first, so drift in the machine hits both.
                let order = if round % 2 == 0 {
                    [&etcd, &oxcd]
                } else {
                    [&oxcd, &etcd]
                };
                for cluster in order {
                    let sample = run_once(&bins, cluster, &w).await?;
                    eprintln!(
                        "   {:>5.0}s {size}m {:<32} {:<4} {:>9.0} qps  p50 {:>7.2} ms  p99 {:>7.2} ms",
                        started.elapsed().as_secs_f64(),
                        w.name,
                        cluster.system.name(),
                        sample.qps,
                        sample.p50_ms,
                        sample.p99_ms
                    );
                    match cluster.system {
                        System::Etcd => samples.0.push(sample),
                        System::Oxcd => samples.1.push(sample),
                    }
                }
            }
            report.rows.push(Row {
                workload: w.name.clone(),
                members: size,
                etcd: median(samples.0),
                oxcd: median(samples.1),
            });
        }
        for cluster in [&etcd, &oxcd] {
            report.resource(
                "peak RSS after the workloads (MB)",
                size,
                cluster.system,
                cluster.peak_rss() as f64 / 1e6,
            );
            report.resource(
                "data dir after the workloads (MB)",
                size,
                cluster.system,
                cluster.disk_usage() as f64 / 1e6,
            );
        }
        if !opts.quick && size == 1 {
            drop(etcd);
            drop(oxcd);
            for system in [System::Etcd, System::Oxcd] {
                eprintln!("== 1 member: 1M keys on {}", system.name());
                let cluster = Cluster::start(system, 1, &bins).await?;
                crate::resources::million_keys(&bins, &cluster, &mut report, system).await?;
            }
        }
    }
    let table = report.markdown(opts.quick);
    println!("{table}");
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &opts.chart {
        match report.chart(path) {
            Ok(()) => eprintln!("chart written to {}", path.display()),
            // The numbers are the result; a missing font only costs the picture.
            Err(e) => eprintln!("no chart: {e:#}"),
        }
    }
    println!("{}", report.headline());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_tool_summary_parses() {
        let out = "Summary:\n  Total:\t1.0 secs.\n  Requests/sec:\t8100.5\n\nLatency distribution:\n  10% in 0.0008 secs.\n  50% in 0.0010 secs.\n  99% in 0.0030 secs.\n  99.9% in 0.0040 secs.\n";
        let s = parse_tool(out).unwrap();
        assert!((s.qps - 8100.5).abs() < 1e-9);
        assert!((s.p50_ms - 1.0).abs() < 1e-9);
        assert!((s.p99_ms - 3.0).abs() < 1e-9);
        assert!(parse_tool("nothing").is_none());
    }
}
