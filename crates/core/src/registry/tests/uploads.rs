//! Uploads: what a finished, failed or cancelled upload leaves, and that a
//! committed blob holds exactly the bytes its digest was verified against.

use super::*;
use berth_oci::ErrorCode;

const REPO: &str = "p/app";

async fn start(fx: &Fixture) -> String {
    fx.reg.upload_start(&repo(REPO), "alice").await.unwrap().id
}

async fn patch(reg: &Registry, id: &str, start: Option<u64>, chunks: &[&[u8]]) -> u64 {
    let len = chunks.iter().map(|c| c.len() as u64).sum();
    let r = repo(REPO);
    let status = reg.upload_append(&r, id, start, Some(len), body(chunks));
    status.await.unwrap().offset
}

/// A fixture with one upload of `REPO`, holding `first`.
async fn upload_holding(first: &[u8]) -> (Fixture, String) {
    let fx = Fixture::new();
    let id = start(&fx).await;
    patch(&fx.reg, &id, None, &[first]).await;
    (fx, id)
}

/// Finishes upload `id` of `REPO` as `digest`, with no more bytes.
async fn finish(reg: &Registry, id: &str, digest: &Digest) -> Result<(), CoreError> {
    reg.upload_finish(&repo(REPO), id, digest, None, None, None)
        .await
}

/// Finishes upload `id`, which holds `whole`, and reads the blob back.
async fn finishes_as(fx: &Fixture, id: &str, whole: &[u8]) {
    let digest = Digest::sha256_of(whole);
    finish(&fx.reg, id, &digest).await.unwrap();
    assert_eq!(fx.read_blob(&digest).await.unwrap(), whole);
}

/// Pushes a blob to `from` and mounts it into `to`; its digest.
async fn push_and_mount(fx: &Fixture, from: &RepoName, to: &RepoName) -> Digest {
    let digest = push_blob(&fx.reg, from, b"shared").await;
    assert!(fx.reg.blob_mount(to, &digest, from).await.unwrap());
    digest
}

/// Nothing of upload `id` is left: no session, no index entry, no bytes.
async fn gone(fx: &Fixture, id: &str) {
    assert!(fx.session(id).await.is_none(), "session of {id}");
    for prefix in [keys::UPLOAD_IN_REPO_PREFIX, keys::UPLOAD_OF_ACCOUNT_PREFIX] {
        let left: Vec<String> = fx.keys(prefix).await;
        assert!(!left.iter().any(|k| k.ends_with(id)), "{left:?}");
    }
    assert!(!fx.uploads_stored().await.contains(&id.to_owned()), "bytes");
}

#[tokio::test]
async fn chunked_upload_commits_the_bytes_it_hashed() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    let data = crate::blob_suite::content(10_000);
    assert_eq!(patch(&fx.reg, &id, Some(0), &[&data[..10]]).await, 10);
    assert_eq!(
        patch(&fx.reg, &id, None, &[&data[10..4000], &data[4000..7000]]).await,
        7000
    );
    let status = fx.reg.upload_status(&repo(REPO), &id).await.unwrap();
    assert_eq!(status.offset, 7000);
    let digest = Digest::sha256_of(&data);
    fx.reg
        .upload_finish(
            &repo(REPO),
            &id,
            &digest,
            Some(7000),
            None,
            Some(body(&[&data[7000..]])),
        )
        .await
        .unwrap();
    assert_eq!(fx.read_blob(&digest).await.unwrap(), data);
    assert_eq!(
        fx.reg.blob_size(&repo(REPO), &digest).await.unwrap(),
        10_000
    );
    gone(&fx, &id).await;
}

/// A chunk that does not start where the upload ends changes nothing.
#[tokio::test]
async fn a_misplaced_chunk_is_refused() {
    let (fx, id) = upload_holding(b"abc").await;
    for at in [0, 2, 4] {
        let appended = fx
            .reg
            .upload_append(&repo(REPO), &id, Some(at), None, body(&[b"x"]))
            .await;
        assert_code(appended, ErrorCode::BlobUploadRangeInvalid);
    }
    assert_eq!(patch(&fx.reg, &id, Some(3), &[b"d"]).await, 4);
    finishes_as(&fx, &id, b"abcd").await;
}

/// A chunk shorter or longer than announced is refused; its bytes, stored
/// past the recorded offset, are cut by the next writer.
#[tokio::test]
async fn a_chunk_of_the_wrong_length_is_refused_and_cut() {
    let (fx, id) = upload_holding(b"head").await;
    for wrong in [3, 5] {
        let appended = fx
            .reg
            .upload_append(&repo(REPO), &id, Some(4), Some(wrong), body(&[b"junk"]))
            .await;
        assert_code(appended, ErrorCode::SizeInvalid);
        assert_eq!(fx.session(&id).await.unwrap().offset, 4);
        assert!(fx.session(&id).await.unwrap().writer.is_none(), "released");
    }
    patch(&fx.reg, &id, Some(4), &[b"-tail"]).await;
    finishes_as(&fx, &id, b"head-tail").await;
}

#[tokio::test]
async fn a_digest_mismatch_cancels_the_upload() {
    let (fx, id) = upload_holding(b"bytes").await;
    let wrong = Digest::sha256_of(b"other");
    assert_code(finish(&fx.reg, &id, &wrong).await, ErrorCode::DigestInvalid);
    assert_eq!(fx.blobs.stat(&wrong).await.unwrap(), None);
    gone(&fx, &id).await;
}

/// Blobs are verified with the session's SHA-256 state: another algorithm
/// is refused up front and the upload stays for a retry.
#[tokio::test]
async fn a_digest_of_another_algorithm_leaves_the_upload() {
    let (fx, id) = upload_holding(b"bytes").await;
    let sha512 = Digest::sha512_of(b"bytes");
    assert_code(
        finish(&fx.reg, &id, &sha512).await,
        ErrorCode::DigestInvalid,
    );
    finishes_as(&fx, &id, b"bytes").await;
}

#[tokio::test]
async fn cancel_removes_session_index_and_bytes() {
    let (fx, id) = upload_holding(b"bytes").await;
    fx.reg.upload_cancel(&repo(REPO), &id).await.unwrap();
    gone(&fx, &id).await;
    let status = fx.reg.upload_status(&repo(REPO), &id).await;
    assert_code(status, ErrorCode::BlobUploadUnknown);
}

#[tokio::test]
async fn an_upload_is_known_only_in_its_repository() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    let other = repo("p/other");
    let status = fx.reg.upload_status(&other, &id).await;
    assert_code(status, ErrorCode::BlobUploadUnknown);
    let appended = fx
        .reg
        .upload_append(&other, &id, None, None, body(&[b"x"]))
        .await;
    assert_code(appended, ErrorCode::BlobUploadUnknown);
    let cancel = fx.reg.upload_cancel(&other, &id).await;
    assert_code(cancel, ErrorCode::BlobUploadUnknown);
    assert!(fx.session(&id).await.is_some());
}

#[tokio::test]
async fn a_monolithic_upload_leaves_no_upload_behind() {
    let fx = Fixture::new();
    let digest = push_blob(&fx.reg, &repo(REPO), b"whole").await;
    assert_eq!(fx.read_blob(&digest).await.unwrap(), b"whole");
    assert!(fx.uploads_stored().await.is_empty());
    assert!(fx.keys("upload:").await.is_empty());
}

#[tokio::test]
async fn a_failed_monolithic_upload_leaves_nothing() {
    let fx = Fixture::new();
    let r = repo(REPO);
    let digest = Digest::sha256_of(b"whole");
    let short = fx
        .reg
        .upload_monolithic(&r, &digest, Some(4), body(&[b"whole"]))
        .await;
    assert_code(short, ErrorCode::SizeInvalid);
    let altered = fx
        .reg
        .upload_monolithic(&r, &digest, None, body(&[b"wholx"]))
        .await;
    assert_code(altered, ErrorCode::DigestInvalid);
    let (feed, stream) = feed();
    feed.send(b"who");
    feed.fail();
    let broken = fx.reg.upload_monolithic(&r, &digest, None, stream).await;
    assert_code(broken, ErrorCode::BlobUploadInvalid);
    assert!(fx.uploads_stored().await.is_empty());
    assert_eq!(fx.blobs.stat(&digest).await.unwrap(), None);
    assert_code(fx.reg.blob_size(&r, &digest).await, ErrorCode::BlobUnknown);
}

/// A body that breaks midway gives the claim up at once and leaves the
/// upload where it was recorded.
#[tokio::test]
async fn a_body_that_breaks_leaves_the_upload_resumable() {
    let (fx, id) = upload_holding(b"one-").await;
    let (feed, stream) = feed();
    feed.send(b"lost bytes");
    feed.fail();
    let appended = fx
        .reg
        .upload_append(&repo(REPO), &id, None, None, stream)
        .await;
    assert_code(appended, ErrorCode::BlobUploadInvalid);
    let session = fx.session(&id).await.unwrap();
    assert_eq!((session.offset, session.writer), (4, None));
    patch(&fx.reg, &id, Some(4), &[b"two"]).await;
    finishes_as(&fx, &id, b"one-two").await;
}

/// Two clients pushing the same layer: both succeed, one copy is kept and
/// the second upload's bytes are removed.
#[tokio::test]
async fn pushing_a_blob_twice_keeps_one_copy_and_no_upload() {
    let fx = Fixture::new();
    let digest = Digest::sha256_of(b"layer");
    for name in ["p/a", "p/b"] {
        let r = repo(name);
        let id = fx.reg.upload_start(&r, "alice").await.unwrap().id;
        fx.reg
            .upload_finish(&r, &id, &digest, None, None, Some(body(&[b"layer"])))
            .await
            .unwrap();
        assert_eq!(fx.reg.blob_size(&r, &digest).await.unwrap(), 5);
    }
    assert!(fx.uploads_stored().await.is_empty());
    assert_eq!(fx.keys("blob:").await.len(), 1);
}

/// Any node continues any upload: the session and hash live in the stores.
#[tokio::test]
async fn an_upload_moves_between_nodes() {
    let fx = Fixture::new();
    let (a, b) = (fx.node(), fx.node());
    let id = a.upload_start(&repo(REPO), "alice").await.unwrap().id;
    patch(&a, &id, Some(0), &[b"from a, "]).await;
    patch(&b, &id, Some(8), &[b"from b, "]).await;
    patch(&a, &id, Some(16), &[b"from a"]).await;
    let digest = Digest::sha256_of(b"from a, from b, from a");
    finish(&b, &id, &digest).await.unwrap();
    assert_eq!(a.blob_size(&repo(REPO), &digest).await.unwrap(), 22);
}

/// A mount links a blob another repository has without moving bytes, and
/// only one that repository has.
#[tokio::test]
async fn a_mount_links_only_what_the_source_has() {
    let fx = Fixture::new();
    let (from, to) = (repo("p/from"), repo("q/to"));
    let digest = push_and_mount(&fx, &from, &to).await;
    assert_eq!(fx.reg.blob_size(&to, &digest).await.unwrap(), 6);
    let other = Digest::sha256_of(b"not there");
    assert!(!fx.reg.blob_mount(&to, &other, &from).await.unwrap());
    assert_code(fx.reg.blob_size(&to, &other).await, ErrorCode::BlobUnknown);
}

/// Deleting a blob unlinks it from one repository; the bytes stay for
/// the others, and for garbage collection to decide.
#[tokio::test]
async fn a_blob_delete_unlinks_and_keeps_the_bytes() {
    let fx = Fixture::new();
    let (a, b) = (repo("p/a"), repo("p/b"));
    let digest = push_and_mount(&fx, &a, &b).await;
    fx.reg.blob_delete(&a, &digest).await.unwrap();
    assert_code(fx.reg.blob_size(&a, &digest).await, ErrorCode::BlobUnknown);
    assert_code(
        fx.reg.blob_delete(&a, &digest).await,
        ErrorCode::BlobUnknown,
    );
    assert_eq!(fx.reg.blob_size(&b, &digest).await.unwrap(), 6);
    assert_eq!(fx.read_blob(&digest).await.unwrap(), b"shared");
}

/// With a touch interval, a link to a blob touched less than that ago
/// leaves its record alone (popular layers do not contend); an older
/// record is touched, which is what keeps a collection from claiming it.
#[tokio::test]
async fn links_touch_a_blob_record_at_most_once_per_interval() {
    let fx = Fixture::new();
    let reg = fx.reg.clone().with_touch_interval(60);
    let digest = push_blob(&reg, &repo("p/a"), b"layer").await;
    let version = || async {
        let v = fx.kv.get(&keys::blob(&digest)).await.unwrap().unwrap();
        v.version
    };
    let first = version().await;
    let cases = [
        (59, "p/b", false, "touched recently: left alone"),
        (1, "p/c", true, "touched again"),
    ];
    for (wait, to, touched, why) in cases {
        fx.advance_secs(wait);
        let mounted = reg.blob_mount(&repo(to), &digest, &repo("p/a")).await;
        assert!(mounted.unwrap());
        assert_eq!(version().await != first, touched, "{why}");
    }
}
