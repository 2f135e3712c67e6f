//! Runs an etcdctl script against a fresh etcd 3.6 and a fresh oxcd side by side: every step on
//! both servers, its outputs normalized ([`super::normalize`]) and compared. Steps are plain
//! commands, long-running sessions (`watch`, `lease keep-alive`), revision marks and lease
//! expiry waits; arguments may hold placeholders resolved per server:
//! `{lease:NAME}` (a lease this server granted), `{dir}` (a scratch directory) and `{mark}` /
//! `{mark+N}` (etcd's revision at the last [`Step::Mark`], used for both servers).

use std::time::Duration;

use etcd_client::Client;
use oxcd_tests::ctl_session::CtlSession;
use oxcd_tests::{CtlOutput, EtcdServer, EtcdVersion, OxcdServer, etcdctl};
use tempfile::TempDir;

use super::normalize::{self, Subs};

/// How long a session waits for each expected piece of output.
const AWAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session that ends by itself is given to do so.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Step::AwaitExpiry`] polls for a lease to expire.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two expiry polls.
const EXPIRY_POLL: Duration = Duration::from_millis(250);

/// One etcdctl invocation: its words, with placeholders.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub args: Vec<String>,
    /// For a `lease grant`: the name later `{lease:NAME}` placeholders use for its lease.
    pub lease_name: Option<String>,
}

/// A command from whitespace-separated words.
pub fn c(line: &str) -> Cmd {
    cv(&line.split_whitespace().collect::<Vec<_>>())
}

/// A command from explicit words (for words with spaces).
pub fn cv(words: &[&str]) -> Cmd {
    Cmd {
        args: words.iter().map(|w| w.to_string()).collect(),
        lease_name: None,
    }
}

/// What a session does while etcdctl runs.
#[derive(Debug, Clone)]
pub enum Act {
    /// A line on etcdctl's standard input.
    Input(String),
    /// Another etcdctl command run to completion (typically a write); its output is compared.
    Ctl(Cmd),
    /// Waits until this text appears on the session's standard output.
    Await(String),
}

/// A long-running etcdctl.
#[derive(Debug, Clone)]
pub struct Session {
    pub cmd: Cmd,
    pub interactive: bool,
    pub acts: Vec<Act>,
    /// True when etcdctl is expected to exit by itself (e.g. a cancelled watch).
    pub ends_itself: bool,
    /// Keep standard output only up to the first line containing this (periodic output).
    pub keep_through: Option<String>,
}

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    Ctl(Cmd),
    /// Records etcd's current revision for `{mark}`.
    Mark,
    Session(Session),
    /// Waits (bounded) until the named lease has expired on each server; compares nothing.
    AwaitExpiry(&'static str),
}

/// How etcdctl is pointed at a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `--endpoints=http://127.0.0.1:PORT`, as everywhere else in the suite.
    Url,
    /// `--endpoints=127.0.0.1:PORT`: etcdctl 3.4 then sends a valid `:authority` when it dials
    /// one endpoint for a Maintenance call (with a URL it sends the URL itself).
    HostPort,
}

/// What one command printed, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: Vec<String>,
}

/// Everything one step produced on one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Outcome {
    seen: Vec<Seen>,
    notes: Vec<String>,
}

impl Outcome {
    fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.seen {
            out.push_str(&format!(
                "\n      exit {:?}\n      stdout: {:?}\n      stderr: {:?}",
                s.exit, s.stdout, s.stderr
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("\n      note: {n}"));
        }
        out
    }
}

/// One server under test and what its output is normalized by.
pub struct Side {
    label: &'static str,
    url: String,
    client: Client,
    scratch: TempDir,
    subs: Subs,
    leases: Vec<(String, i64)>,
}

impl Side {
    async fn new(label: &'static str, url: &str, client: Client) -> Self {
        let mut client = client;
        let header = client
            .get("etcdctl-more-ids", None)
            .await
            .expect("read the cluster and member ids")
            .header()
            .cloned()
            .expect("a response header");
        let scratch = tempfile::Builder::new()
            .prefix("oxcd-etcdctl-more-")
            .tempdir()
            .expect("scratch dir");
        let mut subs = Subs::default();
        subs.add_id(header.member_id(), "<member>");
        subs.add_id(header.cluster_id(), "<cluster>");
        subs.add(url, "<url>");
        subs.add(url.trim_start_matches("http://"), "<hostport>");
        subs.add(&scratch.path().display().to_string(), "<dir>");
        Self {
            label,
            url: url.to_string(),
            client,
            scratch,
            subs,
            leases: Vec::new(),
        }
    }

    /// An etcd client of this server, for setup the script does not compare.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn endpoint(&self, form: Form) -> String {
        match form {
            Form::Url => self.url.clone(),
            Form::HostPort => self.url.trim_start_matches("http://").to_string(),
        }
    }

    /// `word` with its placeholders filled in for this server.
    fn resolve(&self, word: &str, mark: i64) -> String {
        let mut out = String::new();
        let mut rest = word;
        while let Some(open) = rest.find('{') {
            let Some(len) = rest[open..].find('}') else {
                break;
            };
            out.push_str(&rest[..open]);
            let token = &rest[open + 1..open + len];
            out.push_str(
                &self
                    .fill(token, mark)
                    .unwrap_or_else(|| format!("{{{token}}}")),
            );
            rest = &rest[open + len + 1..];
        }
        out.push_str(rest);
        out
    }

    fn fill(&self, token: &str, mark: i64) -> Option<String> {
        if token == "dir" {
            return Some(self.scratch.path().display().to_string());
        }
        if let Some(name) = token.strip_prefix("lease:") {
            // The latest lease of that name (a script may run once per etcdctl version).
            let (_, id) = self.leases.iter().rev().find(|(n, _)| n == name)?;
            return Some(format!("{id:x}"));
        }
        let offset = match token.strip_prefix("mark") {
            Some("") => 0,
            Some(plus) => plus.strip_prefix('+')?.parse::<i64>().ok()?,
            None => return None,
        };
        Some((mark + offset).to_string())
    }

    fn args(&self, cmd: &Cmd, mark: i64) -> Vec<String> {
        cmd.args.iter().map(|a| self.resolve(a, mark)).collect()
    }

    /// Registers the lease a successful `lease grant` printed, as `name` (or `#N`).
    fn capture_grant(&mut self, args: &[String], out: &CtlOutput, name: Option<&str>) {
        if !(args.len() >= 2 && args[0] == "lease" && args[1] == "grant" && out.success()) {
            return;
        }
        let Some(id) = normalize::granted_lease(&out.stdout) else {
            return;
        };
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", self.leases.len() + 1));
        self.subs.add_id(id as u64, &format!("<lease:{name}>"));
        self.leases.push((name, id));
    }

    async fn run(&self, ctl: EtcdVersion, form: Form, args: &[String]) -> CtlOutput {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdctl(ctl, &self.endpoint(form), &words)
            .await
            .unwrap_or_else(|e| panic!("etcdctl runs against {}: {e}", self.label))
    }

    fn seen(&self, ctl: EtcdVersion, args: &[String], out: &CtlOutput, vary_rev: bool) -> Seen {
        normalize::seen(ctl, args, out, &self.subs, vary_rev)
    }

    async fn session(&self, ctl: EtcdVersion, form: Form, s: &Session, at: (i64, bool)) -> Outcome {
        let (mark, vary_rev) = at;
        let mut outcome = Outcome::default();
        let args = self.args(&s.cmd, mark);
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut session = CtlSession::spawn(ctl, &self.endpoint(form), &words, s.interactive)
            .unwrap_or_else(|e| panic!("etcdctl starts against {}: {e}", self.label));
        for act in &s.acts {
            match act {
                Act::Input(line) => {
                    if let Err(e) = session.send_line(&self.resolve(line, mark)).await {
                        outcome
                            .notes
                            .push(format!("input {line:?} not written: {e}"));
                    }
                }
                Act::Ctl(cmd) => {
                    let args = self.args(cmd, mark);
                    let out = self.run(ctl, form, &args).await;
                    outcome.seen.push(self.seen(ctl, &args, &out, vary_rev));
                }
                Act::Await(text) => {
                    let text = self.resolve(text, mark);
                    if !session.wait_for(&text, AWAIT_TIMEOUT).await {
                        outcome.notes.push(format!("{text:?} never printed"));
                    }
                }
            }
        }
        let exit_within = if s.ends_itself {
            EXIT_TIMEOUT
        } else {
            Duration::ZERO
        };
        let mut out = session
            .finish(exit_within)
            .await
            .unwrap_or_else(|e| panic!("etcdctl session against {}: {e}", self.label));
        if let Some(keep) = &s.keep_through {
            out.stdout = normalize::keep_through(&out.stdout, keep);
        }
        outcome
            .seen
            .insert(0, self.seen(ctl, &args, &out, vary_rev));
        outcome
    }

    async fn await_expiry(&self, ctl: EtcdVersion, form: Form, name: &str) -> Outcome {
        let args = self.args(&c(&format!("lease timetolive {{lease:{name}}}")), 0);
        let deadline = tokio::time::Instant::now() + EXPIRY_TIMEOUT;
        loop {
            let out = self.run(ctl, form, &args).await;
            if out.stdout.contains("already expired") {
                return Outcome::default();
            }
            if tokio::time::Instant::now() >= deadline {
                return Outcome {
                    seen: Vec::new(),
                    notes: vec![format!("lease {name} not expired: {:?}", out.stdout)],
                };
            }
            tokio::time::sleep(EXPIRY_POLL).await;
        }
    }
}

/// A fresh etcd 3.6 and a fresh oxcd started with the same flags.
pub struct Pair {
    // Declared before the servers: the clients go first.
    pub etcd: Side,
    pub oxcd: Side,
    mark: i64,
    /// True when the servers' revisions legitimately differ (then they are normalized too).
    pub vary_revisions: bool,
    _servers: (EtcdServer, OxcdServer),
}

impl Pair {
    /// Starts both servers with `flags` (etcd syntax).
    pub async fn start(flags: &[&str]) -> Self {
        let (etcd, oxcd) = tokio::join!(
            EtcdServer::start_with(EtcdVersion::V3_6, flags),
            OxcdServer::start_with(flags)
        );
        let (etcd, oxcd) = (etcd.expect("etcd starts"), oxcd.expect("oxcd starts"));
        let etcd_client = etcd.client().await.expect("etcd client");
        let oxcd_client = oxcd.client().await.expect("oxcd client");
        Self {
            etcd: Side::new("etcd", etcd.endpoint(), etcd_client).await,
            oxcd: Side::new("oxcd", oxcd.endpoint(), oxcd_client).await,
            mark: 0,
            vary_revisions: false,
            _servers: (etcd, oxcd),
        }
    }

    /// Runs `steps` with etcdctl `ctl`; returns every step whose outcome differed, rendered.
    pub async fn run(&mut self, ctl: EtcdVersion, form: Form, steps: &[Step]) -> Vec<String> {
        let mut mismatches = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let (on_etcd, on_oxcd) = self.step(ctl, form, step).await;
            if on_etcd != on_oxcd {
                mismatches.push(format!(
                    "#{index} etcdctl {} ({form:?}) {}\n  etcd:{}\n  oxcd:{}",
                    ctl.minor(),
                    describe(step),
                    on_etcd.render(),
                    on_oxcd.render()
                ));
            }
        }
        mismatches
    }

    async fn step(&mut self, ctl: EtcdVersion, form: Form, step: &Step) -> (Outcome, Outcome) {
        let (mark, vary) = (self.mark, self.vary_revisions);
        match step {
            Step::Ctl(cmd) => {
                let (etcd_args, oxcd_args) = (self.etcd.args(cmd, mark), self.oxcd.args(cmd, mark));
                let (on_etcd, on_oxcd) = tokio::join!(
                    self.etcd.run(ctl, form, &etcd_args),
                    self.oxcd.run(ctl, form, &oxcd_args)
                );
                self.etcd
                    .capture_grant(&etcd_args, &on_etcd, cmd.lease_name.as_deref());
                self.oxcd
                    .capture_grant(&oxcd_args, &on_oxcd, cmd.lease_name.as_deref());
                let one = |side: &Side, args: &[String], out: &CtlOutput| Outcome {
                    seen: vec![side.seen(ctl, args, out, vary)],
                    notes: Vec::new(),
                };
                (
                    one(&self.etcd, &etcd_args, &on_etcd),
                    one(&self.oxcd, &oxcd_args, &on_oxcd),
                )
            }
            Step::Mark => {
                let resp = self.etcd.client.get("etcdctl-more-mark", None).await;
                self.mark = resp
                    .ok()
                    .and_then(|r| r.header().map(|h| h.revision()))
                    .expect("etcd's revision");
                (Outcome::default(), Outcome::default())
            }
            Step::Session(s) => tokio::join!(
                self.etcd.session(ctl, form, s, (mark, vary)),
                self.oxcd.session(ctl, form, s, (mark, vary))
            ),
            Step::AwaitExpiry(name) => tokio::join!(
                self.etcd.await_expiry(ctl, form, name),
                self.oxcd.await_expiry(ctl, form, name)
            ),
        }
    }
}

/// `lease grant <args>` whose lease is known as `name` in later `{lease:NAME}` placeholders.
pub fn grant(name: &str, args: &str) -> Step {
    let mut cmd = c(&format!("lease grant {args}"));
    cmd.lease_name = Some(name.to_string());
    Step::Ctl(cmd)
}

fn describe(step: &Step) -> String {
    match step {
        Step::Ctl(cmd) => format!("{:?}", cmd.args),
        Step::Mark => "mark".to_string(),
        Step::Session(s) => format!(
            "session {:?} (stdin: {}) acts {:?}",
            s.cmd.args, s.interactive, s.acts
        ),
        Step::AwaitExpiry(name) => format!("await expiry of lease {name}"),
    }
}

/// Panics with every mismatch of `mismatches`, which came from `what`.
pub fn assert_none(what: &str, mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{} of the {what} steps printed differently against oxcd than against etcd 3.6:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
