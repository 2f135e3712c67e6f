//! Differential Watch suite: the same watch streams and writes against etcd 3.6 and oxcd; every
//! response (created, events, cancels, progress) must match after header normalization. Also the
//! regression tests for the etcd watch bugs listed in the API contract that a single member can
//! exhibit.

use oxcd_server::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, request_op::Request,
    watch_create_request::FilterType, watch_request::RequestUnion,
};
use oxcd_tests::diff::{Pair, Step, WatchPair, report};

fn create(key: &str, end: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: end.into(),
        start_revision,
        ..Default::default()
    }
}

fn req(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(c)),
    }
}

fn cancel(watch_id: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
    }
}

fn progress() -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    }
}

fn put(k: &str, v: &str) -> Step {
    Step::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}

fn put_bytes(k: &str, v: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: v,
            ..Default::default()
        })),
    }
}

fn del(k: &str, end: &str) -> Step {
    Step::Delete(DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        prev_kv: false,
    })
}

fn compact(revision: i64) -> Step {
    Step::Compact(CompactionRequest {
        revision,
        physical: true,
    })
}

async fn writes(pair: &mut Pair, steps: &[Step]) {
    let mismatches = pair.run(steps).await;
    assert!(
        mismatches.is_empty(),
        "writes differ:\n{}",
        report(&mismatches)
    );
}

/// Reads `n` responses from both streams and asserts they are identical and present. Responses
/// of different watchers may interleave in any order (etcd's order is random), so both sides
/// are stably sorted by watch id; each watcher's own order is compared as sent.
async fn expect(w: &mut WatchPair, n: usize, what: &str) {
    let (mut etcd, mut oxcd) = w.next(n).await;
    let watch_id = |o: &Option<oxcd_tests::diff::Outcome>| {
        o.as_ref().and_then(|r| r.as_ref().ok()).and_then(|s| {
            let rest = s.split("watch_id: ").nth(1)?;
            rest.split(',').next()?.parse::<i64>().ok()
        })
    };
    etcd.sort_by_key(watch_id);
    oxcd.sort_by_key(watch_id);
    assert!(
        etcd.iter().all(Option::is_some),
        "{what}: etcd sent fewer than {n} responses: {etcd:#?}"
    );
    assert_eq!(etcd, oxcd, "{what}: watch responses differ");
}

async fn expect_quiet(w: &mut WatchPair, what: &str) {
    let (etcd, oxcd) = w.quiet().await;
    assert_eq!(etcd, None, "{what}: etcd sent more");
    assert_eq!(oxcd, None, "{what}: oxcd sent more");
}

#[tokio::test]
async fn live_events_for_key_and_prefix_watchers_match_etcd() {
    let mut pair = Pair::start().await.expect("start");
    let mut w = pair.watch().await.expect("watch");
    w.send(req(create("a", "", 0))).await;
    expect(&mut w, 1, "created a").await;
    w.send(req(WatchCreateRequest {
        prev_kv: true,
        ..create("p/", "p0", 0)
    }))
    .await;
    expect(&mut w, 1, "created p/").await;
    writes(
        &mut pair,
        &[
            put("a", "1"),
            put("b", "x"),
            put("p/1", "one"),
            put("p/1", "uno"),
            del("a", ""),
        ],
    )
    .await;
    expect(&mut w, 4, "events").await;
    expect_quiet(&mut w, "after events").await;
}

#[tokio::test]
async fn all_events_of_a_txn_arrive_in_one_response_with_filters_applied() {
    let mut pair = Pair::start().await.expect("start");
    let mut w = pair.watch().await.expect("watch");
    w.send(req(create("\0", "\0", 0))).await;
    w.send(req(WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        ..create("k", "l", 0)
    }))
    .await;
    w.send(req(WatchCreateRequest {
        filters: vec![FilterType::Nodelete as i32],
        prev_kv: true,
        ..create("k", "l", 0)
    }))
    .await;
    expect(&mut w, 3, "created").await;
    writes(&mut pair, &[put("k1", "a"), put("k2", "b")]).await;
    expect(&mut w, 4, "puts to the all-keys and NODELETE watchers").await;
    let txn = Step::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            put_bytes("k1", b"c".to_vec()),
            RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: b"k2".to_vec(),
                    range_end: vec![],
                    prev_kv: false,
                })),
            },
            put_bytes("k3", b"d".to_vec()),
        ],
        failure: vec![],
    });
    writes(&mut pair, &[txn]).await;
    expect(&mut w, 3, "one response per watcher for the txn's revision").await;
    expect_quiet(&mut w, "after txn").await;
}

#[tokio::test]
async fn historical_replay_then_live_events_match_etcd() {
    let mut pair = Pair::start().await.expect("start");
    writes(
        &mut pair,
        &[
            put("h/a", "1"),
            put("h/b", "2"),
            del("h/a", ""),
            put("other", "x"),
            put("h/b", "3"),
        ],
    )
    .await;
    let mut w = pair.watch().await.expect("watch");
    w.send(req(WatchCreateRequest {
        prev_kv: true,
        ..create("h/", "h0", 2)
    }))
    .await;
    expect(&mut w, 2, "created + replay").await;
    w.send(req(create("h/b", "", 4))).await;
    expect(&mut w, 2, "created + replay from 4").await;
    writes(&mut pair, &[put("h/c", "4")]).await;
    expect(&mut w, 1, "live after replay").await;
    expect_quiet(&mut w, "after live").await;
}

#[tokio::test]
async fn cancel_progress_and_invalid_creates_match_etcd() {
    let mut pair = Pair::start().await.expect("start");
    writes(&mut pair, &[put("x", "1")]).await;
    let mut w = pair.watch().await.expect("watch");
    w.send(progress()).await;
    expect_quiet(&mut w, "progress with no watchers").await;
    w.send(req(create("x", "", 0))).await;
    w.send(req(WatchCreateRequest {
        watch_id: 7,
        ..create("y", "", 0)
    }))
    .await;
    expect(&mut w, 2, "created").await;
    w.send(req(WatchCreateRequest {
        watch_id: 7,
        ..create("z", "", 0)
    }))
    .await;
    w.send(req(create("x", "", -1))).await;
    w.send(req(create("b", "a", 0))).await;
    expect(&mut w, 3, "refused creates").await;
    writes(&mut pair, &[put("x", "2"), put("y", "2")]).await;
    expect(&mut w, 2, "events").await;
    w.send(progress()).await;
    expect(&mut w, 1, "progress").await;
    w.send(cancel(7)).await;
    expect(&mut w, 1, "cancel").await;
    w.send(cancel(99)).await;
    expect_quiet(&mut w, "cancel of an unknown watcher").await;
    writes(&mut pair, &[put("y", "3")]).await;
    expect_quiet(&mut w, "no events for a cancelled watcher").await;
}

#[tokio::test]
async fn watches_across_compaction_match_etcd_and_keep_the_delete_at_the_compaction_revision() {
    let mut pair = Pair::start().await.expect("start");
    // Revisions: 2 put a, 3 put b, 4 del a, 5 put c.
    writes(
        &mut pair,
        &[
            put("a", "1"),
            put("b", "1"),
            del("a", ""),
            put("c", "1"),
            compact(4),
        ],
    )
    .await;
    let mut w = pair.watch().await.expect("watch");
    w.send(req(create("\0", "\0", 3))).await;
    expect(&mut w, 2, "created + compacted cancel").await;
    // Opened exactly at the compaction revision: the delete at 4 must still be replayed.
    w.send(req(create("\0", "\0", 4))).await;
    expect(&mut w, 2, "created + replay from the compaction revision").await;
    w.send(req(WatchCreateRequest {
        prev_kv: true,
        ..create("a", "", 4)
    }))
    .await;
    expect(&mut w, 2, "single-key replay of the delete").await;
    expect_quiet(&mut w, "after replay").await;
}

#[tokio::test]
async fn a_watch_on_a_future_revision_sends_no_older_events() {
    let mut pair = Pair::start().await.expect("start");
    writes(&mut pair, &[put("f", "1")]).await;
    let mut w = pair.watch().await.expect("watch");
    w.send(req(create("f", "", 5))).await;
    expect(&mut w, 1, "created").await;
    writes(
        &mut pair,
        &[put("f", "2"), put("f", "3"), put("f", "4"), put("f", "5")],
    )
    .await;
    // Revisions 3 and 4 are older than the start revision: only 5 and 6 may arrive.
    let (etcd, oxcd) = w.next(2).await;
    for resp in oxcd.iter().flatten().flatten() {
        assert!(
            !resp.contains("mod_revision: 3,") && !resp.contains("mod_revision: 4,"),
            "old event sent: {resp}"
        );
    }
    let events = |v: &Vec<Option<oxcd_tests::diff::Outcome>>| {
        v.iter()
            .flatten()
            .flatten()
            .filter(|r| r.contains("events: [Event"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        events(&etcd),
        events(&oxcd),
        "future-revision watch events differ"
    );
}

#[tokio::test]
async fn a_progress_request_waits_until_a_future_start_revision_is_reached() {
    // etcd 3.6 drops such a request; oxcd answers it once every watcher is synced, which still
    // never runs ahead of an event owed on the stream.
    let pair = Pair::start().await.expect("start");
    let mut client = pair.oxcd.client().await.expect("client");
    let mut stream = client
        .watch(
            "f",
            Some(etcd_client::WatchOptions::new().with_start_revision(4)),
        )
        .await
        .expect("watch");
    stream.request_progress().await.expect("progress request");
    for v in ["1", "2", "3"] {
        client.put("f", v, None).await.expect("put");
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open");
        let revs: Vec<i64> = resp
            .events()
            .iter()
            .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
            .collect();
        seen.push((resp.watch_id(), resp.header().map(|h| h.revision()), revs));
    }
    assert_eq!(seen[0], (0, Some(1), vec![]), "created");
    assert_eq!(
        seen[1],
        (0, Some(4), vec![4]),
        "the event at the start revision comes first"
    );
    assert_eq!(
        seen[2],
        (-1, Some(4), vec![]),
        "then the progress reply at that revision"
    );
}

#[tokio::test]
async fn large_revisions_are_fragmented_like_etcd() {
    let mut pair = Pair::start().await.expect("start");
    let mut w = pair.watch().await.expect("watch");
    w.send(req(WatchCreateRequest {
        fragment: true,
        prev_kv: true,
        ..create("big/", "big0", 0)
    }))
    .await;
    expect(&mut w, 1, "created").await;
    let value = |c: u8| vec![c; 450_000];
    let txn = |c: u8| {
        Step::Txn(TxnRequest {
            compare: vec![],
            success: vec![
                put_bytes("big/1", value(c)),
                put_bytes("big/2", value(c)),
                put_bytes("big/3", value(c)),
            ],
            failure: vec![],
        })
    };
    writes(&mut pair, &[txn(b'a'), txn(b'b')]).await;
    // The limit is --max-request-bytes (1.5 MiB) + 512 KiB. First revision: 3 × 450 KB fit one
    // response; second, with prev_kv, 2.7 MB: two events, then a final fragment with the third.
    let (etcd, oxcd) = w.next(3).await;
    assert!(
        etcd.iter().all(Option::is_some),
        "etcd sent fewer responses: {}",
        etcd.len()
    );
    assert_eq!(etcd, oxcd, "fragmented responses differ");
}
