//! Version skew in tests: members that advertise another oxcd release version (the server's
//! test-only `OXCD_TEST_ADVERTISED_VERSION`, since one build has one version), that serve
//! `/version` on a metrics port of their own (members of one cluster would otherwise all want
//! the default 2381), and that are expected to refuse a cluster and exit.

use std::process::ExitStatus;
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::oxcd::OxcdServer;

/// The server's variable overriding the version a member advertises.
pub const ADVERTISED_VERSION_VAR: &str = "OXCD_TEST_ADVERTISED_VERSION";
/// Between looks at a process that should exit.
const EXIT_POLL: Duration = Duration::from_millis(100);

const METRICS_FLAG: &str = "--listen-metrics-urls";

fn skew_err(what: impl std::fmt::Display) -> HarnessError {
    HarnessError::Cluster(what.to_string())
}

impl OxcdServer {
    /// Makes the member advertise `version` from its next start on.
    pub fn advertise_version(&mut self, version: &str) {
        self.env.retain(|(k, _)| k != ADVERTISED_VERSION_VAR);
        self.env
            .push((ADVERTISED_VERSION_VAR.to_string(), version.to_string()));
    }

    /// Serves metrics, health and `/version` on a free loopback port from the next start on.
    pub fn serve_metrics(&mut self) -> Result<u16> {
        let port = crate::net::free_port()?;
        self.extra_args.push(METRICS_FLAG.to_string());
        self.extra_args.push(format!("http://127.0.0.1:{port}"));
        Ok(port)
    }

    /// The metrics port chosen by [`OxcdServer::serve_metrics`].
    pub fn metrics_port(&self) -> Option<u16> {
        let at = self.extra_args.iter().position(|a| a == METRICS_FLAG)?;
        self.extra_args
            .get(at + 1)?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    }

    /// The member's `GET /version` answer, decoded.
    pub async fn versions(&self) -> Result<serde_json::Value> {
        let body = self.metrics_get("/version").await?;
        serde_json::from_str(&body).map_err(|e| skew_err(format!("/version body {body:?}: {e}")))
    }

    /// The body of `GET path` on the member's metrics port.
    pub async fn metrics_get(&self, path: &str) -> Result<String> {
        let port = self
            .metrics_port()
            .ok_or_else(|| skew_err(format!("{} serves no metrics port", self.name())))?;
        Ok(crate::http::http_request(port, "GET", path).await?.body)
    }

    /// Waits until `/version` reports `field` equal to `expected` (as JSON), within `timeout`.
    pub async fn wait_version_field(
        &self,
        field: &str,
        expected: serde_json::Value,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.versions().await.ok();
            if seen.as_ref().and_then(|v| v.get(field)) == Some(&expected) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(skew_err(format!(
                    "{}: /version never had {field} = {expected}; last answer {seen:?}",
                    self.name()
                )));
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Waits until the started process exits by itself, within `timeout`; returns how it ended
    /// and the end of its log.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<(ExitStatus, String)> {
        let name = self.name().to_string();
        let deadline = tokio::time::Instant::now() + timeout;
        let process = self
            .process
            .as_mut()
            .ok_or(HarnessError::NotStarted { name: name.clone() })?;
        loop {
            if let Some(status) = process.exit_status()? {
                return Ok((status, process.log_tail(40)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(skew_err(format!(
                    "{name} still runs after {timeout:?}:\n{}",
                    process.log_tail(40)
                )));
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }
}
