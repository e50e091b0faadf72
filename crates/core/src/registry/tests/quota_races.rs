//! Quota and session bounds under races, each staged exactly between the
//! check and the write it guards: what passes the check alone must not
//! pass together with what another request did meanwhile.

use super::gc::{collect, GRACE};
use super::*;
use crate::registry::policy::ProjectPolicy;
use crate::registry::UploadLimits;
use berth_oci::ErrorCode;

async fn with_quota(reg: &Registry, project: &str, bytes: u64) {
    let policy = ProjectPolicy {
        quota_bytes: Some(bytes),
        ..ProjectPolicy::default()
    };
    reg.set_project_policy(project, &policy).await.unwrap();
}

async fn monolithic(reg: &Registry, r: &str, data: &[u8]) -> Result<(), crate::CoreError> {
    let digest = Digest::sha256_of(data);
    let len = Some(data.len() as u64);
    reg.upload_monolithic(&repo(r), &digest, len, body(&[data]))
        .await
}

/// Two uploads of 60 bytes into a project with room for 100: each fits
/// alone, and the second links just before the first commits. The first
/// must then be refused; its bytes are left for GC, never uncounted in the
/// project, and no upload is left behind.
#[tokio::test]
async fn links_racing_past_the_quota_are_refused_not_both_taken() {
    let (ix, fx) = Fixture::interposed();
    with_quota(&fx.reg, "p", 100).await;
    let other = fx.node();
    ix.before(|call| call.puts("rblob:p/a@", ""), async move {
        monolithic(&other, "p/b", &[2; 60]).await.unwrap();
    });
    let e = monolithic(&fx.reg, "p/a", &[1; 60]).await.unwrap_err();
    assert!(ix.done(), "the other upload ran between check and link");
    assert_eq!(e.code, ErrorCode::Denied, "{e}");
    assert_eq!(fx.reg.project_usage("p").await.unwrap(), 60);
    assert_eq!(fx.uploads_stored().await, Vec::<String>::new());
    // The refused blob's bytes had moved into place: GC reclaims them.
    let refused = Digest::sha256_of(&[1; 60]);
    fx.advance_secs(GRACE + 1);
    collect(&fx.reg).await;
    assert_eq!(fx.read_blob(&refused).await, None);
}

/// A mount moves no bytes, and raced the same way it is refused too.
#[tokio::test]
async fn mounts_racing_past_the_quota_are_refused() {
    let (ix, fx) = Fixture::interposed();
    let a = push_blob(&fx.reg, &repo("src/a"), &[1; 60]).await;
    let b = push_blob(&fx.reg, &repo("src/b"), &[2; 60]).await;
    with_quota(&fx.reg, "p", 100).await;
    let other = fx.node();
    ix.before(|call| call.puts("rblob:p/a@", ""), async move {
        assert!(other
            .blob_mount(&repo("p/b"), &b, &repo("src/b"))
            .await
            .unwrap());
    });
    let e = fx
        .reg
        .blob_mount(&repo("p/a"), &a, &repo("src/a"))
        .await
        .unwrap_err();
    assert!(ix.done());
    assert_eq!(e.code, ErrorCode::Denied, "{e}");
    assert_eq!(fx.reg.project_usage("p").await.unwrap(), 60);
}

/// Two sessions opened at once into a repository with room for one: the
/// second is written between the first's count and its write. One of them
/// is refused, whichever counts last.
#[tokio::test]
async fn sessions_opened_at_once_cannot_pass_the_bound_together() {
    let ix = Arc::new(Interposer::default());
    let limits = UploadLimits {
        per_repository: 1,
        per_account: 0,
    };
    let fx = Fixture::on(ix.clone());
    let reg = fx.reg.clone().with_upload_limits(limits);
    let other = fx.node().with_upload_limits(limits);
    ix.before(|call| call.puts("uprepo:p/a@", ""), async move {
        other.upload_start(&repo("p/a"), "bob").await.unwrap();
    });
    let e = reg.upload_start(&repo("p/a"), "alice").await.unwrap_err();
    assert!(ix.done());
    assert_eq!(e.code, ErrorCode::TooManyRequests, "{e}");
    assert_eq!(fx.keys("uprepo:p/a@").await.len(), 1);
    assert_eq!(fx.keys("upload:").await.len(), 1);
    assert_eq!(fx.uploads_stored().await.len(), 1);
}

/// A PATCH whose body breaks after 600 bytes leaves them in the store
/// until the next write cuts them: they count toward the quota until then
/// (an attacker's cut-short PATCHes used to leave bytes counted nowhere).
#[tokio::test]
async fn bytes_of_a_broken_patch_count_until_they_are_cut() {
    let fx = Fixture::new();
    with_quota(&fx.reg, "p", 1000).await;
    let a = fx.reg.upload_start(&repo("p/a"), "alice").await.unwrap().id;
    let (feed, writer) = fed_append(&fx.reg, &repo("p/a"), &a);
    feed.send(&[1; 600]);
    until("the chunk is written", || {
        let blobs = fx.blobs.clone();
        let a = a.clone();
        async move { blobs.upload_len(&a) == Some(600) }
    })
    .await;
    feed.fail();
    writer.await.unwrap().unwrap_err();
    assert_eq!(fx.session(&a).await.unwrap().offset, 0);
    let b = fx.reg.upload_start(&repo("p/b"), "alice").await.unwrap().id;
    let e = fx
        .reg
        .upload_append(&repo("p/b"), &b, None, Some(500), body(&[&[2; 500]]))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Denied, "{e}");
    // Continuing the upload from its offset cuts the bytes: room again.
    fx.reg
        .upload_append(&repo("p/a"), &a, Some(0), Some(10), body(&[&[1; 10]]))
        .await
        .unwrap();
    fx.reg
        .upload_append(&repo("p/b"), &b, None, Some(500), body(&[&[2; 500]]))
        .await
        .unwrap();
}
