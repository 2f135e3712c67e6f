//! Nothing the harness starts outlives the server value that owns it.

use std::path::Path;

use oxcd_tests::{EtcdServer, EtcdVersion};

fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn dropping_the_server_leaves_no_etcd_process_behind() {
    for version in EtcdVersion::ALL {
        let server = EtcdServer::start(version).await.expect("etcd starts");
        let pid = server.pid();
        let dir = server.dir().to_path_buf();
        assert!(is_running(pid));
        drop(server);
        assert!(!is_running(pid), "{version} (pid {pid}) still runs");
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

#[tokio::test]
async fn kill_stops_the_server_at_once() {
    let mut server = EtcdServer::start(EtcdVersion::V3_6)
        .await
        .expect("etcd starts");
    let pid = server.pid();
    server.kill().expect("kill succeeds");
    assert!(!is_running(pid));
    server.kill().expect("a second kill is a no-op");
}

#[tokio::test]
async fn a_panicking_test_leaves_no_etcd_process_behind() {
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let server = EtcdServer::start(EtcdVersion::V3_6)
            .await
            .expect("etcd starts");
        pid_tx
            .send(server.pid())
            .expect("the test waits for the pid");
        panic!("a test fails while its server runs");
    });
    let pid = pid_rx.await.expect("the server started");
    assert!(task.await.is_err_and(|err| err.is_panic()));
    assert!(!is_running(pid), "pid {pid} still runs");
}
