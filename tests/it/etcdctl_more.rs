//! More of etcdctl end to end, beyond the KV commands of `etcdctl_kv`: `watch` (as a child
//! process, also interactive), `lease`, `endpoint status|health|hashkv`, `defrag`, `alarm` and
//! `snapshot save`. etcdctl 3.6 and 3.4 run the same script against a fresh etcd 3.6 and a fresh
//! oxcd; exit codes, standard output and the error text of standard error must be identical once
//! what legitimately differs between two clusters is normalized (see `normalize`).

mod lease;
mod maintenance;
mod normalize;
mod runner;
mod watch;
