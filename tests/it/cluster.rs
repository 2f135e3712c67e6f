//! Replicated clusters of oxcd members, each a real process on loopback ports: agreement of
//! 3 and 5 members, membership changes through etcd's Cluster API, snapshot catch-up, faults
//! (kill -9, restart, SIGSTOP) under concurrent load, refusal of foreign members, and version
//! skew (cluster version, refusal, downgrade).

mod agreement;
mod faults;
mod history;
mod leadership;
mod membership;
mod versions;
