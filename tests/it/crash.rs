//! Crash durability of one oxcd member: concurrent writers put unique keys (and write pairs of
//! keys in txns) while the member is killed with SIGKILL at a random moment, then restarted on
//! the same data dir, over and over. Every acknowledged write must survive with its value and
//! revision, a write whose outcome the client never learnt must be all there or not at all, the
//! revision never goes back, and writes after a restart get strictly larger revisions. A
//! compactor runs alongside: an acknowledged compaction must survive the crash too.
//!
//! The kill moments come from a seed printed at the start; set `OXCD_CRASH_SEED` to replay one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp,
};
use oxcd_tests::OxcdServer;

/// Kill-and-restart cycles.
const CYCLES: usize = 20;
/// Concurrent writers per cycle.
const WRITERS: usize = 8;
/// Writes per writer and cycle at most (the kill normally comes first).
const MAX_WRITES_PER_WRITER: usize = 5_000;
/// The kill comes this long after the writers start, at the least …
const MIN_KILL_DELAY_MS: u64 = 100;
/// … and at the most.
const MAX_KILL_DELAY_MS: u64 = 800;
/// Bound on one client request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the writers noticing the kill and stopping.
const WRITERS_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two compactions.
const COMPACT_EVERY: Duration = Duration::from_millis(50);
/// Compactions leave this many revisions below the newest acknowledged one.
const COMPACT_LAG: i64 = 20;
/// Every key of this test starts with it.
const PREFIX: &str = "crash/";

/// A small deterministic generator (xorshift64*), enough to spread kill moments and value sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn seed() -> u64 {
    std::env::var("OXCD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        .max(1)
}

/// A write the server acknowledged: its keys (one for a put, two for a txn), their value and the
/// revision of the response header.
#[derive(Debug, Clone)]
struct Acked {
    keys: Vec<String>,
    value: String,
    revision: i64,
}

/// A write that failed (in flight at the kill): it may or may not have been applied.
#[derive(Debug, Clone)]
struct Unknown {
    keys: Vec<String>,
    value: String,
    error: String,
}

/// What one writer saw in one cycle.
#[derive(Debug, Default)]
struct Outcome {
    acked: Vec<Acked>,
    unknown: Vec<Unknown>,
}

async fn connect(endpoint: &str) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    Client::connect([endpoint], Some(options))
        .await
        .expect("client connects")
}

/// Writes until `stop` is set or a request fails; every fourth write is a txn of two keys.
async fn writer(
    endpoint: String,
    cycle: usize,
    id: usize,
    filler: usize,
    stop: Arc<AtomicBool>,
    latest: Arc<AtomicI64>,
) -> Outcome {
    let mut client = connect(&endpoint).await;
    let mut outcome = Outcome::default();
    for seq in 0..MAX_WRITES_PER_WRITER {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let base = format!("{PREFIX}c{cycle:02}/w{id}/{seq:05}");
        let value = format!("{base}={}", "x".repeat((seq * 7 + filler) % 300));
        let result = if seq % 4 == 3 {
            let keys = vec![format!("{base}/a"), format!("{base}/b")];
            let txn = Txn::new()
                .when([Compare::mod_revision(keys[0].as_str(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(keys[0].as_str(), value.as_str(), None),
                    TxnOp::put(keys[1].as_str(), value.as_str(), None),
                ]);
            client.txn(txn).await.map(|resp| {
                assert!(resp.succeeded(), "txn on fresh keys {keys:?} failed");
                (keys, resp.header().map(|h| h.revision()))
            })
        } else {
            client
                .put(base.as_str(), value.as_str(), None)
                .await
                .map(|resp| (vec![base.clone()], resp.header().map(|h| h.revision())))
        };
        match result {
            Ok((keys, revision)) => {
                let revision = revision.expect("a write response has a header");
                latest.fetch_max(revision, Ordering::Relaxed);
                outcome.acked.push(Acked {
                    keys,
                    value,
                    revision,
                });
            }
            Err(err) => {
                let keys = if seq % 4 == 3 {
                    vec![format!("{base}/a"), format!("{base}/b")]
                } else {
                    vec![base]
                };
                outcome.unknown.push(Unknown {
                    keys,
                    value,
                    error: err.to_string(),
                });
                break;
            }
        }
    }
    outcome
}

/// Compacts a little below the newest acknowledged revision until `stop` is set or a request
/// fails for another reason than the revision being compacted already; every other compaction
/// is physical. Returns the highest acknowledged compaction revision (`floor` if none).
async fn compactor(
    endpoint: String,
    floor: i64,
    stop: Arc<AtomicBool>,
    latest: Arc<AtomicI64>,
) -> i64 {
    let mut client = connect(&endpoint).await;
    let (mut acked, mut last) = (floor, floor);
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(COMPACT_EVERY).await;
        let target = latest.load(Ordering::Relaxed) - COMPACT_LAG;
        if target <= last {
            continue;
        }
        let options = (n % 2 == 0).then(|| CompactionOptions::new().with_physical());
        match client.compact(target, options).await {
            Ok(_) => acked = target,
            // A compaction that failed at an earlier kill may have been applied after all.
            Err(err)
                if err
                    .to_string()
                    .contains("required revision has been compacted") => {}
            Err(_) => break,
        }
        last = target;
    }
    acked
}

/// Checks that a read below the acknowledged compaction revision `compacted` is refused.
async fn assert_compacted(client: &mut Client, compacted: i64, context: &str) {
    if compacted < 2 {
        return;
    }
    let below = client
        .get(
            "crash-probe",
            Some(GetOptions::new().with_revision(compacted - 1)),
        )
        .await;
    match below {
        Err(etcd_client::Error::GRpcStatus(status))
            if status.code() == tonic::Code::OutOfRange
                && status.message() == "etcdserver: mvcc: required revision has been compacted" => {
        }
        other => panic!(
            "{context}: a read at revision {} below the acknowledged compaction {compacted} \
             answered {other:?}",
            compacted - 1
        ),
    }
}

/// Keys per page of [`read_prefix`]: the whole prefix can outgrow a 4 MiB response.
const PAGE: i64 = 2_000;

/// Every key under `prefix` (which ends in `/`) with its value and mod and create revisions,
/// read page by page as kube-apiserver lists.
async fn read_prefix(client: &mut Client, prefix: &str) -> BTreeMap<String, (String, i64, i64)> {
    // The end of the prefix range: its last byte, `/`, plus one.
    let end = format!("{}0", prefix.trim_end_matches('/'));
    let mut stored = BTreeMap::new();
    let mut from = prefix.as_bytes().to_vec();
    loop {
        let resp = client
            .get(
                from.clone(),
                Some(GetOptions::new().with_range(end.clone()).with_limit(PAGE)),
            )
            .await
            .expect("range succeeds after restart");
        for kv in resp.kvs() {
            stored.insert(
                String::from_utf8_lossy(kv.key()).into_owned(),
                (
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    kv.mod_revision(),
                    kv.create_revision(),
                ),
            );
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return stored,
        }
    }
}

/// Checks `stored` against every acknowledged write and decides each unknown one (all its keys
/// there with its value, or none); returns the keys of the unknown writes found applied. Keys
/// that no writer wrote must not exist.
fn verify(
    stored: &BTreeMap<String, (String, i64, i64)>,
    acked: &[Acked],
    unknown: &[Unknown],
    context: &str,
) -> Vec<Acked> {
    let mut expected: BTreeMap<&str, ()> = BTreeMap::new();
    for write in acked {
        for key in &write.keys {
            expected.insert(key, ());
            match stored.get(key) {
                None => panic!("{context}: acknowledged write {write:?} lost: {key} is missing"),
                Some((value, mod_rev, create_rev)) => {
                    assert_eq!(value, &write.value, "{context}: value of acked {key}");
                    assert_eq!(
                        (*mod_rev, *create_rev),
                        (write.revision, write.revision),
                        "{context}: mod/create revision of {key} differ from its response's \
                         header revision"
                    );
                }
            }
        }
    }
    let mut applied = Vec::new();
    for write in unknown {
        let present: Vec<&String> = write
            .keys
            .iter()
            .filter(|k| stored.contains_key(*k))
            .collect();
        if present.is_empty() {
            continue;
        }
        assert_eq!(
            present.len(),
            write.keys.len(),
            "{context}: a failed write ({}) is partially applied: {:?} of {:?}",
            write.error,
            present,
            write.keys
        );
        let revisions: Vec<i64> = write.keys.iter().map(|k| stored[k].1).collect();
        for key in &write.keys {
            expected.insert(key, ());
            assert_eq!(stored[key].0, write.value, "{context}: value of {key}");
        }
        assert!(
            revisions.iter().all(|r| *r == revisions[0]),
            "{context}: the keys of one txn have different revisions: {revisions:?}"
        );
        applied.push(Acked {
            keys: write.keys.clone(),
            value: write.value.clone(),
            revision: revisions[0],
        });
    }
    let strays: Vec<&String> = stored
        .keys()
        .filter(|k| !expected.contains_key(k.as_str()))
        .collect();
    assert!(
        strays.is_empty(),
        "{context}: keys nobody wrote (or wrote and failed on) exist: {strays:?}"
    );
    applied
}

async fn current_revision(client: &mut Client) -> i64 {
    client
        .get("crash-probe", None)
        .await
        .expect("range succeeds")
        .header()
        .expect("header")
        .revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill_and_failed_ones_are_all_or_nothing() {
    let seed = seed();
    eprintln!("crash test seed {seed} (replay with OXCD_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let mut server = OxcdServer::start().await.expect("oxcd starts");
    let endpoint = server.endpoint().to_string();

    // Every write known to be in the store, and the highest revision any response carried.
    let mut durable: Vec<Acked> = Vec::new();
    let mut highest = 0_i64;
    let mut last_revision = 0_i64;
    let (mut total_acked, mut total_unknown, mut total_applied) = (0, 0, 0);
    // The highest acknowledged compaction revision.
    let mut compacted = 0_i64;

    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(AtomicI64::new(highest));
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let filler = rng.below(300) as usize;
                tokio::spawn(writer(
                    endpoint.clone(),
                    cycle,
                    id,
                    filler,
                    Arc::clone(&stop),
                    Arc::clone(&latest),
                ))
            })
            .collect();
        let compactions = tokio::spawn(compactor(
            endpoint.clone(),
            compacted,
            Arc::clone(&stop),
            Arc::clone(&latest),
        ));
        let delay = MIN_KILL_DELAY_MS + rng.below(MAX_KILL_DELAY_MS - MIN_KILL_DELAY_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill().expect("SIGKILL the member");
        stop.store(true, Ordering::Relaxed);

        let outcomes = tokio::time::timeout(WRITERS_STOP_TIMEOUT, join_writers(writers))
            .await
            .expect("writers stop once the member is dead");
        compacted = tokio::time::timeout(WRITERS_STOP_TIMEOUT, compactions)
            .await
            .expect("the compactor stops once the member is dead")
            .expect("compactor task does not panic");
        let mut acked = Vec::new();
        let mut unknown = Vec::new();
        for outcome in outcomes {
            acked.extend(outcome.acked);
            unknown.extend(outcome.unknown);
        }
        highest = highest.max(acked.iter().map(|w| w.revision).max().unwrap_or(0));

        server
            .restart()
            .await
            .expect("oxcd restarts on its data dir");
        let mut client = connect(&endpoint).await;
        let context = format!("cycle {cycle} (seed {seed}, kill after {delay} ms)");
        let revision = current_revision(&mut client).await;
        assert!(
            revision >= highest,
            "{context}: revision {revision} after restart is below the acknowledged {highest}"
        );
        assert!(
            revision >= last_revision,
            "{context}: revision went back from {last_revision} to {revision}"
        );
        let stored = read_prefix(&mut client, &format!("{PREFIX}c{cycle:02}/")).await;
        let applied = verify(&stored, &acked, &unknown, &context);
        assert_compacted(&mut client, compacted, &context).await;

        let probe = client
            .put(format!("{PREFIX}probe/{cycle:02}"), "after restart", None)
            .await
            .expect("a write after restart succeeds");
        let probe_revision = probe.header().expect("header").revision();
        assert!(
            probe_revision > revision && probe_revision > highest,
            "{context}: a new write got revision {probe_revision}, not above {revision}"
        );
        highest = probe_revision;
        last_revision = probe_revision;

        total_acked += acked.len();
        total_unknown += unknown.len();
        total_applied += applied.len();
        durable.extend(acked);
        durable.extend(applied);
        durable.push(Acked {
            keys: vec![format!("{PREFIX}probe/{cycle:02}")],
            value: "after restart".to_string(),
            revision: probe_revision,
        });
    }

    // One last crash, then everything ever known durable must still be there, and nothing else.
    server
        .restart()
        .await
        .expect("oxcd restarts on its data dir");
    let mut client = connect(&endpoint).await;
    let stored = read_prefix(&mut client, PREFIX).await;
    verify(
        &stored,
        &durable,
        &[],
        &format!("final check (seed {seed})"),
    );
    assert_compacted(&mut client, compacted, "final check").await;
    assert!(
        current_revision(&mut client).await >= highest,
        "revision after the last restart is below {highest}"
    );
    eprintln!(
        "crash test: {CYCLES} kills, {total_acked} acknowledged writes, {total_unknown} \
         failed at a kill, of which {total_applied} were applied; compacted up to {compacted}"
    );
    assert!(
        total_acked >= CYCLES * WRITERS,
        "too few writes were acknowledged ({total_acked}) for the test to mean anything"
    );
}

/// Awaits every writer task, in order.
async fn join_writers(handles: Vec<tokio::task::JoinHandle<Outcome>>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.expect("writer task does not panic"));
    }
    outcomes
}
