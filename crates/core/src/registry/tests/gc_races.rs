//! Garbage collection racing pushes and deletes: a push staged exactly
//! between two steps of a collection must lose nothing, and a stress run
//! of both at once must leave every tag whole.

use super::gc::{collect, sound, GRACE};
use super::*;
use crate::registry::gc::GcOptions;
use std::sync::atomic::{AtomicBool, Ordering};

/// An old blob nothing names is about to be claimed when another node
/// pushes an image that uses it again: the claim must fail, the bytes stay.
#[tokio::test]
async fn a_blob_linked_during_collection_survives() {
    let (ix, fx) = Fixture::interposed();
    let layer = push_garbage(&fx.reg, &repo("p/old"), b"layer").await;
    fx.advance_secs(GRACE + 1);
    let other = fx.node();
    ix.before(|call| call.puts("blob:", "\"deleting\""), async move {
        push_image(&other, &repo("p/new"), "v1", b"layer").await;
    });
    let report = collect(&fx.reg).await;
    assert!(ix.done(), "the push ran during the collection");
    assert_eq!(report.blobs_deleted, 0);
    assert_eq!(fx.read_blob(&layer).await.unwrap(), b"layer");
    fx.reg
        .manifest_get(&repo("p/new"), &reference("v1"))
        .await
        .unwrap();
    sound(&fx.reg).await;
}

/// A manifest pushed into a repository after the collection read it, that
/// names blobs the collection found unneeded: the repository is left for
/// the next run, which sees the new manifest.
#[tokio::test]
async fn a_push_during_collection_keeps_its_repository() {
    let (ix, fx) = Fixture::interposed();
    let r = repo("p/app");
    push_image(&fx.reg, &r, "v1", b"layer").await;
    fx.reg.manifest_delete(&r, &reference("v1")).await.unwrap();
    fx.advance_secs(GRACE + 1);
    let other = fx.node();
    let (config, layer) = (Digest::sha256_of(b"{}"), Digest::sha256_of(b"layer"));
    let body = image(
        &config,
        &[&layer],
        serde_json::json!({"annotations": {"v": "2"}}),
    );
    ix.before(
        |call| matches!(call, Call::Scan(prefix) if *prefix == "tag:p/app@"),
        async move {
            let (r, tag) = (repo("p/app"), reference("v2"));
            other
                .manifest_put(&r, &tag, Some(IMAGE), body)
                .await
                .unwrap();
        },
    );
    let report = collect(&fx.reg).await;
    assert!(ix.done(), "the push ran during the collection");
    fx.reg.manifest_get(&r, &reference("v2")).await.unwrap();
    sound(&fx.reg).await;
    assert_eq!(report.repositories_skipped, 1);
    assert_eq!((report.manifests_deleted, report.blobs_deleted), (0, 0));

    let report = collect(&fx.reg).await;
    assert_eq!(report.repositories_skipped, 0);
    assert_eq!((report.manifests_deleted, report.blobs_deleted), (1, 0));
    assert_eq!(fx.read_blob(&layer).await.unwrap(), b"layer");
    sound(&fx.reg).await;
}

/// Pushes an image of fresh blobs as `tag`. A push may fail when its
/// blobs were collected before its manifest came (the clock runs fast
/// here); it must never leave a tag naming missing content.
async fn push_fresh(reg: &Registry, r: &RepoName, tag: &str) {
    let config = crate::blob_suite::content(50);
    let layer = crate::blob_suite::content(500);
    let mut digests = Vec::new();
    for data in [&config, &layer] {
        let digest = Digest::sha256_of(data);
        let pushed = reg.upload_monolithic(r, &digest, None, body(&[data]));
        if pushed.await.is_err() {
            return;
        }
        digests.push(digest);
    }
    let body = image(&digests[0], &[&digests[1]], serde_json::json!({}));
    let _ = reg
        .manifest_put(r, &reference(tag), Some(IMAGE), body)
        .await;
}

/// Three clients pushing, retagging and deleting while collections run
/// back to back with the clock racing ahead: afterwards every tag names a
/// whole image and fsck finds nothing wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_racing_pushes_and_deletes_leave_every_tag_whole() {
    let fx = Fixture::new();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (reg, clock, stop) = (fx.node(), fx.clock.clone(), stop.clone());
        tokio::spawn(async move {
            let opts = GcOptions {
                grace_secs: 10,
                upload_expiry_secs: 60,
                dry_run: false,
            };
            while !stop.load(Ordering::SeqCst) {
                reg.collect_garbage(opts, "test", None).await.unwrap();
                clock.advance(std::time::Duration::from_secs(3));
                tokio::task::yield_now().await;
            }
        })
    };
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let reg = fx.node();
            tokio::spawn(async move {
                let r = repo(&format!("p/app{c}"));
                for i in 0..30 {
                    let tag = format!("t{}", i % 4);
                    push_fresh(&reg, &r, &tag).await;
                    if i % 5 == 4 {
                        let _ = reg.manifest_delete(&r, &reference(&tag)).await;
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    collector.await.unwrap();
    sound(&fx.reg).await;
    for c in 0..3 {
        let r = repo(&format!("p/app{c}"));
        let Ok(tags) = fx.reg.tags(&r, None, None).await else {
            continue;
        };
        for tag in tags.items() {
            let m = fx.reg.manifest_get(&r, &reference(tag)).await.unwrap();
            let parsed = berth_oci::manifest::parse(Some(IMAGE), &m.body).unwrap();
            for blob in parsed.required_blobs() {
                assert!(fx.read_blob(&blob.digest).await.is_some(), "{r}:{tag}");
            }
        }
    }
}
