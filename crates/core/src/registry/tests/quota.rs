//! Quotas and upload bounds: bytes count toward the project's quota as
//! they arrive, a write past it is refused, a blob counts once per
//! project, and open sessions are capped per repository and per account.

use super::gc::{collect, EXPIRY};
use super::*;
use crate::registry::claims::RENEW_AFTER_MS;
use crate::registry::policy::ProjectPolicy;
use crate::registry::UploadLimits;
use berth_oci::ErrorCode;
use std::time::Duration;

async fn with_quota(fx: &Fixture, project: &str, bytes: u64) {
    let policy = ProjectPolicy {
        quota_bytes: Some(bytes),
        ..ProjectPolicy::default()
    };
    fx.reg.set_project_policy(project, &policy).await.unwrap();
}

async fn start(reg: &Registry, r: &str, account: &str) -> Result<String, crate::CoreError> {
    Ok(reg.upload_start(&repo(r), account).await?.id)
}

async fn append(
    reg: &Registry,
    r: &str,
    id: &str,
    len: Option<u64>,
    data: &[&[u8]],
) -> Result<u64, crate::CoreError> {
    let r = repo(r);
    let status = reg.upload_append(&r, id, None, len, body(data));
    Ok(status.await?.offset)
}

/// A fixture whose project `p` holds at most `bytes`, and an upload alice
/// started in `p/app`.
async fn upload_under_quota(bytes: u64) -> (Fixture, String) {
    let fx = Fixture::new();
    with_quota(&fx, "p", bytes).await;
    let id = start(&fx.reg, "p/app", "alice").await.unwrap();
    (fx, id)
}

fn denied(e: crate::CoreError) {
    assert_eq!(e.code, ErrorCode::Denied, "{e}");
}

#[tokio::test]
async fn an_announced_chunk_past_the_quota_is_refused_before_its_bytes() {
    let (fx, id) = upload_under_quota(100).await;
    denied(
        append(&fx.reg, "p/app", &id, Some(101), &[&[0; 101]])
            .await
            .unwrap_err(),
    );
    let session = fx.session(&id).await.unwrap();
    assert_eq!((session.offset, session.writer), (0, None));
    assert_eq!(fx.blobs.upload_len(&id), Some(0), "not a byte read");
    assert_eq!(
        append(&fx.reg, "p/app", &id, Some(100), &[&[0; 100]])
            .await
            .unwrap(),
        100
    );
    // The open upload's bytes count: one more byte anywhere is refused.
    let one = Digest::sha256_of(b"1");
    let e = fx
        .reg
        .upload_monolithic(&repo("p/other"), &one, Some(1), body(&[b"1"]))
        .await
        .unwrap_err();
    denied(e);
}

/// An upload's bytes count as they arrive, not only once it is finished:
/// another client of the project is held to what is left meanwhile.
#[tokio::test]
async fn bytes_count_toward_the_quota_as_they_arrive() {
    let fx = Fixture::new();
    with_quota(&fx, "p", 1000).await;
    let a = start(&fx.reg, "p/a", "alice").await.unwrap();
    let (feed, writer) = fed_append(&fx.reg, &repo("p/a"), &a);
    feed.send(&[7; 600]);
    until("600 bytes", || async {
        fx.blobs.upload_len(&a) == Some(600)
    })
    .await;
    // The renewal before the next chunk records the 600 bytes received.
    fx.clock.advance(Duration::from_millis(RENEW_AFTER_MS + 1));
    feed.send(&[7]);
    until("601 bytes", || async {
        fx.blobs.upload_len(&a) == Some(601)
    })
    .await;

    let b = start(&fx.reg, "p/b", "bob").await.unwrap();
    denied(
        append(&fx.reg, "p/b", &b, None, &[&[1; 500]])
            .await
            .unwrap_err(),
    );
    // Refused before a byte landed: the upload stays, for what fits.
    assert_eq!(
        append(&fx.reg, "p/b", &b, None, &[&[1; 399]])
            .await
            .unwrap(),
        399
    );

    drop(feed);
    assert_eq!(writer.await.unwrap().unwrap().offset, 601);
    let digest = Digest::sha256_of(&[7; 601]);
    fx.reg
        .upload_finish(&repo("p/a"), &a, &digest, None, None, None)
        .await
        .unwrap();
    assert_eq!(fx.reg.project_usage("p").await.unwrap(), 601);
    // 601 stored and 399 pending: full.
    denied(append(&fx.reg, "p/b", &b, None, &[b"x"]).await.unwrap_err());
}

/// A body of unknown length is refused as soon as it passes the quota,
/// and the upload it was writing is cancelled, bytes and all.
#[tokio::test]
async fn a_write_past_the_quota_is_refused_midway_and_cancelled() {
    let (fx, id) = upload_under_quota(100).await;
    denied(
        append(&fx.reg, "p/app", &id, None, &[&[1; 60], &[2; 60]])
            .await
            .unwrap_err(),
    );
    assert!(fx.session(&id).await.is_none());
    assert!(fx.uploads_stored().await.is_empty());
    assert!(fx.keys(keys::UPLOAD_IN_REPO_PREFIX).await.is_empty());

    let r = repo("p/app");
    let eleven = Digest::sha256_of(&[3; 101]);
    let e = fx
        .reg
        .upload_monolithic(&r, &eleven, None, body(&[&[3; 101]]));
    denied(e.await.unwrap_err());
    assert!(fx.uploads_stored().await.is_empty());
    push_blob(&fx.reg, &r, &[3; 100]).await;
}

/// A layer shared by repositories of a project counts once.
#[tokio::test]
async fn a_blob_counts_once_per_project() {
    let fx = Fixture::new();
    with_quota(&fx, "p", 10).await;
    let digest = push_blob(&fx.reg, &repo("p/a"), b"sixsix").await;
    assert!(fx
        .reg
        .blob_mount(&repo("p/b"), &digest, &repo("p/a"))
        .await
        .unwrap());
    push_blob(&fx.reg, &repo("p/c"), b"sixsix").await;
    assert_eq!(fx.reg.project_usage("p").await.unwrap(), 6);
    let other = Digest::sha256_of(b"sevens");
    let r = repo("p/a");
    let e = fx
        .reg
        .upload_monolithic(&r, &other, Some(6), body(&[b"sevens"]));
    denied(e.await.unwrap_err());
}

/// A project whose name extends another's is another project.
#[tokio::test]
async fn another_projects_bytes_do_not_count() {
    let fx = Fixture::new();
    with_quota(&fx, "p", 10).await;
    push_blob(&fx.reg, &repo("pq/x"), b"eight b.").await;
    let open = start(&fx.reg, "pq/x", "alice").await.unwrap();
    append(&fx.reg, "pq/x", &open, None, &[b"eight b!"])
        .await
        .unwrap();
    push_blob(&fx.reg, &repo("p/app"), b"eight p.").await;
    assert_eq!(fx.reg.project_usage("p").await.unwrap(), 8);
}

#[tokio::test]
async fn open_sessions_are_capped_per_repository() {
    let fx = Fixture::new();
    let reg = fx.reg.clone().with_upload_limits(UploadLimits {
        per_repository: 2,
        per_account: 0,
    });
    let first = start(&reg, "p/a", "alice").await.unwrap();
    let second = start(&reg, "p/a", "bob").await.unwrap();
    let e = start(&reg, "p/a", "carol").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyRequests);
    // Other repositories, a nested one included, have their own.
    start(&reg, "p/a/sub", "carol").await.unwrap();
    start(&reg, "p/b", "carol").await.unwrap();
    reg.upload_cancel(&repo("p/a"), &first).await.unwrap();
    start(&reg, "p/a", "carol").await.unwrap();
    let digest = Digest::sha256_of(b"done");
    reg.upload_finish(
        &repo("p/a"),
        &second,
        &digest,
        None,
        None,
        Some(body(&[b"done"])),
    )
    .await
    .unwrap();
    start(&reg, "p/a", "dave").await.unwrap();
}

#[tokio::test]
async fn open_sessions_are_capped_per_account() {
    let fx = Fixture::new();
    let reg = fx.reg.clone().with_upload_limits(UploadLimits {
        per_repository: 0,
        per_account: 2,
    });
    // An account whose name extends another's is another account.
    start(&reg, "p/a", "alice@corp").await.unwrap();
    start(&reg, "p/b", "alice@corp").await.unwrap();
    start(&reg, "p/a", "alice").await.unwrap();
    start(&reg, "q/b", "alice").await.unwrap();
    let e = start(&reg, "p/c", "alice").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyRequests);
    let e = start(&reg, "p/c", "alice@corp").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyRequests);
    start(&reg, "p/c", "bob").await.unwrap();
}

/// An abandoned upload holds its slot and its bytes until it expires.
#[tokio::test]
async fn an_expired_upload_frees_its_slot_and_its_bytes() {
    let fx = Fixture::new();
    with_quota(&fx, "p", 10).await;
    let reg = fx.reg.clone().with_upload_limits(UploadLimits {
        per_repository: 1,
        per_account: 0,
    });
    let id = start(&reg, "p/a", "alice").await.unwrap();
    append(&reg, "p/a", &id, None, &[&[0; 10]]).await.unwrap();
    let e = start(&reg, "p/a", "alice").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyRequests);
    let one = Digest::sha256_of(b"1");
    denied(
        reg.upload_monolithic(&repo("p/b"), &one, Some(1), body(&[b"1"]))
            .await
            .unwrap_err(),
    );
    fx.advance_secs(EXPIRY);
    assert_eq!(collect(&reg).await.uploads_deleted, 1);
    start(&reg, "p/a", "alice").await.unwrap();
    push_blob(&reg, &repo("p/b"), b"1").await;
}
