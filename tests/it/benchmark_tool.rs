//! etcd's own `benchmark` tool (`put`, `txn-put`, `range`) runs against oxcd without a single
//! failed request, and the store holds exactly what it wrote afterwards. The same scenario runs
//! against etcd 3.6 first, which proves the expectations are etcd's.
//!
//! The tool exits 0 even when requests fail; it reports failures in an "Error distribution"
//! section and counts only successful requests in its latency histogram, so the histogram must
//! add up to `--total`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use oxcd_tests::{EtcdServer, EtcdVersion, OxcdServer, tool};
use tokio::process::Command;

/// Bound on one benchmark run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// `--key-size` of every run.
const KEY_SIZE: usize = 8;
/// `--val-size` of every run.
const VAL_SIZE: usize = 16;
/// Puts of the `put` run, one per sequential key.
const PUTS: usize = 2000;
/// Txns of the `txn-put` run.
const TXNS: usize = 1000;
/// Puts per txn of the `txn-put` run.
const TXN_OPS: usize = 4;
/// Ranges per `range` run.
const RANGES: usize = 1000;
/// Keys written with a client for the `range` runs to find.
const RANGE_KEYS: usize = 50;

/// What one benchmark run printed.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr_tail: String,
}

async fn benchmark(endpoint: &str, args: &[String]) -> Run {
    let host_port = endpoint.trim_start_matches("http://");
    let mut command = Command::new(tool("benchmark").expect("benchmark tool is installed"));
    command
        .arg(format!("--endpoints={host_port}"))
        .args(["--conns", "4", "--clients", "16"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("benchmark starts");
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("benchmark {args:?} did not finish within {RUN_TIMEOUT:?}"))
        .expect("benchmark runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr_tail: lines[lines.len().saturating_sub(20)..].join("\n"),
    }
}

/// Sum of the counts of the "Response time histogram" (successful requests only).
fn histogram_total(stdout: &str) -> usize {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Response time histogram:"))
        .skip(1)
        .take_while(|l| l.contains('['))
        .filter_map(|l| {
            let open = l.find('[')?;
            let close = l.find(']')?;
            l[open + 1..close].parse::<usize>().ok()
        })
        .sum()
}

/// Runs the benchmark and asserts it reported `total` requests and not one error.
async fn run_clean(server: &str, endpoint: &str, args: &[&str], total: usize) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = benchmark(endpoint, &args).await;
    let context = format!(
        "benchmark {args:?} against {server}\nstdout:\n{}\nstderr (end):\n{}",
        run.stdout, run.stderr_tail
    );
    assert!(run.success, "exited unsuccessfully: {context}");
    assert!(run.stdout.contains("Summary:"), "no summary: {context}");
    assert!(
        !run.stdout.contains("Error distribution"),
        "requests failed: {context}"
    );
    assert_eq!(
        histogram_total(&run.stdout),
        total,
        "not every request succeeded: {context}"
    );
}

/// The key the tool writes for sequence number `n`: Go's `binary.PutVarint` (zigzag varint)
/// into a zeroed `--key-size` buffer.
fn benchmark_key(n: usize) -> Vec<u8> {
    let mut key = vec![0u8; KEY_SIZE];
    let mut zigzag = (n as u64) << 1;
    let mut at = 0;
    while zigzag >= 0x80 {
        key[at] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        at += 1;
    }
    key[at] = zigzag as u8;
    key
}

async fn revision(client: &mut Client) -> i64 {
    let resp = client
        .get("benchmark-probe", None)
        .await
        .expect("range succeeds");
    resp.header().expect("header").revision()
}

/// Every key outside the `range` runs' prefix, with its version and value length.
async fn benchmark_keys(client: &mut Client) -> BTreeMap<Vec<u8>, (i64, usize)> {
    let resp = client
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .expect("range succeeds");
    resp.kvs()
        .iter()
        .filter(|kv| !kv.key().starts_with(b"bench/"))
        .map(|kv| (kv.key().to_vec(), (kv.version(), kv.value().len())))
        .collect()
}

/// The whole scenario against one server, which must be fresh.
async fn scenario(server: &str, endpoint: &str, mut client: Client) {
    let start = revision(&mut client).await;
    let (puts, txns, txn_ops, ranges) = (
        PUTS.to_string(),
        TXNS.to_string(),
        TXN_OPS.to_string(),
        RANGES.to_string(),
    );
    let (key_size, val_size) = (KEY_SIZE.to_string(), VAL_SIZE.to_string());
    let sizes = ["--key-size", &key_size, "--val-size", &val_size];

    // put: one revision per request, one new key per sequential key.
    let mut args = vec!["put", "--total", &puts, "--key-space-size", &puts];
    args.extend(["--sequential-keys"]);
    args.extend(sizes);
    run_clean(server, endpoint, &args, PUTS).await;
    let after_put = revision(&mut client).await;
    assert_eq!(
        after_put,
        start + PUTS as i64,
        "{server}: revision after put"
    );

    // txn-put: one revision per txn; its keys 0..PUTS overwrite the put run's.
    let key_space = (TXNS * TXN_OPS).to_string();
    let mut args = vec!["txn-put", "--total", &txns, "--txn-ops", &txn_ops];
    args.extend(["--key-space-size", &key_space]);
    args.extend(sizes);
    run_clean(server, endpoint, &args, TXNS).await;
    let after_txn = revision(&mut client).await;
    assert_eq!(
        after_txn,
        after_put + TXNS as i64,
        "{server}: revision after txn-put"
    );

    let keys = benchmark_keys(&mut client).await;
    let expected: BTreeMap<Vec<u8>, (i64, usize)> = (0..TXNS * TXN_OPS)
        .map(|n| {
            let version = if n < PUTS { 2 } else { 1 };
            (benchmark_key(n), (version, VAL_SIZE))
        })
        .collect();
    assert_eq!(keys.len(), expected.len(), "{server}: number of keys");
    assert!(
        keys == expected,
        "{server}: keys, versions or value sizes differ from what the tool wrote"
    );

    // range: reads never move the revision.
    for i in 0..RANGE_KEYS {
        client
            .put(format!("bench/r/{i:03}"), format!("v{i}"), None)
            .await
            .expect("put succeeds");
    }
    let before_range = revision(&mut client).await;
    let range = ["range", "bench/r/", "bench/r0", "--total", &ranges];
    run_clean(server, endpoint, &range, RANGES).await;
    let mut limited = range.to_vec();
    limited.extend(["--limit", "10", "--consistency", "s"]);
    run_clean(server, endpoint, &limited, RANGES).await;
    let mut counted = range.to_vec();
    counted.extend(["--count-only"]);
    run_clean(server, endpoint, &counted, RANGES).await;
    assert_eq!(
        revision(&mut client).await,
        before_range,
        "{server}: revision after range"
    );
}

#[tokio::test]
async fn benchmark_put_txn_put_and_range_run_without_errors_and_leave_exactly_their_writes() {
    let etcd = EtcdServer::start(EtcdVersion::V3_6)
        .await
        .expect("etcd starts");
    let client = etcd.client().await.expect("client connects");
    scenario("etcd 3.6", etcd.endpoint(), client).await;
    drop(etcd);

    let oxcd = OxcdServer::start().await.expect("oxcd starts");
    let client = oxcd.client().await.expect("client connects");
    scenario("oxcd", oxcd.endpoint(), client).await;
}

#[test]
fn benchmark_keys_are_zigzag_varints_padded_with_zeros() {
    assert_eq!(benchmark_key(0), vec![0; KEY_SIZE]);
    assert_eq!(benchmark_key(1), vec![2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(benchmark_key(64), vec![0x80, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        histogram_total("x\nResponse time histogram:\n  0.1 [3]\t|\n  0.2 [4]\t|\n\nLatency"),
        7
    );
}
