//! sha512 is handled the same by every reader (issue 14, item 8). See
//! ../hardening.rs.

use crate::common::{self, expect_status, get_bytes, sha256, Server};
use serde_json::json;
use std::time::Duration;

/// A manifest over 64 KiB is kept in the blob store under its digest. Pushed
/// by a `sha512:` digest, it was accepted and served, and then `berth fsck`
/// hashed it with SHA-256, reported it broken, and `--repair` deleted it.
#[tokio::test]
async fn a_large_manifest_pushed_by_sha512_survives_fsck_and_repair() {
    let mut server = Server::start();
    let c = common::admin_client();
    let repo = "team/big";
    let layer = b"a layer of a large manifest".to_vec();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    for blob in [&layer, &config] {
        common::put_blob(&c, &server, repo, blob).await;
    }
    let mut manifest = common::oci::manifest(&config, &[&layer]);
    manifest["annotations"] = json!({"org.example.padding": "p".repeat(100 * 1024)});
    let manifest = manifest.to_string().into_bytes();
    assert!(manifest.len() > 64 * 1024, "not kept inline");
    let digest = berth_oci::Digest::sha512_of(&manifest).to_string();
    let r = c
        .put(server.url(&format!("/v2/{repo}/manifests/{digest}")))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let path = format!("/v2/{repo}/manifests/{digest}");
    let (status, body) = get_bytes(&c, server.url(&path)).await;
    assert_eq!(status, 200);
    assert!(body == manifest, "served as pushed");

    // fsck works offline on the data directory.
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    let (ok, out) = Server::fsck(&server.data, &[]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 problems"), "{out}");
    assert!(!out.contains("PROBLEM"), "{out}");
    let (ok, out) = Server::fsck(&server.data, &["--repair"]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 repaired"), "{out}");

    // And the manifest is still there, byte for byte.
    let restarted = Server::start_in(&server.data, &[]);
    let (status, body) = get_bytes(&c, restarted.url(&path)).await;
    assert_eq!(status, 200, "deleted by fsck --repair");
    assert!(body == manifest, "served as pushed");
}

/// Blobs are verified by the SHA-256 state kept with each upload, so a
/// `sha512:` blob digest is refused up front, as DIGEST_INVALID saying so,
/// on a monolithic POST and on the PUT that closes an upload; the upload
/// is left as it was, to finish by its sha256 digest. (It used to answer
/// "content does not match" to a correct sha512 digest, and drop the
/// upload.)
#[tokio::test]
async fn a_sha512_blob_digest_is_refused_up_front_and_the_upload_kept() {
    let server = Server::start();
    let c = common::admin_client();
    let data = common::noise(5, 5000);
    let sha512 = berth_oci::Digest::sha512_of(&data).to_string();
    let expect_refusal = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "DIGEST_INVALID", "{body}");
        let message =
            body["errors"][0]["detail"].to_string() + &body["errors"][0]["message"].to_string();
        assert!(message.contains("sha256"), "{body}");
    };
    let r = c
        .post(server.url(&format!("/v2/p/app/blobs/uploads/?digest={sha512}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_refusal(r).await;

    let r = expect_status(c.post(server.url("/v2/p/app/blobs/uploads/")), 202).await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let url = if location.starts_with('/') {
        server.url(&location)
    } else {
        location
    };
    let r = c.patch(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(format!("{url}?digest={sha512}"))
        .send()
        .await
        .unwrap();
    expect_refusal(r).await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 204, "the upload is still there");
    expect_status(c.put(format!("{url}?digest={}", sha256(&data))), 201).await;
}
