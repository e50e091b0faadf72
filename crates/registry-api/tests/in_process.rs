//! The HTTP layer served in-process on 127.0.0.1:0, built as the binary
//! builds it (`berth::App`: embedded metadata and filesystem blobs in a
//! temporary directory): every distribution endpoint once, with a graceful
//! shutdown at the end. (The binary's own tests drive the real process;
//! this one needs no binary.)

use berth::{App, Config};
use berth_oci::Digest;

const PASSWORD: &str = "in-process-admin";

fn sha(data: &[u8]) -> String {
    Digest::sha256_of(data).to_string()
}

/// The status of the response to `request`.
async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// The JSON body of the response to `request`.
async fn json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().into(),
        ..Config::default()
    };
    let app = App::build(&config, Some(PASSWORD)).await.unwrap();
    let server = app.spawn().await.unwrap();
    let base = format!("http://{}", server.addr);
    let c = berth_net::client();
    let req = |m: reqwest::Method, path: &str| {
        c.request(m, format!("{base}{path}"))
            .basic_auth("admin", Some(PASSWORD))
    };
    use reqwest::Method as M;

    assert_eq!(status(c.get(format!("{base}/v2/"))).await, 401);
    assert_eq!(status(req(M::GET, "/v2/")).await, 200);

    // Monolithic upload, then HEAD, GET and a Range GET.
    let layer = b"in-process layer bytes".to_vec();
    let r = req(
        M::POST,
        &format!("/v2/p/app/blobs/uploads/?digest={}", sha(&layer)),
    )
    .body(layer.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = req(M::HEAD, &format!("/v2/p/app/blobs/{}", sha(&layer)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-length"], layer.len().to_string());
    let r = req(M::GET, &format!("/v2/p/app/blobs/{}", sha(&layer)))
        .header("Range", "bytes=3-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[3..6]);

    // POST, PATCH with Content-Range, status, PUT.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let r = req(M::POST, "/v2/p/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = req(M::PATCH, &loc)
        .header("Content-Range", format!("0-{}", config.len() - 1))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = req(M::GET, &loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], format!("0-{}", config.len() - 1));
    let r = req(M::PUT, &format!("{loc}?digest={}", sha(&config)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Cancel an upload.
    let r = req(M::POST, "/v2/p/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(status(req(M::DELETE, &loc)).await, 204);
    assert_eq!(status(req(M::GET, &loc)).await, 404);

    // Mount into another repository.
    let r = req(
        M::POST,
        &format!(
            "/v2/p/other/blobs/uploads/?mount={}&from=p/app",
            sha(&layer)
        ),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);

    // Manifest push, fetch, referrer, tags, catalog, deletes.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}],
    })
    .to_string();
    let r = req(M::PUT, "/v2/p/app/manifests/v1")
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let digest = sha(manifest.as_bytes());
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let r = req(M::GET, "/v2/p/app/manifests/v1").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), manifest);
    let sbom = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len()},
    })
    .to_string();
    let r = req(
        M::PUT,
        &format!("/v2/p/app/manifests/{}", sha(sbom.as_bytes())),
    )
    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    .body(sbom)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"], digest.as_str());
    let r = req(
        M::GET,
        &format!("/v2/p/app/referrers/{digest}?artifactType=application/vnd.example.sbom"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let v = json(req(M::GET, "/v2/p/app/tags/list")).await;
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    let v = json(req(M::GET, "/v2/_catalog")).await;
    assert_eq!(v["repositories"], serde_json::json!(["p/app"]));
    let other_layer: &str = &format!("/v2/p/other/blobs/{}", sha(&layer));
    let by_digest: &str = &format!("/v2/p/app/manifests/{digest}");
    for (method, path, expected) in [
        (M::DELETE, "/v2/p/app/manifests/v1", 202),
        (M::GET, by_digest, 200),
        (M::DELETE, by_digest, 202),
        (M::GET, by_digest, 404),
        (M::DELETE, other_layer, 202),
        (M::HEAD, other_layer, 404),
    ] {
        assert_eq!(
            status(req(method.clone(), path)).await,
            expected,
            "{method} {path}"
        );
    }

    server.stop().await.unwrap();
}
