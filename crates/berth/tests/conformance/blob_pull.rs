//! Pulling, checking and deleting blobs; `Range` requests.

use super::util::*;
use reqwest::Method;

async fn get_range(reg: &Reg, repo: &str, digest: &str, range: &str) -> Resp {
    let path = format!("/v2/{repo}/blobs/{digest}");
    reg.send_with(Method::GET, &path, "Range", range).await
}

#[tokio::test]
async fn head_and_get_report_length_and_digest() {
    let (reg, _, digest) = Reg::with_blob("p", 1, 123_457).await;
    let r = reg.head(&format!("/v2/p/blobs/{digest}")).await;
    r.expect(200);
    assert_eq!(r.header("Content-Length"), Some("123457"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert!(r.body.is_empty());
    let r = reg.get(&format!("/v2/p/blobs/{digest}")).await;
    r.expect(200);
    assert_eq!(r.header("Content-Length"), Some("123457"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(sha256(&r.body), digest);
}

#[tokio::test]
async fn range_requests_return_the_requested_bytes() {
    let (reg, data, digest) = Reg::with_blob("r", 2, 2048).await;
    for (range, start, end) in [
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
        ("bytes=0-0", 0, 0),
        ("bytes=2047-2047", 2047, 2047),
        ("bytes=-5000", 0, 2047),
    ] {
        let r = get_range(&reg, "r", &digest, range).await;
        r.expect(206);
        assert_eq!(r.body.as_ref(), &data[start..=end], "{range}");
        let len = (end - start + 1).to_string();
        assert_eq!(r.header("Content-Length"), Some(len.as_str()), "{range}");
        let cr = format!("bytes {start}-{end}/2048");
        assert_eq!(r.header("Content-Range"), Some(cr.as_str()), "{range}");
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    }
    // HEAD with a range describes the part without sending it.
    let path = format!("/v2/r/blobs/{digest}");
    let r = reg
        .send_with(Method::HEAD, &path, "Range", "bytes=10-19")
        .await;
    r.expect(206);
    assert_eq!(r.header("Content-Length"), Some("10"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn unsatisfiable_ranges_are_416() {
    let (reg, _, digest) = Reg::with_blob("r", 3, 2048).await;
    for range in ["bytes=5000-10000", "bytes=2048-", "bytes=500-0", "bytes=-0"] {
        let r = get_range(&reg, "r", &digest, range).await;
        r.expect(416);
        assert_eq!(r.header("Content-Range"), Some("bytes */2048"), "{range}");
        r.expect_error(
            416,
            r.json()["errors"][0]["code"].as_str().unwrap_or_default(),
        );
    }
    // The empty blob has no byte to range over.
    let empty = reg.push_blob("r", b"").await;
    let r = get_range(&reg, "r", &empty, "bytes=0-").await;
    r.expect(416);
    assert_eq!(r.header("Content-Range"), Some("bytes */0"));
}

#[tokio::test]
async fn ranges_the_server_does_not_split_return_the_whole_blob() {
    let (reg, data, digest) = Reg::with_blob("r", 4, 1000).await;
    for range in ["bytes=0-1,5-6", "items=0-5", "garbage"] {
        let r = get_range(&reg, "r", &digest, range).await;
        r.expect(200);
        assert_eq!(r.body.as_ref(), data.as_slice(), "{range}");
    }
}

#[tokio::test]
async fn unknown_blobs_are_404_blob_unknown() {
    let reg = Reg::start();
    let d = sha256(b"never pushed");
    reg.expect_blob_unknown(Method::GET, "nope", &d).await;
    reg.expect_no_blob("nope", &d).await;
    reg.push_blob("some", b"content").await;
    reg.expect_blob_unknown(Method::GET, "some", &d).await;
    reg.expect_blob_unknown(Method::DELETE, "some", &d).await;
}

#[tokio::test]
async fn a_blob_is_visible_only_in_repositories_it_was_pushed_to() {
    let (reg, _, digest) = Reg::with_blob("mine", 5, 100).await;
    reg.expect_blob_unknown(Method::GET, "theirs", &digest)
        .await;
    reg.expect_no_blob("theirs", &digest).await;
    reg.expect_blob_unknown(Method::GET, "mine/sub", &digest)
        .await;
    reg.get(&format!("/v2/mine/blobs/{digest}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn deleted_blobs_are_gone_from_that_repository_only() {
    let (reg, data, digest) = Reg::with_blob("a", 6, 4_000).await;
    reg.push_blob("b", &data).await;
    let r = reg.delete(&format!("/v2/a/blobs/{digest}")).await;
    r.expect(202);
    reg.expect_no_blob("a", &digest).await;
    reg.expect_blob_unknown(Method::GET, "a", &digest).await;
    reg.expect_blob_unknown(Method::DELETE, "a", &digest).await;
    reg.expect_blob("b", &data).await;
    // Pushing it again brings it back.
    reg.push_blob("a", &data).await;
    reg.expect_blob("a", &data).await;
}
