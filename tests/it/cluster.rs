//! Replicated clusters of oxcd members, each a real process on loopback ports: agreement of
//! 3 and 5 members, membership changes through etcd's Cluster API, snapshot catch-up, faults
//! (kill -9, restart, SIGSTOP) under concurrent load, and refusal of foreign members.

mod agreement;
mod faults;
mod history;
mod leadership;
mod membership;
