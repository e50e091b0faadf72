//! Garbage collection on a still registry: what goes once the grace
//! period has passed on the clock, what stays, and what expires. Races
//! with pushes are in `gc_races`.

use super::*;
use crate::registry::encode;
use crate::registry::gc::{GcOptions, GcReport};
use crate::registry::lifecycle::STALE_DELETING_SECS;
use crate::registry::records::BlobRecord;
use berth_oci::ErrorCode;

pub(super) const GRACE: u64 = 3600;
pub(super) const EXPIRY: u64 = 86_400;

pub(super) async fn collect(reg: &Registry) -> GcReport {
    let opts = GcOptions {
        grace_secs: GRACE,
        upload_expiry_secs: EXPIRY,
        dry_run: false,
    };
    reg.collect_garbage(opts, "test", None).await.unwrap()
}

/// No blob record is left, and what remains is sound.
async fn all_blobs_gone(fx: &Fixture) {
    assert!(fx.keys("blob:").await.is_empty());
    sound(&fx.reg).await;
}

/// fsck finds nothing wrong: every tag, manifest, link and blob record
/// names something that exists.
pub(super) async fn sound(reg: &Registry) {
    let report = reg.fsck(true, false).await.unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
}

#[tokio::test]
async fn an_unreferenced_blob_goes_once_the_grace_period_has_passed() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let digest = push_garbage(&fx.reg, &r, b"garbage").await;
    fx.advance_secs(GRACE - 1);
    assert_eq!(
        collect(&fx.reg).await.blobs_deleted,
        0,
        "younger than the grace"
    );
    assert!(fx.read_blob(&digest).await.is_some());
    fx.advance_secs(1);
    let report = collect(&fx.reg).await;
    assert_eq!((report.blobs_deleted, report.bytes_freed), (1, 7));
    assert_eq!(fx.blobs.stat(&digest).await.unwrap(), None);
    all_blobs_gone(&fx).await;
}

/// A blob uploaded a moment ago, that no manifest names yet (the client
/// is still pushing its layers), keeps its bytes and its link.
#[tokio::test]
async fn a_blob_uploaded_within_the_grace_period_survives() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let (body, layer) = push_image_blobs(&fx.reg, &r, b"{}", b"layer").await;
    fx.advance_secs(GRACE - 1);
    let report = collect(&fx.reg).await;
    assert_eq!((report.blobs_deleted, report.blob_links_deleted), (0, 0));
    // The client pushes its manifest now: its blobs are still there.
    fx.reg
        .manifest_put(&r, &reference("v1"), Some(IMAGE), body)
        .await
        .unwrap();
    fx.advance_secs(10 * GRACE);
    collect(&fx.reg).await;
    assert_eq!(fx.read_blob(&layer).await.unwrap(), b"layer");
    sound(&fx.reg).await;
}

/// Tagged manifests keep their blobs; an untagged manifest older than the
/// grace period goes with the links and blobs only it named; a young
/// untagged one stays.
#[tokio::test]
async fn untagged_old_manifests_go_with_what_only_they_name() {
    let fx = Fixture::new();
    let r = repo("p/app");
    push_image(&fx.reg, &r, "v1", b"kept layer").await;
    let old = Digest::sha256_of(b"old layer");
    let untagged = push_image(&fx.reg, &r, "v2", b"old layer").await;
    fx.reg.manifest_delete(&r, &reference("v2")).await.unwrap();
    fx.advance_secs(GRACE + 1);
    let young = push_image(&fx.reg, &r, "v3", b"young layer").await;
    fx.reg.manifest_delete(&r, &reference("v3")).await.unwrap();

    let report = collect(&fx.reg).await;
    assert_eq!(report.manifests_deleted, 1);
    assert_eq!(report.blob_links_deleted, 1);
    assert_eq!(report.blobs_deleted, 1);
    let e = fx
        .reg
        .manifest_get(&r, &Reference::Digest(untagged))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestUnknown);
    assert_eq!(fx.blobs.stat(&old).await.unwrap(), None);
    fx.reg.manifest_get(&r, &reference("v1")).await.unwrap();
    fx.reg
        .manifest_get(&r, &Reference::Digest(young))
        .await
        .unwrap();
    sound(&fx.reg).await;
}

/// What a tagged index reaches is kept: its children, and the referrers
/// (signatures) of it, transitively; once untagged and old, all goes.
#[tokio::test]
async fn a_tagged_index_keeps_its_children_and_referrers() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let child = push_image(&fx.reg, &r, "child", b"layer").await;
    fx.reg
        .manifest_delete(&r, &reference("child"))
        .await
        .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": IMAGE, "digest": child, "size": 1}],
    });
    let index = fx
        .reg
        .manifest_put(
            &r,
            &reference("v1"),
            Some(INDEX),
            Bytes::from(index.to_string()),
        )
        .await
        .unwrap()
        .digest;
    let config = push_blob(&fx.reg, &r, b"{}").await;
    let sig_body = image(
        &config,
        &[],
        serde_json::json!({
            "artifactType": "application/vnd.example.sig",
            "subject": {"mediaType": INDEX, "digest": index, "size": 1},
        }),
    );
    let sig = Digest::sha256_of(&sig_body);
    fx.reg
        .manifest_put(&r, &Reference::Digest(sig.clone()), Some(IMAGE), sig_body)
        .await
        .unwrap();
    fx.advance_secs(GRACE + 1);
    let report = collect(&fx.reg).await;
    assert_eq!((report.manifests_deleted, report.blobs_deleted), (0, 0));
    for digest in [&child, &sig] {
        let by_digest = Reference::Digest(digest.clone());
        fx.reg.manifest_get(&r, &by_digest).await.unwrap();
    }

    fx.reg.manifest_delete(&r, &reference("v1")).await.unwrap();
    let report = collect(&fx.reg).await;
    assert_eq!(report.manifests_deleted, 3);
    assert_eq!(report.blobs_deleted, 2, "the layer and the config");
    assert!(fx.keys("ref:").await.is_empty());
    all_blobs_gone(&fx).await;
}

/// Sessions idle for the upload expiry go with their bytes and index
/// entries; one with a writer on it stays however old.
#[tokio::test]
async fn idle_uploads_expire_with_the_clock() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let idle = fx.reg.upload_start(&r, "alice").await.unwrap().id;
    let busy = fx.reg.upload_start(&r, "alice").await.unwrap().id;
    fx.reg
        .upload_append(&r, &idle, None, None, body(&[b"abc"]))
        .await
        .unwrap();
    fx.advance_secs(EXPIRY - 1);
    assert_eq!(collect(&fx.reg).await.uploads_deleted, 0);
    fx.advance_secs(1);
    let (feed, writer) = fed_append(&fx.reg, &r, &busy);
    feed.send(b"x");
    until("writing", || async {
        fx.blobs.upload_len(&busy) == Some(1)
    })
    .await;
    let report = collect(&fx.reg).await;
    assert_eq!(report.uploads_deleted, 1);
    assert!(fx.session(&idle).await.is_none());
    assert!(!fx.uploads_stored().await.contains(&idle));
    let marks = fx.keys(keys::UPLOAD_IN_REPO_PREFIX).await;
    assert_eq!(marks, [keys::upload_in_repo("p/app", &busy)]);
    drop(feed);
    assert_eq!(writer.await.unwrap().unwrap().offset, 1);
}

/// A monolithic push whose client went away leaves bytes no session
/// names; they go once older than the upload expiry.
#[tokio::test]
async fn bytes_of_a_dropped_monolithic_push_expire() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let (feed, stream) = feed();
    let task = {
        let (reg, r) = (fx.reg.clone(), r.clone());
        let digest = Digest::sha256_of(b"never finished");
        tokio::spawn(async move { reg.upload_monolithic(&r, &digest, None, stream).await })
    };
    feed.send(b"never");
    until("written", || async {
        let ids = fx.uploads_stored().await;
        ids.len() == 1 && fx.blobs.upload_len(&ids[0]) == Some(5)
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    fx.advance_secs(EXPIRY - 1);
    assert_eq!(collect(&fx.reg).await.uploads_deleted, 0);
    fx.advance_secs(1);
    let report = collect(&fx.reg).await;
    assert_eq!(report.uploads_deleted, 1);
    assert!(report.deleted[0].ends_with("(no session)"), "{report:?}");
    assert!(fx.uploads_stored().await.is_empty());
}

#[tokio::test]
async fn a_dry_run_reports_and_deletes_nothing() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let digest = push_image(&fx.reg, &r, "v1", b"layer").await;
    fx.reg.manifest_delete(&r, &reference("v1")).await.unwrap();
    fx.advance_secs(GRACE + 1);
    let opts = GcOptions {
        grace_secs: GRACE,
        upload_expiry_secs: EXPIRY,
        dry_run: true,
    };
    let dry = fx.reg.collect_garbage(opts, "test", None).await.unwrap();
    assert_eq!((dry.manifests_deleted, dry.blobs_deleted), (1, 2));
    assert!(dry.deleted.contains(&format!("manifest p/app@{digest}")));
    fx.reg
        .manifest_get(&r, &Reference::Digest(digest))
        .await
        .unwrap();
    assert_eq!(fx.keys("blob:").await.len(), 2);
    assert!(
        fx.reg.gc_history().await.unwrap().is_empty(),
        "not recorded"
    );
    let real = collect(&fx.reg).await;
    assert_eq!((real.manifests_deleted, real.blobs_deleted), (1, 2));
}

/// A collector that died between claiming a blob and deleting it leaves
/// a deleting record; once stale, the next push of that blob finishes
/// the deletion and stores it anew, and so does the next collection.
#[tokio::test]
async fn a_deletion_left_by_a_dead_collector_is_finished() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let mut digests = Vec::new();
    for data in [b"pushed again".as_slice(), b"left alone"] {
        let digest = push_garbage(&fx.reg, &r, data).await;
        let key = keys::blob(&digest);
        let record = fx.kv.get(&key).await.unwrap().unwrap();
        let mut record: BlobRecord = serde_json::from_slice(&record.value).unwrap();
        record.deleting = Some(fx.reg.now());
        fx.kv.put(&key, encode(&record)).await.unwrap();
        digests.push(digest);
    }
    fx.advance_secs(STALE_DELETING_SECS + 1);
    push_blob(&fx.reg, &r, b"pushed again").await;
    let record = fx.kv.get(&keys::blob(&digests[0])).await.unwrap().unwrap();
    let record: BlobRecord = serde_json::from_slice(&record.value).unwrap();
    assert_eq!(record.deleting, None);
    assert_eq!(fx.read_blob(&digests[0]).await.unwrap(), b"pushed again");

    let report = collect(&fx.reg).await;
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(fx.blobs.stat(&digests[1]).await.unwrap(), None);
    assert!(fx.kv.get(&keys::blob(&digests[1])).await.unwrap().is_none());
    sound(&fx.reg).await;
}

#[tokio::test]
async fn the_history_keeps_the_last_fifty_runs_newest_first() {
    let fx = Fixture::new();
    let mut ids = Vec::new();
    for _ in 0..52 {
        ids.push(collect(&fx.reg).await.id);
        fx.advance_secs(1);
    }
    let history = fx.reg.gc_history().await.unwrap();
    let listed: Vec<&String> = history.iter().map(|r| &r.id).collect();
    let expected: Vec<&String> = ids.iter().rev().take(50).collect();
    assert_eq!(listed, expected);
}
