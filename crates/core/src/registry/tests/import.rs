//! The operations an import adds: a blob whose bytes are in the store
//! already is recorded and linked in one step, without a byte written and
//! only when the bytes are there at the size given; a refused link leaves
//! the bytes unclaimed; a tag is created for a manifest already in the
//! repository, never moved.

use super::gc::{collect, sound, GRACE};
use super::*;
use crate::registry::policy::ProjectPolicy;
use berth_oci::ErrorCode;

/// Bytes put in the store behind the registry's back, as a Distribution
/// registry left them.
async fn left_in_store(fx: &Fixture, data: &[u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    fx.blobs
        .put(&digest, Bytes::copy_from_slice(data))
        .await
        .unwrap();
    digest
}

#[tokio::test]
async fn bytes_in_the_store_are_recorded_and_linked_in_place() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let digest = left_in_store(&fx, b"layer bytes").await;
    assert!(fx.keys("blob:").await.is_empty());

    fx.reg.blob_link_in_place(&r, &digest, 11).await.unwrap();
    assert_eq!(fx.reg.blob_size(&r, &digest).await.unwrap(), 11);
    assert_eq!(fx.reg.blob_recorded_size(&digest).await.unwrap(), Some(11));
    assert_eq!(fx.read_blob(&digest).await.unwrap(), b"layer bytes");
    assert!(fx.uploads_stored().await.is_empty(), "nothing was uploaded");

    // Again, and into another repository: a link to the recorded blob.
    fx.reg.blob_link_in_place(&r, &digest, 11).await.unwrap();
    let other = repo("q/tool");
    fx.reg
        .blob_link_in_place(&other, &digest, 11)
        .await
        .unwrap();
    assert_eq!(fx.keys("rblob:").await.len(), 2);
    assert_eq!(fx.keys("blob:").await.len(), 1);
    sound(&fx.reg).await;
}

#[tokio::test]
async fn missing_or_mis_sized_bytes_are_refused_and_leave_nothing() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let absent = Digest::sha256_of(b"never stored");
    let e = fx
        .reg
        .blob_link_in_place(&r, &absent, 12)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BlobUnknown, "{e}");

    let digest = left_in_store(&fx, b"five!").await;
    let e = fx.reg.blob_link_in_place(&r, &digest, 6).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::SizeInvalid, "{e}");
    assert!(fx.keys("blob:").await.is_empty());
    assert!(fx.keys("rblob:").await.is_empty());
    assert!(fx.read_blob(&digest).await.is_some(), "the bytes stay");
}

/// A link the quota refuses must not record bytes it did not write:
/// recorded without a link, garbage collection would delete what the old
/// registry left, though nothing of berth's ever used it.
#[tokio::test]
async fn a_refused_link_leaves_the_bytes_unclaimed() {
    let fx = Fixture::new();
    let policy = ProjectPolicy {
        quota_bytes: Some(4),
        ..ProjectPolicy::default()
    };
    fx.reg.set_project_policy("p", &policy).await.unwrap();
    let digest = left_in_store(&fx, b"over the quota").await;
    let e = fx
        .reg
        .blob_link_in_place(&repo("p/app"), &digest, 14)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Denied, "{e}");
    assert!(fx.keys("blob:").await.is_empty());
    fx.advance_secs(GRACE + 1);
    collect(&fx.reg).await;
    assert!(fx.read_blob(&digest).await.is_some());
}

/// Adopted blobs live as pushed ones do: kept while a tagged manifest
/// names them, collected once nothing does.
#[tokio::test]
async fn adopted_blobs_are_collected_like_pushed_ones() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let config = left_in_store(&fx, b"{}").await;
    let layer = left_in_store(&fx, b"l").await;
    let loose = left_in_store(&fx, b"loose").await;
    for (d, size) in [(&config, 2), (&layer, 1), (&loose, 5)] {
        fx.reg.blob_link_in_place(&r, d, size).await.unwrap();
    }
    let body = image(&config, &[&layer], serde_json::json!({}));
    fx.reg
        .manifest_put(&r, &reference("v1"), Some(IMAGE), body)
        .await
        .unwrap();
    fx.advance_secs(GRACE + 1);
    let report = collect(&fx.reg).await;
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    assert!(fx.read_blob(&loose).await.is_none());
    assert!(fx.read_blob(&layer).await.is_some());
    sound(&fx.reg).await;
}

#[tokio::test]
async fn a_blob_being_collected_is_not_a_recorded_one() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let digest = push_garbage(&fx.reg, &r, b"old").await;
    assert_eq!(fx.reg.blob_recorded_size(&digest).await.unwrap(), Some(3));
    fx.advance_secs(GRACE + 1);
    collect(&fx.reg).await;
    assert_eq!(fx.reg.blob_recorded_size(&digest).await.unwrap(), None);
}

#[tokio::test]
async fn a_tag_is_created_for_a_manifest_in_the_repository_and_never_moved() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let first = push(&fx.reg, &r, "v1", b"one").await;
    let (body, _) = push_image_blobs(&fx.reg, &r, b"{}", b"two").await;
    let second = Digest::sha256_of(&body);
    let by_digest = Reference::Digest(second.clone());
    fx.reg
        .manifest_put(&r, &by_digest, Some(IMAGE), body)
        .await
        .unwrap();
    assert!(fx.reg.manifest_exists(&r, &second).await.unwrap());

    let repo_record = fx.kv.get("repo:p/app").await.unwrap().unwrap();
    assert!(fx.reg.tag_create(&r, "v2", &second).await.unwrap());
    assert_eq!(fx.reg.resolve(&r, &reference("v2")).await.unwrap(), second);
    let after = fx.kv.get("repo:p/app").await.unwrap().unwrap();
    assert_ne!(
        repo_record.version, after.version,
        "the repository record is rewritten, ending cached tag lists"
    );
    let page = fx.reg.tags(&r, None, None).await.unwrap();
    assert_eq!(page.items(), ["v1", "v2"]);

    // An existing tag stays where it points.
    assert!(!fx.reg.tag_create(&r, "v1", &second).await.unwrap());
    assert_eq!(fx.reg.resolve(&r, &reference("v1")).await.unwrap(), first);

    let absent = Digest::sha256_of(b"no such manifest");
    let e = fx.reg.tag_create(&r, "v3", &absent).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestUnknown, "{e}");
    let e = fx
        .reg
        .tag_create(&repo("p/none"), "v1", &first)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestUnknown, "{e}");
    assert!(!fx
        .reg
        .manifest_exists(&repo("p/none"), &first)
        .await
        .unwrap());
}
