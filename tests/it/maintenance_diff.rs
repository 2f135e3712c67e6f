//! Differential Maintenance suite: HashKV must return etcd 3.6's exact hash for the same history
//! (before and after compactions, at current, historical, compacted and future revisions), and
//! Defragment, Hash and Snapshot must answer in etcd's shape.
//!
//! Not compared: HashKV at exactly a compaction revision. etcd answers that from an in-memory
//! cache filled while compacting (lost when it restarts); oxcd hashes the records, as etcd does
//! after a restart.

use oxcd_server::proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, HashKvRequest, HashRequest,
    PutRequest, RequestOp, SnapshotRequest, SnapshotResponse, TxnRequest,
    maintenance_client::MaintenanceClient, request_op::Request,
};
use oxcd_tests::diff::{Outcome, Pair, Step, normalize_header, report};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

/// One action of a HashKV script.
enum Act {
    /// A KV request, sent to both servers and compared.
    Kv(Step),
    /// HashKV at this revision on both servers, compared.
    HashKv(i64),
}

fn put(k: &str, v: &str) -> Act {
    Act::Kv(Step::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }))
}

fn del(k: &str, end: &str) -> Act {
    Act::Kv(Step::Delete(DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        prev_kv: false,
    }))
}

fn compact(revision: i64) -> Act {
    Act::Kv(Step::Compact(CompactionRequest {
        revision,
        physical: true,
    }))
}

fn txn(ops: Vec<Request>) -> Act {
    Act::Kv(Step::Txn(TxnRequest {
        compare: Vec::new(),
        success: ops
            .into_iter()
            .map(|r| RequestOp { request: Some(r) })
            .collect(),
        failure: Vec::new(),
    }))
}

fn op_put(k: &str, v: &str) -> Request {
    Request::RequestPut(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}

fn op_del(k: &str) -> Request {
    Request::RequestDeleteRange(DeleteRangeRequest {
        key: k.into(),
        ..Default::default()
    })
}

async fn maintenance(endpoint: &str) -> MaintenanceClient<Channel> {
    let channel = oxcd_tests::diff::channel(endpoint).await.expect("connect");
    MaintenanceClient::new(channel).max_decoding_message_size(usize::MAX)
}

async fn hash_kv(client: &mut MaintenanceClient<Channel>, revision: i64) -> Outcome {
    match client.hash_kv(HashKvRequest { revision }).await {
        Ok(resp) => {
            let mut resp = resp.into_inner();
            normalize_header(&mut resp.header);
            Ok(format!("{resp:?}"))
        }
        Err(status) => Err((status.code(), status.message().to_string())),
    }
}

/// Runs `script` on a fresh etcd 3.6 and oxcd; panics listing every difference.
async fn assert_same(script: Vec<Act>) {
    let mut pair = Pair::start().await.expect("start etcd and oxcd");
    let mut etcd = maintenance(pair.etcd.endpoint()).await;
    let mut oxcd = maintenance(pair.oxcd.endpoint()).await;
    let mut differences = String::new();
    for (index, act) in script.into_iter().enumerate() {
        match act {
            Act::Kv(step) => {
                let mismatches = pair.run(std::slice::from_ref(&step)).await;
                if !mismatches.is_empty() {
                    differences.push_str(&format!("act {index}: {}", report(&mismatches)));
                }
            }
            Act::HashKv(revision) => {
                let (e, o) = (
                    hash_kv(&mut etcd, revision).await,
                    hash_kv(&mut oxcd, revision).await,
                );
                if e != o {
                    differences.push_str(&format!(
                        "act {index}: HashKV at {revision}\n  etcd: {e:?}\n  oxcd: {o:?}\n"
                    ));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "oxcd differs from etcd:\n{differences}"
    );
}

#[tokio::test]
async fn hash_kv_matches_etcd_through_writes_deletes_txns_and_compactions() {
    use Act::HashKv;
    assert_same(vec![
        HashKv(0),
        HashKv(1),
        put("a", "1"),
        put("b", "22"),
        put("c", "3"),
        put("b", "2"),
        put("d", "444"),
        put("e", "5"),
        put("a/x", "ax"),
        HashKv(0),
        HashKv(3),
        HashKv(8),
        HashKv(9),
        del("c", ""),
        txn(vec![op_put("f", "6"), op_del("a/x"), op_put("a/y", "ay")]),
        put("b", "two"),
        del("d", "f"),
        HashKv(0),
        HashKv(10),
        compact(6),
        HashKv(0),
        HashKv(5),
        HashKv(7),
        HashKv(9),
        HashKv(12),
        put("a", "one"),
        put("c", "reborn"),
        txn(vec![op_put("g", "7"), op_put("h", "8"), op_del("f")]),
        compact(11),
        put("x", "x"),
        del("x", ""),
        HashKv(0),
        HashKv(17),
        HashKv(12),
        HashKv(14),
        HashKv(16),
        HashKv(10),
        HashKv(5),
        HashKv(18),
        HashKv(1000),
        HashKv(-1),
    ])
    .await;
}

#[tokio::test]
async fn hash_kv_matches_etcd_when_a_compaction_left_no_live_key() {
    use Act::HashKv;
    assert_same(vec![
        put("a", "1"),
        put("b", "2"),
        put("a", "3"),
        del("a", ""),
        del("b", ""),
        compact(6),
        HashKv(0),
        put("c", "1"),
        del("c", ""),
        HashKv(0),
        HashKv(7),
        compact(8),
        HashKv(0),
        put("d", "1"),
        HashKv(0),
        HashKv(9),
    ])
    .await;
}

#[tokio::test]
async fn defragment_and_hash_answer_in_etcds_shape() {
    let pair = Pair::start().await.expect("start etcd and oxcd");
    let mut etcd = maintenance(pair.etcd.endpoint()).await;
    let mut oxcd = maintenance(pair.oxcd.endpoint()).await;
    let e = etcd
        .defragment(DefragmentRequest {})
        .await
        .map(|r| r.into_inner());
    let o = oxcd
        .defragment(DefragmentRequest {})
        .await
        .map(|r| r.into_inner());
    assert_eq!(
        format!("{:?}", e.map_err(|s| s.code())),
        format!("{:?}", o.map_err(|s| s.code()))
    );

    let mut e = etcd
        .hash(HashRequest {})
        .await
        .expect("etcd hash")
        .into_inner();
    let mut first = oxcd
        .hash(HashRequest {})
        .await
        .expect("oxcd hash")
        .into_inner();
    let again = oxcd
        .hash(HashRequest {})
        .await
        .expect("oxcd hash")
        .into_inner();
    normalize_header(&mut e.header);
    normalize_header(&mut first.header);
    assert_eq!(e.header, first.header, "same header revision");
    assert_eq!(first.hash, again.hash, "an unchanged store hashes the same");
}

/// Every message of one Snapshot stream.
async fn snapshot_messages(client: &mut MaintenanceClient<Channel>) -> Vec<SnapshotResponse> {
    let mut stream = client
        .snapshot(SnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.expect("snapshot message") {
        messages.push(m);
    }
    messages
}

/// What etcd's clients rely on in a Snapshot stream, as a comparable summary.
fn conventions(messages: &[SnapshotResponse]) -> (Vec<String>, bool, bool, bool, bool) {
    let (trailer, chunks) = messages.split_last().expect("at least one message");
    let content: Vec<u8> = chunks.iter().flat_map(|m| m.blob.clone()).collect();
    let total = content.len() as u64;
    let mut sent = 0u64;
    let counts_down = chunks.iter().all(|m| {
        sent += m.blob.len() as u64;
        m.remaining_bytes == total - sent
    });
    let mut versions: Vec<String> = messages.iter().map(|m| m.version.clone()).collect();
    versions.dedup();
    (
        versions,
        counts_down,
        content.len().is_multiple_of(512),
        trailer.remaining_bytes == 0 && trailer.blob == Sha256::digest(&content).to_vec(),
        messages.iter().all(|m| m.header.is_none()),
    )
}

#[tokio::test]
async fn snapshot_stream_follows_etcds_conventions() {
    let mut pair = Pair::start().await.expect("start etcd and oxcd");
    let mut writes = Vec::new();
    for i in 0..300 {
        writes.push(Step::Put(PutRequest {
            key: format!("key-{i:04}").into_bytes(),
            value: vec![b'v'; 512],
            ..Default::default()
        }));
    }
    assert!(pair.run(&writes).await.is_empty());
    let mut etcd = maintenance(pair.etcd.endpoint()).await;
    let mut oxcd = maintenance(pair.oxcd.endpoint()).await;
    let e = snapshot_messages(&mut etcd).await;
    let o = snapshot_messages(&mut oxcd).await;
    assert!(o.len() > 1, "oxcd sends content, then the sha256");
    assert_eq!(conventions(&e), conventions(&o));
    assert_eq!(
        conventions(&o),
        (vec!["3.6.0".to_string()], true, true, true, true)
    );
}
