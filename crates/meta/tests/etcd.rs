//! EtcdKv against real three-member etcd clusters (Debian's etcd-server),
//! started per test as child processes on 127.0.0.1.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::kv::{Kv, KvError, Txn};
use berth_meta::{EtcdConfig, EtcdKv, EtcdWatch, WatchEvent};

use berth_test_kit::etcd::*;
use berth_test_kit::random_u64;
use serde_json::json;

fn unique_prefix() -> String {
    format!("t{:x}/", random_u64())
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, KvError>) {
    match r {
        Err(KvError::Unavailable(_)) => {}
        other => panic!("{what} without quorum: expected Unavailable, got {other:?}"),
    }
}

/// Retries `op` while the store is unavailable (an election, a restart).
async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KvError>>,
{
    no_hang(what, async {
        loop {
            match op().await {
                Ok(v) => return v,
                Err(KvError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
}

async fn next_event(watch: &mut EtcdWatch) -> WatchEvent {
    no_hang("waiting for a watch event", watch.next())
        .await
        .expect("the watch stopped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_shared_suite() {
    let cluster = Cluster::start().await;
    let kv = cluster.kv(&[0, 1, 2], &unique_prefix());
    no_hang("the suite", berth_core::kv_suite::run_all(Arc::new(kv))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fails_over_when_a_member_dies() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader(0).await;
    let follower = (leader + 1) % MEMBERS;
    let other = (leader + 2) % MEMBERS;
    // The follower comes first, so every request starts there.
    let kv = cluster.kv(&[follower, other, leader], &unique_prefix());
    kv.put("a", b"1".to_vec()).await.unwrap();

    // A dead follower: no election, the others serve at once.
    cluster.kill(follower);
    let a = kv.get("a").await.unwrap().unwrap();
    assert_eq!(a.value, b"1");
    let cas = Txn::new()
        .if_unchanged("a", Some(&a))
        .put("a", b"2".to_vec());
    assert!(kv.commit(cas).await.unwrap());
    kv.put("b", b"x".to_vec()).await.unwrap();
    let keys: Vec<String> = kv
        .scan("", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["a", "b"]);

    // A dead leader: requests may be unavailable during the election, then
    // the survivors serve them, the data intact.
    cluster.restart(follower).await;
    cluster.kill(leader);
    let a = eventually("get after the leader died", || kv.get("a")).await;
    let a = a.unwrap();
    assert_eq!(a.value, b"2");
    let cas = Txn::new()
        .if_unchanged("a", Some(&a))
        .put("a", b"3".to_vec());
    assert!(eventually("CAS after the leader died", || kv.commit(cas.clone())).await);
    assert_eq!(kv.get("a").await.unwrap().unwrap().value, b"3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_fails_fast_then_recovers() {
    let mut cluster = Cluster::start().await;
    let mut config = EtcdConfig::new((0..MEMBERS).map(|i| cluster.endpoint(i)));
    config.prefix = unique_prefix();
    config.timeout_secs = 2;
    let kv = EtcdKv::new(config).unwrap();
    kv.put("k", b"before".to_vec()).await.unwrap();
    let before = kv.get("k").await.unwrap().unwrap();

    cluster.kill(0);
    cluster.kill(1);
    let cas = Txn::new()
        .if_unchanged("k", Some(&before))
        .put("k", b"after".to_vec());
    assert_unavailable("get", no_hang("get", kv.get("k")).await);
    assert_unavailable("commit", no_hang("commit", kv.commit(cas.clone())).await);
    assert_unavailable("put", no_hang("put", kv.put("x", vec![])).await);
    assert_unavailable("scan", no_hang("scan", kv.scan("", None, 10)).await);

    cluster.restart(0).await;
    cluster.restart(1).await;
    let got = eventually("get after quorum returned", || kv.get("k")).await;
    assert_eq!(got, Some(before), "nothing was written without quorum");
    assert!(eventually("commit after quorum returned", || kv.commit(cas.clone())).await);
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_sees_writes_from_another_instance() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader(0).await;
    let (f1, f2) = ((leader + 1) % MEMBERS, (leader + 2) % MEMBERS);
    let prefix = unique_prefix();
    let writer = cluster.kv(&[leader, f1, f2], &prefix);
    let watcher = cluster.kv(&[f1, f2, leader], &prefix);
    let mut watch = watcher.watch_prefix("w/").await.unwrap();

    writer.put("w/a", b"1".to_vec()).await.unwrap();
    writer.put("other/x", b"1".to_vec()).await.unwrap();
    writer
        .commit(Txn::new().put("w/b", b"2".to_vec()).delete("w/a"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await, WatchEvent::Put("w/a".into()));
    // One txn's events arrive together, in the txn's order.
    assert_eq!(next_event(&mut watch).await, WatchEvent::Put("w/b".into()));
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Delete("w/a".into())
    );

    // The watcher's member dies; its watch resumes on another member from
    // where it was, so a write made meanwhile is still seen.
    cluster.kill(f1);
    writer.put("w/c", b"3".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut watch).await, WatchEvent::Put("w/c".into()));
    writer.put("w/d", b"4".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut watch).await, WatchEvent::Put("w/d".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_expire_unless_kept_alive() {
    let cluster = Cluster::start().await;
    let kv = cluster.kv(&[0, 1, 2], &unique_prefix());
    let mut watch = kv.watch_prefix("lease/").await.unwrap();
    let dropped = kv.lease_grant(2).await.unwrap();
    let kept = kv.lease_grant(4).await.unwrap();
    kv.put_with_lease("lease/dropped", b"x".to_vec(), dropped)
        .await
        .unwrap();
    kv.put_with_lease("lease/kept", b"y".to_vec(), kept)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Put("lease/dropped".into())
    );
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Put("lease/kept".into())
    );

    let keep_alive = |until_gone: bool| {
        let kv = kv.clone();
        async move {
            // `until_gone`: until the unrenewed key expires; otherwise for a
            // while longer than the kept lease's TTL.
            let started = Instant::now();
            loop {
                assert!(kv.keepalive(kept).await.unwrap().is_some());
                if until_gone {
                    if kv.get("lease/dropped").await.unwrap().is_none() {
                        return;
                    }
                } else if started.elapsed() > Duration::from_secs(6) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    no_hang("the unrenewed lease to expire", keep_alive(true)).await;
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Delete("lease/dropped".into())
    );
    assert_eq!(kv.keepalive(dropped).await.unwrap(), None);
    keep_alive(false).await;
    assert_eq!(kv.get("lease/kept").await.unwrap().unwrap().value, b"y");
    assert!(kv
        .put_with_lease("lease/late", vec![], dropped)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authenticates_when_etcd_auth_is_on() {
    let cluster = Cluster::start().await;
    cluster
        .gateway(
            0,
            "auth/user/add",
            json!({"name": "root", "password": "pw"}),
        )
        .await;
    cluster
        .gateway(0, "auth/role/add", json!({"name": "root"}))
        .await;
    cluster
        .gateway(
            0,
            "auth/user/grant",
            json!({"user": "root", "role": "root"}),
        )
        .await;
    cluster.gateway(0, "auth/enable", json!({})).await;

    let config = |password: Option<&str>| {
        let mut c = EtcdConfig::new((0..MEMBERS).map(|i| cluster.endpoint(i)));
        c.username = password.map(|_| "root".to_owned());
        c.password = password.map(str::to_owned);
        EtcdKv::new(c).unwrap()
    };
    let kv = config(Some("pw"));
    kv.put("a", b"1".to_vec()).await.unwrap();
    let a = kv.get("a").await.unwrap().unwrap();
    assert!(kv
        .commit(
            Txn::new()
                .if_unchanged("a", Some(&a))
                .put("a", b"2".to_vec())
        )
        .await
        .unwrap());
    let mut watch = kv.watch_prefix("").await.unwrap();
    kv.delete("a").await.unwrap();
    assert_eq!(next_event(&mut watch).await, WatchEvent::Delete("a".into()));

    // Turning auth off and on makes etcd forget every token, the one kv
    // holds included: it must authenticate again by itself.
    let root = cluster
        .gateway(
            0,
            "auth/authenticate",
            json!({"name": "root", "password": "pw"}),
        )
        .await;
    let token = root["token"].as_str().unwrap();
    let disabled = cluster
        .http
        .post(format!("{}/v3/auth/disable", cluster.endpoint(0)))
        .header("Authorization", token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(disabled.status().is_success());
    cluster.gateway(0, "auth/enable", json!({})).await;
    kv.put("b", b"after".to_vec()).await.unwrap();
    assert_eq!(kv.get("b").await.unwrap().unwrap().value, b"after");

    for (what, kv) in [
        ("no credentials", config(None)),
        ("a wrong password", config(Some("nope"))),
    ] {
        match kv.get("a").await {
            Err(KvError::Internal(_)) => {}
            other => panic!("{what}: expected an Internal error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_exclude_across_nodes_and_free_on_release() {
    let cluster = Cluster::start().await;
    let prefix = unique_prefix();
    let a = cluster.kv(&[0, 1, 2], &prefix);
    let b = cluster.kv(&[2, 1, 0], &prefix);
    no_hang("the lock suite", berth_core::lock::suite(&a)).await;

    use berth_core::lock::Locks;
    let held = a.try_lock("gc", "node-a").await.unwrap().expect("free");
    assert!(b.try_lock("gc", "node-b").await.unwrap().is_none());
    assert_eq!(b.holder("gc").await.unwrap().as_deref(), Some("node-a"));
    // The lease behind it is renewed: still held past its 15 s TTL.
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert!(held.is_held());
    assert!(b.try_lock("gc", "node-b").await.unwrap().is_none());
    drop(held);
    let taken = eventually("taking the released lock", || async {
        match b.try_lock("gc", "node-b").await? {
            Some(g) => Ok(g),
            None => Err(KvError::Unavailable("still held".into())),
        }
    })
    .await;
    assert!(taken.is_held());
}
