//! `etcdctl lease`: grant (simple, json, fields; TTLs below the minimum), `put --lease`,
//! `timetolive` with and without `--keys`, `keep-alive --once` and a running `keep-alive`,
//! `list`, `revoke`, and what each says about a revoked, an expired and an unknown lease.
//!
//! Lease ids are random on both servers: each granted id is substituted by the name the script
//! gives it. A lease's remaining seconds may differ by one; its keys and `lease list` come in
//! map order on etcd: both are sorted before comparing.

use oxcd_tests::EtcdVersion;

use super::runner::{Act, Form, Pair, Session, Step, assert_none, c, grant};

fn ctl(line: &str) -> Step {
    Step::Ctl(c(line))
}

/// Long leases: nothing expires while they are compared.
fn granted() -> Vec<Step> {
    vec![
        grant("a", "100"),
        ctl("put l/1 v1 --lease={lease:a}"),
        ctl("put l/2 v2 --lease={lease:a}"),
        ctl("lease timetolive {lease:a}"),
        ctl("lease timetolive {lease:a} --keys"),
        ctl("lease timetolive {lease:a} -w json"),
        ctl("lease timetolive {lease:a} --keys -w json"),
        ctl("lease timetolive {lease:a} --keys -w fields"),
        ctl("lease keep-alive --once {lease:a}"),
        ctl("lease keep-alive --once {lease:a} -w json"),
        ctl("lease keep-alive --once {lease:a} -w fields"),
        Step::Session(Session {
            cmd: c("lease keep-alive {lease:a}"),
            interactive: false,
            acts: vec![Act::Await("keepalived with TTL(100)\n".to_string())],
            ends_itself: false,
            keep_through: Some("keepalived".to_string()),
        }),
        grant("b", "200 -w json"),
        grant("c", "300 -w fields"),
        ctl("put l/3 v3 --lease={lease:b}"),
        ctl("get l --prefix -w json"),
        ctl("get l --prefix -w fields"),
        ctl("lease list"),
        ctl("lease list -w json"),
        ctl("lease list -w fields"),
    ]
}

fn revoked() -> Vec<Step> {
    [
        "lease revoke {lease:a}",
        "lease revoke {lease:a}",
        "get l --prefix",
        "lease timetolive {lease:a}",
        "lease timetolive {lease:a} --keys -w json",
        "lease keep-alive --once {lease:a}",
        "put l/4 v4 --lease={lease:a}",
        "lease timetolive 1234",
        "lease timetolive 1234 -w fields",
        "lease keep-alive --once 1234",
        "lease revoke 1234",
        "put l/5 v5 --lease=1234",
        "lease timetolive nothex",
        "lease revoke",
        "lease grant abc",
        "lease grant",
        "lease revoke {lease:b}",
        "lease revoke {lease:c} -w json",
        "get l --prefix -w json",
        "lease list",
    ]
    .into_iter()
    .map(ctl)
    .collect()
}

/// Leases below the minimum TTL get it (2 s with etcd's 1 s election timeout); those and a
/// 5 s lease with keys expire, and their keys with them.
fn expired() -> Vec<Step> {
    vec![
        grant("short", "1"),
        grant("zero", "0 -w json"),
        grant("soon", "5"),
        ctl("put l/soon s --lease={lease:soon}"),
        ctl("put l/soon2 s --lease={lease:soon}"),
        ctl("lease timetolive {lease:soon} --keys"),
        Step::AwaitExpiry("short"),
        Step::AwaitExpiry("zero"),
        Step::AwaitExpiry("soon"),
        ctl("lease timetolive {lease:soon} --keys"),
        ctl("lease timetolive {lease:zero} -w json"),
        ctl("get l --prefix"),
        ctl("get l --prefix -w json"),
        ctl("lease keep-alive --once {lease:soon}"),
        ctl("lease list"),
    ]
}

fn script() -> Vec<Step> {
    let mut steps = granted();
    steps.extend(revoked());
    steps.extend(expired());
    steps
}

#[tokio::test]
async fn etcdctl_lease_commands_print_the_same_against_oxcd_as_against_etcd() {
    let mut pair = Pair::start(&[]).await;
    let mut mismatches = Vec::new();
    for ctl in EtcdVersion::ALL {
        mismatches.extend(pair.run(ctl, Form::Url, &script()).await);
    }
    assert_none("lease", &mismatches);
}
