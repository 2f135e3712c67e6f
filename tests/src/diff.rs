//! Differential testing: the same requests to the reference etcd and to oxcd, responses compared
//! after normalizing what legitimately differs (cluster id, member id, raft term).
//!
//! Requests are sent with oxcd's generated gRPC client, which encodes etcd's wire format; both
//! servers therefore receive identical bytes.

use std::fmt::Debug;

use oxcd_server::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, ResponseHeader, TxnRequest,
    kv_client::KvClient,
};
use tonic::transport::Channel;

use crate::error::{HarnessError, Result};
use crate::etcd::{EtcdServer, EtcdVersion};
use crate::oxcd::OxcdServer;

/// One request of a differential script.
#[derive(Debug, Clone)]
pub enum Step {
    /// KV.Range.
    Range(RangeRequest),
    /// KV.Put.
    Put(PutRequest),
    /// KV.DeleteRange.
    Delete(DeleteRangeRequest),
    /// KV.Txn.
    Txn(TxnRequest),
    /// KV.Compact.
    Compact(CompactionRequest),
}

/// What a server answered, normalized: the response's debug form or the status code and message.
pub type Outcome = std::result::Result<String, (tonic::Code, String)>;

/// A step where the two servers disagreed.
#[derive(Debug)]
pub struct Mismatch {
    /// Position in the script.
    pub index: usize,
    /// The request.
    pub step: Step,
    /// etcd's answer.
    pub etcd: Outcome,
    /// oxcd's answer.
    pub oxcd: Outcome,
}

/// Clears the fields of a top-level header that differ between any two clusters.
pub fn normalize_header(header: &mut Option<ResponseHeader>) {
    if let Some(h) = header {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn outcome<T: Debug>(
    result: std::result::Result<tonic::Response<T>, tonic::Status>,
    header: impl FnOnce(&mut T) -> &mut Option<ResponseHeader>,
) -> Outcome {
    match result {
        Ok(resp) => {
            let mut resp = resp.into_inner();
            normalize_header(header(&mut resp));
            Ok(format!("{resp:?}"))
        }
        Err(status) => Err((status.code(), status.message().to_string())),
    }
}

/// Sends `step` to one server.
pub async fn send(kv: &mut KvClient<Channel>, step: &Step) -> Outcome {
    match step.clone() {
        Step::Range(r) => outcome(kv.range(r).await, |r| &mut r.header),
        Step::Put(p) => outcome(kv.put(p).await, |r| &mut r.header),
        Step::Delete(d) => outcome(kv.delete_range(d).await, |r| &mut r.header),
        Step::Txn(t) => outcome(kv.txn(t).await, |r| &mut r.header),
        Step::Compact(c) => outcome(kv.compact(c).await, |r| &mut r.header),
    }
}

/// A fresh etcd 3.6 and a fresh oxcd, each with a KV client.
pub struct Pair {
    /// The reference server.
    pub etcd: EtcdServer,
    /// The server under test.
    pub oxcd: OxcdServer,
    etcd_kv: KvClient<Channel>,
    oxcd_kv: KvClient<Channel>,
}

async fn kv_client(endpoint: &str) -> Result<KvClient<Channel>> {
    let channel = Channel::from_shared(endpoint.to_string())
        .map_err(|e| HarnessError::Grpc {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?
        .connect()
        .await
        .map_err(|e| HarnessError::Grpc {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    Ok(KvClient::new(channel).max_decoding_message_size(usize::MAX))
}

impl Pair {
    /// Starts both servers.
    pub async fn start() -> Result<Self> {
        let (etcd, oxcd) = tokio::join!(EtcdServer::start(EtcdVersion::V3_6), OxcdServer::start());
        let (etcd, oxcd) = (etcd?, oxcd?);
        let etcd_kv = kv_client(etcd.endpoint()).await?;
        let oxcd_kv = kv_client(oxcd.endpoint()).await?;
        Ok(Self {
            etcd,
            oxcd,
            etcd_kv,
            oxcd_kv,
        })
    }

    /// Sends `step` to both servers and returns both answers.
    pub async fn both(&mut self, step: &Step) -> (Outcome, Outcome) {
        let etcd = send(&mut self.etcd_kv, step).await;
        let oxcd = send(&mut self.oxcd_kv, step).await;
        (etcd, oxcd)
    }

    /// Runs `steps` in order against both servers; returns every step where they disagreed.
    pub async fn run(&mut self, steps: &[Step]) -> Vec<Mismatch> {
        let mut mismatches = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let (etcd, oxcd) = self.both(step).await;
            if etcd != oxcd {
                mismatches.push(Mismatch {
                    index,
                    step: step.clone(),
                    etcd,
                    oxcd,
                });
            }
        }
        mismatches
    }
}

/// Renders mismatches for a failing assertion.
pub fn report(mismatches: &[Mismatch]) -> String {
    let mut out = String::new();
    for m in mismatches {
        out.push_str(&format!(
            "step {}: {:?}\n  etcd: {:?}\n  oxcd: {:?}\n",
            m.index, m.step, m.etcd, m.oxcd
        ));
    }
    out
}
