//! One writer per upload: a second writer is refused, a crashed writer's
//! claim expires with the clock, a live one renews it, a dropped request
//! gives it up at once, and the bytes committed are always the ones the
//! stored hash describes.

use super::*;
use crate::clock::Clock;
use crate::error::CoreError;
use crate::registry::claims::{CLAIM_MS, RENEW_AFTER_MS};
use crate::registry::encode;
use crate::registry::records::UploadClaim;
use berth_oci::ErrorCode;
use std::time::Duration;
use tokio::task::JoinHandle;

const REPO: &str = "p/app";

async fn start(fx: &Fixture) -> String {
    fx.reg.upload_start(&repo(REPO), "alice").await.unwrap().id
}

/// A PATCH running on its own: the offset it ends at, or why it failed.
type Patch = JoinHandle<Result<u64, CoreError>>;

/// A PATCH of a body the test feeds, running on its own.
fn spawn_patch(reg: &Registry, id: &str, start: Option<u64>) -> (Feed, Patch) {
    let (feed, stream) = feed();
    let (reg, id) = (reg.clone(), id.to_owned());
    let task = tokio::spawn(async move {
        let r = repo(REPO);
        let status = reg.upload_append(&r, &id, start, None, stream);
        status.await.map(|s| s.offset)
    });
    (feed, task)
}

async fn patch(
    reg: &Registry,
    id: &str,
    start: Option<u64>,
    chunk: &[u8],
) -> Result<u64, CoreError> {
    let r = repo(REPO);
    let status = reg.upload_append(&r, id, start, None, body(&[chunk]));
    status.await.map(|s| s.offset)
}

/// Waits until upload `id` holds `len` bytes: the writer has written.
async fn stored(fx: &Fixture, id: &str, len: u64) {
    until("bytes stored", || async {
        fx.blobs.upload_len(id) == Some(len)
    })
    .await;
}

async fn released(fx: &Fixture, id: &str) {
    let free = || async { fx.session(id).await.is_some_and(|s| s.writer.is_none()) };
    until("claim released", free).await;
}

/// Starts an upload and a PATCH of it, and waits until that PATCH has
/// stored `first`; the test feeds the rest of its body.
async fn writing(fx: &Fixture, first: &[u8]) -> (String, Feed, Patch) {
    let id = start(fx).await;
    let (feed, task) = spawn_patch(&fx.reg, &id, None);
    feed.send(first);
    stored(fx, &id, first.len() as u64).await;
    (id, feed, task)
}

/// Drops the request `task` runs, as a client going away would, and waits
/// until its claim on upload `id` is given up.
async fn abort_and_release<T: std::fmt::Debug>(fx: &Fixture, id: &str, task: JoinHandle<T>) {
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    released(fx, id).await;
}

/// Ends the body the PATCH `task` is writing: the PATCH succeeds, and the
/// upload commits as exactly `whole`.
async fn finish_writing(fx: &Fixture, id: &str, feed: Feed, task: Patch, whole: &[u8]) {
    drop(feed);
    assert_eq!(task.await.unwrap().unwrap(), whole.len() as u64);
    assert_eq!(commit_as_recorded(fx, id).await, whole);
}

/// After a dropped PATCH: upload `id` is as last recorded, at `offset`,
/// and `rest` written there completes it as `whole`.
async fn resumes_at(fx: &Fixture, id: &str, offset: u64, rest: &[u8], whole: &[u8]) {
    assert_eq!(fx.session(id).await.unwrap().offset, offset);
    let end = patch(&fx.reg, id, Some(offset), rest).await.unwrap();
    assert_eq!(end, offset + rest.len() as u64);
    assert_eq!(commit_as_recorded(fx, id).await, whole);
}

/// Asserts that a request was refused because another writer holds the
/// upload (or took it over).
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, CoreError>) {
    assert_eq!(result.unwrap_err().code, ErrorCode::BlobUploadRangeInvalid);
}

/// Commits upload `id` under the digest its stored hash state gives, and
/// checks that the committed bytes have that digest: the invariant every
/// claim exists for.
async fn commit_as_recorded(fx: &Fixture, id: &str) -> Vec<u8> {
    let session = fx.session(id).await.unwrap();
    let recorded = berth_oci::Sha256State::from_hex(&session.hash)
        .unwrap()
        .finalize();
    fx.reg
        .upload_finish(&repo(REPO), id, &recorded, None, None, None)
        .await
        .unwrap();
    let bytes = fx.read_blob(&recorded).await.unwrap();
    assert_eq!(Digest::sha256_of(&bytes), recorded, "bytes match the hash");
    bytes
}

#[tokio::test]
async fn a_second_writer_is_refused_while_the_first_writes() {
    let fx = Fixture::new();
    let (id, feed, first) = writing(&fx, b"first ").await;
    for start in [None, Some(0)] {
        assert_refused(patch(&fx.node(), &id, start, b"second").await);
    }
    let digest = Digest::sha256_of(b"second");
    let finished = fx
        .reg
        .upload_finish(
            &repo(REPO),
            &id,
            &digest,
            None,
            None,
            Some(body(&[b"second"])),
        )
        .await;
    assert_refused(finished);
    feed.send(b"writer");
    finish_writing(&fx, &id, feed, first, b"first writer").await;
}

/// Several writers racing for one upload, their bodies arriving in turns:
/// whatever wins, the stored bytes are those the stored hash describes.
#[tokio::test]
async fn racing_writers_never_mix_bytes() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    for round in 0..5u8 {
        let tasks: Vec<_> = (0..4u8)
            .map(|w| {
                let (reg, id) = (fx.node(), id.clone());
                let chunks: Vec<Vec<u8>> = (0..3)
                    .map(|c| vec![b'a' + w; 10 + c + round as usize])
                    .collect();
                tokio::spawn(async move {
                    // Each chunk after a turn of the others.
                    let stream =
                        futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
                            tokio::task::yield_now().await;
                            it.next().map(|c| (Ok(Bytes::from(c)), it))
                        });
                    reg.upload_append(&repo(REPO), &id, None, None, Box::pin(stream))
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => won += 1,
                Err(e) => assert_eq!(e.code, ErrorCode::BlobUploadRangeInvalid, "{e}"),
            }
        }
        assert!(won >= 1, "round {round}: someone writes");
    }
    commit_as_recorded(&fx, &id).await;
}

/// A writer whose node died leaves its claim; it blocks the upload until
/// it expires, [`CLAIM_MS`] on the clock, and not a moment longer.
#[tokio::test]
async fn a_crashed_writers_claim_expires_with_the_clock() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    patch(&fx.reg, &id, None, b"abc").await.unwrap();
    let mut session = fx.session(&id).await.unwrap();
    session.writer = Some(UploadClaim {
        token: "a node that died".into(),
        expires_ms: fx.clock.now_ms() + CLAIM_MS,
    });
    fx.kv
        .put(&keys::upload(&id), encode(&session))
        .await
        .unwrap();

    fx.clock.advance(Duration::from_millis(CLAIM_MS - 1));
    assert_refused(patch(&fx.reg, &id, Some(3), b"def").await);
    fx.clock.advance(Duration::from_millis(1));
    assert_eq!(patch(&fx.reg, &id, Some(3), b"def").await.unwrap(), 6);
    assert_eq!(commit_as_recorded(&fx, &id).await, b"abcdef");
}

/// A writer whose body keeps arriving renews its claim, however long the
/// body takes.
#[tokio::test]
async fn a_live_writer_keeps_its_claim() {
    let fx = Fixture::new();
    let (id, feed, first) = writing(&fx, b"0").await;
    for n in 1..=4u64 {
        fx.clock.advance(Duration::from_millis(RENEW_AFTER_MS + 1));
        feed.send(b"1");
        stored(&fx, &id, n + 1).await;
    }
    // Twenty seconds in: longer than a claim lasts unrenewed.
    assert_refused(patch(&fx.node(), &id, None, b"x").await);
    finish_writing(&fx, &id, feed, first, b"01111").await;
}

/// A writer stalled past its claim's expiry loses the upload to the next
/// writer, and finds out before it writes another byte.
#[tokio::test]
async fn a_writer_taken_over_writes_nothing_more() {
    let fx = Fixture::new();
    let (id, feed, first) = writing(&fx, b"first").await;
    fx.clock.advance(Duration::from_millis(CLAIM_MS));
    assert_eq!(patch(&fx.node(), &id, Some(0), b"second").await.unwrap(), 6);
    feed.send(b"more");
    drop(feed);
    assert_refused(first.await.unwrap());
    assert_eq!(commit_as_recorded(&fx, &id).await, b"second");
}

/// The drop guard: a PATCH whose future is dropped mid-body (its client
/// went away) gives its claim up at once, with the clock standing still,
/// and leaves the upload as last recorded.
#[tokio::test]
async fn a_dropped_patch_releases_its_claim_at_once() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    patch(&fx.reg, &id, None, b"kept-").await.unwrap();
    let (feed, task) = spawn_patch(&fx.reg, &id, Some(5));
    feed.send(b"lost bytes");
    stored(&fx, &id, 15).await;
    abort_and_release(&fx, &id, task).await;
    resumes_at(&fx, &id, 5, b"rest", b"kept-rest").await;
}

/// The same for a PATCH dropped before its body began.
#[tokio::test]
async fn a_patch_dropped_before_its_body_releases_its_claim() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    let (_feed, task) = spawn_patch(&fx.reg, &id, None);
    until("claimed", || async {
        fx.session(&id).await.is_some_and(|s| s.writer.is_some())
    })
    .await;
    abort_and_release(&fx, &id, task).await;
    assert_eq!(patch(&fx.reg, &id, Some(0), b"ok").await.unwrap(), 2);
}

/// And for a closing PUT dropped mid-body: the upload can still be
/// finished at once.
#[tokio::test]
async fn a_dropped_put_releases_its_claim_at_once() {
    let fx = Fixture::new();
    let id = start(&fx).await;
    patch(&fx.reg, &id, None, b"head ").await.unwrap();
    let (feed, stream) = feed();
    let (reg, task_id) = (fx.reg.clone(), id.clone());
    let digest = Digest::sha256_of(b"head tail");
    let task = tokio::spawn(async move {
        reg.upload_finish(&repo(REPO), &task_id, &digest, None, None, Some(stream))
            .await
    });
    feed.send(b"ta");
    stored(&fx, &id, 7).await;
    abort_and_release(&fx, &id, task).await;
    let digest = Digest::sha256_of(b"head tail");
    fx.reg
        .upload_finish(
            &repo(REPO),
            &id,
            &digest,
            Some(5),
            None,
            Some(body(&[b"tail"])),
        )
        .await
        .unwrap();
    assert_eq!(fx.read_blob(&digest).await.unwrap(), b"head tail");
}

/// A PATCH dropped while it records its progress (its write to `Kv` may
/// or may not land) still gives up the claim it holds, and only that.
#[tokio::test]
async fn a_patch_dropped_while_recording_progress_releases_its_claim() {
    let (ix, fx) = Fixture::interposed();
    let id = start(&fx).await;
    // The progress write never completes, as on a store that hangs.
    ix.before(
        |call| call.puts("upload:", "\"offset\":3"),
        std::future::pending(),
    );
    let (feed, task) = spawn_patch(&fx.reg, &id, None);
    feed.send(b"abc");
    drop(feed);
    until("progress being recorded", || async { ix.done() }).await;
    abort_and_release(&fx, &id, task).await;
    resumes_at(&fx, &id, 0, b"xyz", b"xyz").await;
}

/// Cancelling an upload while a PATCH writes it ends that PATCH, and
/// nothing of the upload remains.
#[tokio::test]
async fn a_cancel_mid_write_leaves_nothing() {
    let fx = Fixture::new();
    let (id, feed, task) = writing(&fx, b"abc").await;
    fx.reg.upload_cancel(&repo(REPO), &id).await.unwrap();
    feed.send(b"def");
    drop(feed);
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::BlobUploadUnknown);
    assert!(fx.session(&id).await.is_none());
    assert!(fx.uploads_stored().await.is_empty());
    assert!(fx.keys(keys::UPLOAD_IN_REPO_PREFIX).await.is_empty());
}
