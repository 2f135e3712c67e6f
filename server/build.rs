//! Compiles oxcd's etcd-compatible .proto files with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/rpc.proto", "proto/raftcmd.proto", "proto/peer.proto"];
    for p in protos
        .iter()
        .chain(["proto/kv.proto", "proto/auth.proto"].iter())
    {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        // Raft messages are handed over without copying (`peer::append_stream`).
        .bytes(".oxcdpeerpb.RaftRequest.payload")
        .compile_fds(descriptors)?;
    Ok(())
}
