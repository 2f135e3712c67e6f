//! `etcdctl watch` as a child process: `--prefix`, key ranges, `--rev`, `--prev-kv`, `-w json` and
//! `-w fields`, `-- <command>` (the `ETCD_WATCH_*` environment), `--progress-notify` (3.6),
//! interactive `watch -i` (with 3.6's `progress`), and watches cancelled by a compaction.
//!
//! Determinism: every watch starts at a revision in the past (`--rev`), so no event depends on
//! when the watch was registered; each session waits for a sentinel value before it is killed.
//! Formats that print one response per line (`-w json`, `-w fields`) only replay history, so
//! every server sends it as one response; the simple format prints events without their
//! response boundaries and also sees live writes. Periodic output (progress notifications)
//! is kept only through its first line.

use oxcd_tests::EtcdVersion;

use super::runner::{Act, Cmd, Form, Pair, Session, Step, assert_none, c, cv};

/// The servers' progress notification interval: short enough to see one within a session.
const PROGRESS_INTERVAL: &str = "--watch-progress-notify-interval=300ms";

fn session(cmd: Cmd, acts: Vec<Act>) -> Step {
    Step::Session(Session {
        cmd,
        interactive: false,
        acts,
        ends_itself: false,
        keep_through: None,
    })
}

fn put(line: &str) -> Act {
    Act::Ctl(c(&format!("put {line}")))
}

fn wait(text: &str) -> Act {
    Act::Await(text.to_string())
}

fn input(line: &str) -> Act {
    Act::Input(line.to_string())
}

/// Standard base64 of `bytes` (how `-w json` prints keys and values).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Six revisions of history after the mark: `{mark+1}` .. `{mark+6}`. Whatever an earlier run
/// wrote is deleted first, so no sentinel value shows up early as a previous value.
fn history() -> Vec<Step> {
    let mut steps = vec![Step::Ctl(cv(&["del", "", "--from-key"])), Step::Mark];
    steps.extend(
        [
            "put w/a 1",
            "del w/a",
            "put w/b 2",
            "put x/other o",
            "put w/b 3",
            "put w/c end-0",
        ]
        .map(|l| Step::Ctl(c(l))),
    );
    steps
}

fn sessions(ctl: EtcdVersion) -> Vec<Step> {
    let exec = cv(&[
        "watch",
        "w/c",
        "--rev",
        "{mark+1}",
        "--",
        "sh",
        "-c",
        "echo \"$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\"",
    ]);
    let mut steps = vec![
        session(
            c("watch w --prefix --rev {mark+1}"),
            vec![
                wait("end-0\n"),
                put("w/d live"),
                Act::Ctl(c("del w/b")),
                put("w/c end-1"),
                wait("end-1\n"),
            ],
        ),
        session(
            c("watch w --prefix --prev-kv --rev {mark+1}"),
            vec![
                wait("end-1\n"),
                put("w/b again"),
                Act::Ctl(c("del w/d")),
                put("w/c end-2"),
                wait("end-2\n"),
            ],
        ),
        session(
            c("watch w/c --rev {mark+1}"),
            vec![wait("end-2\n"), put("w/c end-3"), wait("end-3\n")],
        ),
        session(
            c("watch w/a w/c --prev-kv --rev {mark+1}"),
            vec![put("w/b end-4"), wait("end-4\n")],
        ),
        session(
            c("watch w --prefix --prev-kv --rev {mark+1} -w json"),
            vec![wait(&base64(b"end-4"))],
        ),
        session(
            c("watch w --prefix --rev {mark+1} -w fields"),
            vec![wait("\"Value\" : \"end-4\"")],
        ),
        session(
            exec,
            vec![wait("\"end-3\""), put("w/c end-5"), wait("\"end-5\"")],
        ),
    ];
    if ctl == EtcdVersion::V3_6 {
        steps.push(Step::Session(Session {
            cmd: c("watch w --prefix --rev {mark+1} --progress-notify"),
            interactive: false,
            acts: vec![wait("progress notify:")],
            ends_itself: false,
            keep_through: Some("progress notify:".to_string()),
        }));
    }
    let mut interactive = vec![input("bogus"), input("watch")];
    if ctl == EtcdVersion::V3_4 {
        // 3.4 knows only `watch`.
        interactive.push(input("progress"));
    }
    interactive.extend([
        input("watch w --prefix --rev {mark+1}"),
        wait("end-5\n"),
        put("w/e live-1"),
        wait("live-1\n"),
    ]);
    if ctl == EtcdVersion::V3_6 {
        interactive.extend([input("progress"), wait("progress notify:")]);
    }
    interactive.extend([
        input("watch v --prev-kv --rev {mark+1}"),
        put("v 1"),
        put("v live-2"),
        wait("live-2\n"),
    ]);
    steps.push(Step::Session(Session {
        cmd: c("watch -i"),
        interactive: true,
        acts: interactive,
        ends_itself: false,
        keep_through: None,
    }));
    steps
}

/// Watches at and below a compacted revision; `watch` usage errors.
fn compacted() -> Vec<Step> {
    let cancelled = |line: &str| {
        Step::Session(Session {
            cmd: c(line),
            interactive: false,
            acts: Vec::new(),
            ends_itself: true,
            keep_through: None,
        })
    };
    vec![
        Step::Ctl(c("compaction {mark+2}")),
        cancelled("watch w --prefix --rev {mark+1}"),
        cancelled("watch w --prefix --rev {mark+1} -w json"),
        // At the compaction revision: allowed, and its events (a delete included) replayed.
        session(
            c("watch w --prefix --prev-kv --rev {mark+2}"),
            vec![wait("live-1\n")],
        ),
        Step::Ctl(c("watch")),
        Step::Ctl(c("watch w --prefix w2")),
    ]
}

fn script(ctl: EtcdVersion) -> Vec<Step> {
    let mut steps = history();
    steps.extend(sessions(ctl));
    steps.extend(compacted());
    steps
}

#[tokio::test]
async fn etcdctl_watch_prints_the_same_events_against_oxcd_as_against_etcd() {
    let mut pair = Pair::start(&[PROGRESS_INTERVAL]).await;
    let mut mismatches = Vec::new();
    for ctl in EtcdVersion::ALL {
        mismatches.extend(pair.run(ctl, Form::Url, &script(ctl)).await);
    }
    assert_none("watch", &mismatches);
}

#[test]
fn base64_matches_the_standard_alphabet_and_padding() {
    assert_eq!(base64(b"end-4"), "ZW5kLTQ=");
    assert_eq!(base64(b"w/a"), "dy9h");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
}
