//! Requests racing on one upload: whatever the interleaving, a blob is
//! committed only with the bytes its digest names.

use super::util::*;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Method;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until the server has written at least `len` bytes of upload `id`
/// to disk: proof that a request is inside its write.
async fn wait_for_upload_bytes(dir: &Path, id: &str, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The file holding the upload's bytes: somewhere under the data
        // directory, named by the upload's id.
        let written = crate::common::oci::find_file(dir, id)
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        if written >= len {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upload {id} never reached {len} bytes on disk ({written})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn upload_id(location: &str) -> String {
    let path = location.split('?').next().unwrap_or(location);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// `req` with `data` as its body: the first half sent at once, the rest
/// held until the returned sender fires, so that the request stays inside
/// its write for as long as the test needs.
fn held(
    req: reqwest::RequestBuilder,
    data: &[u8],
) -> (tokio::sync::oneshot::Sender<()>, reqwest::RequestBuilder) {
    let (go, held) = tokio::sync::oneshot::channel::<()>();
    let (first, rest) = data.split_at(data.len() / 2);
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(first.to_vec()))]);
    let rest = Bytes::from(rest.to_vec());
    let rest = futures_util::stream::once(async move {
        let _ = held.await;
        Ok::<_, std::io::Error>(rest)
    });
    (go, req.body(reqwest::Body::wrap_stream(first.chain(rest))))
}

/// Sends `patch` (a `PATCH` of the upload at `location`) with `data` as its
/// body, held mid-write, and runs `meanwhile` once the server has written
/// part of it; the PATCH's answer and what `meanwhile` returned.
async fn while_writing<T>(
    reg: &Reg,
    location: &str,
    patch: reqwest::RequestBuilder,
    data: &[u8],
    meanwhile: impl std::future::Future<Output = T>,
) -> (Resp, T) {
    let id = upload_id(location);
    let (go, slow) = held(patch, data);
    let slow = reg.send(slow);
    let other = async {
        wait_for_upload_bytes(reg.data_dir(), &id, 256 * 1024).await;
        let out = meanwhile.await;
        let _ = go.send(());
        out
    };
    tokio::join!(slow, other)
}

/// Whether a request was accepted with `status`; a refusal must be a
/// readable 4xx spec error, even when the server refused to read its body.
fn accepted(r: &Resp, status: u16) -> bool {
    let s = r.status.as_u16();
    if s == status {
        return true;
    }
    assert!((400..500).contains(&s), "{} {}", r.status, r.text());
    let code = r.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    r.expect_error(s, &code);
    false
}

/// The racers' ground: a fresh server with an upload session in `race`,
/// and two different 2 MiB bodies for it (from `seed` and `seed + 1`).
async fn race(seed: u64) -> (Reg, String, Vec<u8>, Vec<u8>) {
    let reg = Reg::start();
    let n = 2 * 1024 * 1024;
    let a = random_bytes(seed, n);
    let b = random_bytes(seed + 1, n);
    let loc = reg.start_upload("race").await;
    (reg, loc, a, b)
}

/// Two PATCHes of the same range: one is mid-write when the other arrives.
/// At most one may be accepted, and the blob then holds exactly its bytes.
#[tokio::test]
async fn racing_patches_never_corrupt_the_upload() {
    let (reg, loc, a, b) = race(1).await;
    let range = format!("0-{}", a.len() - 1);

    let patch = reg.req(Method::PATCH, &loc).header("Content-Range", &range);
    let fast = reg.patch_range(&loc, &range, b.clone());
    let (ra, rb) = while_writing(&reg, &loc, patch, &a, fast).await;
    let winner = match (accepted(&ra, 202), accepted(&rb, 202)) {
        (true, false) => &a,
        (false, true) => &b,
        (true, true) => panic!("both PATCHes of one range were accepted"),
        (false, false) => panic!("neither PATCH was accepted"),
    };
    assert_eq!(reg.upload_range(&loc).await, range);
    reg.close_and_check("race", &loc, winner).await;
}

/// A closing PUT with a last chunk racing a PATCH of the same range.
#[tokio::test]
async fn a_closing_put_racing_a_patch_never_corrupts_the_blob() {
    let (reg, loc, a, b) = race(3).await;

    let patch = reg.req(Method::PATCH, &loc);
    let digest = sha256(&b);
    let fast = reg.close_with(&loc, &digest, b.clone());
    let (ra, rb) = while_writing(&reg, &loc, patch, &a, fast).await;
    if accepted(&rb, 201) {
        assert!(
            !accepted(&ra, 202),
            "a PATCH was accepted into a closed upload"
        );
        reg.expect_blob("race", &b).await;
    } else {
        assert!(accepted(&ra, 202), "neither request was accepted");
        reg.expect_no_blob("race", &sha256(&b)).await;
        reg.close_and_check("race", &loc, &a).await;
    }
}

/// While a write is in progress the upload's status stays readable, and
/// other writers are told to come back (416) without touching it.
#[tokio::test]
async fn a_busy_upload_refuses_other_writers_until_the_write_ends() {
    let reg = Reg::start();
    let n = 1024 * 1024;
    let a = random_bytes(5, n);
    let loc = reg.start_upload("busy").await;
    let probe = async {
        // Status answers during the write, with what was acknowledged.
        assert_eq!(reg.upload_range(&loc).await, "0-0");
        let small = reg.patch_range(&loc, "0-3", b"abcd".to_vec()).await;
        small.expect_error(416, "BLOB_UPLOAD_INVALID");
        let close = reg
            .send(reg.req(Method::PUT, &with_query(&loc, "digest", &sha256(&a))))
            .await;
        close.expect_error(416, "BLOB_UPLOAD_INVALID");
    };
    let patch = reg.req(Method::PATCH, &loc);
    let (ra, ()) = while_writing(&reg, &loc, patch, &a, probe).await;
    ra.expect(202);
    let range = format!("0-{}", n - 1);
    assert_eq!(ra.header("Range"), Some(range.as_str()));
    // The write is over: the next request proceeds at once.
    let tail = random_bytes(6, 10);
    let r = reg
        .patch_range(&loc, &format!("{n}-{}", n + 9), tail.clone())
        .await;
    r.expect(202);
    let mut all = a;
    all.extend_from_slice(&tail);
    reg.close_and_check("busy", &loc, &all).await;
}

/// A writer that fails (here: a body shorter than its range) gives the
/// upload back at once, and what it wrote is not kept.
#[tokio::test]
async fn a_failed_write_does_not_block_the_upload() {
    let reg = Reg::start();
    let loc = reg.start_upload("failed").await;
    for _ in 0..3 {
        // Streamed, so no Content-Length: the short body is found out only
        // once written.
        let short =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 50]))]);
        let r = reg
            .send(
                reg.req(Method::PATCH, &loc)
                    .header("Content-Range", "0-99")
                    .body(reqwest::Body::wrap_stream(short)),
            )
            .await;
        r.expect_error(400, "SIZE_INVALID");
    }
    assert_eq!(reg.upload_range(&loc).await, "0-0");
    let data = random_bytes(7, 100);
    let r = reg.patch_range(&loc, "0-99", data.clone()).await;
    r.expect(202);
    let r = reg
        .send(reg.req(Method::PUT, &with_query(&loc, "digest", &sha256(b"wrong"))))
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    // A wrong digest ends the upload.
    reg.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}
