//! The Watch service. Each gRPC stream is served by one task that owns its watchers: it handles
//! create/cancel/progress requests in order and, whenever a revision is published, delivers the
//! new events to every watcher before anything else is sent, so a progress reply can never run
//! ahead of events still owed on the stream.

mod watcher;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use self::watcher::{CATCH_UP_MAX_REVS, Watcher, attach_prev_kvs, fragments};
use super::Member;
use crate::error::EtcdError;
use crate::mvcc::KvRead;
use crate::proto::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse, watch_request::RequestUnion,
    watch_server::Watch,
};
use crate::proto::mvccpb::Event;

/// `clientv3.InvalidWatchID`: the id of stream-wide replies.
const INVALID_WATCH_ID: i64 = -1;
/// Responses buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 128;
/// How often a stream checks that its member still has a leader (for `hasleader` streams).
const LEADER_CHECK: Duration = Duration::from_secs(1);
/// Revisions read from disk per pass when a watcher is outside the in-memory window.
const DISK_CHUNK_REVS: usize = 4 * CATCH_UP_MAX_REVS;

type ResponseStream = std::pin::Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// The Watch service of one member.
pub struct WatchService {
    member: Arc<Member>,
    progress_interval: Duration,
}

impl WatchService {
    /// A Watch service over `member`, with etcd's periodic progress notification interval.
    pub fn new(member: Arc<Member>, progress_interval: Duration) -> Self {
        Self {
            member,
            progress_interval,
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let requires_leader = request
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if requires_leader && !self.member.has_leader() {
            return Err(EtcdError::NoLeader.into());
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let stream = StreamTask {
            member: self.member.clone(),
            out: tx,
            watchers: BTreeMap::new(),
            next_id: 0,
            progress_requested: false,
            requires_leader,
        };
        tokio::spawn(stream.run(request.into_inner(), self.progress_interval));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Why a stream task stopped early.
enum Stop {
    /// The client went away.
    Closed,
}

struct StreamTask {
    member: Arc<Member>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    progress_requested: bool,
    requires_leader: bool,
}

impl StreamTask {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>, progress_interval: Duration) {
        let mut published = self.member.hub.subscribe();
        let start = tokio::time::Instant::now();
        let mut progress = tokio::time::interval_at(start + progress_interval, progress_interval);
        let mut leader_check = tokio::time::interval_at(start + LEADER_CHECK, LEADER_CHECK);
        loop {
            let step = tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(req)) => self.handle(req).await,
                    _ => Err(Stop::Closed),
                },
                changed = published.changed() => match changed {
                    Ok(()) => self.deliver().await,
                    Err(_) => Err(Stop::Closed),
                },
                _ = progress.tick() => self.periodic_progress().await,
                _ = leader_check.tick(), if self.requires_leader => {
                    if self.member.has_leader() {
                        Ok(())
                    } else {
                        let _ = self.out.send(Err(EtcdError::NoLeader.into())).await;
                        Err(Stop::Closed)
                    }
                }
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Stop> {
        self.out.send(Ok(resp)).await.map_err(|_| Stop::Closed)
    }

    fn header(&self, rev: i64) -> Option<crate::proto::etcdserverpb::ResponseHeader> {
        self.member.header(rev)
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), Stop> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    let rev = self.member.store.rev();
                    let resp = WatchResponse {
                        header: self.header(rev),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                self.answer_progress().await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.progress_requested = true;
                self.deliver().await
            }
            None => Ok(()),
        }
    }

    async fn refuse(&self, reason: String) -> Result<(), Stop> {
        let resp = WatchResponse {
            header: self.header(self.member.store.rev()),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        self.send(resp).await
    }

    async fn create(&mut self, req: WatchCreateRequest) -> Result<(), Stop> {
        if req.start_revision < 0 {
            return self.refuse(EtcdError::Compacted.to_string()).await;
        }
        if Watcher::range_is_empty(&req) {
            return self.refuse("mvcc: watcher range is empty".into()).await;
        }
        let id = if req.watch_id == 0 {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watchers.contains_key(&req.watch_id) {
            return self
                .refuse("mvcc: duplicate watch ID provided on the WatchStream".into())
                .await;
        } else {
            req.watch_id
        };
        let current = self.member.store.rev();
        let watcher = Watcher::new(id, &req, current);
        let resp = WatchResponse {
            header: self.header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send(resp).await?;
        let compacted = self.member.store.compact_rev();
        if !watcher.synced && watcher.next_rev < compacted {
            return self.cancel_compacted(id, compacted).await;
        }
        self.watchers.insert(id, watcher);
        self.deliver().await
    }

    async fn cancel_compacted(&mut self, id: i64, compacted: i64) -> Result<(), Stop> {
        self.watchers.remove(&id);
        let resp = WatchResponse {
            header: self.header(0),
            watch_id: id,
            compact_revision: compacted,
            canceled: true,
            ..Default::default()
        };
        self.send(resp).await
    }

    /// Brings every watcher up to the newest published revision, then answers a pending
    /// progress request.
    async fn deliver(&mut self) -> Result<(), Stop> {
        loop {
            let current = self.member.hub.latest();
            let behind: Vec<i64> = self
                .watchers
                .values()
                .filter(|w| w.next_rev <= current)
                .map(|w| w.id)
                .collect();
            if behind.is_empty() {
                break;
            }
            for id in behind {
                self.deliver_to(id, current).await?;
            }
        }
        self.answer_progress().await
    }

    async fn deliver_to(&mut self, id: i64, current: i64) -> Result<(), Stop> {
        let Some(watcher) = self.watchers.get(&id).cloned() else {
            return Ok(());
        };
        let from = watcher.next_rev;
        // The in-memory window keeps revisions a compaction applied since the watcher was
        // created has removed from the store: a watcher still owed them is cancelled as
        // compacted, exactly as if the compaction had come first (etcd's syncWatchers check).
        let compacted = self.member.store.compact_rev();
        if !watcher.synced && from < compacted {
            return self.cancel_compacted(id, compacted).await;
        }
        // Where this pass stops: `current`, unless a read from disk had to stop early.
        let mut upto = current;
        let events: Vec<Event> = match self.member.hub.recent(from, current) {
            Some(revisions) => revisions
                .iter()
                .flat_map(|r| r.events.iter().cloned())
                .collect(),
            None => match self.member.store.events(from, current, DISK_CHUNK_REVS) {
                Ok(events) => {
                    if let Some(last) = events.last().map(revision_of)
                        && count_revisions(&events) >= DISK_CHUNK_REVS
                    {
                        upto = last;
                    }
                    events
                }
                Err(EtcdError::Compacted) => {
                    return self
                        .cancel_compacted(id, self.member.store.compact_rev())
                        .await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch catch-up failed");
                    let _ = self.out.send(Err(e.into())).await;
                    return Err(Stop::Closed);
                }
            },
        };
        let mut matching: Vec<Event> = events
            .into_iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| watcher.contains(&kv.key)))
            .filter(|e| !watcher.filtered(e))
            .collect();
        if watcher.prev_kv
            && let Err(compacted) = attach_prev_kvs(&*self.member.store, &mut matching, compacted)
        {
            // A compaction applied during this delivery removed a previous value: the watcher
            // was behind the compaction (another member compacted first), and an event without
            // its previous value is one kube-apiserver refuses ("etcd event received with
            // PrevKv=nil"), so it is cancelled as compacted and the client relists.
            return self.cancel_compacted(id, compacted).await;
        }
        if watcher.synced {
            // Live delivery: one response per revision, stamped with that revision.
            let mut start = 0;
            while start < matching.len() {
                let rev = revision_of(&matching[start]);
                let end = start
                    + matching[start..]
                        .iter()
                        .take_while(|e| revision_of(e) == rev)
                        .count();
                self.send_events(&watcher, matching[start..end].to_vec(), rev)
                    .await?;
                start = end;
            }
            self.advance(id, upto + 1, true);
        } else {
            // Catch-up, as etcd syncs unsynced watchers: up to 1000 revisions per response,
            // stamped with the current revision.
            let mut batch_start = 0;
            while batch_start < matching.len() {
                let mut revs = 0;
                let mut last_rev = 0;
                let mut end = batch_start;
                while end < matching.len() {
                    let rev = revision_of(&matching[end]);
                    if rev != last_rev {
                        revs += 1;
                        if revs > CATCH_UP_MAX_REVS {
                            break;
                        }
                        last_rev = rev;
                    }
                    end += 1;
                }
                self.send_events(&watcher, matching[batch_start..end].to_vec(), current)
                    .await?;
                batch_start = end;
            }
            self.advance(id, upto + 1, upto == current);
        }
        Ok(())
    }

    fn advance(&mut self, id: i64, next_rev: i64, synced: bool) {
        if let Some(w) = self.watchers.get_mut(&id) {
            w.next_rev = w.next_rev.max(next_rev);
            w.synced = synced;
        }
    }

    async fn send_events(
        &mut self,
        watcher: &Watcher,
        events: Vec<Event>,
        header_rev: i64,
    ) -> Result<(), Stop> {
        if events.is_empty() {
            return Ok(());
        }
        let resp = WatchResponse {
            header: self.header(header_rev),
            watch_id: watcher.id,
            events,
            ..Default::default()
        };
        let parts = if watcher.fragment {
            // etcd fragments above the request limit plus the gRPC allowance.
            fragments(
                resp,
                self.member.limits.max_request_bytes + super::GRPC_OVERHEAD_BYTES,
            )
        } else {
            vec![resp]
        };
        for part in parts {
            self.send(part).await?;
        }
        if let Some(w) = self.watchers.get_mut(&watcher.id) {
            w.progress_due = false;
        }
        Ok(())
    }

    /// Answers a progress request once every watcher has been sent everything up to the
    /// reported revision (and has reached its start revision).
    async fn answer_progress(&mut self) -> Result<(), Stop> {
        if !self.progress_requested {
            return Ok(());
        }
        let current = self.member.hub.latest();
        let all_synced = self
            .watchers
            .values()
            .all(|w| w.next_rev > current && current >= w.start_rev);
        if !all_synced {
            return Ok(());
        }
        self.progress_requested = false;
        if self.watchers.is_empty() {
            // etcd answers a progress request only through a watcher; with none there is none.
            return Ok(());
        }
        let resp = WatchResponse {
            header: self.header(current),
            watch_id: INVALID_WATCH_ID,
            ..Default::default()
        };
        self.send(resp).await
    }

    /// etcd's periodic progress notification: a watcher that asked for it and was sent nothing
    /// since the last tick gets an empty response at the current revision.
    async fn periodic_progress(&mut self) -> Result<(), Stop> {
        self.deliver().await?;
        let current = self.member.hub.latest();
        let due: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.progress_notify && w.progress_due && current >= w.start_rev)
            .map(|w| w.id)
            .collect();
        for id in due {
            let resp = WatchResponse {
                header: self.header(current),
                watch_id: id,
                ..Default::default()
            };
            self.send(resp).await?;
        }
        for w in self.watchers.values_mut() {
            w.progress_due = true;
        }
        Ok(())
    }
}

fn count_revisions(events: &[Event]) -> usize {
    let mut revs = 0;
    let mut last = None;
    for e in events {
        let rev = revision_of(e);
        if last != Some(rev) {
            revs += 1;
            last = Some(rev);
        }
    }
    revs
}

fn revision_of(event: &Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}
