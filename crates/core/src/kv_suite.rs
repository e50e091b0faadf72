//! The conformance suite every [`Kv`] backend must pass. It lives in the
//! normal build, not under `cfg(test)`, so backend crates can call it from
//! their own tests:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conforms() {
//!     berth_core::kv_suite::run_all(std::sync::Arc::new(MyKv::new())).await;
//! }
//! ```
//!
//! [`run_all`] takes an `Arc<dyn Kv>` because the concurrency check shares
//! the store with spawned tasks; every other check borrows `&dyn Kv` and can
//! be called on its own. Each check uses its own key prefix under `suite/`,
//! so the checks do not interfere, but they expect those keys to start out
//! absent: run the suite against a fresh store. Checks panic on failure.

use std::sync::Arc;

use crate::kv::{Check, Kv, Txn, Versioned};

/// Runs every check in order.
pub async fn run_all(kv: Arc<dyn Kv>) {
    get_missing(&*kv).await;
    put_get_roundtrip(&*kv).await;
    versions_change_on_every_write(&*kv).await;
    delete(&*kv).await;
    scan(&*kv).await;
    create_if_absent(&*kv).await;
    compare_and_swap(&*kv).await;
    failed_txn_writes_nothing(&*kv).await;
    multi_op_txn(&*kv).await;
    large_value(&*kv).await;
    hundred_op_txns(&*kv).await;
    special_characters_in_keys(&*kv).await;
    concurrent_increments(kv).await;
}

/// The largest transactions the registry makes (GC claims and sweeps,
/// audit batches): 100 checks and 100 writes. etcd refuses more than 128
/// operations per transaction by default.
async fn hundred_op_txns(kv: &dyn Kv) {
    let keys: Vec<String> = (0..100).map(|i| format!("suite-big/{i:03}")).collect();
    let create = keys.iter().fold(Txn::new(), |t, k| {
        t.if_unchanged(k.clone(), None)
            .put(k.clone(), b"v".to_vec())
    });
    assert!(kv.commit(create).await.unwrap(), "100 checked creates");
    let mut rewrite = Txn::new();
    for k in &keys {
        let seen = must_get(kv, k).await;
        rewrite = rewrite
            .if_unchanged(k.clone(), Some(&seen))
            .put(k.clone(), b"w".to_vec());
    }
    assert!(kv.commit(rewrite).await.unwrap(), "100 checked rewrites");
    let mut remove = Txn::new();
    for k in &keys {
        let seen = must_get(kv, k).await;
        assert_eq!(seen.value, b"w");
        remove = remove
            .if_unchanged(k.clone(), Some(&seen))
            .delete(k.clone());
    }
    assert!(kv.commit(remove).await.unwrap(), "100 checked deletes");
    assert!(kv.scan("suite-big/", None, 1000).await.unwrap().is_empty());
}

async fn get(kv: &dyn Kv, key: &str) -> Option<Versioned> {
    match kv.get(key).await {
        Ok(v) => v,
        Err(e) => panic!("get {key:?}: {e}"),
    }
}

async fn must_get(kv: &dyn Kv, key: &str) -> Versioned {
    match get(kv, key).await {
        Some(v) => v,
        None => panic!("{key:?} should exist"),
    }
}

async fn put(kv: &dyn Kv, key: &str, value: &[u8]) {
    if let Err(e) = kv.put(key, value.to_vec()).await {
        panic!("put {key:?}: {e}");
    }
}

async fn commit(kv: &dyn Kv, txn: Txn) -> bool {
    match kv.commit(txn.clone()).await {
        Ok(applied) => applied,
        Err(e) => panic!("commit {txn:?}: {e}"),
    }
}

async fn scan_keys(kv: &dyn Kv, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
    let scanned: Vec<String> = match kv.scan(prefix, after, limit).await {
        Ok(entries) => entries.into_iter().map(|(k, _)| k).collect(),
        Err(e) => panic!("scan {prefix:?} after {after:?}: {e}"),
    };
    match kv.scan_keys(prefix, after, limit).await {
        Ok(keys) => assert_eq!(keys, scanned, "scan_keys and scan disagree"),
        Err(e) => panic!("scan_keys {prefix:?} after {after:?}: {e}"),
    }
    scanned
}

pub async fn get_missing(kv: &dyn Kv) {
    assert_eq!(get(kv, "suite/missing/nothing-here").await, None);
}

pub async fn put_get_roundtrip(kv: &dyn Kv) {
    let key = "suite/roundtrip/k";
    put(kv, key, b"hello").await;
    let got = must_get(kv, key).await;
    assert_eq!(got.value, b"hello");
    assert_ne!(got.version, 0, "versions are non-zero");

    put(kv, "suite/roundtrip/empty", b"").await;
    assert_eq!(must_get(kv, "suite/roundtrip/empty").await.value, b"");
}

pub async fn versions_change_on_every_write(kv: &dyn Kv) {
    let key = "suite/versions/k";
    let mut seen = Vec::new();
    // Rewriting the same bytes must still change the version: callers use it
    // to detect any intervening write, not a change of content.
    for value in [&b"a"[..], b"a", b"b"] {
        put(kv, key, value).await;
        let v = must_get(kv, key).await;
        assert_ne!(v.version, 0);
        assert!(!seen.contains(&v.version), "version {} reused", v.version);
        seen.push(v.version);
    }

    // A key deleted and re-created must not come back at an old version, or
    // a stale CAS could succeed against the new incarnation.
    kv.delete(key).await.expect("delete");
    put(kv, key, b"a").await;
    let v = must_get(kv, key).await;
    assert!(
        !seen.contains(&v.version),
        "re-created key reused a version"
    );
}

pub async fn delete(kv: &dyn Kv) {
    let key = "suite/delete/k";
    put(kv, key, b"x").await;
    kv.delete(key).await.expect("delete existing");
    assert_eq!(get(kv, key).await, None);
    kv.delete(key)
        .await
        .expect("delete of a missing key is not an error");
    kv.delete("suite/delete/never-existed")
        .await
        .expect("delete of a missing key is not an error");
}

pub async fn scan(kv: &dyn Kv) {
    // Inserted out of order; '/' (0x2f) sorts before '@' (0x40) and 'b'.
    for key in [
        "suite/scan/a@z",
        "suite/scan/ab@x",
        "suite/scan/a@b",
        "suite/scan/a/b@x",
        "suite/scan/a@a",
        "suite/scan/a@B",
        "suite/scan/a@c",
        "suite/scan/a@",
        "suite/scan/a",
    ] {
        put(kv, key, key.as_bytes()).await;
    }
    let p = "suite/scan/a@";
    let all = ["a@", "a@B", "a@a", "a@b", "a@c", "a@z"].map(|s| format!("suite/scan/{s}"));

    assert_eq!(
        scan_keys(kv, p, None, 100).await,
        all,
        "byte order, prefix isolation"
    );
    assert_eq!(scan_keys(kv, p, None, 2).await, all[..2]);
    assert_eq!(scan_keys(kv, p, None, 0).await, Vec::<String>::new());
    assert_eq!(
        scan_keys(kv, p, Some(&all[2]), 100).await,
        all[3..],
        "start_after is exclusive"
    );
    assert_eq!(scan_keys(kv, p, Some(&all[1]), 2).await, all[2..4]);
    assert_eq!(
        scan_keys(kv, p, Some(&all[5]), 100).await,
        Vec::<String>::new()
    );
    // A start_after before the prefix, or between existing keys.
    assert_eq!(scan_keys(kv, p, Some("suite/scan/"), 100).await, all);
    assert_eq!(
        scan_keys(kv, p, Some("suite/scan/a@bb"), 100).await,
        all[4..]
    );
    // A start_after past the prefix range must not leak later keys.
    assert_eq!(
        scan_keys(kv, p, Some("suite/scan/a@~"), 100).await,
        Vec::<String>::new()
    );
    assert_eq!(
        scan_keys(kv, "suite/scan/none", None, 100).await,
        Vec::<String>::new()
    );

    // Values come back with their keys.
    let entries = kv.scan(p, None, 1).await.expect("scan");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1, must_get(kv, &all[0]).await);

    // Paging with start_after visits every key exactly once.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = scan_keys(kv, "suite/scan/", after.as_deref(), 4).await;
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged.len(), 9);
    assert!(paged.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
}

pub async fn create_if_absent(kv: &dyn Kv) {
    let key = "suite/absent/k";
    let create = |v: &[u8]| Txn::new().if_unchanged(key, None).put(key, v.to_vec());
    assert!(
        commit(kv, create(b"first")).await,
        "absent key: check holds"
    );
    assert!(
        !commit(kv, create(b"second")).await,
        "present key: check fails"
    );
    assert_eq!(must_get(kv, key).await.value, b"first");
}

pub async fn compare_and_swap(kv: &dyn Kv) {
    let key = "suite/cas/k";
    put(kv, key, b"v1").await;
    let v1 = must_get(kv, key).await;

    let swap = Txn::new()
        .if_unchanged(key, Some(&v1))
        .put(key, b"v2".to_vec());
    assert!(
        commit(kv, swap.clone()).await,
        "current version: check holds"
    );
    let v2 = must_get(kv, key).await;
    assert_eq!(v2.value, b"v2");
    assert_ne!(v2.version, v1.version);

    assert!(!commit(kv, swap).await, "stale version: check fails");
    assert_eq!(must_get(kv, key).await, v2);

    let on_missing = Txn {
        checks: vec![Check::Version("suite/cas/missing".into(), v2.version)],
        ops: vec![],
    };
    assert!(
        !commit(kv, on_missing).await,
        "version check on a missing key fails"
    );

    let only_checks = Txn::new().if_unchanged(key, Some(&v2));
    assert!(
        commit(kv, only_checks).await,
        "a txn without ops can succeed"
    );
    assert_eq!(must_get(kv, key).await, v2, "and writes nothing");
}

pub async fn failed_txn_writes_nothing(kv: &dyn Kv) {
    let (a, b, c) = ("suite/failed/a", "suite/failed/b", "suite/failed/c");
    put(kv, a, b"a1").await;
    put(kv, b, b"b1").await;
    let stale = must_get(kv, a).await;
    put(kv, a, b"a2").await;
    let (a2, b1) = (must_get(kv, a).await, must_get(kv, b).await);

    // The failing check comes last, after ones that hold, so a backend that
    // applies ops while still evaluating checks would be caught.
    let txn = Txn::new()
        .if_unchanged(b, Some(&b1))
        .if_unchanged(c, None)
        .if_unchanged(a, Some(&stale))
        .put(b, b"b2".to_vec())
        .put(c, b"c1".to_vec())
        .delete(a);
    assert!(!commit(kv, txn).await);
    assert_eq!(must_get(kv, a).await, a2);
    assert_eq!(must_get(kv, b).await, b1);
    assert_eq!(get(kv, c).await, None);
}

pub async fn multi_op_txn(kv: &dyn Kv) {
    let (a, b, c) = ("suite/multi/a", "suite/multi/b", "suite/multi/c");
    put(kv, a, b"a").await;
    let seen_a = must_get(kv, a).await;

    let txn = Txn::new()
        .if_unchanged(a, Some(&seen_a))
        .if_unchanged(b, None)
        .delete(a)
        .put(b, b"b".to_vec())
        .put(c, b"c".to_vec());
    assert!(commit(kv, txn).await);
    assert_eq!(get(kv, a).await, None);
    assert_eq!(must_get(kv, b).await.value, b"b");
    assert_eq!(must_get(kv, c).await.value, b"c");

    // Ops apply in order: the later op on the same key wins.
    let txn = Txn::new()
        .put(a, b"first".to_vec())
        .put(a, b"second".to_vec())
        .put(c, b"gone".to_vec())
        .delete(c);
    assert!(commit(kv, txn).await);
    assert_eq!(must_get(kv, a).await.value, b"second");
    assert_eq!(get(kv, c).await, None);
}

pub async fn large_value(kv: &dyn Kv) {
    let key = "suite/large/k";
    let value: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    put(kv, key, &value).await;
    let got = must_get(kv, key).await;
    assert_eq!(got.value.len(), value.len());
    assert!(got.value == value, "1 MiB value came back altered");
}

pub async fn special_characters_in_keys(kv: &dyn Kv) {
    let keys = [
        "suite/chars/library/alpine:3.20@sha256:abcd",
        "suite/chars/a/b/c/",
        "suite/chars/uploads:1:2@@x",
        "suite/chars/ünïcode/日本",
    ];
    for key in keys {
        put(kv, key, key.as_bytes()).await;
    }
    for key in keys {
        assert_eq!(must_get(kv, key).await.value, key.as_bytes());
    }
    let mut sorted = keys.map(String::from).to_vec();
    sorted.sort();
    assert_eq!(scan_keys(kv, "suite/chars/", None, 100).await, sorted);
}

/// Many writers incrementing one counter by read-then-CAS with retry: the
/// result is exact only if the backend's version checks are atomic with its
/// writes.
pub async fn concurrent_increments(kv: Arc<dyn Kv>) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 25;
    let key = "suite/concurrent/counter";

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    loop {
                        let seen = kv.get(key).await.expect("get counter");
                        let n = match &seen {
                            Some(v) => decode(&v.value),
                            None => 0,
                        };
                        let txn = Txn::new()
                            .if_unchanged(key, seen.as_ref())
                            .put(key, (n + 1).to_be_bytes().to_vec());
                        if kv.commit(txn).await.expect("commit counter") {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("increment task panicked");
    }
    let final_value = decode(&must_get(&*kv, key).await.value);
    assert_eq!(
        final_value,
        TASKS * PER_TASK,
        "lost or duplicated increments"
    );
}

fn decode(bytes: &[u8]) -> u64 {
    let arr: [u8; 8] = bytes.try_into().expect("counter is 8 bytes");
    u64::from_be_bytes(arr)
}
