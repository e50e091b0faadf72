//! The HTTP layer served in-process on 127.0.0.1:0, over the in-memory `Kv`
//! and the filesystem `BlobStore`: every distribution endpoint once, with a
//! graceful shutdown at the end. (The binary's own tests drive the real
//! process; this one needs no binary and shows the wiring in one page.)

use berth_auth::audit::AuditLog;
use berth_auth::token::TokenService;
use berth_auth::Directory;
use berth_core::registry::gc::Collector;
use berth_core::LocalLocks;
use berth_core::{Kv, MemoryKv, Registry};
use berth_http::auth::Auth;
use berth_http::{serve, AppState};
use berth_oci::Digest;
use std::sync::Arc;

const PASSWORD: &str = "in-process-admin";

fn sha(data: &[u8]) -> String {
    Digest::sha256_of(data).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
    let blobs = Arc::new(berth_storage::FsBlobStore::open(dir.path().join("blobs")).unwrap());
    let directory = Directory::new(kv.clone());
    directory.ensure_admin(Some(PASSWORD)).await.unwrap();
    let tokens = TokenService::new(kv.clone(), "berth", "berth", 300);
    let registry = Registry::new(kv.clone(), blobs);
    let gc = Collector::new(
        registry.clone(),
        Arc::new(LocalLocks::default()),
        "test",
        3600,
        86_400,
    );
    let state = AppState {
        gc: Arc::new(gc),
        registry,
        auth: Arc::new(Auth::new(directory, tokens, None, true)),
        audit: AuditLog::start(kv),
        base_url: "".into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = berth_registry_api::routes(state.clone()).with_state(state);
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    let c = berth_net::client();
    let req = |m: reqwest::Method, path: &str| {
        c.request(m, format!("{base}{path}"))
            .basic_auth("admin", Some(PASSWORD))
    };
    use reqwest::Method as M;

    assert_eq!(
        c.get(format!("{base}/v2/")).send().await.unwrap().status(),
        401
    );
    assert_eq!(req(M::GET, "/v2/").send().await.unwrap().status(), 200);

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
    assert_eq!(req(M::DELETE, &loc).send().await.unwrap().status(), 204);
    assert_eq!(req(M::GET, &loc).send().await.unwrap().status(), 404);

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
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let v: serde_json::Value = serde_json::from_str(
        &req(M::GET, "/v2/p/app/tags/list")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    let v: serde_json::Value = serde_json::from_str(
        &req(M::GET, "/v2/_catalog")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["p/app"]));
    assert_eq!(
        req(M::DELETE, "/v2/p/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        req(M::GET, &format!("/v2/p/app/manifests/{digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        req(M::DELETE, &format!("/v2/p/app/manifests/{digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        req(M::GET, &format!("/v2/p/app/manifests/{digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        req(M::DELETE, &format!("/v2/p/other/blobs/{}", sha(&layer)))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        req(M::HEAD, &format!("/v2/p/other/blobs/{}", sha(&layer)))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
