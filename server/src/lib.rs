//! oxcd: a distributed, strongly consistent key-value store that speaks the etcd v3 API.
//!
//! Requests arrive through `api` (one module per etcd service), mutate state only through the
//! Raft log (`raft`), whose state machine applies them to the multi-version store (`mvcc`) kept
//! in a storage engine behind a narrow trait (`storage`).

pub mod api;
pub mod bootstrap;
pub mod coalesce;
pub mod compactor;
pub mod config;
pub mod datadir;
pub mod error;
pub mod http;
pub mod memory;
pub mod mvcc;
pub mod peer;
pub mod proto;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod storage;
pub mod tls;
pub mod version;
