//! Bytes that are not gRPC on the client port (garbage, HTTP/1.1, a broken HTTP/2 stream, TLS):
//! the connection is closed or answered, never left hanging, and the member keeps serving
//! without losing what it acknowledged before.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use oxcd_tests::OxcdServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on the server closing (or answering) a connection that sent junk.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server ended a connection that sent `junk`.
#[derive(Debug)]
enum Ending {
    /// It closed the connection (EOF or reset).
    Closed,
    /// It answered with an HTTP/1.1 response (and may keep the connection open).
    Http1(String),
}

async fn send_junk(port: u16, junk: &[u8]) -> Ending {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the client port accepts connections");
    // The server may reset the connection while we still write: that is a clean refusal too.
    let _ = stream.write_all(junk).await;
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Ending::Closed,
                Ok(n) => {
                    received.extend_from_slice(&buf[..n]);
                    if received.starts_with(b"HTTP/1.1 ")
                        && received.windows(4).any(|w| w == b"\r\n\r\n")
                    {
                        return Ending::Http1(String::from_utf8_lossy(&received).into_owned());
                    }
                }
            }
        }
    };
    tokio::time::timeout(CLOSE_TIMEOUT, read_all)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the server neither closed nor answered a connection that sent {:?} within {CLOSE_TIMEOUT:?}",
                String::from_utf8_lossy(&junk[..junk.len().min(40)])
            )
        })
}

fn junk_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut garbage = Vec::with_capacity(3000);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x >> 24) as u8);
    }
    let mut preface_then_garbage = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface_then_garbage.extend_from_slice(&garbage[..500]);
    // A frame header announcing a 16 MiB DATA frame on stream 1, then nothing.
    let mut oversized_frame = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    oversized_frame.extend_from_slice(&[0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]);
    oversized_frame.extend_from_slice(&garbage[..100]);
    let tls_client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    vec![
        ("random bytes", garbage),
        (
            "an HTTP/1.1 request",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        ),
        (
            "an HTTP/1.1 request for a gRPC method",
            b"POST /etcdserverpb.KV/Range HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                .to_vec(),
        ),
        ("the HTTP/2 preface, then garbage", preface_then_garbage),
        ("an HTTP/2 frame larger than allowed", oversized_frame),
        ("a TLS ClientHello", tls_client_hello),
        ("a single NUL byte", vec![0]),
    ]
}

async fn count_and_revision(client: &mut Client, prefix: &str) -> (i64, i64) {
    let resp = client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("range succeeds");
    (resp.count(), resp.header().expect("header").revision())
}

#[tokio::test]
async fn junk_on_the_client_port_is_refused_cleanly_and_the_member_keeps_serving() {
    let server = OxcdServer::start().await.expect("oxcd starts");
    let mut client = server.client().await.expect("client connects");
    for i in 0..20 {
        client
            .put(format!("junk/before/{i:02}"), format!("v{i}"), None)
            .await
            .expect("put succeeds");
    }
    // Idle connections that never say anything must not keep others from being served.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            TcpStream::connect(("127.0.0.1", server.port()))
                .await
                .expect("connect"),
        );
    }
    for (what, junk) in junk_inputs() {
        let ending = send_junk(server.port(), &junk).await;
        if let Ending::Http1(response) = &ending {
            assert!(
                !response.starts_with("HTTP/1.1 200"),
                "{what}: answered as if it were a valid request: {response}"
            );
        }
        // Several at once, too.
        let endings = send_junk_concurrently(server.port(), &junk, 8).await;
        assert_eq!(endings, 8, "{what}: every concurrent connection ended");
        let key = format!("junk/after/{}", what.replace(' ', "-"));
        client
            .put(key.as_str(), "still serving", None)
            .await
            .unwrap_or_else(|e| panic!("a put right after {what} fails: {e}"));
        let got = client.get(key.as_str(), None).await.expect("get succeeds");
        assert_eq!(got.kvs()[0].value(), b"still serving", "after {what}");
    }
    drop(idle);
    let (before, _) = count_and_revision(&mut client, "junk/before/").await;
    assert_eq!(
        before, 20,
        "writes acknowledged before the junk are all there"
    );
    for i in 0..20 {
        let got = client
            .get(format!("junk/before/{i:02}"), None)
            .await
            .expect("get succeeds");
        assert_eq!(got.kvs()[0].value(), format!("v{i}").as_bytes());
    }
    let (after, _) = count_and_revision(&mut client, "junk/after/").await;
    assert_eq!(after, junk_inputs().len() as i64);
}

/// Sends `junk` on `n` connections at once; returns how many ended (closed or answered).
async fn send_junk_concurrently(port: u16, junk: &[u8], n: usize) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let junk = junk.to_vec();
            tokio::spawn(async move { send_junk(port, &junk).await })
        })
        .collect();
    let mut ended = 0;
    for task in tasks {
        task.await.expect("junk sender does not panic");
        ended += 1;
    }
    ended
}
