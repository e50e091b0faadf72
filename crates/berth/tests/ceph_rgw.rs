//! berth on a real Ceph RGW (a throwaway single-node Ceph 16): pushes and
//! pulls through it, then a radosgw outage: pushes and pulls fail within
//! seconds with 503 and nothing half-written shows, and once radosgw is back
//! berth recovers without a restart and every acknowledged image pulls
//! byte-identical.

#[path = "../../storage/tests/ceph/mod.rs"]
mod ceph;
mod common;

use common::oci::{Client, Image};
use common::{noise, sha256, Server, ADMIN_PASSWORD};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_and_pulls_on_rgw_and_survive_a_radosgw_outage() {
    let mut rgw = ceph::Ceph::start().await;
    let config = format!(
        "[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:{}\"\nbucket = \"{}\"\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\ntimeout_secs = 5\npart_size_mib = 5\n",
        rgw.rgw_port,
        ceph::BUCKET,
        ceph::ACCESS_KEY,
        ceph::SECRET_KEY
    );
    let server = Server::start_with_config(&config);
    let c = Client::new(&server.url(""), "admin", ADMIN_PASSWORD);
    // One image with a layer bigger than a part, so commits go multipart.
    let before = Image::new(
        "before",
        vec![noise(1, 12 * 1024 * 1024), noise(2, 1000)],
        None,
    );
    c.push("ceph/app", "v1", &before).await.unwrap();
    c.assert_pulls("ceph/app", "v1", &before).await;

    rgw.stop_rgw();
    let during = Image::new("during", vec![noise(3, 50_000)], None);
    let started = Instant::now();
    let status = c.upload("ceph/app", &during.layers[0]).await;
    assert_eq!(status, 503, "a push while radosgw is down");
    let (status, _) = c
        .get(&format!("/v2/ceph/app/blobs/{}", sha256(&before.layers[1])))
        .await;
    assert_eq!(status, 503, "a pull while radosgw is down");
    // Within seconds (the configured 5 s timeout), never a hang. Only a
    // bound to catch a hang; nothing is measured.
    assert!(started.elapsed() < Duration::from_secs(60));
    let (status, _) = c.get("/readyz").await;
    assert_eq!(status, 503);
    // The refused blob is not half there.
    let (status, _) = c
        .get(&format!("/v2/ceph/app/blobs/{}", sha256(&during.layers[0])))
        .await;
    assert_eq!(status, 404);

    rgw.start_rgw();
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "berth did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.assert_pulls("ceph/app", "v1", &before).await;
    c.push("ceph/app", "v2", &during).await.unwrap();
    c.assert_pulls("ceph/app", "v2", &during).await;
}
