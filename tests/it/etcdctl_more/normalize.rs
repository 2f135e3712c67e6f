//! What may legitimately differ between etcd's and oxcd's etcdctl output, and nothing more:
//! ids (member, cluster, leases: substituted by name), endpoints and scratch paths, raft terms
//! and indexes, database sizes, version strings (oxcd reports etcd API 3.6.0 where etcd reports
//! its patch release), durations, the remaining seconds of a lease, and the order of lists etcd
//! itself prints in map order (a lease's keys, `lease list`). Hashes, revisions, keys, values,
//! column and field names, exit codes and error texts are kept.

use oxcd_tests::{CtlOutput, EtcdVersion};

use super::runner::Seen;

/// What a normalized value is replaced with.
const VARIES: &str = "*";

/// Literal texts replaced by placeholders, longest first.
#[derive(Debug, Default, Clone)]
pub struct Subs {
    pairs: Vec<(String, String)>,
}

impl Subs {
    /// Replaces `literal` with `placeholder`.
    pub fn add(&mut self, literal: &str, placeholder: &str) {
        if literal.is_empty() {
            return;
        }
        self.pairs
            .push((literal.to_string(), placeholder.to_string()));
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// Replaces the id `id` in decimal, in padded hex (`%016x`) and in hex (`%x`).
    pub fn add_id(&mut self, id: u64, placeholder: &str) {
        self.add(&id.to_string(), placeholder);
        self.add(&format!("{id:016x}"), placeholder);
        self.add(&format!("{id:x}"), placeholder);
    }

    /// `text` with every literal replaced.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (literal, placeholder) in &self.pairs {
            out = out.replace(literal.as_str(), placeholder);
        }
        out
    }
}

/// The lease id a `lease grant` printed (simple, json or fields).
pub fn granted_lease(stdout: &str) -> Option<i64> {
    if let Some(rest) = stdout.strip_prefix("lease ") {
        let hex = rest.split_whitespace().next()?;
        return i64::from_str_radix(hex, 16).ok();
    }
    for marker in ["\"ID\":", "\"ID\" : "] {
        if let Some(at) = stdout.find(marker) {
            let digits: String = stdout[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return digits.parse().ok();
        }
    }
    None
}

/// `text` up to and including the first line containing `needle` (all of it when none does).
pub fn keep_through(text: &str, needle: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if line.contains(needle) {
            break;
        }
    }
    out
}

/// Which command printed the output, for the rules that apply to one command only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status,
    Health,
    Defrag,
    TimeToLive,
    LeaseList,
    Snapshot,
    Other,
}

fn kind(args: &[String]) -> Kind {
    let words: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    match words.as_slice() {
        ["endpoint", "status"] => Kind::Status,
        ["endpoint", "health"] => Kind::Health,
        ["defrag", ..] => Kind::Defrag,
        ["lease", "timetolive"] => Kind::TimeToLive,
        ["lease", "list"] => Kind::LeaseList,
        ["snapshot", "save"] => Kind::Snapshot,
        _ => Kind::Other,
    }
}

/// `out` of etcdctl `ctl` run with `args`, normalized; `vary_rev` also normalizes revisions.
pub fn seen(
    ctl: EtcdVersion,
    args: &[String],
    out: &CtlOutput,
    subs: &Subs,
    vary_rev: bool,
) -> Seen {
    let kind = kind(args);
    Seen {
        exit: out.status.code(),
        stdout: stdout(ctl, kind, &subs.apply(&out.stdout), vary_rev),
        stderr: stderr(kind, &subs.apply(&out.stderr)),
    }
}

fn stdout(ctl: EtcdVersion, kind: Kind, text: &str, vary_rev: bool) -> String {
    let mut markers = vec!["\"raft_term\":", "\"RaftTerm\" : ", "\"raftTerm\":"];
    if vary_rev {
        markers.extend(["\"revision\":", "\"Revision\" : "]);
    }
    match kind {
        Kind::Status => markers.extend([
            "\"version\":",
            "\"dbSize\":",
            "\"dbSizeInUse\":",
            "\"raftIndex\":",
            "\"raftAppliedIndex\":",
            "\"Version\" : ",
            "\"DBSize\" : ",
            "\"DBSizeInUse\" : ",
            "\"RaftIndex\" : ",
            "\"RaftAppliedIndex\" : ",
        ]),
        Kind::Health | Kind::Defrag => {
            markers.extend(["took = ", "\"took\":", "\"Took\" : ", ". took "])
        }
        Kind::TimeToLive => markers.extend(["remaining(", "\"ttl\":", "\"TTL\" : "]),
        _ => {}
    }
    let mut text = text.to_string();
    for marker in markers {
        text = replace_values(&text, marker);
    }
    text = table(&text, kind);
    match kind {
        Kind::Status => simple_status(ctl, &text),
        Kind::TimeToLive => {
            let text = sort_within(&text, "attached keys([", "])", ' ');
            let text = sort_within(&text, "\"keys\":[", "]", ',');
            sort_runs(&text, "\"Key\" : ")
        }
        Kind::LeaseList => {
            let text = sort_within(&text, "\"leases\":[", "]", ',');
            let text = sort_runs(&text, "\"ID\" : ");
            match text.strip_prefix("found ") {
                // The ids after the count, in sorted order.
                Some(_) => {
                    let mut lines: Vec<&str> = text.lines().collect();
                    lines[1..].sort_unstable();
                    lines.iter().map(|l| format!("{l}\n")).collect()
                }
                None => text,
            }
        }
        _ => text,
    }
}

/// Replaces the value after every `marker`: a quoted string, or a run of letters, digits, dots
/// and `µ` (a number or a Go duration; a leading `-`, as in a TTL of -1, is kept).
fn replace_values(text: &str, marker: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        let len = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.find('"').map_or(0, |end| end + 2)
        } else {
            rest.char_indices()
                .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '.' || *ch == 'µ'))
                .map_or(rest.len(), |(i, _)| i)
        };
        if len > 0 {
            out.push_str(VARIES);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

/// Tables without their padding (it follows the content's width), with the cells of the columns
/// that vary replaced.
fn table(text: &str, kind: Kind) -> String {
    let varying: &[&str] = match kind {
        Kind::Status => &[
            "VERSION",
            "DB SIZE",
            "IN USE",
            "PERCENTAGE NOT IN USE",
            "RAFT TERM",
            "RAFT INDEX",
            "RAFT APPLIED INDEX",
        ],
        Kind::Health => &["TOOK"],
        _ => &[],
    };
    let mut header: Option<Vec<String>> = None;
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if body.starts_with('+') && body.ends_with('+') {
            out.push_str("+\n");
            continue;
        }
        if !(body.starts_with('|') && body.ends_with('|') && body.len() > 1) {
            out.push_str(line);
            continue;
        }
        let cells: Vec<String> = body[1..body.len() - 1]
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let cells = match &header {
            None => {
                header = Some(cells.clone());
                cells
            }
            Some(names) => cells
                .into_iter()
                .enumerate()
                .map(|(i, cell)| match names.get(i) {
                    Some(name) if varying.contains(&name.as_str()) => VARIES.to_string(),
                    _ => cell,
                })
                .collect(),
        };
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// `endpoint status`'s simple rows (`<url>, <id>, <version>, ...`) with the varying columns
/// replaced; the columns are those of the table, which etcdctl 3.4 prints fewer of.
fn simple_status(ctl: EtcdVersion, text: &str) -> String {
    let varying: &[usize] = match ctl {
        // VERSION, DB SIZE, IN USE, PERCENTAGE NOT IN USE, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX
        EtcdVersion::V3_6 => &[2, 4, 5, 6, 10, 11, 12],
        // VERSION, DB SIZE, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX
        EtcdVersion::V3_4 => &[2, 3, 6, 7, 8],
    };
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if !(body.starts_with("<url>, ") || body.starts_with("<hostport>, ")) {
            out.push_str(line);
            continue;
        }
        let fields: Vec<&str> = body
            .split(", ")
            .enumerate()
            .map(|(i, f)| if varying.contains(&i) { VARIES } else { f })
            .collect();
        out.push_str(&fields.join(", "));
        out.push_str(&line[body.len()..]);
    }
    out
}

/// Sorts the `sep`-separated items between every `open` and the next `close`.
fn sort_within(text: &str, open: &str, close: &str, sep: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        let start = at + open.len();
        let Some(len) = rest[start..].find(close) else {
            break;
        };
        out.push_str(&rest[..start]);
        let mut items: Vec<&str> = rest[start..start + len].split(sep).collect();
        items.sort_unstable();
        out.push_str(&items.join(&sep.to_string()));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// Sorts every run of consecutive lines starting with `prefix`.
fn sort_runs(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with(prefix) && line.ends_with('\n') {
            run.push(line);
            continue;
        }
        run.sort_unstable();
        out.extend(run.drain(..));
        out.push_str(line);
    }
    run.sort_unstable();
    out.extend(run.drain(..));
    out
}

/// The parts of standard error that come from the server or the command, not from timing:
/// every line that is not a JSON log entry, the gRPC errors of log entries (each once), and for
/// `snapshot save` the messages of its log and the server version it reports.
fn stderr(kind: Kind, text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with('{') {
            let line = replace_values(&replace_values(line, "took = "), ". took ");
            lines.push(line);
            continue;
        }
        if let Some(error) = json_string(line, "\"error\":\"") {
            let error = format!("log error: {error}");
            if !lines.contains(&error) {
                lines.push(error);
            }
        }
        if kind == Kind::Snapshot {
            if let Some(msg) = json_string(line, "\"msg\":\"")
                && msg != "unrecognized environment variable"
            {
                lines.push(format!("log: {msg}"));
            }
            if let Some(version) = json_string(line, "\"etcd-version\":\"") {
                lines.push(format!("log etcd-version: {version}"));
            }
        }
    }
    lines
}

/// The JSON string value after `marker` (which ends with the opening quote).
fn json_string<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)? + marker.len();
    let rest = &line[at..];
    let mut escaped = false;
    for (i, ch) in rest.char_indices() {
        match ch {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(&rest[..i]),
            _ => escaped = false,
        }
    }
    None
}

#[test]
fn values_after_markers_are_replaced_and_negative_ttls_kept() {
    assert_eq!(
        replace_values(
            r#"{"raft_term":2,"version":"3.6.16","ttl":-1}"#,
            "\"version\":"
        ),
        r#"{"raft_term":2,"version":*,"ttl":-1}"#
    );
    assert_eq!(
        replace_values(r#""ttl":-1,"ttl":99"#, "\"ttl\":"),
        r#""ttl":-1,"ttl":*"#
    );
    assert_eq!(
        replace_values("healthy: took = 2.09µs\n", "took = "),
        "healthy: took = *\n"
    );
    assert_eq!(
        replace_values("TTL(100s), remaining(99s)", "remaining("),
        "TTL(100s), remaining(*)"
    );
}

#[test]
fn ids_are_substituted_in_decimal_and_hex() {
    let mut subs = Subs::default();
    subs.add_id(0x390d_a20c_8de6_710e, "<lease:a>");
    subs.add("http://127.0.0.1:1234", "<url>");
    assert_eq!(
        subs.apply(
            "lease 390da20c8de6710e granted; \"id\":4111120209663127822 at http://127.0.0.1:1234"
        ),
        "lease <lease:a> granted; \"id\":<lease:a> at <url>"
    );
    assert_eq!(
        granted_lease("lease 390da20c8de6710e granted with TTL(100s)\n"),
        Some(0x390d_a20c_8de6_710e)
    );
    assert_eq!(granted_lease("{\"ID\":42,\"TTL\":2}"), Some(42));
    assert_eq!(granted_lease("\"ClusterID\" : 1\n\"ID\" : 7\n"), Some(7));
}

#[test]
fn tables_lose_their_padding_and_varying_cells() {
    let text = "+-----+------+\n|  ENDPOINT | TOOK |\n+--+\n| <url> | 3ms |\n+--+\n";
    assert_eq!(
        table(text, Kind::Health),
        "+\n| ENDPOINT | TOOK |\n+\n| <url> | * |\n+\n"
    );
}

#[test]
fn map_ordered_lists_are_sorted() {
    assert_eq!(
        sort_within("attached keys([b a c])", "attached keys([", "])", ' '),
        "attached keys([a b c])"
    );
    assert_eq!(
        sort_runs("h\n\"Key\" : \"b\"\n\"Key\" : \"a\"\nz\n", "\"Key\" : "),
        "h\n\"Key\" : \"a\"\n\"Key\" : \"b\"\nz\n"
    );
    assert_eq!(
        keep_through("a\nprogress 1\nprogress 2\n", "progress"),
        "a\nprogress 1\n"
    );
}

#[test]
fn simple_status_rows_keep_their_column_count() {
    let row = "<url>, <member>, 3.6.16, 3.6.0, 20 kB, 16 kB, 20%, 2.1 GB, true, false, 2, 4, 4, , , false\n";
    assert_eq!(
        simple_status(EtcdVersion::V3_6, row),
        "<url>, <member>, *, 3.6.0, *, *, *, 2.1 GB, true, false, *, *, *, , , false\n"
    );
}
