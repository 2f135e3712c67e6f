//! Our Rust load generator (etcd-client): `clients` concurrent requesters over `conns`
//! connections, `total` requests, every latency recorded; 8-byte keys over a key space of
//! 100 000 and 256-byte values, like the etcd benchmark tool's defaults we use.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};

/// Keys the key-value workloads spread over.
const KEY_SPACE: usize = 100_000;
/// Value size of writes.
const VALUE_LEN: usize = 256;

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Put.
    Put,
    /// A Txn with one put (what kube-apiserver's writes look like to the store).
    TxnPut,
    /// Linearizable single-key range.
    RangeLinearizable,
    /// Serializable single-key range.
    RangeSerializable,
    /// kube-apiserver-shaped: create (txn on mod_revision 0), updates (txn on the last
    /// mod_revision), delete (txn), and a paginated list page of the resource prefix.
    Kubernetes,
}

/// One load run.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// What the requests do.
    pub op: Op,
    /// Concurrent requesters.
    pub clients: usize,
    /// Connections they share.
    pub conns: usize,
    /// Requests in all.
    pub total: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Requests per second.
    pub qps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

fn key(n: usize) -> String {
    // Spread over the key space like the benchmark tool's random keys, deterministically.
    format!("{:08}", (n.wrapping_mul(2_654_435_761)) % KEY_SPACE)
}

/// Percentile `p` (0–100) of sorted latencies, in ms.
pub fn percentile(sorted_micros: &[u32], p: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_micros.len() - 1) as f64).round() as usize;
    f64::from(sorted_micros[rank.min(sorted_micros.len() - 1)]) / 1000.0
}

async fn one(
    client: &mut Client,
    op: Op,
    n: usize,
    worker: usize,
    state: &mut Vec<i64>,
) -> Result<()> {
    let value = vec![b'v'; VALUE_LEN];
    match op {
        Op::Put => {
            client.put(key(n), value, None).await?;
        }
        Op::TxnPut => {
            client
                .txn(Txn::new().and_then([TxnOp::put(key(n), value, None)]))
                .await?;
        }
        Op::RangeLinearizable => {
            client.get(key(n), None).await?;
        }
        Op::RangeSerializable => {
            client
                .get(key(n), Some(GetOptions::new().with_serializable()))
                .await?;
        }
        Op::Kubernetes => {
            // Each worker cycles through its own objects: create, 2 updates, delete, with a
            // list page every fifth request.
            let object = n / 5;
            let k = format!("/registry/pods/ns{worker}/pod-{}", object % 200);
            let slot = object % 200;
            if state.len() <= slot {
                state.resize(slot + 1, 0);
            }
            match n % 5 {
                4 => {
                    client
                        .get(
                            "/registry/pods/",
                            Some(GetOptions::new().with_prefix().with_limit(500)),
                        )
                        .await?;
                }
                step => {
                    let rev = state[slot];
                    let cmp = Compare::mod_revision(k.as_str(), CompareOp::Equal, rev);
                    let action = if step == 3 && rev != 0 {
                        TxnOp::delete(k.as_str(), None)
                    } else {
                        TxnOp::put(k.as_str(), value, None)
                    };
                    let resp = client
                        .txn(
                            Txn::new()
                                .when([cmp])
                                .and_then([action])
                                .or_else([TxnOp::get(k.as_str(), None)]),
                        )
                        .await?;
                    let header_rev = resp.header().map_or(0, |h| h.revision());
                    state[slot] = if resp.succeeded() {
                        if step == 3 && rev != 0 { 0 } else { header_rev }
                    } else {
                        // Lost a race with ourselves is impossible; re-read the revision.
                        0
                    };
                }
            }
        }
    }
    Ok(())
}

/// Runs `spec` against `endpoints`.
pub async fn run(endpoints: &[String], spec: Spec) -> Result<Sample> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(30));
    let mut conns = Vec::new();
    for _ in 0..spec.conns.max(1) {
        conns.push(Client::connect(endpoints, Some(options.clone())).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..spec.clients {
        let mut client = conns[worker % conns.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut state = Vec::new();
            let mut errors = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= spec.total {
                    break;
                }
                let t = Instant::now();
                match one(&mut client, spec.op, n, worker, &mut state).await {
                    Ok(()) => {
                        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX))
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::with_capacity(spec.total);
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if errors > spec.total / 100 {
        bail!("{errors} of {} requests failed", spec.total);
    }
    all.sort_unstable();
    Ok(Sample {
        qps: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
    })
}
