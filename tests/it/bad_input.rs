//! Bad input of every kind: requests beyond the size and op limits (answered with etcd's exact
//! gRPC code and message, checked against etcd 3.6 in the same test), validation cases the
//! differential KV suite does not cover, bytes that are not gRPC on the client port, data dirs
//! that are not oxcd's or are corrupt, and unknown or malformed flags. Nothing bad may take the
//! member down, and no acknowledged write may be lost.

mod junk;
mod requests;
mod startup;
