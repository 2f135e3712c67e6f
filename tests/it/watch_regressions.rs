//! Regression tests for the etcd watch bugs listed in the API contract that one member can show
//! (the others are covered elsewhere: a watch opened at the compaction revision replaying the
//! delete and a future-revision watch in watch_diff.rs; lost writes and revisions going back
//! after a crash, with compaction running, in crash.rs).

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use oxcd_tests::OxcdServer;

/// Writes `n` puts of `key` from a separate client; returns the last revision.
async fn write_burst(endpoint: String, key: &'static str, n: usize) -> i64 {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let mut rev = 0;
    for i in 0..n {
        rev = client
            .put(key, format!("{i}"), None)
            .await
            .expect("put")
            .header()
            .map_or(0, |h| h.revision());
    }
    rev
}

#[tokio::test]
async fn progress_notifications_never_run_ahead_of_events_on_the_stream() {
    let server = OxcdServer::start().await.expect("start");
    let mut client = server.client().await.expect("client");
    let mut stream = client
        .watch("p", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let writer = tokio::spawn(write_burst(server.endpoint().to_string(), "p/k", 400));
    let mut last_event_rev = 0;
    let mut progress_seen = 0;
    let mut events_seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while events_seen < 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream stalled after {events_seen} events"
        );
        if events_seen % 10 == 0 {
            stream.request_progress().await.expect("progress request");
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open");
        let rev = resp.header().map_or(0, |h| h.revision());
        if resp.watch_id() == -1 {
            progress_seen += 1;
            // Every event up to `rev` must already have been sent: the next event is newer.
            assert!(
                rev >= last_event_rev,
                "progress {rev} went back behind event {last_event_rev}"
            );
            last_event_rev = last_event_rev.max(rev);
            continue;
        }
        for event in resp.events() {
            let mod_rev = event.kv().map_or(0, |kv| kv.mod_revision());
            assert!(
                mod_rev > last_event_rev,
                "event {mod_rev} arrived after progress/event {last_event_rev}"
            );
            last_event_rev = mod_rev;
            events_seen += 1;
        }
    }
    writer.await.expect("writer");
    assert!(progress_seen > 0, "progress requests were answered");
}

#[tokio::test]
async fn a_starved_watcher_catches_up_without_losing_events() {
    let server = OxcdServer::start().await.expect("start");
    let mut client = server.client().await.expect("client");
    let start = client
        .get("s", None)
        .await
        .expect("get")
        .header()
        .map_or(0, |h| h.revision())
        + 1;
    let mut stream = client
        .watch(
            "s/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("watch");
    // The stream is not read while far more revisions are written than the in-memory window
    // holds, so the watcher has to catch up from disk.
    let total = 9_000;
    let endpoint = server.endpoint().to_string();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mut c = Client::connect([endpoint], None).await.expect("connect");
                for i in 0..total / 4 {
                    c.put(format!("s/{w}/{i}"), "v", None).await.expect("put");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let mut expected = start;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while expected < start + total as i64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "catch-up stalled at revision {expected}"
        );
        let resp = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open");
        for event in resp.events() {
            assert_eq!(event.event_type(), EventType::Put);
            let rev = event.kv().map_or(0, |kv| kv.mod_revision());
            assert_eq!(rev, expected, "events arrive in order with no gap");
            expected += 1;
        }
    }
}
