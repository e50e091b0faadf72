//! berth on a real Ceph RGW (a throwaway single-node Ceph 16): pushes and
//! pulls through it, then a radosgw outage: pushes and pulls fail within
//! seconds with 503 and nothing half-written shows, and once radosgw is back
//! berth recovers without a restart and every acknowledged image pulls
//! byte-identical. And blobs over 5 GiB (S3's limit for one PUT or one
//! copy), pushed monolithic and chunked and pulled back, on BlueStore.

mod common;

use berth_test_kit::ceph::{Ceph, Objectstore};
use common::oci::{Client, Image};
use common::{noise, sha256, Server, ADMIN_PASSWORD};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_and_pulls_on_rgw_and_survive_a_radosgw_outage() {
    let mut rgw = Ceph::start().await;
    let config = rgw.storage_toml("timeout_secs = 5\npart_size_mib = 5\n");
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

const MIB: u64 = 1024 * 1024;

/// A blob of `blocks` MiB, made block by block (never whole in memory):
/// one random MiB with the block's number written over its start.
struct BigBlob {
    base: Vec<u8>,
    blocks: u64,
}

impl BigBlob {
    fn new(seed: u64, blocks: u64) -> BigBlob {
        BigBlob {
            base: noise(seed, MIB as usize),
            blocks,
        }
    }

    fn len(&self) -> u64 {
        self.blocks * MIB
    }

    fn block(&self, i: u64) -> bytes::Bytes {
        let mut b = self.base.clone();
        b[..8].copy_from_slice(&i.to_be_bytes());
        bytes::Bytes::from(b)
    }

    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for i in 0..self.blocks {
            h.update(self.block(i));
        }
        format!("sha256:{:x}", h.finalize())
    }

    /// Blocks `from..to` as a streamed request body.
    fn body(&self, from: u64, to: u64) -> reqwest::Body {
        let (base, blocks) = (self.base.clone(), self.blocks);
        let blob = BigBlob { base, blocks };
        reqwest::Body::wrap_stream(futures_util::stream::iter(
            (from..to).map(move |i| Ok::<_, std::io::Error>(blob.block(i))),
        ))
    }
}

/// Pulls `digest` from `repo`, hashing as it streams; (bytes, digest).
async fn pull_hashed(c: &Client, url: &str) -> (u64, String) {
    let r = c.request(reqwest::Method::GET, url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    let mut stream = r.bytes_stream();
    let (mut n, mut h) = (0u64, Sha256::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, format!("sha256:{:x}", h.finalize()))
}

/// S3 allows at most 5 GiB in one PUT and in one server-side copy, which
/// breaks registries that store or assemble a big layer in one piece.
/// berth writes an upload as part-sized chunk objects and commits it as a
/// multipart upload of part copies, so a 5 GiB + 3 MiB blob goes through
/// RGW pushed in one monolithic request and in chunks, and pulls back
/// identical. On BlueStore (a sparse file), not in memory: one cluster
/// per way, so the disk holds one blob's chunks and copy at a time (about
/// 10 GiB), and nextest runs these two alone (.config/nextest.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_over_5_gib_pushed_monolithic_goes_through_rgw() {
    over_5_gib_through_rgw("big/mono", 51, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_over_5_gib_pushed_in_chunks_goes_through_rgw() {
    over_5_gib_through_rgw("big/chunked", 52, true).await;
}

async fn over_5_gib_through_rgw(repo: &str, seed: u64, chunked: bool) {
    let rgw = Ceph::start_on(Objectstore::Bluestore { gib: 40 }).await;
    let server = Server::start_with_config(&rgw.storage_toml("part_size_mib = 64\n"));
    let c = Client::new(&server.url(""), "admin", ADMIN_PASSWORD);
    let over = (5 << 10) + 3; // MiB
    {
        let blob = BigBlob::new(seed, over);
        let digest = blob.digest();
        let location = c.start_upload(repo).await;
        let location = if chunked {
            // Chunks of 1 GiB + 1 MiB: the last one is short.
            let mut location = location;
            let step = 1025;
            let mut at = 0;
            while at < blob.blocks {
                let to = (at + step).min(blob.blocks);
                let r = c
                    .request(reqwest::Method::PATCH, &location)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", (to - at) * MIB)
                    .header("Content-Range", format!("{}-{}", at * MIB, to * MIB - 1))
                    .body(blob.body(at, to))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "PATCH at {at} MiB");
                location = c.absolute(r.headers()["location"].to_str().unwrap());
                at = to;
            }
            location
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = c
            .request(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream");
        let put = if chunked {
            put.header("Content-Length", 0)
        } else {
            put.header("Content-Length", blob.len())
                .body(blob.body(0, blob.blocks))
        };
        let r = put.send().await.unwrap();
        assert_eq!(r.status(), 201, "PUT {repo}: {}", r.text().await.unwrap());

        let url = server.url(&format!("/v2/{repo}/blobs/{digest}"));
        let head = c.request(reqwest::Method::HEAD, &url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            blob.len().to_string()
        );
        let (n, pulled) = pull_hashed(&c, &url).await;
        assert_eq!(
            (n, pulled),
            (blob.len(), digest),
            "{repo} pulls back identical"
        );
    }
}
