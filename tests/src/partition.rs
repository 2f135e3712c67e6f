//! Network partitions between members on loopback, made and undone by the test: the isolated
//! member runs in a cgroup of its own from its start ([`OxcdServer::use_own_cgroup`]; sockets
//! keep the cgroup they were created in), and iptables rules (on `lo`, naming only this test's
//! ports and cgroup) drop its packets to the other members' peer ports and everything to and
//! from its own peer port. Clients still reach it, so a test can see how the minority answers.
//! Needs root (as CI here runs); the rules are removed when the partition is healed or dropped,
//! also when the test fails.

use std::process::Command;

use crate::error::{HarnessError, Result};
use crate::oxcd::OxcdServer;

pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";

fn fail(what: impl std::fmt::Display) -> HarnessError {
    HarnessError::Cluster(format!("partition: {what}"))
}

fn iptables(action: &str, rule: &[String]) -> Result<()> {
    let out = Command::new("iptables")
        .arg(action)
        .arg("OUTPUT")
        .args(rule)
        .output()
        .map_err(|e| fail(format!("iptables: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "iptables {action} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// One member cut off from the others until healed.
#[derive(Debug)]
pub struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    /// Cuts `member` off from `others` (their peer traffic in both directions).
    pub fn isolate(member: &OxcdServer, others: &[&OxcdServer]) -> Result<Self> {
        let cgroup = member
            .cgroup()
            .ok_or_else(|| fail(format!("{} has no cgroup of its own", member.name())))?;
        let path = cgroup
            .strip_prefix(CGROUP_ROOT)
            .map_err(fail)?
            .to_string_lossy()
            .into_owned();
        let mut partition = Self { rules: Vec::new() };
        let own = member.peer_port().to_string();
        let tag = format!("oxcd-test-{}", member.peer_port());
        let mut rules: Vec<Vec<String>> = vec![
            vec!["--dport".into(), own.clone()],
            vec!["--sport".into(), own],
        ];
        for other in others {
            rules.push(vec![
                "-m".into(),
                "cgroup".into(),
                "--path".into(),
                path.clone(),
                "--dport".into(),
                other.peer_port().to_string(),
            ]);
        }
        for rule in rules {
            let mut full: Vec<String> = vec!["-o".into(), "lo".into(), "-p".into(), "tcp".into()];
            full.extend(rule);
            full.extend([
                "-m".into(),
                "comment".into(),
                "--comment".into(),
                tag.clone(),
                "-j".into(),
                "DROP".into(),
            ]);
            iptables("-A", &full)?;
            partition.rules.push(full);
        }
        Ok(partition)
    }

    /// Lets traffic through again.
    pub fn heal(mut self) -> Result<()> {
        self.undo()
    }

    fn undo(&mut self) -> Result<()> {
        let mut first_error = None;
        for rule in std::mem::take(&mut self.rules) {
            if let Err(e) = iptables("-D", &rule) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}
