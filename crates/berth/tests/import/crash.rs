//! An import killed with SIGKILL midway, then run again. (The measurement
//! of an import's speed is in the bench: `bench/run --import`.)

use super::fixture::*;
use crate::common::{noise, Server, ADMIN_PASSWORD};
use futures_util::StreamExt;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pushes `count` small images (a config and a 4 KiB layer each, tagged
/// `v<i>`) spread over `repos` repositories, by plain `/v2` requests, 8 at
/// a time.
async fn push_many(dist: &Distribution, repos: usize, count: usize) {
    let pusher = Pusher::new(&dist.url);
    let pusher = &pusher;
    futures_util::stream::iter(0..count)
        .map(|i| async move {
            let repo = format!("load/r{}", i % repos);
            let config = json!({"architecture": "amd64", "os": "linux", "n": i}).to_string();
            let layer = noise(i as u64 + 1000, 4096);
            let c = pusher.blob(&repo, config.as_bytes()).await;
            let l = pusher.blob(&repo, &layer).await;
            let manifest = json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
            });
            pusher.manifest(&repo, &format!("v{i}"), &manifest).await;
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

/// Starts `berth import` with `args` (copying into the data directory
/// `data`) and kills it (SIGKILL) as soon as `at` blobs have landed in
/// berth's storage; panics if it finished first.
fn import_killed_midway(args: &[&str], data: &Path, at: usize) -> usize {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("import")
        .args(args)
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blobs = data.join("blobs/blobs");
    let started = Instant::now();
    loop {
        let stored = files_under(&blobs).len();
        if stored >= at {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success(), "{status}");
            return stored;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the import ended ({status}) before it could be killed: {stored} blobs stored");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the import hangs"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_is_finished_by_the_next_run() {
    const IMAGES: u64 = 400;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    let dist = distribution_on_dir(&root);
    push_many(&dist, 8, IMAGES as usize).await;
    let before = content(&dist.url, None).await;
    dist.stop();

    // Copying, so that the kill can be timed on what it leaves: a third of
    // the blobs stored. Blobs committed but not yet recorded, uploads cut
    // short, manifests and tags not made: what a crash leaves.
    let data = tmp.path().join("berth-data");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--from",
        root.to_str().unwrap(),
    ];
    let stored = import_killed_midway(&args, &data, (2 * IMAGES / 3) as usize);
    eprintln!("killed with {stored} of {} blobs stored", 2 * IMAGES);

    // What the killed run made visible is consistent: every tag names a
    // manifest, every manifest's blobs are linked and stored.
    let (ok, fsck) = Server::fsck(&data, &[]);
    assert!(ok, "{fsck}");

    let rerun = berth_import_ok(&args);
    let out = &rerun.stdout;
    let manifests = (
        rerun.count("manifests", "imported"),
        rerun.count("manifests", "already present"),
    );
    let blobs = (
        rerun.count("blobs", "imported"),
        rerun.count("blobs", "already present"),
    );
    assert_eq!(manifests.0 + manifests.1, IMAGES, "{out}");
    assert_eq!(blobs.0 + blobs.1, 2 * IMAGES, "{out}");
    assert!(blobs.0 > 0 && blobs.1 > 0, "not killed midway:\n{out}");
    assert!(out.contains("skipped: nothing"), "{out}");
    let third = berth_import_ok(&args);
    assert!(third.stdout.contains("nothing new"), "{}", third.stdout);

    let server = Server::start_in(&data, &[]);
    let admin = Some(("admin", ADMIN_PASSWORD));
    assert_eq!(content(&server.url(""), admin).await, before);
    drop(server);
    let (ok, fsck) = Server::fsck(&data, &[]);
    assert!(ok, "{fsck}");
}
