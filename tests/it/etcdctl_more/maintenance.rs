//! `etcdctl endpoint status|health|hashkv`, `defrag`, `alarm list|disarm` and `snapshot save`,
//! and the NOSPACE alarm raised by a tiny `--quota-backend-bytes`.
//!
//! `endpoint hashkv` must print etcd's hash for the same history: it is not normalized. Status
//! columns and JSON keys must be the same; their sizes, raft indexes and terms, and version
//! (oxcd reports etcd API 3.6.0, etcd its patch release) are normalized. oxcd's snapshot format
//! is its own: only what etcdctl prints is compared, not the files.
//!
//! etcdctl 3.4 dials each endpoint anew for the Maintenance calls of `endpoint status|hashkv` and
//! `defrag`, and sends the endpoint exactly as given as the HTTP/2 `:authority`: with
//! `http://127.0.0.1:PORT` (as users write it) that is not a valid authority. etcd's grpc-go
//! accepts it anyway; a separate test covers that form, the others give 3.4 `127.0.0.1:PORT`.

use oxcd_tests::EtcdVersion;

use super::runner::{Form, Pair, Step, assert_none, c};

/// The tiny backend quota of the NOSPACE test, as the quota suite uses.
const QUOTA: &str = "--quota-backend-bytes=300000";
/// Size of each value written to fill the quota.
const FILL_VALUE_BYTES: usize = 10_000;
/// At most this many values are written to fill the quota.
const FILL_MAX: usize = 200;

fn ctls(lines: &[&str]) -> Vec<Step> {
    lines.iter().map(|l| Step::Ctl(c(l))).collect()
}

/// The etcdctl versions and endpoint forms the maintenance scripts run with.
const RUNS: [(EtcdVersion, Form); 2] = [
    (EtcdVersion::V3_6, Form::Url),
    (EtcdVersion::V3_4, Form::HostPort),
];

fn script(ctl: EtcdVersion) -> Vec<Step> {
    let mut steps = vec![Step::Mark];
    steps.extend(ctls(&[
        // `{mark+1}` .. `{mark+5}`.
        "put m/a 1",
        "put m/b 2",
        "del m/a",
        "put m/c 3",
        "put m/b 22",
        "endpoint status",
        "endpoint status -w json",
        "endpoint status -w table",
        "endpoint status -w fields",
        "endpoint health",
        "endpoint health -w json",
        "endpoint health -w table",
        "endpoint health -w fields",
        "endpoint hashkv",
        "endpoint hashkv -w json",
        "endpoint hashkv -w table",
        "endpoint hashkv -w fields",
        "endpoint hashkv --rev {mark+2}",
        "endpoint hashkv --rev {mark+2} -w json",
        "compaction {mark+3}",
        "endpoint hashkv",
        "endpoint hashkv -w json",
        "endpoint hashkv --rev {mark+4} -w json",
        "endpoint hashkv --rev {mark+1}",
        "endpoint hashkv --rev {mark+100}",
        "defrag",
        "endpoint status -w json",
        "endpoint hashkv -w json",
        "alarm list",
        "alarm list -w json",
        "alarm list -w fields",
        "alarm disarm",
        "alarm disarm -w json",
        "snapshot save {dir}/snapshot.db",
        "snapshot save {dir}/missing/snapshot.db",
        "snapshot save",
    ]));
    if ctl == EtcdVersion::V3_6 {
        // etcdctl 3.4 would dial the members' advertised URLs, as with the Url form.
        steps.extend(ctls(&[
            "endpoint status --cluster -w table",
            "endpoint health --cluster",
            "endpoint hashkv --cluster",
        ]));
    }
    steps
}

#[tokio::test]
async fn etcdctl_endpoint_and_maintenance_commands_print_the_same_against_oxcd_as_against_etcd() {
    let mut pair = Pair::start(&[]).await;
    let mut mismatches = Vec::new();
    for (ctl, form) in RUNS {
        mismatches.extend(pair.run(ctl, form, &script(ctl)).await);
    }
    assert_none("maintenance", &mismatches);
}

/// Known difference, kept runnable (`cargo test -- --ignored`) until it is fixed: the `h2` crate
/// under tonic resets a stream whose `:authority` is a URL (hyperium/h2#525) and has no setting
/// to accept it, so etcdctl 3.4 with `--endpoints=http://…` fails `endpoint status|hashkv` and
/// `defrag` against oxcd (3.6 clients, and 3.4 with `host:port` endpoints, are unaffected).
#[tokio::test]
#[ignore = "h2 rejects a URL as :authority; etcdctl 3.4 sends one for these calls"]
async fn etcdctl_3_4_maintenance_calls_to_url_endpoints_print_the_same_against_oxcd_as_against_etcd()
 {
    let mut pair = Pair::start(&[]).await;
    let mismatches = pair
        .run(EtcdVersion::V3_4, Form::Url, &script(EtcdVersion::V3_4))
        .await;
    assert_none("etcdctl 3.4 maintenance (URL endpoint)", &mismatches);
}

/// Writes large values under `q/` until the server refuses one; returns how many it took.
async fn fill(client: &mut etcd_client::Client) -> usize {
    let value = "v".repeat(FILL_VALUE_BYTES);
    for i in 0..FILL_MAX {
        if client
            .put(format!("q/{i:04}"), value.clone(), None)
            .await
            .is_err()
        {
            return i;
        }
    }
    panic!("the quota never refused a write");
}

/// Deletes what [`fill`] wrote and compacts it away (not compared: the revisions differ).
async fn free(client: &mut etcd_client::Client) {
    let deleted = client
        .delete("q/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete the fill");
    let revision = deleted.header().map(|h| h.revision()).expect("a header");
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact the fill away");
}

fn nospace_raised() -> Vec<Step> {
    ctls(&[
        "alarm list",
        "alarm list -w json",
        "put q/small v",
        "endpoint status -w table",
        "endpoint status -w json",
        "endpoint health",
        "endpoint health -w json",
    ])
}

fn nospace_disarmed() -> Vec<Step> {
    ctls(&[
        "defrag",
        "alarm disarm",
        "alarm list",
        "put q/after v",
        "endpoint health",
        "del q/after",
    ])
}

#[tokio::test]
async fn etcdctl_lists_and_disarms_the_nospace_alarm_as_against_etcd() {
    let mut pair = Pair::start(&[QUOTA]).await;
    // The fill takes a different number of writes on each server: revisions differ from here.
    pair.vary_revisions = true;
    let mut mismatches = Vec::new();
    for (ctl, form) in RUNS {
        let (mut etcd, mut oxcd) = (pair.etcd.client().clone(), pair.oxcd.client().clone());
        let (on_etcd, on_oxcd) = tokio::join!(fill(&mut etcd), fill(&mut oxcd));
        assert!(on_etcd > 0 && on_oxcd > 0, "writes pass before the quota");
        mismatches.extend(pair.run(ctl, form, &nospace_raised()).await);
        tokio::join!(free(&mut etcd), free(&mut oxcd));
        mismatches.extend(pair.run(ctl, form, &nospace_disarmed()).await);
    }
    assert_none("NOSPACE", &mismatches);
}
