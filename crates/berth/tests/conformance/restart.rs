//! A crash (`kill -9`) and restart on the same data directory loses nothing
//! that was acknowledged: uploads in progress continue where they were,
//! pushed content stays.

use super::util::*;
use crate::common::Server;
use reqwest::Method;

#[tokio::test]
async fn an_upload_continues_after_a_crash_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(1, 700_001);
    let digest = sha256(&data);

    let reg = Reg::on(Server::start_in(dir.path(), &[]));
    let loc = reg.start_upload("resume/me").await;
    // Two chunks, one with Content-Range and one streamed without length.
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .header("Content-Range", "0-199999")
                .body(data[..200_000].to_vec()),
        )
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
        .send(
            reg.req(Method::PATCH, &loc)
                .header("Content-Range", "450000-450009")
                .body(data[450_000..450_010].to_vec()),
        )
        .await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .header("Content-Range", "450001-600000")
                .body(data[450_001..600_001].to_vec()),
        )
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, "digest", &digest))
                .header("Content-Range", "600001-700000")
                .body(data[600_001..].to_vec()),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    reg.expect_blob("resume/me", &data).await;
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
