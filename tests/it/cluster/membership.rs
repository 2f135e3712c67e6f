//! Membership through etcd's Cluster API: grow 1 → 3 → 5 with learners (promotion refused until
//! a learner has caught up), shrink 5 → 3, replace a member whose data dir was wiped, catch a new
//! member up from a snapshot after the log was compacted, and refuse members of other clusters.

use std::time::Duration;

use etcd_client::{GetOptions, MemberAddOptions};
use oxcd_tests::{OxcdCluster, OxcdServer, free_ports};

async fn put_many(cluster: &OxcdCluster, prefix: &str, count: usize) {
    let mut client = cluster.client().await.expect("client");
    for i in 0..count {
        client
            .put(format!("{prefix}/{i:05}"), vec![b'v'; 64], None)
            .await
            .expect("put");
    }
}

async fn assert_converged(cluster: &OxcdCluster, members: usize) {
    let hashes = cluster.converged_hashes().await.expect("hashes");
    assert_eq!(hashes.len(), members, "{hashes:?}");
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "equal stores: {hashes:?}"
    );
}

async fn voters_and_learners(cluster: &OxcdCluster) -> (usize, usize) {
    let mut client = cluster.client().await.expect("client");
    let list = client.member_list().await.expect("member list");
    let learners = list.members().iter().filter(|m| m.is_learner()).count();
    (list.members().len() - learners, learners)
}

/// As etcd: a learner answers serializable reads, and refuses linearizable ones and writes.
async fn learner_serves_serializable_reads_only(learner: &OxcdServer) {
    let deadline = tokio::time::Instant::now() + oxcd_tests::CONVERGE_TIMEOUT;
    let mut client = loop {
        if let Ok(mut c) = learner.client().await
            && c.get("a/00000", Some(GetOptions::new().with_serializable()))
                .await
                .is_ok_and(|r| r.kvs().len() == 1)
        {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the learner never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let read = client.get("a/00000", None).await.expect_err("linearizable");
    assert!(
        read.to_string()
            .contains("etcdserver: rpc not supported for learner"),
        "{read}"
    );
    let write = client.put("x", "y", None).await.expect_err("write");
    assert!(
        write
            .to_string()
            .contains("etcdserver: rpc not supported for learner"),
        "{write}"
    );
}

#[tokio::test]
async fn grow_one_to_five_with_learners_then_shrink_to_three() {
    let mut cluster = OxcdCluster::start(1, &[]).await.expect("cluster");
    put_many(&cluster, "a", 50).await;

    // A learner that has not started cannot be promoted: etcd's exact refusal.
    let mut client = cluster.client().await.expect("client");
    let unstarted = client
        .member_add(
            ["http://127.0.0.1:9".to_string()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("add an unstarted learner");
    let id = unstarted.member().expect("added member").id();
    let refused = client.member_promote(id).await.expect_err("not caught up");
    assert!(
        refused
            .to_string()
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{refused}"
    );
    // --max-learners defaults to 1, as in etcd.
    let second = client
        .member_add(
            ["http://127.0.0.1:10".to_string()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect_err("a second learner");
    assert!(
        second
            .to_string()
            .contains("etcdserver: too many learner members in cluster"),
        "{second}"
    );
    let taken = client
        .member_add(["http://127.0.0.1:9".to_string()], None)
        .await
        .expect_err("a used peer URL");
    assert!(
        taken
            .to_string()
            .contains("etcdserver: Peer URLs already exists"),
        "{taken}"
    );
    // MemberUpdate changes peer URLs, refusing a URL another member uses and unknown ids.
    let moved = "http://127.0.0.1:11".to_string();
    client
        .member_update(id, [moved.clone()])
        .await
        .expect("update the learner's peer URL");
    let list = client.member_list().await.expect("list");
    let learner = list
        .members()
        .iter()
        .find(|m| m.id() == id)
        .expect("listed");
    assert_eq!(learner.peer_urls(), [moved]);
    let clash = client
        .member_update(id, [cluster.members()[0].peer_url()])
        .await
        .expect_err("a URL in use");
    assert!(
        clash
            .to_string()
            .contains("etcdserver: Peer URLs already exists"),
        "{clash}"
    );
    let unknown = client
        .member_update(0x77, ["http://127.0.0.1:12".to_string()])
        .await
        .expect_err("unknown member");
    assert!(
        unknown.to_string().contains("etcdserver: member not found"),
        "{unknown}"
    );
    client
        .member_remove(id)
        .await
        .expect("remove the unstarted learner");
    let gone = client.member_remove(id).await.expect_err("already removed");
    assert!(
        gone.to_string().contains("etcdserver: member not found"),
        "{gone}"
    );

    for target in [3, 5] {
        while cluster.members().len() < target {
            let i = cluster.add_member(true).await.expect("add a learner");
            assert_eq!(voters_and_learners(&cluster).await.1, 1);
            if target == 3 && cluster.members().len() == 2 {
                learner_serves_serializable_reads_only(&cluster.members()[i]).await;
            }
            cluster.promote(i).await.expect("promote");
            put_many(&cluster, &format!("grow{i}"), 20).await;
        }
        assert_eq!(voters_and_learners(&cluster).await, (target, 0));
        assert_converged(&cluster, target).await;
    }

    // Shrink by removing two followers and then the leader itself.
    let leader = cluster.leader().await.expect("leader");
    let follower = (0..cluster.members().len())
        .find(|i| *i != leader)
        .expect("a follower");
    cluster.remove(follower).await.expect("remove a follower");
    let leader = cluster.leader().await.expect("leader");
    cluster.remove(leader).await.expect("remove the leader");
    put_many(&cluster, "shrunk", 20).await;
    assert_eq!(voters_and_learners(&cluster).await, (3, 0));
    assert_converged(&cluster, 3).await;
    let mut client = cluster.client().await.expect("client");
    let count = client
        .get(
            "",
            Some(GetOptions::new().with_from_key().with_count_only()),
        )
        .await
        .expect("count");
    assert_eq!(count.count(), 50 + 4 * 20 + 20);
}

#[tokio::test]
async fn a_member_whose_data_dir_was_wiped_is_replaced_and_catches_up_from_a_snapshot() {
    // A short log: the replacement cannot be sent the history entry by entry.
    let mut cluster = OxcdCluster::start(3, &["--snapshot-count", "100"])
        .await
        .expect("cluster");
    put_many(&cluster, "before", 600).await;
    let leader = cluster.leader().await.expect("leader");
    let victim = (leader + 1) % 3;
    let mut lost = cluster
        .remove(victim)
        .await
        .expect("remove the lost member");
    lost.kill().expect("kill");
    drop(lost); // its data dir goes with it
    put_many(&cluster, "while-gone", 300).await;
    let i = cluster.add_member(false).await.expect("replacement");
    assert_converged(&cluster, 3).await;
    let log = std::fs::read_to_string(cluster.members()[i].process().expect("running").log_path())
        .expect("log");
    assert!(
        log.contains("installed a snapshot from the leader"),
        "the replacement caught up from a snapshot:\n{log}"
    );
    let mut client = cluster.members()[i].client().await.expect("client");
    let count = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_from_key()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await
        .expect("count");
    assert_eq!(count.count(), 900);
}

#[tokio::test]
async fn members_of_another_cluster_or_token_are_refused() {
    let mut cluster = OxcdCluster::start(3, &[]).await.expect("cluster");
    // Joining with another token: the cluster says so and the member does not start.
    let [client_port, peer_port] = free_ports::<2>().expect("ports");
    let initial = format!(
        "m1={},m9=http://127.0.0.1:{peer_port}",
        cluster.members()[0].peer_url()
    );
    let mut stranger = OxcdServer::prepare_member(
        "m9",
        client_port,
        peer_port,
        &[
            "--initial-cluster",
            &initial,
            "--initial-cluster-state",
            "existing",
            "--initial-cluster-token",
            "another-token",
        ],
        &[],
    )
    .expect("prepare");
    stranger.spawn().expect("spawn");
    let refused = tokio::time::timeout(Duration::from_secs(20), stranger.wait_serving())
        .await
        .expect("bounded");
    let err = refused.expect_err("a member with another token must not start");
    assert!(err.to_string().contains("cluster token mismatch"), "{err}");

    // A member restarted with another token refuses its own data dir.
    let member = cluster.member(2);
    member.kill().expect("kill");
    member.set_cluster_args(&[
        "--initial-cluster",
        &format!("m3={}", member.peer_url()),
        "--initial-cluster-token",
        "another-token",
    ]);
    let err = member.restart().await.expect_err("token mismatch");
    assert!(err.to_string().contains("another-token"), "{err}");
    // The two others still form a quorum (if the killed member led, after an election:
    // a write caught by the change fails with "leader changed" and is retried, as clients do).
    let mut client = cluster.members()[0].client().await.expect("client");
    let deadline = tokio::time::Instant::now() + oxcd_tests::CONVERGE_TIMEOUT;
    while let Err(e) = client.put("still", "serving", None).await {
        assert!(tokio::time::Instant::now() < deadline, "no quorum: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_started_member_that_lost_its_data_dir_is_refused_until_replaced() {
    let mut cluster = OxcdCluster::start(3, &[]).await.expect("cluster");
    let initial = cluster
        .members()
        .iter()
        .map(|m| format!("{}={}", m.name(), m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let id = cluster.member_id(2).await.expect("id");
    let member = cluster.member(2);
    member.kill().expect("kill");
    std::fs::remove_dir_all(member.data_dir()).expect("lose the data dir");
    member.set_cluster_args(&[
        "--initial-cluster",
        &initial,
        "--initial-cluster-state",
        "existing",
    ]);
    // Rejoining under its old id with no raft state is refused, with the way out.
    let err = member
        .restart()
        .await
        .expect_err("an emptied member must not rejoin");
    let text = err.to_string();
    assert!(
        text.contains(&format!("member {id:x} has already been bootstrapped"))
            && text.contains(&format!("etcdctl member remove {id:x}")),
        "{text}"
    );
    // The cluster is untouched: still three members, the emptied one still listed.
    let mut client = cluster.members()[0].client().await.expect("client");
    let list = client.member_list().await.expect("member list");
    assert_eq!(list.members().len(), 3);
    assert!(list.members().iter().any(|m| m.id() == id));
}
