//! Differential KV suite: every KV RPC and option, edge cases and errors, sent to etcd 3.6 and to
//! oxcd in the same order; responses must be identical after header normalization.

use oxcd_server::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, compare, request_op::Request,
};
use oxcd_tests::diff::{Pair, Step, report};

fn put(k: &str, v: &str) -> Step {
    Step::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}

fn put_req(p: PutRequest) -> Step {
    Step::Put(p)
}

fn get(k: &str) -> Step {
    Step::Range(RangeRequest {
        key: k.into(),
        ..Default::default()
    })
}

fn range(r: RangeRequest) -> Step {
    Step::Range(r)
}

fn rr(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn del(k: &str, end: &str, prev_kv: bool) -> Step {
    Step::Delete(DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        prev_kv,
    })
}

fn compact(revision: i64, physical: bool) -> Step {
    Step::Compact(CompactionRequest { revision, physical })
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn op_get(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(r)),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: true,
        })),
    }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(t)),
    }
}

fn cmp(key: &str, target: compare::CompareTarget, result: compare::CompareResult) -> Compare {
    use compare::{CompareTarget as T, TargetUnion as U};
    let target_union = match target {
        T::Version => Some(U::Version(0)),
        T::Create => Some(U::CreateRevision(0)),
        T::Mod => Some(U::ModRevision(0)),
        T::Value => Some(U::Value(Vec::new())),
        T::Lease => Some(U::Lease(0)),
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        target_union,
        range_end: vec![],
    }
}

fn with(mut c: Compare, u: compare::TargetUnion) -> Compare {
    c.target_union = Some(u);
    c
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> Step {
    Step::Txn(TxnRequest {
        compare,
        success,
        failure,
    })
}

async fn assert_same(steps: Vec<Step>) {
    let mut pair = Pair::start().await.expect("start etcd and oxcd");
    let mismatches = pair.run(&steps).await;
    assert!(
        mismatches.is_empty(),
        "oxcd differs from etcd:\n{}",
        report(&mismatches)
    );
}

fn seed() -> Vec<Step> {
    vec![
        put("a", "1"),
        put("b", "22"),
        put("c", "3"),
        put("b", "2"),
        put("d", "444"),
        put("e", "5"),
        put("a/x", "ax"),
    ]
}

#[tokio::test]
async fn range_options_match_etcd() {
    use oxcd_server::proto::etcdserverpb::range_request::{SortOrder as O, SortTarget as T};
    let mut steps = seed();
    steps.extend([
        get("a"),
        get("missing"),
        range(rr("b", "d")),
        range(rr("a", "a0")),
        range(rr("\0", "\0")),
        range(rr("c", "\0")),
        range(rr("d", "b")),
        range(RangeRequest {
            limit: 2,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            limit: 100,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            limit: -1,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            revision: 3,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            revision: 2,
            ..rr("a", "")
        }),
        range(RangeRequest {
            revision: -5,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            revision: 100,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            keys_only: true,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            count_only: true,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            count_only: true,
            limit: 1,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            serializable: true,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            min_mod_revision: 4,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            max_mod_revision: 4,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            min_create_revision: 4,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            max_create_revision: 3,
            limit: 1,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            sort_order: 7,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            sort_target: 9,
            ..rr("a", "z")
        }),
        range(rr("", "z")),
    ]);
    for target in [T::Key, T::Version, T::Create, T::Mod, T::Value] {
        for order in [O::None, O::Ascend, O::Descend] {
            steps.push(range(RangeRequest {
                sort_target: target as i32,
                sort_order: order as i32,
                ..rr("a", "z")
            }));
            steps.push(range(RangeRequest {
                sort_target: target as i32,
                sort_order: order as i32,
                limit: 3,
                keys_only: true,
                ..rr("a", "z")
            }));
        }
    }
    assert_same(steps).await;
}

#[tokio::test]
async fn put_options_and_errors_match_etcd() {
    let mut steps = seed();
    steps.extend([
        put_req(PutRequest {
            key: "a".into(),
            value: "9".into(),
            prev_kv: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "new".into(),
            value: "n".into(),
            prev_kv: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "a".into(),
            ignore_value: true,
            prev_kv: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "nope".into(),
            ignore_value: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "a".into(),
            value: "x".into(),
            ignore_value: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "a".into(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "a".into(),
            value: "y".into(),
            ignore_lease: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "nope".into(),
            value: "y".into(),
            ignore_lease: true,
            ..Default::default()
        }),
        put_req(PutRequest {
            key: "a".into(),
            value: "z".into(),
            lease: 12345,
            ..Default::default()
        }),
        put("", "empty"),
        put("bin\u{0}ary\u{ff}", "\u{0}"),
        put("empty-value", ""),
        get("a"),
        range(rr("\0", "\0")),
    ]);
    assert_same(steps).await;
}

#[tokio::test]
async fn delete_range_matches_etcd() {
    let mut steps = seed();
    steps.extend([
        del("a", "", true),
        del("a", "", true),
        del("missing", "", false),
        get("a"),
        del("b", "d", true),
        del("", "", false),
        del("d", "\0", true),
        range(rr("\0", "\0")),
        put("a", "again"),
        get("a"),
    ]);
    assert_same(steps).await;
}

#[tokio::test]
async fn txn_compares_and_branches_match_etcd() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut steps = seed();
    for target in [T::Version, T::Create, T::Mod, T::Value, T::Lease] {
        for result in [R::Equal, R::Greater, R::Less, R::NotEqual] {
            for key in ["b", "missing"] {
                let mut c = cmp(key, target, result);
                c = match target {
                    T::Version => with(c, U::Version(2)),
                    T::Create => with(c, U::CreateRevision(3)),
                    T::Mod => with(c, U::ModRevision(5)),
                    T::Value => with(c, U::Value(b"2".to_vec())),
                    T::Lease => with(c, U::Lease(0)),
                };
                steps.push(txn(
                    vec![c],
                    vec![op_get(rr(key, ""))],
                    vec![op_get(rr("a", ""))],
                ));
            }
        }
    }
    let mut ranged = cmp("a", T::Version, R::Greater);
    ranged.range_end = b"c".to_vec();
    steps.push(txn(
        vec![ranged.clone()],
        vec![op_put("t1", "ok")],
        vec![op_put("t1", "no")],
    ));
    ranged.range_end = b"\0".to_vec();
    steps.push(txn(
        vec![ranged],
        vec![op_put("t2", "ok")],
        vec![op_put("t2", "no")],
    ));
    steps.extend([
        // Writes then reads inside one txn see the writes at the new revision.
        txn(
            vec![],
            vec![
                op_put("x", "1"),
                op_get(rr("x", "")),
                op_del("a", ""),
                op_get(rr("a", "z")),
            ],
            vec![],
        ),
        // Read-only and empty txns do not consume a revision.
        txn(
            vec![],
            vec![
                op_get(rr("b", "")),
                op_get(RangeRequest {
                    serializable: true,
                    ..rr("c", "")
                }),
            ],
            vec![],
        ),
        txn(vec![], vec![], vec![]),
        // A delete that deletes nothing does not consume a revision either.
        txn(vec![], vec![op_del("missing", "")], vec![]),
        // Nested txns, both branches.
        txn(
            vec![cmp("b", T::Version, R::Greater)],
            vec![
                op_put("n0", "outer"),
                op_txn(TxnRequest {
                    compare: vec![with(
                        cmp("n0", T::Value, R::Equal),
                        U::Value(b"zzz".to_vec()),
                    )],
                    success: vec![op_put("n1", "inner-then")],
                    failure: vec![op_put("n1", "inner-else"), op_get(rr("n0", ""))],
                }),
                op_get(rr("n", "o")),
            ],
            vec![],
        ),
        range(rr("\0", "\0")),
    ]);
    assert_same(steps).await;
}

#[tokio::test]
async fn txn_validation_errors_match_etcd() {
    let many: Vec<RequestOp> = (0..129).map(|i| op_put(&format!("k{i}"), "v")).collect();
    let max: Vec<RequestOp> = (0..128).map(|i| op_put(&format!("k{i}"), "v")).collect();
    let mut steps = seed();
    steps.extend([
        txn(vec![], many.clone(), vec![]),
        txn(vec![], vec![], many),
        txn(vec![], max, vec![]),
        txn(vec![], vec![op_put("a", "1"), op_put("a", "2")], vec![]),
        txn(vec![], vec![op_del("a", "c"), op_put("b", "2")], vec![]),
        txn(vec![], vec![op_del("a", "c"), op_del("b", "d")], vec![]),
        txn(vec![], vec![op_del("a", "\0"), op_put("b", "2")], vec![]),
        txn(
            vec![],
            vec![op_txn(TxnRequest {
                compare: vec![],
                success: vec![op_put("q", "1")],
                failure: vec![op_put("q", "2")],
            })],
            vec![],
        ),
        txn(
            vec![],
            vec![
                op_put("q", "0"),
                op_txn(TxnRequest {
                    compare: vec![],
                    success: vec![op_put("q", "1")],
                    failure: vec![],
                }),
            ],
            vec![],
        ),
        txn(
            vec![cmp(
                "",
                compare::CompareTarget::Version,
                compare::CompareResult::Equal,
            )],
            vec![],
            vec![],
        ),
        txn(vec![], vec![op_put("", "v")], vec![]),
        txn(vec![], vec![RequestOp { request: None }], vec![]),
        txn(
            vec![],
            vec![op_get(RangeRequest {
                revision: 1000,
                ..rr("a", "")
            })],
            vec![],
        ),
        txn(
            vec![],
            vec![
                op_put("w", "1"),
                op_get(RangeRequest {
                    revision: 1000,
                    ..rr("a", "")
                }),
            ],
            vec![],
        ),
        txn(
            vec![],
            vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "nope".into(),
                    ignore_value: true,
                    ..Default::default()
                })),
            }],
            vec![],
        ),
        txn(
            vec![],
            vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "a".into(),
                    value: "v".into(),
                    lease: 777,
                    ..Default::default()
                })),
            }],
            vec![],
        ),
        range(rr("\0", "\0")),
    ]);
    assert_same(steps).await;
}

#[tokio::test]
async fn kube_apiserver_request_shapes_match_etcd() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let key = "/registry/configmaps/default/cm1";
    let create = |v: &str| {
        txn(
            vec![with(cmp(key, T::Mod, R::Equal), U::ModRevision(0))],
            vec![op_put(key, v)],
            vec![],
        )
    };
    let update = |rev: i64, v: &str| {
        txn(
            vec![with(cmp(key, T::Mod, R::Equal), U::ModRevision(rev))],
            vec![op_put(key, v)],
            vec![op_get(rr(key, ""))],
        )
    };
    let delete = |rev: i64| {
        txn(
            vec![with(cmp(key, T::Mod, R::Equal), U::ModRevision(rev))],
            vec![op_del(key, "")],
            vec![op_get(rr(key, ""))],
        )
    };
    let compact_key = |version: i64, rev: i64| {
        txn(
            vec![with(
                cmp("compact_rev_key", T::Version, R::Equal),
                U::Version(version),
            )],
            vec![op_put("compact_rev_key", &rev.to_string())],
            vec![op_get(rr("compact_rev_key", ""))],
        )
    };
    let prefix = |limit: i64, revision: i64, start: &str| {
        range(RangeRequest {
            limit,
            revision,
            ..rr(start, "/registry/configmaps0")
        })
    };
    let mut steps = vec![
        create("v1"),
        create("v1-again"),
        update(2, "v2"),
        update(2, "stale"),
        prefix(0, 0, "/registry/configmaps/"),
    ];
    for i in 0..12 {
        steps.push(put(&format!("/registry/configmaps/ns/cm{i:02}"), "x"));
    }
    steps.extend([
        prefix(5, 0, "/registry/configmaps/"),
        prefix(5, 10, "/registry/configmaps/ns/cm03\0"),
        range(RangeRequest {
            count_only: true,
            ..rr("/registry/configmaps/", "/registry/configmaps0")
        }),
        range(RangeRequest {
            keys_only: true,
            ..rr("/registry/configmaps/", "/registry/configmaps0")
        }),
        delete(1),
        delete(3),
        compact_key(0, 10),
        compact_key(0, 12),
        compact(10, false),
        compact_key(1, 15),
        compact(15, false),
        prefix(5, 10, "/registry/configmaps/"),
        prefix(5, 15, "/registry/configmaps/"),
        range(rr("/registry/health", "")),
    ]);
    assert_same(steps).await;
}

#[tokio::test]
async fn compaction_matches_etcd() {
    let mut steps = seed();
    steps.extend([
        del("c", "", false),
        put("b", "b3"),
        compact(0, false),
        compact(100, false),
        compact(5, true),
        compact(5, false),
        compact(4, false),
        range(RangeRequest {
            revision: 4,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            revision: 5,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            revision: 6,
            ..rr("a", "z")
        }),
        range(RangeRequest {
            revision: 9,
            ..rr("a", "z")
        }),
        compact(10, true),
        range(RangeRequest {
            revision: 10,
            ..rr("\0", "\0")
        }),
        range(RangeRequest {
            revision: 9,
            ..rr("\0", "\0")
        }),
        put("c", "reborn"),
        get("c"),
        range(rr("\0", "\0")),
    ]);
    assert_same(steps).await;
}
