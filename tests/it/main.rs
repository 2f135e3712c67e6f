//! Integration tests of oxcd: one test binary whose modules start real processes on random
//! loopback ports through the `oxcd_tests` harness.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod bad_input;
mod benchmark_tool;
mod cluster;
mod crash;
mod downgrade_diff;
mod etcdctl_kv;
mod etcdctl_more;
mod flags;
mod harness;
mod http_endpoints;
mod kv_diff;
mod lease_diff;
mod log_compaction;
mod maintenance_diff;
mod quota;
mod restored_cluster;
mod s3_drill;
mod s3_failures;
mod s3_snapshots;
mod snapshot;
mod tls;
mod watch_diff;
mod watch_regressions;
