//! Generated protobuf and gRPC code for the etcd v3 API and oxcd's replicated log payloads.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's key-value wire types (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth wire types (`authpb`).
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's client API services and messages (`etcdserverpb`).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// oxcd's Raft log payloads.
pub mod raftpb {
    tonic::include_proto!("oxcdraftpb");
}

/// oxcd's member-to-member protocol.
pub mod peerpb {
    tonic::include_proto!("oxcdpeerpb");
}

/// The generated peer code names oxcd's log payloads by their protobuf package.
pub use raftpb as oxcdraftpb;
