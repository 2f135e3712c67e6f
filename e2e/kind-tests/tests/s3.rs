//! The in-cluster S3 server of backup tests (`e2e/kind/manifests/s3.yaml`, image built by
//! `e2e/kind/images`): it runs on a volume of the default StorageClass, keeps what is put in it,
//! and refuses requests signed with the wrong key.

use anyhow::ensure;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{Api, Client};
use oxcd_kind_tests::s3::{S3Endpoint, deploy_s3};
use oxcd_kind_tests::{kind_client, with_temp_ns};

#[tokio::test]
async fn s3_server_on_default_storage_keeps_objects_and_checks_signatures() -> anyhow::Result<()> {
    let Some(client) = kind_client().await? else {
        return Ok(());
    };
    with_temp_ns(&client, "s3", |client, ns| async move {
        s3_scenario(client, &ns).await
    })
    .await
}

async fn s3_scenario(client: Client, ns: &str) -> anyhow::Result<()> {
    let s3 = deploy_s3(&client, ns).await?;

    // Its volume came from the default StorageClass's provisioner.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = claims.get("s3-data").await?;
    let phase = claim.status.and_then(|s| s.phase).unwrap_or_default();
    ensure!(
        phase == "Bound",
        "volume claim s3-data is {phase}, not Bound"
    );
    ensure!(
        claim.spec.and_then(|s| s.storage_class_name).as_deref() == Some("standard"),
        "volume claim s3-data did not get the default StorageClass \"standard\""
    );

    let object = b"snapshot bytes\n".repeat(1000);
    let created = s3.request("PUT", "/backups", b"").await?;
    ensure!(created.status == 200, "create bucket: {}", show(&created));
    let put = s3.request("PUT", "/backups/member-0.snap", &object).await?;
    ensure!(put.status == 200, "put object: {}", show(&put));
    let got = s3.request("GET", "/backups/member-0.snap", b"").await?;
    ensure!(got.status == 200, "get object: {}", show(&got));
    ensure!(
        got.body == object,
        "the object read back differs from the one put"
    );

    let forged = S3Endpoint {
        secret_key: "not-the-secret".to_owned(),
        ..s3.clone()
    };
    let refused = forged.request("GET", "/backups/member-0.snap", b"").await?;
    ensure!(
        refused.status == 403,
        "a request signed with the wrong key was answered {}",
        show(&refused)
    );
    Ok(())
}

fn show(response: &oxcd_kind_tests::s3::S3Response) -> String {
    format!(
        "HTTP {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    )
}
