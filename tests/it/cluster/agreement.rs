//! 3- and 5-member clusters agree: writes through any member are visible on all of them, with
//! linearizable and serializable reads, and every member's HashKV matches.

use etcd_client::GetOptions;
use oxcd_tests::OxcdCluster;

/// Writes one key through each member, then checks every member sees all of them and that
/// the stores hash alike.
async fn writes_on_any_member_are_read_everywhere(size: usize) {
    let cluster = OxcdCluster::start(size, &[]).await.expect("cluster");
    for (i, member) in cluster.members().iter().enumerate() {
        let mut client = member.client().await.expect("client");
        client
            .put(format!("k{i}"), format!("from {}", member.name()), None)
            .await
            .expect("put through a member");
    }
    for member in cluster.members() {
        let mut client = member.client().await.expect("client");
        // A linearizable read after the writes returned must see all of them.
        let all = client
            .get("k", Some(GetOptions::new().with_prefix()))
            .await
            .expect("linearizable get");
        assert_eq!(all.kvs().len(), size, "{} sees every write", member.name());
        let serializable = client
            .get(
                "k",
                Some(GetOptions::new().with_prefix().with_serializable()),
            )
            .await
            .expect("serializable get");
        // A follower answers serializable reads from what it has applied: after the
        // linearizable read above that is everything.
        assert_eq!(serializable.kvs().len(), size, "{}", member.name());
    }
    let hashes = cluster.converged_hashes().await.expect("hashes");
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "equal stores: {hashes:?}"
    );
    let mut client = cluster.client().await.expect("client");
    let members = client.member_list().await.expect("member list");
    assert_eq!(members.members().len(), size);
    for m in members.members() {
        assert!(!m.is_learner());
        assert!(
            !m.client_urls().is_empty(),
            "{} published its client URLs",
            m.name()
        );
    }
}

#[tokio::test]
async fn three_members_agree() {
    writes_on_any_member_are_read_everywhere(3).await;
}

#[tokio::test]
async fn five_members_agree() {
    writes_on_any_member_are_read_everywhere(5).await;
}
