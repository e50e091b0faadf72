//! Pushing blobs: single POST, POST then PUT, streamed and chunked PATCH,
//! upload status and cancel, cross-repository mount.

use super::util::*;
use bytes::Bytes;
use reqwest::Method;

/// `PATCH` of one chunk with `Content-Range: start-end` (inclusive).
async fn patch_chunk(reg: &Reg, location: &str, start: usize, chunk: &[u8]) -> Resp {
    let end = start + chunk.len() - 1;
    reg.send(
        reg.req(Method::PATCH, location)
            .header("Content-Type", OCTET)
            .header("Content-Range", format!("{start}-{end}"))
            .body(chunk.to_vec()),
    )
    .await
}

/// The closing `PUT ?digest=`, without a body.
async fn close(reg: &Reg, location: &str, digest: &str) -> Resp {
    reg.send(
        reg.req(Method::PUT, &with_query(location, "digest", digest))
            .header("Content-Length", "0"),
    )
    .await
}

/// Every request on the upload session at `location` is 404
/// `BLOB_UPLOAD_UNKNOWN`: its status, a `PATCH` of `data`, the closing
/// `PUT` for `data`, and a `DELETE`.
async fn expect_no_session(reg: &Reg, location: &str, data: &[u8]) {
    reg.get(location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch(location, data.to_vec())
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    close(reg, location, &sha256(data))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// A request body delivered in many small pieces with chunked transfer
/// encoding, so the server sees neither a length nor one buffer.
fn streamed(data: &[u8], piece: usize) -> reqwest::Body {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

#[tokio::test]
async fn single_post_with_digest_creates_the_blob() {
    let (reg, data, digest) = Reg::with_blob("mono", 1, 4096).await;
    reg.expect_blob("mono", &data).await;
    let r = reg.head(&format!("/v2/mono/blobs/{digest}")).await;
    r.expect(200);
    assert_eq!(r.header("Content-Length"), Some("4096"));
}

#[tokio::test]
async fn single_post_streamed_without_length_creates_the_blob() {
    let reg = Reg::start();
    let data = random_bytes(2, 300_000);
    let digest = sha256(&data);
    let r = reg
        .send(
            reg.post_upload("s", &format!("?digest={digest}"))
                .body(streamed(&data, 7_777)),
        )
        .await;
    reg.expect_created(&r, "s", &data).await;
}

#[tokio::test]
async fn single_post_digest_mismatch_is_400_and_leaves_nothing() {
    let reg = Reg::start();
    let data = random_bytes(3, 1000);
    let claimed = sha256(b"something else");
    let r = reg
        .send(
            reg.post_upload("m", &format!("?digest={claimed}"))
                .header("Content-Type", OCTET)
                .body(data.clone()),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.expect_no_blob("m", &claimed).await;
    reg.expect_no_blob("m", &sha256(&data)).await;
    reg.expect_blob_unknown(Method::GET, "m", &claimed).await;
}

#[tokio::test]
async fn single_post_with_a_malformed_digest_is_400() {
    let reg = Reg::start();
    for d in [
        "sha256:abc",
        "sha256",
        "nonsense",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "",
    ] {
        let query = format!("?digest={}", encode(d));
        let r = reg
            .send(reg.post_upload("m", &query).body(b"abc".to_vec()))
            .await;
        r.expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn post_then_put_with_the_whole_blob() {
    let reg = Reg::start();
    let r = reg.send(reg.post_upload("pp", "")).await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let id = r.must_header("Docker-Upload-UUID").to_owned();
    assert!(
        loc.contains(&id),
        "Location {loc} does not name the session {id}"
    );
    let data = random_bytes(4, 10_000);
    let digest = sha256(&data);
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, "digest", &digest))
                .header("Content-Type", OCTET)
                .body(data.clone()),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    let blob_url = r.must_header("Location").to_owned();
    let r = reg.get(&blob_url).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), data.as_slice());
    // The session is closed.
    reg.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn put_with_wrong_digest_is_400_and_the_blob_stays_invisible() {
    let reg = Reg::start();
    let loc = reg.start_upload("w").await;
    let data = random_bytes(5, 2048);
    let wrong = sha256(b"not the data");
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, "digest", &wrong))
                .body(data.clone()),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.expect_no_blob("w", &wrong).await;
    reg.expect_no_blob("w", &sha256(&data)).await;
}

#[tokio::test]
async fn put_without_a_digest_is_400_and_the_upload_can_be_finished() {
    let reg = Reg::start();
    let loc = reg.start_upload("nd").await;
    let data = random_bytes(6, 512);
    reg.patch(&loc, data.clone()).await.expect(202);
    reg.send(reg.req(Method::PUT, &loc))
        .await
        .expect_error(400, "DIGEST_INVALID");
    let r = reg
        .send(reg.req(Method::PUT, &with_query(&loc, "digest", "sha256:zz")))
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    assert_eq!(reg.upload_range(&loc).await, "0-511");
    close(&reg, &loc, &sha256(&data)).await.expect(201);
    reg.expect_blob("nd", &data).await;
}

#[tokio::test]
async fn streamed_patch_then_put() {
    let reg = Reg::start();
    let loc = reg.start_upload("stream").await;
    let data = random_bytes(7, 1_000_003);
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .header("Content-Type", OCTET)
                .body(streamed(&data, 65_537)),
        )
        .await;
    r.expect(202);
    assert_eq!(r.header("Range"), Some("0-1000002"));
    let loc = r.must_header("Location").to_owned();
    // A second streamed PATCH appends.
    let more = random_bytes(8, 10);
    let r = reg.patch(&loc, streamed(&more, 3)).await;
    r.expect(202);
    assert_eq!(r.header("Range"), Some("0-1000012"));
    let loc = r.must_header("Location").to_owned();
    let mut all = data;
    all.extend_from_slice(&more);
    let r = close(&reg, &loc, &sha256(&all)).await;
    r.expect(201);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sha256(&all).as_str())
    );
    reg.expect_blob("stream", &all).await;
}

#[tokio::test]
async fn chunked_patches_with_content_range() {
    let reg = Reg::start();
    let data = random_bytes(9, 10_000);
    let mut loc = reg.start_upload("chunks").await;
    let mut start = 0;
    for chunk in data.chunks(3_333) {
        let r = patch_chunk(&reg, &loc, start, chunk).await;
        r.expect(202);
        start += chunk.len();
        let range = format!("0-{}", start - 1);
        assert_eq!(r.header("Range"), Some(range.as_str()));
        assert!(r.header("Docker-Upload-UUID").is_some());
        loc = r.must_header("Location").to_owned();
        assert_eq!(reg.upload_range(&loc).await, range);
    }
    let r = close(&reg, &loc, &sha256(&data)).await;
    r.expect(201);
    let r = reg.get(r.must_header("Location")).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn last_chunk_may_come_with_the_closing_put() {
    let reg = Reg::start();
    let data = random_bytes(10, 3_000);
    let loc = reg.start_upload("lastput").await;
    let r = patch_chunk(&reg, &loc, 0, &data[..1_000]).await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, "digest", &sha256(&data)))
                .header("Content-Type", OCTET)
                .header("Content-Range", "1000-2999")
                .body(data[1_000..].to_vec()),
        )
        .await;
    r.expect(201);
    reg.expect_blob("lastput", &data).await;
}

#[tokio::test]
async fn out_of_order_and_overlapping_chunks_are_416() {
    let reg = Reg::start();
    let data = random_bytes(11, 3_000);
    let digest = sha256(&data);
    let loc = reg.start_upload("ooo").await;

    // The first chunk must begin at 0.
    patch_chunk(&reg, &loc, 1_000, &data[1_000..2_000])
        .await
        .expect_error(416, "BLOB_UPLOAD_INVALID");
    assert_eq!(reg.upload_range(&loc).await, "0-0");

    let r = patch_chunk(&reg, &loc, 0, &data[..1_000]).await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();

    // Replaying the same chunk, overlapping by one byte, skipping ahead.
    patch_chunk(&reg, &loc, 0, &data[..1_000])
        .await
        .expect_error(416, "BLOB_UPLOAD_INVALID");
    patch_chunk(&reg, &loc, 999, &data[999..2_000])
        .await
        .expect_error(416, "BLOB_UPLOAD_INVALID");
    patch_chunk(&reg, &loc, 2_000, &data[2_000..])
        .await
        .expect_error(416, "BLOB_UPLOAD_INVALID");
    // An out-of-order final chunk on the closing PUT.
    let r = reg
        .close_range(&loc, &digest, "2000-2999", data[2_000..].to_vec())
        .await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");

    // None of that changed the upload: it resumes from its status.
    let r = reg.get(&loc).await;
    r.expect(204);
    assert_eq!(r.header("Range"), Some("0-999"));
    let loc = r.must_header("Location").to_owned();
    let r = patch_chunk(&reg, &loc, 1_000, &data[1_000..2_000]).await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let r = patch_chunk(&reg, &loc, 2_000, &data[2_000..]).await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    close(&reg, &loc, &digest).await.expect(201);
    reg.expect_blob("ooo", &data).await;
}

#[tokio::test]
async fn malformed_content_range_is_rejected_without_harm() {
    let reg = Reg::start();
    let loc = reg.start_upload("cr").await;
    for bad in [
        "abc",
        "5-1",
        "-1",
        "1-",
        "0-x",
        "0-18446744073709551615",
        "18446744073709551615-18446744073709551615",
        "0-18446744073709551616",
    ] {
        let r = reg.patch_range(&loc, bad, b"hello".to_vec()).await;
        assert!(
            r.status.as_u16() == 400 || r.status.as_u16() == 416,
            "Content-Range {bad:?}: {} {}",
            r.status,
            r.text()
        );
        let code = r.json()["errors"][0]["code"].clone();
        assert!(
            code == "BLOB_UPLOAD_INVALID" || code == "SIZE_INVALID",
            "Content-Range {bad:?}: {code}"
        );
        r.expect_error(r.status.as_u16(), code.as_str().unwrap_or_default());
    }
    assert_eq!(reg.upload_range(&loc).await, "0-0");
}

#[tokio::test]
async fn chunk_length_must_match_its_content_range() {
    let reg = Reg::start();
    let loc = reg.start_upload("len").await;
    // The range announces 10 bytes, the body has 5.
    let r = reg.patch_range(&loc, "0-9", b"hello".to_vec()).await;
    r.expect_error(400, "SIZE_INVALID");
    // And on the closing PUT.
    let r = reg
        .close_range(&loc, &sha256(b"hello"), "0-9", b"hello".to_vec())
        .await;
    r.expect_error(400, "SIZE_INVALID");
    assert_eq!(reg.upload_range(&loc).await, "0-0");
    reg.expect_no_blob("len", &sha256(b"hello")).await;
    // The upload is still good.
    let r = patch_chunk(&reg, &loc, 0, b"hello").await;
    r.expect(202);
    close(&reg, r.must_header("Location"), &sha256(b"hello"))
        .await
        .expect(201);
    reg.expect_blob("len", b"hello").await;
}

#[tokio::test]
async fn upload_status_reports_range_and_location() {
    let reg = Reg::start();
    let loc = reg.start_upload("st").await;
    let r = reg.get(&loc).await;
    r.expect(204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Range"), Some("0-0"));
    assert!(r.must_header("Location").contains("/v2/st/blobs/uploads/"));
    let r = patch_chunk(&reg, &loc, 0, &random_bytes(12, 77)).await;
    r.expect(202);
    let r = reg.get(r.must_header("Location")).await;
    r.expect(204);
    assert_eq!(r.header("Range"), Some("0-76"));
    assert!(r.header("Docker-Upload-UUID").is_some());
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let reg = Reg::start();
    let loc = reg.start_upload("cancel").await;
    let data = random_bytes(13, 100);
    reg.patch(&loc, data.clone()).await.expect(202);
    let r = reg
        .send(reg.req(Method::DELETE, &loc).header("Content-Length", "0"))
        .await;
    r.expect(204);
    expect_no_session(&reg, &loc, &data).await;
    reg.expect_no_blob("cancel", &sha256(&data)).await;
}

#[tokio::test]
async fn unknown_upload_ids_are_404_blob_upload_unknown() {
    let reg = Reg::start();
    for id in ["5d5bd4b9-2a4e-4c39-9b5b-3f0e2a0c1d11", "nope", "0"] {
        let loc = format!("/v2/u/blobs/uploads/{id}");
        expect_no_session(&reg, &loc, b"x").await;
    }
    for id in ["a.b", "a_b", "a%20b"] {
        reg.get(&format!("/v2/u/blobs/uploads/{id}"))
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn an_upload_belongs_to_its_repository() {
    let reg = Reg::start();
    let loc = reg.start_upload("one").await;
    let other = loc.replace("/v2/one/", "/v2/two/");
    assert_ne!(loc, other);
    expect_no_session(&reg, &other, &random_bytes(14, 10)).await;
    // The session in its own repository is untouched.
    assert_eq!(reg.upload_range(&loc).await, "0-0");
}

#[tokio::test]
async fn empty_blobs_can_be_pushed_both_ways() {
    let reg = Reg::start();
    let empty_digest = sha256(b"");
    // Single POST.
    reg.push_blob("e1", b"").await;
    // POST then PUT without a body.
    let loc = reg.start_upload("e2").await;
    let r = close(&reg, &loc, &empty_digest).await;
    r.expect(201);
    for repo in ["e1", "e2"] {
        let r = reg.head(&format!("/v2/{repo}/blobs/{empty_digest}")).await;
        r.expect(200);
        assert_eq!(r.header("Content-Length"), Some("0"));
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(empty_digest.as_str())
        );
        let r = reg.get(&format!("/v2/{repo}/blobs/{empty_digest}")).await;
        r.expect(200);
        assert!(r.body.is_empty());
    }
}

#[tokio::test]
async fn pushing_an_existing_blob_again_succeeds() {
    let reg = Reg::start();
    let data = random_bytes(15, 5_000);
    reg.push_blob("again", &data).await;
    reg.push_blob("again", &data).await;
    let loc = reg.start_upload("again").await;
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, "digest", &sha256(&data)))
                .body(data.clone()),
        )
        .await;
    r.expect(201);
    // The same bytes in another repository.
    reg.push_blob("again2", &data).await;
    reg.expect_blob("again", &data).await;
    reg.expect_blob("again2", &data).await;
}

#[tokio::test]
async fn mount_from_a_repository_holding_the_blob_is_201() {
    let (reg, data, digest) = Reg::with_blob("src", 16, 3_000).await;
    reg.expect_no_blob("dst", &digest).await;
    let r = reg
        .send(reg.post_upload("dst", &format!("?mount={digest}&from=src")))
        .await;
    r.expect(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    let loc = r.must_header("Location").to_owned();
    assert!(loc.ends_with(&format!("/v2/dst/blobs/{digest}")), "{loc}");
    let r = reg.get(&loc).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), data.as_slice());
    // The mount is a link of its own: deleting it in the source leaves it.
    reg.delete(&format!("/v2/src/blobs/{digest}"))
        .await
        .expect(202);
    reg.expect_blob("dst", &data).await;
}

#[tokio::test]
async fn mount_that_cannot_be_done_falls_back_to_an_upload() {
    let reg = Reg::start();
    let data = random_bytes(17, 1_000);
    let digest = sha256(&data);
    reg.push_blob("holder", &random_bytes(18, 10)).await;
    let elsewhere = reg.push_blob("elsewhere", &data).await;
    assert_eq!(elsewhere, digest);
    for query in [
        format!("mount={digest}&from=holder"),
        format!("mount={digest}&from=nonexistent"),
        format!("mount={digest}"),
        "mount=sha256:bad&from=elsewhere".to_owned(),
        format!("mount={digest}&from=INVALID"),
    ] {
        let r = reg.send(reg.post_upload("fb", &format!("?{query}"))).await;
        r.expect(202);
        let loc = r.must_header("Location").to_owned();
        assert!(loc.contains("/v2/fb/blobs/uploads/"), "{query}: {loc}");
        // The fallback is a real session.
        assert_eq!(reg.upload_range(&loc).await, "0-0");
        reg.delete(&loc).await.expect(204);
    }
    reg.expect_no_blob("fb", &digest).await;
    // Completing the fallback upload works.
    let r = reg
        .send(reg.post_upload("fb", &format!("?mount={digest}&from=holder")))
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    let r = reg.close_with(&loc, &digest, data.clone()).await;
    r.expect(201);
    reg.expect_blob("fb", &data).await;
}
