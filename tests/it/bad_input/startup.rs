//! Startups that must fail: a data dir of another program or of etcd, a corrupt oxcd data dir,
//! unknown or malformed flags. oxcd must exit non-zero with a message saying what is wrong,
//! never serve (least of all a store missing acknowledged writes), and never write into a data
//! dir that is not its own.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use oxcd_tests::{EtcdServer, EtcdVersion, OxcdServer, free_port, kv_answers, oxcd_binary};

/// Bound on a spawned oxcd that is expected to exit by itself.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// How a spawned oxcd ended.
#[derive(Debug)]
struct Exit {
    status: ExitStatus,
    stderr: String,
}

/// Flags that keep a member that starts by mistake on loopback: client URLs on `port`.
fn loopback_urls(port: u16) -> Vec<String> {
    let endpoint = format!("http://127.0.0.1:{port}");
    vec![
        "--listen-client-urls".to_string(),
        endpoint.clone(),
        "--advertise-client-urls".to_string(),
        endpoint,
    ]
}

/// A spawned oxcd that did not exit by itself (it was killed).
#[derive(Debug)]
struct NotExited {
    /// Number of keys and revision of the store it served, if it served one.
    store: Option<(i64, i64)>,
    /// What happened, with the end of its stderr.
    description: String,
}

/// Runs oxcd with `args` in a scratch working directory and waits until it exits. Returns an
/// error if it starts serving KV requests on `probe` (an endpoint) instead, saying what it
/// serves, or if it neither exits nor serves within [`EXIT_TIMEOUT`]; it is killed then.
async fn run_to_exit(args: &[String], probe: Option<&str>) -> Result<Exit, NotExited> {
    let scratch = tempfile::tempdir().expect("temp dir");
    let log_path = scratch.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("create log");
    let mut command = Command::new(oxcd_binary().expect("oxcd is built"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(args)
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("oxcd spawns");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for oxcd") {
            return Ok(Exit {
                status,
                stderr: std::fs::read_to_string(&log_path).unwrap_or_default(),
            });
        }
        let serving = match probe {
            Some(endpoint) => kv_answers(endpoint).await,
            None => false,
        };
        if serving || Instant::now() >= deadline {
            let (store, what) = match probe {
                Some(endpoint) if serving => describe_store(endpoint).await,
                _ => (
                    None,
                    format!("it neither exited nor served within {EXIT_TIMEOUT:?}"),
                ),
            };
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(NotExited {
                store,
                description: format!("{what}; its stderr:\n{}", tail(&stderr)),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`run_to_exit`] with the client URLs on a fresh loopback port, failing the test if oxcd
/// does not exit by itself.
async fn oxcd_must_exit(args: &[&str]) -> Exit {
    let port = free_port().expect("free port");
    let mut all = loopback_urls(port);
    all.extend(args.iter().map(|a| a.to_string()));
    let probe = format!("http://127.0.0.1:{port}");
    run_to_exit(&all, Some(&probe)).await.unwrap_or_else(|why| {
        panic!(
            "oxcd {args:?} was expected to refuse to start, but {}",
            why.description
        )
    })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The number of keys and the revision a serving member reports, and a sentence saying so.
async fn describe_store(endpoint: &str) -> (Option<(i64, i64)>, String) {
    match Client::connect([endpoint], None).await {
        Ok(mut client) => match client
            .get(
                "",
                Some(GetOptions::new().with_all_keys().with_count_only()),
            )
            .await
        {
            Ok(resp) => {
                let (count, revision) = (
                    resp.count(),
                    resp.header().map(|h| h.revision()).unwrap_or(0),
                );
                (
                    Some((count, revision)),
                    format!("it started and serves a store of {count} keys at revision {revision}"),
                )
            }
            Err(err) => (None, format!("it started serving (range failed: {err})")),
        },
        Err(err) => (None, format!("it started serving (connect failed: {err})")),
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn assert_refused(exit: &Exit, what: &str, mentions: &[&str]) {
    assert!(
        !exit.status.success(),
        "{what}: oxcd exited successfully; stderr:\n{}",
        tail(&exit.stderr)
    );
    for needle in mentions {
        assert!(
            exit.stderr.contains(needle),
            "{what}: stderr does not mention {needle:?}:\n{}",
            tail(&exit.stderr)
        );
    }
}

#[tokio::test]
async fn a_data_dir_of_another_program_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("pgdata");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("PG_VERSION"), "16\n").expect("write PG_VERSION");
    std::fs::create_dir(data.join("base")).expect("mkdir base");
    let data_arg = data.to_string_lossy().into_owned();
    let exit = oxcd_must_exit(&["--data-dir", &data_arg]).await;
    assert_refused(&exit, "a PostgreSQL data dir", &[&data_arg, "PG_VERSION"]);
    assert_eq!(
        listing(&data),
        vec!["PG_VERSION", "base"],
        "nothing was written there"
    );
}

#[tokio::test]
async fn an_etcd_data_dir_is_refused_with_a_message_naming_etcd_and_left_untouched() {
    let mut etcd = EtcdServer::start(EtcdVersion::V3_6)
        .await
        .expect("etcd starts");
    let mut client = etcd.client().await.expect("client connects");
    client.put("etcd-key", "v", None).await.expect("put");
    etcd.kill().expect("stop etcd");
    let data: PathBuf = etcd.dir().join("data");
    let before = listing(&data);
    assert!(
        before.contains(&"member".to_string()),
        "etcd's layout: {before:?}"
    );
    let data_arg = data.to_string_lossy().into_owned();
    let exit = oxcd_must_exit(&["--data-dir", &data_arg]).await;
    assert_refused(&exit, "an etcd data dir", &["etcd member", &data_arg]);
    assert_eq!(listing(&data), before, "nothing was written there");
}

/// Overwrites `len` bytes of `path` from `offset` with a fixed junk pattern.
fn garble(path: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for garbling");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    let junk: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
    file.write_all(&junk).expect("garble");
    file.sync_all().expect("sync");
}

/// Cuts `path` to `len` bytes.
fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for truncation")
        .set_len(len)
        .expect("truncate");
}

/// A way to damage a member's data dir.
struct Damage {
    /// What it does.
    what: &'static str,
    /// Does it to the data dir.
    apply: fn(&Path),
    /// What oxcd's message about it must mention.
    mentions: &'static [&'static str],
    /// Whether the Raft WAL still holds everything the damaged part held (the storage engine's
    /// files, while no log entry was purged): serving every acknowledged write, applied again
    /// from the WAL, is then as right as refusing.
    rebuildable: bool,
}

/// Every way [`a_corrupt_data_dir_makes_oxcd_exit_with_a_clear_message_instead_of_serving`]
/// damages a data dir.
fn damages() -> Vec<Damage> {
    vec![
        Damage {
            what: "identity.json garbled",
            apply: |d| std::fs::write(d.join("oxcd/identity.json"), "{not json").expect("write"),
            mentions: &["identity.json"],
            rebuildable: false,
        },
        Damage {
            what: "identity.json missing",
            apply: |d| std::fs::remove_file(d.join("oxcd/identity.json")).expect("remove"),
            mentions: &["identity.json"],
            rebuildable: false,
        },
        Damage {
            what: "the storage engine's conf garbled",
            apply: |d| garble(&d.join("oxcd/db/conf"), 0, 16),
            mentions: &["db"],
            rebuildable: true,
        },
        Damage {
            what: "the storage engine's db file emptied",
            apply: |d| truncate(&d.join("oxcd/db/db"), 0),
            mentions: &["db"],
            rebuildable: true,
        },
        Damage {
            what: "the storage engine's db file cut to 100 bytes",
            apply: |d| truncate(&d.join("oxcd/db/db"), 100),
            mentions: &["db"],
            rebuildable: true,
        },
        Damage {
            what: "the storage engine's db file garbled after its first 200 bytes",
            apply: |d| {
                let len = std::fs::metadata(d.join("oxcd/db/db")).expect("stat").len();
                garble(&d.join("oxcd/db/db"), 200, (len - 200) as usize);
            },
            mentions: &["db"],
            rebuildable: true,
        },
        Damage {
            what: "the Raft WAL's segment garbled after its first 100 bytes",
            apply: |d| {
                let segment = d.join("oxcd/wal/0000000000000001.wal");
                let len = std::fs::metadata(&segment).expect("stat").len();
                garble(&segment, 100, (len - 100) as usize);
            },
            mentions: &["WAL", "flushed"],
            rebuildable: false,
        },
        Damage {
            what: "the storage engine's directory removed",
            apply: |d| std::fs::remove_dir_all(d.join("oxcd/db")).expect("remove"),
            mentions: &["db"],
            rebuildable: true,
        },
    ]
}

/// Keys a member holds when its data dir gets damaged (at revisions 2 to `DAMAGED_KEYS + 1`).
const DAMAGED_KEYS: i64 = 50;

/// Starts a member with `flags`, writes [`DAMAGED_KEYS`] keys, kills it, applies `damage` to its
/// data dir and starts oxcd again with the same flags.
async fn restart_after(damage: fn(&Path), flags: &[&str]) -> Result<Exit, NotExited> {
    let mut server = OxcdServer::start_with(flags).await.expect("oxcd starts");
    let mut client = server.client().await.expect("client connects");
    for i in 0..DAMAGED_KEYS {
        client
            .put(format!("corrupt/{i:02}"), "x".repeat(200), None)
            .await
            .expect("put succeeds");
    }
    server.kill().expect("kill oxcd");
    let data = server.data_dir();
    damage(&data);
    let data_arg = data.to_string_lossy().into_owned();
    // The flags the harness started it with, so only the damage differs.
    let mut args = loopback_urls(server.port());
    args.extend(["--name", "harness", "--data-dir", &data_arg].map(str::to_string));
    args.extend(flags.iter().map(|f| f.to_string()));
    run_to_exit(&args, Some(server.endpoint())).await
}

#[tokio::test]
async fn a_corrupt_data_dir_makes_oxcd_exit_with_a_clear_message_instead_of_serving() {
    let mut failures = Vec::new();
    for Damage {
        what,
        apply,
        mentions,
        rebuildable,
    } in damages()
    {
        match restart_after(apply, &[]).await {
            Ok(exit)
                if !exit.status.success() && mentions.iter().all(|m| exit.stderr.contains(m)) => {}
            Err(NotExited {
                store: Some((count, revision)),
                ..
            }) if rebuildable && count == DAMAGED_KEYS && revision == DAMAGED_KEYS + 1 => {}
            Ok(exit) => failures.push(format!(
                "{what}: exited with {} but stderr does not mention {mentions:?}:\n{}",
                exit.status,
                tail(&exit.stderr)
            )),
            Err(why) => failures.push(format!("{what}: {}", why.description)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} damaged data dirs were not refused with a clear message:\n\n{}",
        failures.len(),
        damages().len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn a_db_garbled_near_its_end_is_refused_or_served_with_every_acknowledged_write() {
    let garble_tail = |data: &Path| {
        let db = data.join("oxcd/db/db");
        let len = std::fs::metadata(&db).expect("stat").len();
        let from = len - len / 4;
        garble(&db, from, (len - from) as usize);
    };
    match restart_after(garble_tail, &[]).await {
        Ok(exit) => assert_refused(&exit, "a db garbled near its end", &["db"]),
        Err(NotExited {
            store: Some((count, revision)),
            ..
        }) if count == DAMAGED_KEYS && revision == DAMAGED_KEYS + 1 => {}
        Err(why) => panic!(
            "a db garbled near its end: oxcd neither refused it nor kept all {DAMAGED_KEYS} \
             acknowledged keys at revision {}: {}",
            DAMAGED_KEYS + 1,
            why.description
        ),
    }
}

#[tokio::test]
async fn a_removed_store_whose_log_was_purged_is_refused() {
    // Snapshots every 10 entries keep 10 entries: most of the log is purged.
    let remove_db = |d: &Path| std::fs::remove_dir_all(d.join("oxcd/db")).expect("remove");
    match restart_after(remove_db, &["--snapshot-count", "10"]).await {
        Ok(exit) => assert_refused(&exit, "a removed store", &["db", "purged"]),
        Err(why) => panic!(
            "a removed store whose log was purged: oxcd did not refuse it: {}",
            why.description
        ),
    }
}

#[tokio::test]
async fn unknown_or_malformed_flags_are_rejected_with_a_message_naming_the_flag() {
    let cases: [(&[&str], &str); 6] = [
        (&["--no-such-flag"], "--no-such-flag"),
        (&["-no-such-flag"], "no-such-flag"),
        (&["--no-such-flag=1"], "--no-such-flag"),
        (&["--max-request-bytes", "lots"], "--max-request-bytes"),
        (
            &["--auto-compaction-mode", "bogus"],
            "--auto-compaction-mode",
        ),
        (
            &["--initial-cluster-state", "bogus"],
            "--initial-cluster-state",
        ),
    ];
    for (args, flag) in cases {
        let exit = oxcd_must_exit(args).await;
        assert_refused(&exit, &format!("oxcd {args:?}"), &[flag]);
    }
    let exit = oxcd_must_exit(&["stray-argument"]).await;
    assert_refused(&exit, "a positional argument", &["stray-argument"]);
    // The one flag that cannot also get a valid loopback value first.
    let port = free_port().expect("free port");
    let args = [
        "--listen-client-urls",
        "not-a-url",
        "--advertise-client-urls",
        &format!("http://127.0.0.1:{port}"),
    ]
    .map(str::to_string);
    let exit = run_to_exit(&args, None).await.unwrap_or_else(|why| {
        panic!(
            "oxcd {args:?} was expected to refuse to start, but {}",
            why.description
        )
    });
    assert_refused(
        &exit,
        "a malformed URL",
        &["--listen-client-urls", "not-a-url"],
    );
}
