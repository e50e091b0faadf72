//! The watch cache (`WatchCache`) against real three-member etcd clusters:
//! the shared Kv suite, reads on one node that see every write finished on
//! another (served from memory, not by falling back), writes elsewhere in
//! etcd that must not stall it, a member killed under its watch, and the
//! memory bound.

use std::sync::Arc;
use std::time::Duration;

use berth_core::kv::{Kv, Txn};
use berth_meta::WatchCache;
use berth_test_kit::etcd::*;
use berth_test_kit::random_u64;

fn unique_prefix() -> String {
    format!("c{:x}/", random_u64())
}

const BIG: usize = 64 << 20;

/// Writes `n` keys `<dir><i>` of `len` bytes (7s) under `prefix`.
async fn seed(cluster: &Cluster, prefix: &str, dir: &str, n: usize, len: usize) {
    let kv = cluster.kv(&[0], prefix);
    for i in 0..n {
        kv.put(&format!("{dir}{i:04}"), vec![7; len]).await.unwrap();
    }
}

/// A watch cache over members `order`, serving.
async fn cache(cluster: &Cluster, order: &[usize], prefix: &str) -> WatchCache {
    let c = WatchCache::start(cluster.kv(order, prefix), BIG);
    assert!(
        c.wait_serving(Duration::from_secs(20)).await,
        "the copy never loaded"
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_shared_suite() {
    let cluster = Cluster::start().await;
    let kv = cache(&cluster, &[0, 1, 2], &unique_prefix()).await;
    no_hang(
        "the suite",
        berth_core::kv_suite::run_all(Arc::new(kv.clone())),
    )
    .await;
    let stats = kv.stats();
    assert!(stats.hits > 0 && stats.serving, "{stats:?}");
}

/// Two nodes, each with its copy (and asking different members): a write
/// that finished on one is seen by the next read on the other, deletes
/// too, and those reads were answered from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_on_one_node_sees_every_write_finished_on_another() {
    let cluster = Cluster::start().await;
    let prefix = unique_prefix();
    // Data present before the copies load.
    seed(&cluster, &prefix, "old/", 1500, 10).await;
    let a = cache(&cluster, &[0, 1, 2], &prefix).await;
    let b = cache(&cluster, &[2, 1, 0], &prefix).await;
    // Loaded in pages, at one revision.
    let old = b.scan("old/", None, 10_000).await.unwrap();
    assert_eq!(old.len(), 1500);
    let before = b.stats();
    for i in 0..200 {
        let key = format!("k/{i}");
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        writer
            .commit(Txn::new().put(key.clone(), vec![i as u8]))
            .await
            .unwrap();
        let got = reader.get(&key).await.unwrap().expect("the write is seen");
        assert_eq!(got.value, vec![i as u8]);
        let listed = reader.scan_keys("k/", None, 1000).await.unwrap();
        assert!(listed.contains(&key), "{key} listed");
        reader.delete(&key).await.unwrap();
        assert_eq!(writer.get(&key).await.unwrap(), None, "the delete is seen");
    }
    let after = b.stats();
    assert_eq!(after.misses, before.misses, "no read of b went to etcd");
    assert!(after.hits >= before.hits + 200, "{after:?}");
    assert_eq!(after.entries, 1500);
}

/// Writes under another prefix (another registry sharing etcd) raise
/// etcd's revision with no event for this copy's keys: reads are still
/// answered from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_elsewhere_in_etcd_do_not_stall_reads() {
    let cluster = Cluster::start().await;
    let prefix = unique_prefix();
    let c = cache(&cluster, &[0, 1, 2], &prefix).await;
    c.put("mine", b"v".to_vec()).await.unwrap();
    let other = cluster.kv(&[1], &unique_prefix());
    let before = c.stats();
    for i in 0..50 {
        other.put(&format!("x/{i}"), vec![0; 100]).await.unwrap();
        assert_eq!(c.get("mine").await.unwrap().unwrap().value, b"v");
        assert_eq!(c.get(&format!("x/{i}")).await.unwrap(), None);
    }
    let after = c.stats();
    assert_eq!(after.misses, before.misses, "{after:?}");
    assert_eq!(after.entries, 1, "only this prefix is kept: {after:?}");
}

/// The member the copy's watch reads from dies: reads stay correct (from
/// etcd while the copy is rebuilt on another member), and the rebuilt
/// copy serves again with what was written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_whose_member_dies_is_rebuilt() {
    let mut cluster = Cluster::start().await;
    let prefix = unique_prefix();
    let c = cache(&cluster, &[0, 1, 2], &prefix).await;
    c.put("before", b"1".to_vec()).await.unwrap();
    let loads = c.stats().loads;
    cluster.kill(0);
    let writer = cluster.kv(&[1, 2], &prefix);
    let (mut n, mut written) = (0, Vec::new());
    no_hang("the rebuild", async {
        loop {
            n += 1;
            let key = format!("during/{n}");
            if writer.put(&key, b"2".to_vec()).await.is_err() {
                // Perhaps not written (an election): not counted.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            written.push(key.clone());
            match c.get(&key).await {
                Ok(found) => assert_eq!(found.map(|v| v.value), Some(b"2".to_vec()), "{key}"),
                Err(_) => continue,
            }
            let s = c.stats();
            if s.serving && s.loads > loads {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(c.get("before").await.unwrap().unwrap().value, b"1");
    let keys = c.scan_keys("during/", None, 10_000).await.unwrap();
    // A put that failed ambiguously may have been applied too.
    for key in &written {
        assert!(keys.contains(key), "{key}, written while rebuilding");
    }
}

/// A copy that would pass its bound is not kept; reads go to etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_past_its_bound_is_dropped_for_etcd_reads() {
    let cluster = Cluster::start().await;
    let prefix = unique_prefix();
    seed(&cluster, &prefix, "big/", 20, 1000).await;
    let c = WatchCache::start(cluster.kv(&[0, 1, 2], &prefix), 10_000);
    assert!(!c.wait_serving(Duration::from_secs(3)).await);
    assert_eq!(c.scan("big/", None, 100).await.unwrap().len(), 20);
    assert_eq!(
        c.get("big/0003").await.unwrap().unwrap().value,
        vec![7; 1000]
    );
    let s = c.stats();
    assert!(!s.serving && s.hits == 0 && s.misses == 2, "{s:?}");
}

/// In a read scope (one request), the first read asks etcd's revision and
/// the reads after it share the answer; a write in the scope makes the
/// next read ask again, so it sees the write; a new scope on another node
/// sees what this one wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_of_one_request_ask_etcd_once() {
    let cluster = Cluster::start().await;
    let prefix = unique_prefix();
    let a = cache(&cluster, &[0, 1, 2], &prefix).await;
    let b = cache(&cluster, &[1, 2, 0], &prefix).await;
    a.put("x", b"1".to_vec()).await.unwrap();
    let before = a.stats().revision_requests;
    berth_core::kv::read_scope(async {
        for _ in 0..10 {
            assert_eq!(a.get("x").await.unwrap().unwrap().value, b"1");
            assert_eq!(a.scan_keys("", None, 10).await.unwrap(), vec!["x"]);
        }
        assert_eq!(a.stats().revision_requests, before + 1, "asked once");
        a.put("y", b"2".to_vec()).await.unwrap();
        assert_eq!(a.get("y").await.unwrap().unwrap().value, b"2");
        assert_eq!(a.stats().revision_requests, before + 2);
    })
    .await;
    berth_core::kv::read_scope(async {
        assert_eq!(b.get("y").await.unwrap().unwrap().value, b"2");
    })
    .await;
}

/// Sixty-four readers at once on one copy while its watch applies a
/// stream of writes: every read answers (none waits forever on the copy's
/// locks) and sees what was written before it began. A reader that took
/// the applied revision's lock twice deadlocked against the watch's writer
/// (found by bench/ under 64 connections): with that, this test hangs
/// every worker thread, which the ci profile's slow-timeout ends as a
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_readers_and_a_stream_of_writes_never_stall() {
    let cluster = Cluster::start().await;
    let prefix = unique_prefix();
    let c = cache(&cluster, &[0, 1, 2], &prefix).await;
    c.put("fixed", b"f".to_vec()).await.unwrap();
    let writer = {
        let kv = cluster.kv(&[1], &prefix);
        tokio::spawn(async move {
            for i in 0..1000 {
                kv.put(&format!("w/{i}"), vec![1; 64]).await.unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    let got = c.get("fixed").await.unwrap();
                    assert_eq!(got.map(|v| v.value), Some(b"f".to_vec()));
                }
            })
        })
        .collect();
    no_hang("64 readers", async {
        for r in readers {
            r.await.unwrap();
        }
        writer.await.unwrap();
    })
    .await;
    assert_eq!(c.scan_keys("w/", None, 2000).await.unwrap().len(), 1000);
    let s = c.stats();
    assert!(s.hits >= 64 * 500, "{s:?}");
}
