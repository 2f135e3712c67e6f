//! Both reference etcdctl versions work against both reference servers.

use oxcd_tests::{EtcdServer, EtcdVersion, etcdctl, etcdctl_with_input};

#[tokio::test]
async fn etcdctl_3_6_and_3_4_put_and_get_against_each_reference_server() {
    for server_version in EtcdVersion::ALL {
        let server = EtcdServer::start(server_version)
            .await
            .expect("etcd starts");
        for ctl in EtcdVersion::ALL {
            let key = format!("ctl/{}", ctl.minor());
            let value = format!("written by etcdctl {}", ctl.minor());
            let put = etcdctl(ctl, server.endpoint(), &["put", &key, &value])
                .await
                .expect("etcdctl runs");
            assert!(put.success(), "{ctl} put on {server_version}: {put:?}");
            assert_eq!(put.stdout.trim(), "OK");

            let get = etcdctl(ctl, server.endpoint(), &["get", &key, "--print-value-only"])
                .await
                .expect("etcdctl runs");
            assert!(get.success(), "{ctl} get on {server_version}: {get:?}");
            assert_eq!(get.stdout.trim_end(), value);
        }
    }
}

#[tokio::test]
async fn etcdctl_reads_a_put_value_from_standard_input() {
    let server = EtcdServer::start(EtcdVersion::V3_6)
        .await
        .expect("etcd starts");
    for ctl in EtcdVersion::ALL {
        let key = format!("stdin/{}", ctl.minor());
        let put = etcdctl_with_input(ctl, server.endpoint(), &["put", &key], b"from stdin")
            .await
            .expect("etcdctl runs");
        assert!(put.success(), "{ctl}: {put:?}");
        let get = etcdctl(ctl, server.endpoint(), &["get", &key, "--print-value-only"])
            .await
            .expect("etcdctl runs");
        assert_eq!(get.stdout.trim_end(), "from stdin", "{ctl}");
    }
}

#[tokio::test]
async fn a_failing_etcdctl_command_reports_its_exit_status_and_stderr() {
    let server = EtcdServer::start(EtcdVersion::V3_6)
        .await
        .expect("etcd starts");
    let out = etcdctl(EtcdVersion::V3_6, server.endpoint(), &["no-such-command"])
        .await
        .expect("etcdctl runs");
    assert!(!out.success());
    assert!(!out.stderr.is_empty());
}
