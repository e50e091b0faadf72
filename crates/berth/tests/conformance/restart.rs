//! A crash (`kill -9`) and restart on the same data directory loses nothing
//! that was acknowledged: uploads in progress continue where they were,
//! pushed content stays.

use super::util::*;
use crate::common::Server;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Method;
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_upload_continues_after_a_crash_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(1, 700_001);
    let digest = sha256(&data);

    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    let loc = reg.start_upload("resume/me").await;
    // Two chunks, one with Content-Range and one streamed without length.
    let r = reg
        .patch_range(&loc, "0-199999", data[..200_000].to_vec())
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = data[200_000..450_001]
        .chunks(10_007)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    pieces,
                ))),
        )
        .await;
    r.expect(202);
    assert_eq!(r.header("Range"), Some("0-450000"));
    let loc = r.must_header("Location").to_owned();
    reg.into_server().kill();

    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    // The location is relative, so it works against the new port.
    let r = reg.get(&loc).await;
    r.expect(204);
    assert_eq!(r.header("Range"), Some("0-450000"));
    let loc = r.must_header("Location").to_owned();
    // A chunk that overlaps what was stored before the crash is refused.
    let r = reg
        .patch_range(&loc, "450000-450009", data[450_000..450_010].to_vec())
        .await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");
    let r = reg
        .patch_range(&loc, "450001-600000", data[450_001..600_001].to_vec())
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let r = reg
        .close_range(&loc, &digest, "600001-700000", data[600_001..].to_vec())
        .await;
    reg.expect_created(&r, "resume/me", &data).await;
}

#[tokio::test]
async fn a_wrong_digest_after_restart_is_still_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(2, 100_000);
    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    let loc = reg.start_upload("r").await;
    let r = reg
        .send(reg.req(Method::PATCH, &loc).body(data[..50_000].to_vec()))
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    reg.into_server().kill();

    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    // The rest of the bytes, but one of them flipped.
    let mut rest = data[50_000..].to_vec();
    rest[123] ^= 1;
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, "digest", &sha256(&data)))
                .body(rest),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/r/blobs/{}", sha256(&data)))
        .await
        .expect(404);
}

#[tokio::test]
async fn pushed_content_survives_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    let img = Image::oci(3);
    img.push(&reg, "keep", "v1").await;
    let art = Artifact::new(
        4,
        Some("application/vnd.example.x"),
        Some(&img.descriptor()),
        None,
    );
    art.push(&reg, "keep", "x").await.expect(201);
    reg.into_server().kill();

    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    reg.expect_manifest("keep", "v1", OCI_MANIFEST, &img.manifest)
        .await;
    reg.expect_blob("keep", &img.layers[1]).await;
    let r = reg.get("/v2/keep/tags/list").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["v1", "x"]));
    let r = reg.get(&format!("/v2/keep/referrers/{}", img.digest)).await;
    assert_eq!(r.json()["manifests"][0]["digest"], art.digest);
}

/// A crash in the middle of a PATCH: the upload still reports what was
/// acknowledged, refuses writers only until the dead request's claim on it
/// expires, and then completes.
#[tokio::test]
async fn a_crash_mid_write_leaves_the_upload_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(5, 3 * 1024 * 1024);
    let digest = sha256(&data);
    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    let loc = reg.start_upload("midwrite").await;
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .body(data[..1024 * 1024].to_vec()),
        )
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();

    // A PATCH whose body stops halfway and never ends.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(
        data[1024 * 1024..2 * 1024 * 1024].to_vec(),
    ))]);
    let never = futures_util::stream::once(async move {
        let _ = stopped.await;
        Err::<Bytes, _>(std::io::Error::other("cut off"))
    });
    // The request owns its client, so the server can be killed under it.
    let hung = reg
        .req(Method::PATCH, &loc)
        .body(reqwest::Body::wrap_stream(first.chain(never)))
        .send();
    let dir_path = reg.data_dir().to_owned();
    let id = loc.rsplit('/').next().unwrap_or_default().to_owned();
    let crash = async move {
        // Wait until the server is inside the write: its bytes reach the
        // disk while the upload still reports the acknowledged megabyte.
        let deadline = Instant::now() + Duration::from_secs(30);
        while upload_file_len(&dir_path, &id) <= 1024 * 1024 {
            assert!(
                Instant::now() < deadline,
                "the second PATCH never reached the disk"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reg.into_server().kill();
        let _ = stop.send(());
    };
    let (hung, ()) = tokio::join!(hung, crash);
    assert!(
        hung.is_err(),
        "a PATCH cut off by a crash cannot have succeeded"
    );

    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    assert_eq!(reg.upload_range(&loc).await, "0-1048575");
    // Writers are refused while the dead request's claim lasts, then let
    // in. The probe is one byte, so the refusal is always readable.
    let m = 1024 * 1024;
    let deadline = Instant::now() + Duration::from_secs(60);
    let loc = loop {
        let r = reg
            .patch_range(&loc, &format!("{m}-{m}"), data[m..=m].to_vec())
            .await;
        if r.status.as_u16() == 202 {
            break r.must_header("Location").to_owned();
        }
        r.expect_error(416, "BLOB_UPLOAD_INVALID");
        assert_eq!(reg.upload_range(&loc).await, "0-1048575");
        assert!(
            Instant::now() < deadline,
            "the upload stayed blocked after a crash"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .body(data[m + 1..2 * m].to_vec()),
        )
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let r = reg.close_with(&loc, &digest, data[2 * m..].to_vec()).await;
    r.expect(201);
    reg.expect_blob("midwrite", &data).await;
}

/// Bytes stored for upload `id`, wherever under `dir` the server keeps them.
fn upload_file_len(dir: &std::path::Path, id: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut len = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            len = len.max(upload_file_len(&path, id));
        } else if path.file_name().is_some_and(|n| n == id) {
            len = len.max(std::fs::metadata(&path).map_or(0, |m| m.len()));
        }
    }
    len
}
