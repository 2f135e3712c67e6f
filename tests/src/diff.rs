//! Differential testing: the same requests to the reference etcd and to oxcd, responses compared
//! after normalizing what legitimately differs (cluster id, member id, raft term).
//!
//! Requests are sent with oxcd's generated gRPC client, which encodes etcd's wire format; both
//! servers therefore receive identical bytes.

use std::fmt::Debug;

use std::time::Duration;

use oxcd_server::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, ResponseHeader, TxnRequest,
    WatchRequest, WatchResponse, kv_client::KvClient, watch_client::WatchClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
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
    etcd_channel: Channel,
    oxcd_channel: Channel,
    etcd_kv: KvClient<Channel>,
    oxcd_kv: KvClient<Channel>,
}

/// A connected gRPC channel to `endpoint`.
pub async fn channel(endpoint: &str) -> Result<Channel> {
    let grpc_err = |e: &dyn std::fmt::Display| HarnessError::Grpc {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    };
    Channel::from_shared(endpoint.to_string())
        .map_err(|e| grpc_err(&e))?
        .connect()
        .await
        .map_err(|e| grpc_err(&e))
}

impl Pair {
    /// Starts both servers with their default flags.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts both servers, passing `flags` (etcd flag syntax) to each.
    pub async fn start_with(flags: &[&str]) -> Result<Self> {
        let (etcd, oxcd) = tokio::join!(
            EtcdServer::start_with(EtcdVersion::V3_6, flags),
            OxcdServer::start_with(flags)
        );
        let (etcd, oxcd) = (etcd?, oxcd?);
        let etcd_channel = channel(etcd.endpoint()).await?;
        let oxcd_channel = channel(oxcd.endpoint()).await?;
        Ok(Self {
            etcd,
            oxcd,
            etcd_kv: KvClient::new(etcd_channel.clone()).max_decoding_message_size(usize::MAX),
            oxcd_kv: KvClient::new(oxcd_channel.clone()).max_decoding_message_size(usize::MAX),
            etcd_channel,
            oxcd_channel,
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

    /// gRPC channels to (etcd, oxcd), for services the pair has no helper for.
    pub fn channels(&self) -> (Channel, Channel) {
        (self.etcd_channel.clone(), self.oxcd_channel.clone())
    }

    /// Opens one watch stream on each server.
    pub async fn watch(&self) -> Result<WatchPair> {
        Ok(WatchPair {
            etcd: WatchSide::open(&self.etcd_channel, self.etcd.endpoint()).await?,
            oxcd: WatchSide::open(&self.oxcd_channel, self.oxcd.endpoint()).await?,
        })
    }
}

/// How long [`WatchPair::next`] waits for each expected response.
const WATCH_WAIT: Duration = Duration::from_secs(10);
/// How long [`WatchPair::quiet`] listens for unexpected responses.
const QUIET_WAIT: Duration = Duration::from_millis(400);

/// One server's side of a watch stream. The call runs in its own task because a gRPC server
/// (etcd's included) may send no response headers before the first watch response.
pub struct WatchSide {
    requests: mpsc::Sender<WatchRequest>,
    responses: mpsc::Receiver<std::result::Result<WatchResponse, tonic::Status>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchSide {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WatchSide {
    async fn open(channel: &Channel, _endpoint: &str) -> Result<Self> {
        let (requests, rx) = mpsc::channel(64);
        let (tx, responses) = mpsc::channel(1024);
        let mut client = WatchClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
        let task = tokio::spawn(async move {
            let mut stream = match client.watch(ReceiverStream::new(rx)).await {
                Ok(resp) => resp.into_inner(),
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Self {
            requests,
            responses,
            task,
        })
    }

    async fn next(&mut self, wait: Duration) -> Option<Outcome> {
        match tokio::time::timeout(wait, self.responses.recv()).await {
            Err(_) => None,
            Ok(Some(Ok(mut resp))) => {
                normalize_header(&mut resp.header);
                Some(Ok(format!("{resp:?}")))
            }
            Ok(None) => Some(Err((tonic::Code::Ok, "stream ended".into()))),
            Ok(Some(Err(status))) => Some(Err((status.code(), status.message().to_string()))),
        }
    }
}

/// A watch stream on each server, driven in lockstep.
pub struct WatchPair {
    etcd: WatchSide,
    oxcd: WatchSide,
}

impl WatchPair {
    /// Sends `req` on both streams.
    pub async fn send(&mut self, req: WatchRequest) {
        let _ = self.etcd.requests.send(req.clone()).await;
        let _ = self.oxcd.requests.send(req).await;
    }

    /// The next `n` responses of each stream (`None` where one did not come in time).
    pub async fn next(&mut self, n: usize) -> (Vec<Option<Outcome>>, Vec<Option<Outcome>>) {
        let mut etcd = Vec::new();
        let mut oxcd = Vec::new();
        for _ in 0..n {
            etcd.push(self.etcd.next(WATCH_WAIT).await);
            oxcd.push(self.oxcd.next(WATCH_WAIT).await);
        }
        (etcd, oxcd)
    }

    /// What arrives on either stream within a short quiet period (expected: nothing).
    pub async fn quiet(&mut self) -> (Option<Outcome>, Option<Outcome>) {
        let etcd = self.etcd.next(QUIET_WAIT).await;
        let oxcd = self.oxcd.next(QUIET_WAIT).await;
        (etcd, oxcd)
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
