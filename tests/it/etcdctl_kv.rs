//! etcdctl end to end: the same etcdctl (3.6, then 3.4) command sequence against a fresh etcd 3.6
//! and a fresh oxcd; exit status, standard output and the error text must be identical once the
//! cluster id, member id and raft term (which legitimately differ) are normalized.
//!
//! `-w protobuf` output is decoded, its header normalized, re-encoded and compared as bytes.
//! From standard error only the final `Error: ...` lines and the gRPC errors of the client's
//! retry log (`"error":"rpc error: code = ... desc = ..."`) are compared: the rest is timestamps.

use oxcd_server::proto::etcdserverpb::{
    DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader, TxnResponse,
};
use oxcd_tests::diff::normalize_header;
use oxcd_tests::{CtlOutput, EtcdServer, EtcdVersion, OxcdServer, etcdctl_with_input};
use prost::Message;

/// Header fields that differ between two clusters, as `-w json` and `-w fields` print them.
const VARYING_FIELDS: [&str; 6] = [
    "\"cluster_id\":",
    "\"member_id\":",
    "\"raft_term\":",
    "\"ClusterID\" : ",
    "\"MemberID\" : ",
    "\"RaftTerm\" : ",
];

/// What `txn -i` prints before reading each part of its input.
const TXN_PROMPTS: &str =
    "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n";

/// Which response message a `-w protobuf` command prints.
#[derive(Debug, Clone, Copy)]
enum Proto {
    Range,
    Put,
    Delete,
    Txn,
}

/// One etcdctl invocation of the script.
#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<String>,
    stdin: Vec<u8>,
    protobuf: Option<Proto>,
}

/// A command from whitespace-separated words (no word may contain a space).
fn c(line: &str) -> Cmd {
    cv(&line.split_whitespace().collect::<Vec<_>>())
}

/// A command from explicit words (for empty words or words with spaces).
fn cv(words: &[&str]) -> Cmd {
    Cmd {
        args: words.iter().map(|w| w.to_string()).collect(),
        stdin: Vec::new(),
        protobuf: None,
    }
}

/// A command with `input` on its standard input.
fn with_stdin(mut cmd: Cmd, input: &str) -> Cmd {
    cmd.stdin = input.as_bytes().to_vec();
    cmd
}

/// A `-w protobuf` command printing a `kind` message.
fn pb(kind: Proto, line: &str) -> Cmd {
    let mut cmd = c(line);
    cmd.args.extend(["-w".to_string(), "protobuf".to_string()]);
    cmd.protobuf = Some(kind);
    cmd
}

/// `txn` (with `flags`) fed `input` on standard input.
fn txn(flags: &str, input: &str) -> Cmd {
    with_stdin(c(&format!("txn {flags}")), input)
}

/// Replaces the (non-zero) number after every varying header field with `N`.
fn normalize_text(text: &str) -> String {
    let mut out = text.to_string();
    for field in VARYING_FIELDS {
        let mut normalized = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(field) {
            let after = at + field.len();
            normalized.push_str(&rest[..after]);
            rest = &rest[after..];
            // Decimal, or hexadecimal with `--hex`.
            let digits = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
            // A zero stays: etcd leaves these fields unset in the headers nested in a txn.
            if digits > 0 && rest[..digits].bytes().any(|b| b != b'0') {
                normalized.push('N');
                rest = &rest[digits..];
            }
        }
        normalized.push_str(rest);
        out = normalized;
    }
    out
}

fn reencode<M: Message + Default>(
    bytes: &[u8],
    header: impl FnOnce(&mut M) -> &mut Option<ResponseHeader>,
) -> Vec<u8> {
    match M::decode(bytes) {
        Ok(mut message) => {
            normalize_header(header(&mut message));
            message.encode_to_vec()
        }
        Err(err) => format!("undecodable protobuf output ({err}): {bytes:?}").into_bytes(),
    }
}

/// Standard output with the varying header fields normalized. `txn -i` prints its prompts before
/// the message: they are kept as they are.
fn normalize_stdout(cmd: &Cmd, out: &CtlOutput) -> Vec<u8> {
    let Some(kind) = cmd.protobuf.filter(|_| out.success()) else {
        return normalize_text(&out.stdout).into_bytes();
    };
    let raw = out.stdout_bytes.as_slice();
    let (prompts, message) = match raw.strip_prefix(TXN_PROMPTS.as_bytes()) {
        Some(message) => (TXN_PROMPTS.as_bytes(), message),
        None => (&raw[..0], raw),
    };
    let mut normalized = prompts.to_vec();
    normalized.extend(match kind {
        Proto::Range => reencode::<RangeResponse>(message, |m| &mut m.header),
        Proto::Put => reencode::<PutResponse>(message, |m| &mut m.header),
        Proto::Delete => reencode::<DeleteRangeResponse>(message, |m| &mut m.header),
        Proto::Txn => reencode::<TxnResponse>(message, |m| &mut m.header),
    });
    normalized
}

/// The error text of standard error: `Error:` lines and the gRPC errors in the retry log, each
/// distinct gRPC error once, in order of appearance.
fn error_text(stderr: &str) -> Vec<String> {
    const MARK: &str = "\"error\":\"";
    let mut lines: Vec<String> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("Error:") {
            lines.push(line.to_string());
        } else if let Some(at) = line.find(MARK) {
            let rest = &line[at + MARK.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            let grpc = format!("log: {}", &rest[..end]);
            if !lines.contains(&grpc) {
                lines.push(grpc);
            }
        }
    }
    lines
}

/// What one invocation produced, normalized for comparison.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    exit: Option<i32>,
    stdout: Vec<u8>,
    errors: Vec<String>,
}

impl Seen {
    fn of(cmd: &Cmd, out: &CtlOutput) -> Self {
        Self {
            exit: out.status.code(),
            stdout: normalize_stdout(cmd, out),
            errors: error_text(&out.stderr),
        }
    }

    fn render(&self) -> String {
        format!(
            "exit {:?}\n    stdout: {:?}\n    errors: {:?}",
            self.exit,
            String::from_utf8_lossy(&self.stdout),
            self.errors
        )
    }
}

/// Seven keys over seven revisions, as the differential KV suite seeds them.
fn seed() -> Vec<Cmd> {
    [
        "put a 1",
        "put b 22",
        "put c 3",
        "put b 2",
        "put d 444",
        "put e 5",
        "put a/x ax",
    ]
    .into_iter()
    .map(c)
    .collect()
}

fn puts() -> Vec<Cmd> {
    vec![
        cv(&["put", "sp ace", "v a l u e"]),
        c("put a 9 --prev-kv"),
        c("put new n --prev-kv -w json"),
        c("put new n2 --prev-kv -w fields"),
        with_stdin(c("put from-stdin"), "read from\nstandard input"),
        with_stdin(c("put from-stdin --prev-kv"), "again"),
        c("put a --ignore-value"),
        c("put a --ignore-value --prev-kv -w json"),
        c("put nope --ignore-value"),
        c("put a x --ignore-value"),
        c("put a --ignore-lease"),
        c("put a y --ignore-lease"),
        c("put a y2 --ignore-lease --prev-kv"),
        c("put nope y --ignore-lease"),
        c("put a z --lease=3039"),
        c("put a z --lease=nothex"),
        cv(&["put", "", "empty"]),
        cv(&["put", "empty-value", ""]),
        c("put onlykey"),
        pb(Proto::Put, "put a y3 --prev-kv"),
    ]
}

fn gets(ctl: EtcdVersion) -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = [
        "get a",
        "get missing",
        "get a -w json",
        "get a -w fields",
        "get a -w simple",
        "get a --prefix",
        "get a --from-key",
        "get a c",
        "get d b",
        "get a z --limit 2",
        "get a z --limit 2 -w json",
        "get a z --limit 2 -w fields",
        "get a z --limit -1",
        "get a --rev 2 -w json",
        "get a z --rev 3",
        "get a z --rev 1",
        "get a z --rev 1000",
        "get a z --rev -1",
        "get a z --keys-only",
        "get a z --keys-only -w json",
        "get a z --print-value-only",
        "get a z --keys-only --print-value-only",
        "get a z --print-value-only -w json",
        "get a z --consistency=s",
        "get a z --consistency=s -w json",
        "get a z --consistency=x",
        "get a z --order BOGUS",
        "get a z --sort-by BOGUS",
        "get a z -w table",
        "get a z -w bogus",
        "get a --prefix --from-key",
        "get",
        "get a b c",
        "get --prefix --keys-only",
        "get --from-key --keys-only",
        "get a z --hex",
        "get a z --hex -w fields",
        "get a z --hex --keys-only --limit 3",
    ]
    .into_iter()
    .map(c)
    .collect();
    cmds.push(cv(&["get", "", "--prefix"]));
    cmds.push(cv(&["get", "", "--from-key", "-w", "json"]));
    for target in ["", "KEY", "CREATE", "MODIFY", "VALUE", "VERSION"] {
        for order in ["", "ASCEND", "DESCEND"] {
            let mut words = vec!["get", "a", "z"];
            if !target.is_empty() {
                words.extend(["--sort-by", target]);
            }
            if !order.is_empty() {
                words.extend(["--order", order]);
            }
            cmds.push(cv(&words));
            words.extend(["--limit", "3", "--keys-only"]);
            cmds.push(cv(&words));
        }
    }
    cmds.push(c(
        "get a z --sort-by MODIFY --order DESCEND --limit 2 -w json",
    ));
    cmds.push(pb(Proto::Range, "get a z"));
    cmds.push(pb(Proto::Range, "get a z --limit 1 --rev 4"));
    cmds.push(pb(Proto::Range, "get missing"));
    if ctl == EtcdVersion::V3_6 {
        cmds.extend(
            [
                "get a z --count-only -w fields",
                "get a --prefix --count-only -w fields",
                "get a z --count-only",
                "get a z --count-only -w json",
                "get a z --count-only --keys-only -w fields",
                "get a z --min-mod-rev 5",
                "get a z --max-mod-rev 5 -w json",
                "get a z --min-create-rev 4 --max-create-rev 6",
                "get a z --min-mod-rev 3 --limit 2 --keys-only",
            ]
            .into_iter()
            .map(c),
        );
        cmds.push(pb(Proto::Range, "get a z --keys-only --min-mod-rev 4"));
    }
    cmds
}

fn txns() -> Vec<Cmd> {
    let succeeds = "mod(\"t1\") = \"0\"\n\nput t1 \"v one\"\nput t2 v2\nget t1\n\nget t2\n\n";
    let fails = "value(\"t1\") = \"nomatch\"\nversion(\"t2\") > \"0\"\n\nput t3 x\n\n\
                 put t3 y\nget t3\ndel t2 --prev-kv\nget t --prefix\n\n";
    let mixed = "create(\"a\") > \"0\"\nvalue(\"b\") < \"3\"\nmod(\"missing\") = \"0\"\n\
                 version(\"a\") != \"1\"\n\nget a --prefix --keys-only\nput t4 \"with space\"\n\
                 del t1\n\nput t4 never\n\n";
    let no_compares = "\nput t5 first\nput t6 second\nget t --from-key\n\n\n";
    let read_only = "\nget a --rev 3\nget a z --limit 2\n\n\n";
    let duplicate = "\nput t7 one\nput t7 two\n\n\n";
    let empty_key = "value(\"\") = \"x\"\n\nput t8 v\n\n\n";
    let bad_syntax = "bogus(\"t1\") = \"v\"\n\n\n\n";
    let bad_op = "\nfrobnicate t1\n\n\n";
    let future = "\nget a --rev 100000\n\n\n";
    let many: String = (0..129).map(|i| format!("put many{i} v\n")).collect();
    let too_many = format!("\n{many}\n\n");
    let mut cmds = Vec::new();
    for flags in ["", "-i"] {
        for input in [succeeds, fails, mixed, no_compares, read_only] {
            cmds.push(txn(flags, input));
        }
    }
    for format in ["json", "fields", "simple"] {
        cmds.push(txn(&format!("-w {format}"), succeeds));
        cmds.push(txn(&format!("-i -w {format}"), fails));
        cmds.push(txn(&format!("-w {format}"), mixed));
        cmds.push(txn(&format!("-w {format}"), read_only));
    }
    for input in [duplicate, empty_key, bad_syntax, bad_op, future, &too_many] {
        cmds.push(txn("", input));
        cmds.push(txn("-i", input));
    }
    let mut proto = txn("", mixed);
    proto
        .args
        .extend(["-w".to_string(), "protobuf".to_string()]);
    proto.protobuf = Some(Proto::Txn);
    cmds.push(proto);
    let mut proto = txn("-i", fails);
    proto
        .args
        .extend(["-w".to_string(), "protobuf".to_string()]);
    proto.protobuf = Some(Proto::Txn);
    cmds.push(proto);
    cmds
}

fn deletes(ctl: EtcdVersion) -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = [
        "put d1 x",
        "put d2 y",
        "put d3 z",
        "put d4 w",
        "put dz last",
        "del d1 --prev-kv",
        "del d1",
        "del missing --prev-kv -w json",
        "del d2 d4 --prev-kv -w json",
        "del d --prefix -w fields",
        "put d5 again",
        "del d5 --prev-kv -w fields",
        "del",
        "del a --prefix --from-key",
    ]
    .into_iter()
    .map(c)
    .collect();
    cmds.push(pb(Proto::Delete, "del sp --prefix --prev-kv"));
    cmds.push(pb(Proto::Delete, "del missing"));
    cmds.push(cv(&["del", ""]));
    cmds.push(c("del t --from-key --prev-kv"));
    if ctl == EtcdVersion::V3_6 {
        cmds.extend(["put r1 1", "put r2 2", "del r1 r3 --range --prev-kv"].map(c));
    }
    cmds.push(cv(&["get", "", "--from-key", "-w", "json"]));
    cmds
}

/// Compaction, reads at and below the compacted revision. The revision numbers depend on the
/// script so far; both servers are at the same revision (the outputs before prove it).
fn compactions() -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = [
        "put k1 v1",
        "put k2 v2",
        "put k1 v1b",
        "put k3 v3",
        "compaction 0",
        "compaction -1",
        "compaction nonsense",
        "compaction",
        "compaction 10",
        "compaction 10",
        "compaction 9",
        "compaction 1000000",
        "get a z --rev 9",
        "get a z --rev 10 -w json",
        "get a z --rev 11 --keys-only",
        "compaction 20 --physical",
        "compaction 21 --physical -w json",
        "get k --prefix --rev 20",
        "get k --prefix --rev 21",
        "get k --prefix --rev 22 -w fields",
        "get k --prefix -w json",
    ]
    .into_iter()
    .map(c)
    .collect();
    cmds.push(pb(Proto::Range, "get k1 --rev 21"));
    cmds.push(txn("", "\nget k1 --rev 5\n\n\n"));
    cmds.push(c("put k1 after-compaction --prev-kv -w json"));
    cmds.push(cv(&["get", "", "--from-key", "-w", "json"]));
    cmds
}

/// The whole script for etcdctl `ctl`.
fn script(ctl: EtcdVersion) -> Vec<Cmd> {
    let mut cmds = seed();
    cmds.extend(puts());
    cmds.extend(gets(ctl));
    cmds.extend(txns());
    cmds.extend(deletes(ctl));
    cmds.extend(compactions());
    cmds
}

/// Runs the script with etcdctl `ctl` against fresh servers; returns every mismatch, rendered.
async fn run_script(ctl: EtcdVersion) -> Vec<String> {
    let (etcd, oxcd) = tokio::join!(EtcdServer::start(EtcdVersion::V3_6), OxcdServer::start());
    let (etcd, oxcd) = (etcd.expect("etcd starts"), oxcd.expect("oxcd starts"));
    let mut mismatches = Vec::new();
    for (index, cmd) in script(ctl).iter().enumerate() {
        let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let (on_etcd, on_oxcd) = tokio::join!(
            etcdctl_with_input(ctl, etcd.endpoint(), &args, &cmd.stdin),
            etcdctl_with_input(ctl, oxcd.endpoint(), &args, &cmd.stdin),
        );
        let on_etcd = Seen::of(cmd, &on_etcd.expect("etcdctl runs against etcd"));
        let on_oxcd = Seen::of(cmd, &on_oxcd.expect("etcdctl runs against oxcd"));
        if on_etcd != on_oxcd {
            mismatches.push(format!(
                "#{index} etcdctl {} {:?} (stdin {:?})\n  etcd: {}\n  oxcd: {}",
                ctl.minor(),
                cmd.args,
                String::from_utf8_lossy(&cmd.stdin),
                on_etcd.render(),
                on_oxcd.render()
            ));
        }
    }
    mismatches
}

async fn assert_same_output(ctl: EtcdVersion) {
    let mismatches = run_script(ctl).await;
    assert!(
        mismatches.is_empty(),
        "{} of etcdctl {}'s commands printed differently against oxcd than against etcd 3.6:\n{}",
        mismatches.len(),
        ctl.minor(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn etcdctl_3_6_prints_the_same_against_oxcd_as_against_etcd() {
    assert_same_output(EtcdVersion::V3_6).await;
}

#[tokio::test]
async fn etcdctl_3_4_prints_the_same_against_oxcd_as_against_etcd() {
    assert_same_output(EtcdVersion::V3_4).await;
}

#[test]
fn normalization_replaces_exactly_the_varying_header_numbers() {
    let json =
        r#"{"header":{"cluster_id":123,"member_id":45,"revision":7,"raft_term":2},"count":1}"#;
    assert_eq!(
        normalize_text(json),
        r#"{"header":{"cluster_id":N,"member_id":N,"revision":7,"raft_term":N},"count":1}"#
    );
    let fields = "\"ClusterID\" : 99\n\"MemberID\" : 98\n\"Revision\" : 5\n\"RaftTerm\" : 3\n\
                  \"ClusterID\" : 0\n";
    assert_eq!(
        normalize_text(fields),
        "\"ClusterID\" : N\n\"MemberID\" : N\n\"Revision\" : 5\n\"RaftTerm\" : N\n\
         \"ClusterID\" : 0\n"
    );
    assert_eq!(
        normalize_text("\"MemberID\" : a0030beb85dbc248\n"),
        "\"MemberID\" : N\n"
    );
    let stderr = "{\"level\":\"warn\",\"error\":\"rpc error: code = NotFound desc = x\"}\n\
                  {\"level\":\"warn\",\"error\":\"rpc error: code = NotFound desc = x\"}\n\
                  Error: x\n";
    assert_eq!(
        error_text(stderr),
        vec!["log: rpc error: code = NotFound desc = x", "Error: x"]
    );
}
