//! The Raft type configuration: what a log entry carries (an etcd request), what applying it
//! returns, and what a member is. Payloads travel as their protobuf encoding so the log, the
//! peer protocol and the client API share one wire format.

use std::fmt;

use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::EtcdError;
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, TxnResponse,
};
use crate::proto::raftpb::{ApplyResult, ApplyResults, RaftCommand, apply_result};

openraft::declare_raft_types!(
    /// oxcd's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of one member.
pub type OxRaft = openraft::Raft<TypeConfig>;
/// A Raft log id of this configuration.
pub type LogId = openraft::LogId<u64>;
/// A log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft storage error of this configuration.
pub type StorageError = openraft::StorageError<u64>;

/// What the cluster knows of a member besides its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// `--name` of the member.
    pub name: String,
    /// URLs peers reach it on.
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on.
    pub client_urls: Vec<String>,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

fn serialize_message<S: Serializer, M: Message>(m: &M, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(&m.encode_to_vec())
}

fn deserialize_message<'de, D: Deserializer<'de>, M: Message + Default>(
    d: D,
) -> Result<M, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("protobuf-encoded bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    let bytes = d.deserialize_byte_buf(BytesVisitor)?;
    M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
}

/// A log entry's payload: one mutating etcd request.
#[derive(Debug, Clone, PartialEq)]
pub struct Command(pub RaftCommand);

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_message(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_message(d).map(Self)
    }
}

/// The outcome of applying one [`Command`].
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// A Put's response.
    Put(PutResponse),
    /// A DeleteRange's response.
    DeleteRange(DeleteRangeResponse),
    /// A Txn's response.
    Txn(TxnResponse),
    /// A Compact's response.
    Compaction(CompactionResponse),
    /// A LeaseGrant's response.
    LeaseGrant(LeaseGrantResponse),
    /// A LeaseRevoke's response.
    LeaseRevoke(LeaseRevokeResponse),
    /// An Alarm (activate/deactivate) response.
    Alarm(AlarmResponse),
    /// The results of a batch of requests, in order.
    Batch(Vec<CommandResult>),
    /// An entry that answers nobody (blank or membership entries).
    Nothing,
}

/// What applying an entry returned to its proposer: a response or etcd's error.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult(pub Result<Applied, EtcdError>);

impl Default for CommandResult {
    fn default() -> Self {
        Self(Ok(Applied::Nothing))
    }
}

impl CommandResult {
    /// The protobuf form, as log entries and the peer protocol carry it.
    pub fn to_proto(&self) -> ApplyResult {
        use apply_result::Result as R;
        let result = match &self.0 {
            Ok(Applied::Put(r)) => Some(R::Put(r.clone())),
            Ok(Applied::DeleteRange(r)) => Some(R::DeleteRange(r.clone())),
            Ok(Applied::Txn(r)) => Some(R::Txn(r.clone())),
            Ok(Applied::Compaction(r)) => Some(R::Compaction(*r)),
            Ok(Applied::LeaseGrant(r)) => Some(R::LeaseGrant(r.clone())),
            Ok(Applied::LeaseRevoke(r)) => Some(R::LeaseRevoke(*r)),
            Ok(Applied::Alarm(r)) => Some(R::Alarm(r.clone())),
            Ok(Applied::Batch(results)) => Some(R::Batch(ApplyResults {
                results: results.iter().map(CommandResult::to_proto).collect(),
            })),
            Ok(Applied::Nothing) => None,
            Err(e) => Some(R::Error(postcard::to_stdvec(e).unwrap_or_default())),
        };
        ApplyResult { result }
    }

    /// Decodes the protobuf form.
    pub fn from_proto(p: ApplyResult) -> Result<Self, String> {
        use apply_result::Result as R;
        Ok(Self(match p.result {
            Some(R::Put(r)) => Ok(Applied::Put(r)),
            Some(R::DeleteRange(r)) => Ok(Applied::DeleteRange(r)),
            Some(R::Txn(r)) => Ok(Applied::Txn(r)),
            Some(R::Compaction(r)) => Ok(Applied::Compaction(r)),
            Some(R::LeaseGrant(r)) => Ok(Applied::LeaseGrant(r)),
            Some(R::LeaseRevoke(r)) => Ok(Applied::LeaseRevoke(r)),
            Some(R::Alarm(r)) => Ok(Applied::Alarm(r)),
            Some(R::Batch(b)) => Ok(Applied::Batch(
                b.results
                    .into_iter()
                    .map(Self::from_proto)
                    .collect::<Result<_, _>>()?,
            )),
            Some(R::Error(e)) => Err(postcard::from_bytes(&e).map_err(|e| e.to_string())?),
            None => Ok(Applied::Nothing),
        }))
    }
}

impl Serialize for CommandResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_message(&self.to_proto(), s)
    }
}

impl<'de> Deserialize<'de> for CommandResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let proto: ApplyResult = deserialize_message(d)?;
        Self::from_proto(proto).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::raftpb::raft_command;

    #[test]
    fn commands_and_results_survive_the_log_encoding() {
        let cmd = Command(RaftCommand {
            command: Some(raft_command::Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        });
        let bytes = postcard::to_stdvec(&cmd).unwrap();
        assert_eq!(postcard::from_bytes::<Command>(&bytes).unwrap(), cmd);
        let err = CommandResult(Err(EtcdError::DuplicateKey));
        let bytes = postcard::to_stdvec(&err).unwrap();
        assert_eq!(postcard::from_bytes::<CommandResult>(&bytes).unwrap(), err);
    }
}
