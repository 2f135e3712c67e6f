//! etcd's health endpoints, with its bodies, reasons and status codes: `/health` (a JSON verdict
//! from the alarms, the leader and a read) and the `/livez` and `/readyz` check lists with their
//! per-check subpaths (`/readyz/linearizable_read`), `?exclude=` and `?verbose`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::{MemberProbe, Query, RaftView, metrics::Metrics, respond, text};
use crate::api::Member;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::AlarmType;

/// A request path this module answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/health`.
    Health,
    /// `/livez` or `/readyz`, all checks or (a subpath) only one.
    Probe(ProbeKind, Option<Check>),
}

impl Endpoint {
    /// The endpoint at `path`; `None` for other paths (including unknown check subpaths).
    pub fn from_path(path: &str) -> Option<Self> {
        if path == "/health" {
            return Some(Self::Health);
        }
        [ProbeKind::Livez, ProbeKind::Readyz]
            .into_iter()
            .find_map(|kind| match path.strip_prefix(kind.root())? {
                "" => Some(Self::Probe(kind, None)),
                sub => {
                    let name = sub.strip_prefix('/')?;
                    let check = kind.checks().iter().find(|c| c.name() == name)?;
                    Some(Self::Probe(kind, Some(*check)))
                }
            })
    }
}

/// etcd's two check registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `/livez`: the process serves local reads.
    Livez,
    /// `/readyz`: the member can serve the cluster's clients.
    Readyz,
}

impl ProbeKind {
    /// The registry's name (`livez`), also the `type` label of the check metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Livez => "livez",
            Self::Readyz => "readyz",
        }
    }

    fn root(self) -> &'static str {
        match self {
            Self::Livez => "/livez",
            Self::Readyz => "/readyz",
        }
    }

    /// The checks of this registry, in the order reports list them.
    pub fn checks(self) -> &'static [Check] {
        match self {
            Self::Livez => &[Check::SerializableRead],
            Self::Readyz => &[
                Check::DataCorruption,
                Check::SerializableRead,
                Check::LinearizableRead,
                Check::NonLearner,
            ],
        }
    }
}

/// One named check of `/livez` or `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No CORRUPT alarm is raised.
    DataCorruption,
    /// A local (serializable) read succeeds.
    SerializableRead,
    /// A linearizable read (ReadIndex through the leader) succeeds.
    LinearizableRead,
    /// This member is a voter, not a learner.
    NonLearner,
}

impl Check {
    /// etcd's name of the check (its subpath and metric label).
    pub fn name(self) -> &'static str {
        match self {
            Self::DataCorruption => "data_corruption",
            Self::SerializableRead => "serializable_read",
            Self::LinearizableRead => "linearizable_read",
            Self::NonLearner => "non_learner",
        }
    }
}

/// etcd's `/health` verdict; serializes as `{"health":"true","reason":""}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// `"true"` or `"false"` (strings, as etcd writes them).
    pub health: &'static str,
    /// Why not healthy; empty when healthy.
    pub reason: String,
}

impl Health {
    /// A healthy verdict.
    pub fn ok() -> Self {
        Self {
            health: "true",
            reason: String::new(),
        }
    }

    /// An unhealthy verdict for `reason`.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            health: "false",
            reason: reason.into(),
        }
    }

    /// True for a healthy verdict.
    pub fn is_ok(&self) -> bool {
        self.health == "true"
    }

    /// The HTTP answer: 200 with the JSON, or 503 with the JSON and a newline (Go's `http.Error`).
    pub fn response(&self) -> Response<Full<Bytes>> {
        let json = serde_json::to_string(self).unwrap_or_default();
        if self.is_ok() {
            respond(StatusCode::OK, super::TEXT_PLAIN, json)
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, json + "\n")
        }
    }
}

/// The reason `/health` gives for the first raised alarm not in `excluded`, if any.
pub fn alarm_reason(alarms: &[AlarmType], excluded: &[&str]) -> Option<&'static str> {
    let alarm = alarms
        .iter()
        .find(|alarm| !excluded.contains(&alarm.as_str_name()))?;
    Some(match alarm {
        AlarmType::Nospace => "ALARM NOSPACE",
        AlarmType::Corrupt => "ALARM CORRUPT",
        AlarmType::None => "ALARM UNKNOWN",
    })
}

/// The `/health` checks that need no read: alarms first, then (unless serializable) a leader.
pub fn local_health(
    alarms: &[AlarmType],
    excluded: &[&str],
    view: &RaftView,
    serializable: bool,
) -> Health {
    if let Some(reason) = alarm_reason(alarms, excluded) {
        return Health::failed(reason);
    }
    if !serializable && !view.has_leader() {
        return Health::failed("RAFT NO LEADER");
    }
    Health::ok()
}

/// The verdict on a failed `/health` read.
pub fn range_failure(error: &EtcdError) -> Health {
    Health::failed(format!("RANGE ERROR:{error}"))
}

/// A read as etcd's health checks do it: local state only, or a linearizable read as well.
async fn read(member: &Member, view: &RaftView, serializable: bool) -> Result<(), EtcdError> {
    if view.stopped {
        return Err(EtcdError::Stopped);
    }
    if !serializable {
        member.linearizable().await?;
    }
    Ok(())
}

/// Answers `/health`: `?exclude=<ALARM>` ignores an alarm, `?serializable=true` skips the leader
/// check and the linearizable read.
pub async fn health(
    member: &Member,
    probe: &dyn MemberProbe,
    metrics: &Metrics,
    query: &Query,
) -> Response<Full<Bytes>> {
    let excluded: Vec<&str> = query.values("exclude").collect();
    let serializable = query.get("serializable") == Some("true");
    let view = RaftView::of(&member.raft);
    let mut verdict = local_health(&probe.active_alarms(), &excluded, &view, serializable);
    if verdict.is_ok()
        && let Err(error) = read(member, &view, serializable).await
    {
        verdict = range_failure(&error);
    }
    if !verdict.is_ok() {
        tracing::warn!(reason = %verdict.reason, "serving /health false");
    }
    metrics.record_health(verdict.is_ok());
    verdict.response()
}

/// Runs one check; the error is the text etcd reports for it.
async fn run_check(
    check: Check,
    member: &Member,
    alarms: &[AlarmType],
    view: &RaftView,
) -> Result<(), String> {
    match check {
        Check::DataCorruption if alarms.contains(&AlarmType::Corrupt) => {
            Err("alarm activated: CORRUPT".into())
        }
        Check::DataCorruption => Ok(()),
        Check::SerializableRead => read(member, view, true).await.map_err(|e| e.to_string()),
        Check::LinearizableRead => read(member, view, false).await.map_err(|e| e.to_string()),
        Check::NonLearner if view.is_learner => Err("not supported for learner".into()),
        Check::NonLearner => Ok(()),
    }
}

/// The combined outcome of a check list: every line, and whether all passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// True when every check passed.
    pub ok: bool,
    /// One line per check: `[+]name ok` or `[-]name failed: <error>`.
    pub lines: String,
}

/// Builds etcd's report from check outcomes.
pub fn report(outcomes: &[(Check, Result<(), String>)]) -> Report {
    let mut lines = String::new();
    for (check, outcome) in outcomes {
        match outcome {
            Ok(()) => lines.push_str(&format!("[+]{} ok\n", check.name())),
            Err(e) => lines.push_str(&format!("[-]{} failed: {e}\n", check.name())),
        }
    }
    Report {
        ok: outcomes.iter().all(|(_, o)| o.is_ok()),
        lines,
    }
}

/// The HTTP answer to a report: 200 `ok` (after the lines if `verbose`), or 503 with the lines.
pub fn report_response(report: &Report, verbose: bool) -> Response<Full<Bytes>> {
    if !report.ok {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", report.lines),
        );
    }
    let body = if verbose {
        format!("{}ok\n", report.lines)
    } else {
        "ok\n".to_string()
    };
    text(StatusCode::OK, body)
}

/// Answers `/livez`, `/readyz` (`?exclude=<check>` skips a check, `?verbose` lists them) and
/// their per-check subpaths.
pub async fn probe(
    member: &Member,
    probe: &dyn MemberProbe,
    metrics: &Metrics,
    kind: ProbeKind,
    only: Option<Check>,
    query: &Query,
) -> Response<Full<Bytes>> {
    let checks: Vec<Check> = match only {
        Some(check) => vec![check],
        None => {
            let excluded: Vec<&str> = query.values("exclude").collect();
            for name in &excluded {
                if !kind.checks().iter().any(|c| c.name() == *name) {
                    tracing::warn!(check = %name, path = kind.root(), "unknown health check cannot be excluded");
                }
            }
            kind.checks()
                .iter()
                .copied()
                .filter(|c| !excluded.contains(&c.name()))
                .collect()
        }
    };
    let alarms = probe.active_alarms();
    let view = RaftView::of(&member.raft);
    let mut outcomes = Vec::with_capacity(checks.len());
    for check in checks {
        let outcome = run_check(check, member, &alarms, &view).await;
        metrics.record_check(kind.name(), check.name(), outcome.is_ok());
        outcomes.push((check, outcome));
    }
    let report = report(&outcomes);
    if !report.ok {
        tracing::error!(path = kind.root(), reason = %report.lines, "health check failed");
    }
    report_response(&report, query.has("verbose"))
}

#[cfg(test)]
mod tests;
