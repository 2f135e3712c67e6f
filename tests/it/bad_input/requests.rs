//! Requests beyond `--max-request-bytes` and `--max-txn-ops`, and validation corner cases the
//! differential KV suite does not cover, sent to etcd 3.6 and to oxcd: same code, same message.

use oxcd_server::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, compare, kv_client::KvClient, request_op::Request,
};
use oxcd_tests::diff::{Outcome, Pair, Step, report, send};
use oxcd_tests::{EtcdServer, EtcdVersion, OxcdServer};
use tonic::transport::Channel;

/// `--max-request-bytes` of the size-limit test.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// gRPC's receive limit on a server with that flag: the flag plus 512 KiB, as etcd sets it.
const GRPC_RECEIVE_LIMIT: usize = MAX_REQUEST_BYTES + 512 * 1024;
/// `--max-txn-ops` of the size-limit test.
const MAX_TXN_OPS: usize = 4;

const TOO_LARGE: &str = "etcdserver: request is too large";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";

fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn op_put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(key, value))),
    }
}

fn op_range(key: &str, revision: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.into(),
            revision,
            ..Default::default()
        })),
    }
}

fn op_del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            prev_kv: false,
        })),
    }
}

fn op_txn(txn: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(txn)),
    }
}

fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success,
        failure,
    }
}

fn version_cmp(key: &str) -> Compare {
    Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Version as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(compare::TargetUnion::Version(0)),
    }
}

async fn kv(endpoint: &str) -> KvClient<Channel> {
    let channel = Channel::from_shared(endpoint.to_string())
        .expect("valid endpoint")
        .connect()
        .await
        .expect("gRPC channel connects");
    KvClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn status(code: tonic::Code, message: &str) -> Outcome {
    Err((code, message.to_string()))
}

/// Sends each step to both servers; returns the rendered steps where they disagree, or where
/// etcd's answer is not the one the test expects (the test's own premise).
async fn both(
    etcd: &mut KvClient<Channel>,
    oxcd: &mut KvClient<Channel>,
    steps: &[(&str, Step, Option<Outcome>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, step, expected) in steps {
        let on_etcd = send(etcd, step).await;
        let on_oxcd = send(oxcd, step).await;
        let shorten = |o: &Outcome| match o {
            Ok(text) if text.len() > 300 => Ok(format!("{}…", &text[..300])),
            other => other.clone(),
        };
        if on_etcd != on_oxcd {
            problems.push(format!(
                "{what}:\n  etcd: {:?}\n  oxcd: {:?}",
                shorten(&on_etcd),
                shorten(&on_oxcd)
            ));
        }
        if let Some(expected) = expected {
            assert_eq!(&on_etcd, expected, "etcd's answer to {what} (test premise)");
        }
    }
    problems
}

#[tokio::test]
async fn requests_beyond_max_request_bytes_and_max_txn_ops_get_etcds_errors() {
    let flags = [
        "--max-request-bytes",
        &MAX_REQUEST_BYTES.to_string(),
        "--max-txn-ops",
        &MAX_TXN_OPS.to_string(),
    ]
    .map(str::to_string);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (etcd, oxcd) = tokio::join!(
        EtcdServer::start_with(EtcdVersion::V3_6, &flags),
        OxcdServer::start_with(&flags)
    );
    let (etcd, oxcd) = (etcd.expect("etcd starts"), oxcd.expect("oxcd starts"));
    let (mut etcd_kv, mut oxcd_kv) = (kv(etcd.endpoint()).await, kv(oxcd.endpoint()).await);

    let kib = |n: usize| vec![b'v'; n * 1024];
    let too_large = Some(status(tonic::Code::InvalidArgument, TOO_LARGE));
    let too_many = Some(status(tonic::Code::InvalidArgument, TOO_MANY_OPS));
    let beyond_grpc = GRPC_RECEIVE_LIMIT + 64 * 1024;
    let steps = vec![
        ("a small put", Step::Put(put("small", "v")), None),
        ("a 60 KiB put", Step::Put(put("fits", kib(60))), None),
        (
            "a 100 KiB put",
            Step::Put(put("big", kib(100))),
            too_large.clone(),
        ),
        (
            "a 100 KiB key",
            Step::Put(put(kib(100), "v")),
            too_large.clone(),
        ),
        (
            "a txn of 4 puts of 20 KiB",
            Step::Txn(txn(
                (0..4).map(|i| op_put(format!("t{i}"), kib(20))).collect(),
                vec![],
            )),
            too_large.clone(),
        ),
        (
            "a txn whose failure branch alone is too large",
            Step::Txn(txn(vec![], vec![op_put("f", kib(100))])),
            too_large.clone(),
        ),
        (
            "a delete of a 100 KiB key",
            Step::Delete(DeleteRangeRequest {
                key: kib(100),
                range_end: vec![],
                prev_kv: false,
            }),
            too_large.clone(),
        ),
        (
            "a range of a 100 KiB key (reads are not proposals)",
            Step::Range(RangeRequest {
                key: kib(100),
                ..Default::default()
            }),
            None,
        ),
        (
            "a put beyond gRPC's receive limit",
            Step::Put(put("huge", vec![b'h'; beyond_grpc])),
            None,
        ),
        (
            "a range beyond gRPC's receive limit",
            Step::Range(RangeRequest {
                key: vec![b'k'; beyond_grpc],
                ..Default::default()
            }),
            None,
        ),
        (
            "a txn of max-txn-ops puts",
            Step::Txn(txn(
                (0..MAX_TXN_OPS)
                    .map(|i| op_put(format!("o{i}"), "v"))
                    .collect(),
                vec![],
            )),
            None,
        ),
        (
            "a txn of max-txn-ops + 1 puts",
            Step::Txn(txn(
                (0..=MAX_TXN_OPS)
                    .map(|i| op_put(format!("o{i}"), "v"))
                    .collect(),
                vec![],
            )),
            too_many.clone(),
        ),
        (
            "a txn of max-txn-ops + 1 compares",
            Step::Txn(TxnRequest {
                compare: (0..=MAX_TXN_OPS)
                    .map(|i| version_cmp(&format!("o{i}")))
                    .collect(),
                success: vec![],
                failure: vec![],
            }),
            too_many.clone(),
        ),
        (
            "a nested txn of max-txn-ops + 1 puts",
            Step::Txn(txn(
                vec![op_txn(txn(
                    (0..=MAX_TXN_OPS)
                        .map(|i| op_put(format!("n{i}"), "v"))
                        .collect(),
                    vec![],
                ))],
                vec![],
            )),
            too_many.clone(),
        ),
        (
            "max-txn-ops in each branch",
            Step::Txn(txn(
                (0..MAX_TXN_OPS)
                    .map(|i| op_put(format!("s{i}"), "v"))
                    .collect(),
                (0..MAX_TXN_OPS)
                    .map(|i| op_put(format!("s{i}"), "w"))
                    .collect(),
            )),
            None,
        ),
        (
            "the store afterwards",
            Step::Range(RangeRequest {
                key: b"\0".to_vec(),
                range_end: b"\0".to_vec(),
                keys_only: true,
                ..Default::default()
            }),
            None,
        ),
    ];
    let problems = both(&mut etcd_kv, &mut oxcd_kv, &steps).await;
    assert!(
        problems.is_empty(),
        "oxcd answers differently from etcd 3.6 (both with --max-request-bytes \
         {MAX_REQUEST_BYTES} --max-txn-ops {MAX_TXN_OPS}):\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn validation_corner_cases_missing_from_the_kv_suite_match_etcd() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut pair = Pair::start().await.expect("start etcd and oxcd");
    let with_union = |target: T, union: Option<U>| Compare {
        result: R::Equal as i32,
        target: target as i32,
        key: b"a".to_vec(),
        range_end: vec![],
        target_union: union,
    };
    let many = |prefix: &str| -> Vec<RequestOp> {
        (0..129)
            .map(|i| op_put(format!("{prefix}{i}"), "v"))
            .collect()
    };
    let max = |prefix: &str| -> Vec<RequestOp> {
        (0..128)
            .map(|i| op_put(format!("{prefix}{i}"), "v"))
            .collect()
    };
    let mut steps = vec![
        Step::Put(put("a", "1")),
        Step::Put(put("b", "2")),
        Step::Put(put("c", "3")),
        Step::Put(put("a", "4")),
        // Limits counted per branch, per compare list and inside nested txns.
        Step::Txn(TxnRequest {
            compare: (0..129).map(|i| version_cmp(&format!("k{i}"))).collect(),
            success: vec![],
            failure: vec![],
        }),
        Step::Txn(TxnRequest {
            compare: (0..128).map(|i| version_cmp(&format!("k{i}"))).collect(),
            success: vec![],
            failure: vec![],
        }),
        Step::Txn(txn(max("s"), max("f"))),
        Step::Txn(txn(vec![op_txn(txn(many("n"), vec![]))], vec![])),
        Step::Txn(txn(vec![], vec![op_txn(txn(vec![], many("m")))])),
        // Duplicates: across nesting levels refused, across branches allowed.
        Step::Txn(txn(
            vec![
                op_del("a", "c"),
                op_txn(txn(vec![op_put("b", "x")], vec![])),
            ],
            vec![],
        )),
        Step::Txn(txn(
            vec![
                op_put("b", "x"),
                op_txn(txn(vec![], vec![op_put("b", "y")])),
            ],
            vec![],
        )),
        Step::Txn(txn(
            vec![op_put("b", "in-success")],
            vec![op_put("b", "in-failure")],
        )),
        // Empty keys in places the KV suite does not try.
        Step::Delete(DeleteRangeRequest {
            key: vec![],
            range_end: b"\0".to_vec(),
            prev_kv: false,
        }),
        Step::Txn(TxnRequest {
            compare: vec![Compare {
                key: vec![],
                range_end: b"z".to_vec(),
                ..version_cmp("")
            }],
            success: vec![],
            failure: vec![],
        }),
        Step::Txn(txn(vec![], vec![op_del("", "")])),
        // Compares whose union does not match their target, or has nothing, or odd enums.
        Step::Txn(TxnRequest {
            compare: vec![with_union(T::Value, Some(U::Version(1)))],
            success: vec![op_range("a", 0)],
            failure: vec![op_range("b", 0)],
        }),
        Step::Txn(TxnRequest {
            compare: vec![with_union(T::Version, Some(U::Value(b"4".to_vec())))],
            success: vec![op_range("a", 0)],
            failure: vec![op_range("b", 0)],
        }),
        Step::Txn(TxnRequest {
            compare: vec![with_union(T::Mod, None)],
            success: vec![op_range("a", 0)],
            failure: vec![op_range("b", 0)],
        }),
        Step::Txn(TxnRequest {
            compare: vec![Compare {
                result: 9,
                ..with_union(T::Version, Some(U::Version(2)))
            }],
            success: vec![op_range("a", 0)],
            failure: vec![op_range("b", 0)],
        }),
        Step::Txn(TxnRequest {
            compare: vec![Compare {
                target: 9,
                ..with_union(T::Version, Some(U::Version(2)))
            }],
            success: vec![op_range("a", 0)],
            failure: vec![op_range("b", 0)],
        }),
        // Compaction edge revisions and reads inside a txn at compacted or future revisions.
        Step::Compact(CompactionRequest {
            revision: -1,
            physical: false,
        }),
        Step::Compact(CompactionRequest {
            revision: 3,
            physical: true,
        }),
        Step::Txn(txn(vec![op_range("a", 2)], vec![])),
        Step::Txn(txn(vec![op_range("a", 3)], vec![])),
        Step::Txn(txn(vec![op_put("w", "1"), op_range("a", 2)], vec![])),
        Step::Txn(txn(vec![], vec![op_range("a", 1000)])),
        Step::Txn(TxnRequest {
            compare: vec![version_cmp("a")],
            success: vec![op_range("a", 0)],
            failure: vec![op_range("a", 1)],
        }),
        Step::Range(RangeRequest {
            key: b"a".to_vec(),
            revision: i64::MAX,
            ..Default::default()
        }),
        Step::Range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"\0".to_vec(),
            limit: i64::MAX,
            ..Default::default()
        }),
    ];
    steps.push(Step::Range(RangeRequest {
        key: b"\0".to_vec(),
        range_end: b"\0".to_vec(),
        ..Default::default()
    }));
    let mismatches = pair.run(&steps).await;
    assert!(
        mismatches.is_empty(),
        "oxcd differs from etcd:\n{}",
        report(&mismatches)
    );
}
