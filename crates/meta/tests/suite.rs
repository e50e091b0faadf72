use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_core::kv::{Kv, Txn};
use berth_meta::RedbKv;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(&dir.path().join("meta.redb")).unwrap();
    berth_core::kv_suite::run_all(Arc::new(kv)).await;
}

#[tokio::test]
async fn data_and_versions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");

    let kv = RedbKv::open(&path).unwrap();
    kv.put("a", b"one".to_vec()).await.unwrap();
    kv.put("b", b"two".to_vec()).await.unwrap();
    let a = kv.get("a").await.unwrap().unwrap();
    let b = kv.get("b").await.unwrap().unwrap();
    // Deleting the newest key must not let its version be handed out again.
    kv.delete("b").await.unwrap();
    drop(kv);

    let kv = RedbKv::open(&path).unwrap();
    assert_eq!(kv.get("a").await.unwrap(), Some(a.clone()));
    assert_eq!(kv.get("b").await.unwrap(), None);
    let stale = Txn::new()
        .if_unchanged("a", Some(&a))
        .put("a", b"1".to_vec());
    assert!(
        kv.commit(stale).await.unwrap(),
        "versions read before a restart still match"
    );
    let a2 = kv.get("a").await.unwrap().unwrap();
    assert!(
        a2.version > b.version,
        "the counter keeps increasing across restarts"
    );
}

const CHILD_DB: &str = "BERTH_META_TEST_CHILD_DB";

/// The child half of `commits_survive_abort`; a no-op when run normally.
#[tokio::test]
async fn abort_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let kv = RedbKv::open(Path::new(&path)).unwrap();
    for i in 0..10u8 {
        kv.put(&format!("k{i}"), vec![i]).await.unwrap();
    }
    // No destructors, no clean close: what a crash or kill -9 leaves behind.
    std::process::abort();
}

#[tokio::test]
async fn commits_survive_abort() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["abort_child", "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_DB, &path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");

    let kv = RedbKv::open(&path).unwrap();
    let entries = kv.scan("k", None, 100).await.unwrap();
    let values: Vec<_> = entries.into_iter().map(|(_, v)| v.value).collect();
    assert_eq!(values, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
}
