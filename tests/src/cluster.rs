//! A multi-member oxcd cluster under test: every member a real process on loopback ports,
//! bootstrapped like etcd (`--initial-cluster`), grown with `member add` and
//! `--initial-cluster-state existing`, and killed and removed with the cluster.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, MemberAddOptions};

use crate::error::{HarnessError, Result};
use crate::net::free_ports;
use crate::oxcd::OxcdServer;

/// How long a cluster may take to agree on a leader or converge.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

fn cluster_err(what: impl std::fmt::Display) -> HarnessError {
    HarnessError::Cluster(what.to_string())
}

/// A cluster of oxcd members; members may be stopped (killed) and started again.
#[derive(Debug)]
pub struct OxcdCluster {
    members: Vec<OxcdServer>,
    /// Names of learners started but not yet promoted (not used as client endpoints).
    learners: std::collections::BTreeSet<String>,
    extra_args: Vec<String>,
    next_name: usize,
}

impl OxcdCluster {
    /// Starts `size` members (`m1`...) with `extra_args` and waits until each serves.
    pub async fn start(size: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_configured(size, extra_args, |_| {}).await
    }

    /// Like [`OxcdCluster::start`], with `configure` applied to each member before it starts
    /// (e.g. [`OxcdServer::use_tls`]).
    pub async fn start_configured(
        size: usize,
        extra_args: &[&str],
        configure: impl Fn(&mut OxcdServer),
    ) -> Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..size {
            let [client, peer] = free_ports::<2>()?;
            ports.push((client, peer));
        }
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.into_iter().enumerate() {
            let name = format!("m{}", i + 1);
            let mut member = OxcdServer::prepare_member(&name, client, peer, &[], extra_args)?;
            configure(&mut member);
            members.push(member);
        }
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name(), m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for member in &mut members {
            member.set_cluster_args(&["--initial-cluster", &initial]);
            member.spawn()?;
        }
        for member in &mut members {
            member.wait_serving().await?;
        }
        let cluster = Self {
            members,
            learners: Default::default(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            next_name: size + 1,
        };
        cluster.wait_published().await?;
        Ok(cluster)
    }

    /// Waits until every member has published its client URLs (etcd's "started" members).
    pub async fn wait_published(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut client = self.client().await?;
            if let Ok(list) = client.member_list().await
                && list.members().iter().all(|m| !m.client_urls().is_empty())
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(cluster_err("members never published their client URLs"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The members, in the order they were started.
    pub fn members(&self) -> &[OxcdServer] {
        &self.members
    }

    /// Member `i`.
    pub fn member(&mut self, i: usize) -> &mut OxcdServer {
        &mut self.members[i]
    }

    /// Client URLs of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.process().is_some() && !self.learners.contains(m.name()))
            .map(|m| m.endpoint().to_string())
            .collect()
    }

    /// A client balancing over every running member.
    pub async fn client(&self) -> Result<Client> {
        let options = match self.members.first() {
            Some(m) => m.connect_options(),
            None => ConnectOptions::new(),
        };
        Client::connect(self.endpoints(), Some(options))
            .await
            .map_err(|source| HarnessError::Connect {
                endpoint: self.endpoints().join(","),
                source,
            })
    }

    /// The index of the member that currently leads, as the running members report it.
    pub async fn leader(&self) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            for (i, member) in self.members.iter().enumerate() {
                if member.process().is_none() {
                    continue;
                }
                let Ok(mut client) = member.client().await else {
                    continue;
                };
                if let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_secs(2), client.status()).await
                {
                    let id = status.header().map_or(0, |h| h.member_id());
                    if status.leader() == id && id != 0 {
                        return Ok(i);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(cluster_err("no member reports itself leader"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adds a member with `member add` (as a learner when `learner`), starts it with
    /// `--initial-cluster-state existing` and waits until it serves. Returns its index.
    pub async fn add_member(&mut self, learner: bool) -> Result<usize> {
        let mut member = self.prepare_join(learner).await?;
        member.spawn()?;
        if learner {
            // Its client port opens once it has joined; clients use it after promotion.
            self.learners.insert(member.name().to_string());
        } else {
            member.wait_serving().await?;
        }
        self.members.push(member);
        Ok(self.members.len() - 1)
    }

    /// Adds a member with `member add` and returns it prepared (flags for
    /// `--initial-cluster-state existing`) but not started, and not among [`Self::members`]:
    /// for members expected to refuse the cluster, or to be configured first.
    pub async fn prepare_join(&mut self, learner: bool) -> Result<OxcdServer> {
        let [client_port, peer_port] = free_ports::<2>()?;
        let name = format!("m{}", self.next_name);
        self.next_name += 1;
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut client = self.client().await?;
        let options = learner.then(|| MemberAddOptions::new().with_is_learner());
        let added = client
            .member_add([peer_url.clone()], options)
            .await
            .map_err(|e| cluster_err(format!("member add: {e}")))?;
        let mut initial: Vec<String> = added
            .member_list()
            .iter()
            .filter(|m| !m.name().is_empty())
            .map(|m| format!("{}={}", m.name(), m.peer_urls().join(",")))
            .collect();
        initial.push(format!("{name}={peer_url}"));
        let initial = initial.join(",");
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        OxcdServer::prepare_member(
            &name,
            client_port,
            peer_port,
            &[
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "existing",
            ],
            &extra,
        )
    }

    /// The member id of member `i`, as the cluster lists it.
    pub async fn member_id(&self, i: usize) -> Result<u64> {
        let mut client = self.client().await?;
        let list = client
            .member_list()
            .await
            .map_err(|e| cluster_err(format!("member list: {e}")))?;
        let url = self.members[i].peer_url();
        list.members()
            .iter()
            .find(|m| m.peer_urls().contains(&url))
            .map(|m| m.id())
            .ok_or_else(|| cluster_err(format!("{} is not in the member list", url)))
    }

    /// Promotes learner `i`, retrying while it is still catching up.
    pub async fn promote(&mut self, i: usize) -> Result<()> {
        let id = self.member_id(i).await?;
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut client = self.client().await?;
            match client.member_promote(id).await {
                Ok(_) => break,
                Err(e) if e.to_string().contains("in sync with leader") => {}
                Err(e) => return Err(cluster_err(format!("member promote: {e}"))),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(cluster_err("the learner never caught up"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.members[i].wait_serving().await?;
        let name = self.members[i].name().to_string();
        self.learners.remove(&name);
        Ok(())
    }

    /// Removes member `i` from the cluster and stops it.
    pub async fn remove(&mut self, i: usize) -> Result<OxcdServer> {
        let id = self.member_id(i).await?;
        let mut client = self.client().await?;
        client
            .member_remove(id)
            .await
            .map_err(|e| cluster_err(format!("member remove: {e}")))?;
        let mut member = self.members.remove(i);
        member.kill()?;
        Ok(member)
    }

    /// Waits until every running member has applied the same revision, then returns each
    /// one's HashKV at it; equal hashes mean equal stores.
    pub async fn converged_hashes(&self) -> Result<Vec<(String, u32)>> {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut revs = Vec::new();
            for member in self.members.iter().filter(|m| m.process().is_some()) {
                let mut client = member.client().await?;
                let rev = client
                    .get("oxcd-harness-converge-probe", None)
                    .await
                    .map_err(|e| cluster_err(format!("{}: {e}", member.name())))?
                    .header()
                    .map_or(0, |h| h.revision());
                revs.push(rev);
            }
            let max = revs.iter().copied().max().unwrap_or(0);
            if revs.iter().all(|r| *r == max) {
                let mut hashes = Vec::new();
                for member in self.members.iter().filter(|m| m.process().is_some()) {
                    let mut client = member.client().await?;
                    let hash = client
                        .hash_kv(max)
                        .await
                        .map_err(|e| cluster_err(format!("{}: hashkv: {e}", member.name())))?;
                    hashes.push((member.name().to_string(), hash.hash()));
                }
                return Ok(hashes);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(cluster_err(format!("revisions never converged: {revs:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
