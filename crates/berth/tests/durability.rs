//! Crash safety and bounded memory, against the real binary:
//! - `kill -9` in the middle of pushes leaves nothing half-written visible,
//!   and every push that was acknowledged pulls back byte-identical;
//! - an interrupted chunked upload continues after the restart;
//! - a 2 GiB blob pushes and pulls with the server's resident memory under
//!   100 MiB.

mod common;

use bytes::Bytes;
use common::{expect_status, get_bytes, noise, sha256, Server};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;

fn client() -> reqwest::Client {
    common::admin_client()
}

/// A pushed image: its manifest and blobs, to compare after the restart.
struct Image {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

async fn push_blob(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
) -> reqwest::Result<reqwest::Response> {
    c.post(format!(
        "{base}/v2/{repo}/blobs/uploads/?digest={}",
        sha256(data)
    ))
    .header("Content-Type", "application/octet-stream")
    .body(data.to_vec())
    .send()
    .await
}

/// Starts an upload into `repo`, which must be accepted; its `Location`.
async fn start_upload(c: &reqwest::Client, base: &str, repo: &str) -> String {
    let resp = expect_status(c.post(format!("{base}/v2/{repo}/blobs/uploads/")), 202).await;
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// Pushes a whole image; `Ok(true)` once the manifest PUT was acknowledged.
async fn push_image(c: &reqwest::Client, base: &str, img: &Image) -> reqwest::Result<bool> {
    for b in &img.blobs {
        if push_blob(c, base, &img.repo, b).await?.status() != 201 {
            return Ok(false);
        }
    }
    let resp = c
        .put(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(img.manifest.clone())
        .send()
        .await?;
    Ok(resp.status() == 201)
}

fn make_image(seed: u64, repo: &str, tag: &str) -> Image {
    let config = json!({"architecture": "amd64", "os": "linux", "seed": seed})
        .to_string()
        .into_bytes();
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| noise(seed * 10 + i, 300_000 + i as usize * 1000))
        .collect();
    let manifest = common::oci::manifest(&config, &layers)
        .to_string()
        .into_bytes();
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        manifest,
        blobs,
    }
}

async fn assert_pulls_identical(c: &reqwest::Client, base: &str, img: &Image) {
    let (status, body) =
        get_bytes(c, format!("{base}/v2/{}/manifests/{}", img.repo, img.tag)).await;
    assert_eq!(status, 200, "{}:{} lost", img.repo, img.tag);
    assert_eq!(body, img.manifest);
    for b in &img.blobs {
        let (status, body) =
            get_bytes(c, format!("{base}/v2/{}/blobs/{}", img.repo, sha256(b))).await;
        assert_eq!(status, 200);
        assert!(body == *b, "blob {} of {} differs", sha256(b), img.repo);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_pushes_loses_nothing_acknowledged_and_shows_nothing_partial() {
    let server = Server::start();
    let data = server.data.clone();
    let base = server.url("");
    let c = client();

    // Images fully pushed before any trouble.
    let before: Vec<Image> = (0..3)
        .map(|i| make_image(i, "crash/before", &format!("v{i}")))
        .collect();
    for img in &before {
        assert!(push_image(&c, &base, img).await.unwrap());
    }

    // A chunked upload with two acknowledged chunks.
    let chunked = noise(999, 3 * 1024 * 1024);
    let mut location = start_upload(&c, &base, "crash/chunked").await;
    for part in chunked[..2 * 1024 * 1024].chunks(1024 * 1024) {
        let start = if location.contains("://") {
            String::new()
        } else {
            base.clone()
        };
        let patch = c
            .patch(format!("{start}{location}"))
            .header("Content-Type", "application/octet-stream")
            .body(part.to_vec());
        let resp = expect_status(patch, 202).await;
        location = resp.headers()["location"].to_str().unwrap().to_owned();
    }

    // A monolithic blob push and a manifest push whose bodies stall halfway,
    // so the kill lands while the server is receiving them.
    let stalled_blob = noise(4242, 4 * 1024 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let stalled = tokio::spawn({
        let c = c.clone();
        let url = format!(
            "{base}/v2/crash/stalled/blobs/uploads/?digest={}",
            sha256(&stalled_blob)
        );
        async move { c.post(url).body(body).send().await }
    });
    tx.send(Ok(Bytes::copy_from_slice(&stalled_blob[..2 * 1024 * 1024])))
        .await
        .unwrap();

    let half_manifest = make_image(77, "crash/stalledmanifest", "v1");
    for b in &half_manifest.blobs {
        assert_eq!(
            push_blob(&c, &base, &half_manifest.repo, b)
                .await
                .unwrap()
                .status(),
            201
        );
    }
    let (mtx, mrx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stalled_manifest = tokio::spawn({
        let c = c.clone();
        let url = format!("{base}/v2/crash/stalledmanifest/manifests/v1");
        let body = reqwest::Body::wrap_stream(tokio_stream(mrx));
        async move {
            c.put(url)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(body)
                .send()
                .await
        }
    });
    let cut = half_manifest.manifest.len() / 2;
    mtx.send(Ok(Bytes::copy_from_slice(&half_manifest.manifest[..cut])))
        .await
        .unwrap();

    // Writers pushing images as fast as they can while the kill happens.
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let c = c.clone();
        let base = base.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut attempted = Vec::new();
            for i in 0.. {
                let img = make_image(
                    1000 + w * 1000 + i,
                    &format!("crash/writer{w}"),
                    &format!("t{i}"),
                );
                match push_image(&c, &base, &img).await {
                    Ok(true) => acked.push(img),
                    _ => {
                        attempted.push(img);
                        break;
                    }
                }
            }
            (acked, attempted)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _data_guard = server.kill();
    drop(tx);
    drop(mtx);
    assert!(
        stalled.await.unwrap().is_err(),
        "the stalled blob push cannot have succeeded"
    );
    assert!(
        stalled_manifest.await.unwrap().is_err(),
        "the stalled manifest push cannot have succeeded"
    );
    let mut acked = Vec::new();
    let mut attempted = Vec::new();
    for w in writers {
        let (a, t) = w.await.unwrap();
        acked.extend(a);
        attempted.extend(t);
    }
    assert!(
        !acked.is_empty(),
        "no push completed before the kill; the test proves nothing"
    );
    println!(
        "{} images acknowledged before the kill, {} cut off by it",
        acked.len(),
        attempted.len()
    );

    let server = Server::start_in(&data, &[]);
    let base = server.url("");
    for img in before.iter().chain(&acked) {
        assert_pulls_identical(&c, &base, img).await;
    }
    // A push cut off by the kill is either complete or entirely absent.
    for img in &attempted {
        let (status, body) =
            get_bytes(&c, format!("{base}/v2/{}/manifests/{}", img.repo, img.tag)).await;
        match status {
            404 => {}
            200 => {
                assert_eq!(body, img.manifest);
                assert_pulls_identical(&c, &base, img).await;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let head = c
        .head(format!(
            "{base}/v2/crash/stalled/blobs/{}",
            sha256(&stalled_blob)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404, "a half-received blob became visible");
    let (status, _) = get_bytes(&c, format!("{base}/v2/crash/stalledmanifest/manifests/v1")).await;
    assert_eq!(status, 404, "a half-received manifest became visible");

    // The chunked upload continues where its last acknowledged chunk ended.
    let start = if location.contains("://") {
        String::new()
    } else {
        base.clone()
    };
    let status = c.get(format!("{start}{location}")).send().await.unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"],
        format!("0-{}", 2 * 1024 * 1024 - 1)
    );
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = c
        .put(format!("{start}{location}{sep}digest={}", sha256(&chunked)))
        .header("Content-Type", "application/octet-stream")
        .body(chunked[2 * 1024 * 1024..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let (status, body) = get_bytes(
        &c,
        format!("{base}/v2/crash/chunked/blobs/{}", sha256(&chunked)),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body == chunked);
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// 2 GiB streamed in both directions, generated and checked on the fly so
/// that neither side holds it in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_blob_push_and_pull_keep_server_memory_under_100_mib() {
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 2048;
    let server = Server::start();
    let base = server.url("");
    let c = client();
    let pattern = Bytes::from(noise(5, CHUNK));
    let chunk = move |i: usize| -> Bytes {
        let mut b = pattern.to_vec();
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Bytes::from(b)
    };
    let digest = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for i in 0..CHUNKS {
            h.update(chunk(i));
        }
        format!("sha256:{}", berth_oci::digest::hex(&h.finalize()))
    };

    let location = start_upload(&c, &base, "big/blob").await;
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))),
    ));
    let resp = expect_status(c.patch(format!("{base}{location}")).body(body), 202).await;
    assert_eq!(resp.headers()["range"], format!("0-{}", CHUNK * CHUNKS - 1));
    let resp = c
        .put(format!("{base}{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let after_push = server.peak_rss_kib();

    let resp = expect_status(c.get(format!("{base}/v2/big/blob/blobs/{digest}")), 200).await;
    let mut stream = resp.bytes_stream();
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    let mut total = 0usize;
    while let Some(part) = stream.next().await {
        let part = part.unwrap();
        total += part.len();
        sha2::Digest::update(&mut h, &part);
    }
    assert_eq!(total, CHUNK * CHUNKS);
    assert_eq!(
        format!(
            "sha256:{}",
            berth_oci::digest::hex(&sha2::Digest::finalize(h))
        ),
        digest
    );
    let peak = server.peak_rss_kib();
    println!("peak server RSS: {after_push} KiB after the 2 GiB push, {peak} KiB after the pull");
    assert!(
        peak < 100 * 1024,
        "server peak RSS {peak} KiB exceeds 100 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_in_flight_finish_before_exiting() {
    let mut server = Server::start();
    let base = server.url("");
    let c = client();
    let data = noise(11, 2 * 1024 * 1024);
    let location = start_upload(&c, &base, "drain/app").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let patch = tokio::spawn({
        let c = c.clone();
        let url = format!("{base}{location}");
        async move {
            c.patch(url)
                .body(reqwest::Body::wrap_stream(tokio_stream(rx)))
                .send()
                .await
        }
    });
    tx.send(Ok(Bytes::copy_from_slice(&data[..1024 * 1024])))
        .await
        .unwrap();
    // The server has the request; now it is asked to stop.
    let status = c.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(status.status(), 204);
    server.terminate();
    tx.send(Ok(Bytes::copy_from_slice(&data[1024 * 1024..])))
        .await
        .unwrap();
    drop(tx);
    let resp = patch
        .await
        .unwrap()
        .expect("the in-flight request was cut off");
    assert_eq!(resp.status(), 202, "the in-flight upload did not complete");
    assert_eq!(resp.headers()["range"], format!("0-{}", data.len() - 1));
    let exit = tokio::task::spawn_blocking(move || {
        let s = server.wait_exit(Duration::from_secs(30));
        (s, server)
    })
    .await
    .unwrap();
    let (status, server) = exit;
    let status = status.expect("berth did not exit after SIGTERM");
    assert!(status.success(), "berth exited with {status}");
    // What the drained request wrote is durable: a restart continues it.
    let data_dir = server.data.clone();
    let _keep = server.kill();
    let restarted = Server::start_in(&data_dir, &[]);
    let base = restarted.url("");
    expect_status(
        c.put(format!("{base}{location}?digest={}", sha256(&data))),
        201,
    )
    .await;
}
