//! Client histories for the linearizability check: clients run random puts, gets, deletes and
//! compare-and-swap txns on a few keys (every written value unique), recording when each call
//! started and returned; the history goes to porcupine (`e2e/linearizability`, the checker
//! etcd's robustness tests use) after the run. A write whose outcome the client never learnt is
//! recorded as such (it may or may not have happened); a failed read is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Keys the history clients share (few keys: many operations on each).
const KEYS: usize = 4;
/// Operations per client at most: the load stops by itself.
const MAX_OPS: usize = 500;
/// Pause after a failed operation (its member is down or paused): keeps the number of writes
/// with unknown outcome, the expensive part of the check, small.
const FAILURE_PAUSE: Duration = Duration::from_millis(250);

/// True when the request cannot have reached the server (no connection could be made).
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("ConnectionRefused") || text.contains("tcp connect error")
}

/// Histories being recorded.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Value>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn ns(start: Instant) -> i64 {
    i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// A small xorshift generator: deterministic per client, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn run_client(
    id: usize,
    endpoint: String,
    start: Instant,
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Value>>>,
) {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(3));
    let Ok(mut client) = Client::connect([endpoint], Some(options)).await else {
        return;
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
    let mut last_read: Vec<Option<String>> = vec![None; KEYS];
    for n in 0..MAX_OPS {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let k = rng.next(KEYS as u64) as usize;
        let key = format!("lin/k{k}");
        let value = format!("c{id}-{n}");
        let call = ns(start);
        let record = match rng.next(10) {
            0..=3 => match client.put(key.as_str(), value.as_str(), None).await {
                Ok(_) => json!({"op": "put", "value": value, "ok": true}),
                Err(e) => json!({"op": "put", "value": value, "ok": false,
                                     "never_sent": never_sent(&e)}),
            },
            4..=6 => match client.get(key.as_str(), None).await {
                Ok(r) => {
                    let read = r
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                    last_read[k] = read.clone();
                    json!({"op": "get", "ok": true, "found": read.is_some(),
                           "read": read.unwrap_or_default()})
                }
                Err(_) => json!({"op": "get", "ok": false}),
            },
            7 => match client.delete(key.as_str(), None).await {
                Ok(r) => json!({"op": "delete", "ok": true, "deleted": r.deleted()}),
                Err(e) => json!({"op": "delete", "ok": false, "never_sent": never_sent(&e)}),
            },
            _ => {
                let expect = last_read[k].clone();
                let compare = match &expect {
                    Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                    None => Compare::version(key.as_str(), CompareOp::Equal, 0),
                };
                let txn = Txn::new().when([compare]).and_then([TxnOp::put(
                    key.as_str(),
                    value.as_str(),
                    None,
                )]);
                match client.txn(txn).await {
                    Ok(r) => json!({"op": "cas", "ok": true, "value": value,
                        "expect": expect.clone().unwrap_or_default(),
                        "expect_absent": expect.is_none(), "succeeded": r.succeeded()}),
                    Err(e) => json!({"op": "cas", "ok": false, "value": value,
                        "expect": expect.clone().unwrap_or_default(),
                        "expect_absent": expect.is_none(), "never_sent": never_sent(&e)}),
                }
            }
        };
        let ret = ns(start);
        let mut record = record;
        let ok = record["ok"].as_bool().unwrap_or(false);
        if !ok && (record["op"] == "get" || record["never_sent"] == true) {
            // A failed read, or a request that never left the client, has no effect.
            tokio::time::sleep(FAILURE_PAUSE).await;
            continue;
        }
        record["client"] = json!(id);
        record["key"] = json!(key);
        record["call"] = json!(call);
        record["return"] = json!(if ok { ret } else { -1 });
        ops.lock().await.push(record);
        if !ok {
            tokio::time::sleep(FAILURE_PAUSE).await;
        }
    }
}

impl Recorder {
    /// Starts one history client per endpoint.
    pub fn start(endpoints: &[String]) -> Self {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(Mutex::new(Vec::new()));
        let tasks = endpoints
            .iter()
            .enumerate()
            .map(|(id, e)| {
                tokio::spawn(run_client(id, e.clone(), start, stop.clone(), ops.clone()))
            })
            .collect();
        Self { stop, ops, tasks }
    }

    /// Stops the clients and checks the history with porcupine; panics on a violation.
    pub async fn finish_and_check(self) {
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path().to_path_buf();
        let dir = dir.as_path();
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("history client");
        }
        let ops = self.ops.lock().await.clone();
        assert!(
            ops.len() > 50,
            "the history clients made progress: {}",
            ops.len()
        );
        let history = dir.join("history.json");
        std::fs::write(&history, serde_json::to_vec(&ops).expect("json")).expect("write");
        let checker = dir.join("linearizability");
        let source = oxcd_tests::workspace_root().join("e2e/linearizability");
        let build = tokio::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&checker)
            .arg(".")
            .current_dir(&source)
            .output()
            .await
            .expect("go build (Go is part of the toolchain)");
        assert!(
            build.status.success(),
            "building the checker failed: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        let html = dir.join("violation.html");
        let out = tokio::process::Command::new(&checker)
            .arg("-history")
            .arg(&history)
            .arg("-visualize")
            .arg(&html)
            .output()
            .await
            .expect("run the checker");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        if !out.status.success() {
            // Keep the history and the visualization for whoever looks at the failure.
            let _ = tmp.keep();
        }
        assert!(
            out.status.success(),
            "porcupine found the history not linearizable ({}): {stdout}{}",
            html.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
