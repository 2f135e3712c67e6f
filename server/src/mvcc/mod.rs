//! Multi-version concurrency control: revisions, the key index, the store and etcd's request
//! semantics on top of it.

pub mod alarm;
pub mod apply;
pub mod check;
pub mod hash;
pub mod index;
pub mod lease;
pub mod ops;
pub mod replace;
pub mod revision;
pub mod store;
pub mod watch_hub;

pub use apply::ApplyBatch;
pub use index::RangeEnd;
pub use store::{KvRead, KvWrite, MvccStore, RangeOptions, ReadOnly};
