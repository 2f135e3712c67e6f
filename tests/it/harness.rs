//! Tests of the harness itself against the reference etcd servers.

mod cleanup;
mod etcdctl;
mod reference_etcd;
