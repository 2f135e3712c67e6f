//! Snapshots in S3: `oxcd snapshot upload|download|prune` and `restore` from S3.
//!
//! [`client`] turns the `--s3-*` flags into a client, [`objects`] names and lists snapshot
//! objects, [`upload`] streams a member's snapshot into a multipart upload and
//! [`publish`] makes it appear whole, [`download`] fetches
//! and verifies one, [`drill`] proves one restores, [`prune`] applies retention, [`sse`] adds server-side encryption to each
//! request, and [`cli`] holds the subcommands' flags and their JSON result lines.

pub mod cli;
pub mod client;
pub mod download;
pub mod drill;
pub mod objects;
pub mod prune;
pub mod publish;
pub mod sse;
pub mod upload;
