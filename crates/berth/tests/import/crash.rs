//! An import killed with SIGKILL midway, then run again; and the
//! measurement of an import's speed (ignored: run it by hand).

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

/// `berth import` of `args`, timed.
fn timed_import(args: &[&str]) -> Duration {
    let started = Instant::now();
    let run = berth_import_ok(args);
    let took = started.elapsed();
    eprintln!("{}", run.stdout);
    took
}

/// The time an import takes per 1,000 manifests, in place and copying,
/// on this machine. Run by hand:
/// `cargo nextest run -p berth --test import --run-ignored only --no-capture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_import_time_per_1000_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    let dist = distribution_on_dir(&root);
    let filling = Instant::now();
    push_many(&dist, 10, 1000).await;
    eprintln!(
        "filled Distribution with 1000 images in {:?}",
        filling.elapsed()
    );
    dist.stop();

    let in_place_dir = tmp.path().join("in-place");
    std::fs::create_dir_all(&in_place_dir).unwrap();
    let storage = format!(
        "[storage]\nbackend = \"filesystem\"\npath = \"{}\"\nlayout = \"distribution\"\n",
        root.display()
    );
    let config = berth_config(&in_place_dir, &in_place_dir.join("data"), &storage);
    let in_place = timed_import(&["--config", config.to_str().unwrap()]);
    let rerun = timed_import(&["--config", config.to_str().unwrap()]);

    let copy_data = tmp.path().join("copy-data");
    let copy_args = [
        "--data",
        copy_data.to_str().unwrap(),
        "--from",
        root.to_str().unwrap(),
    ];
    let copying = timed_import(&copy_args);
    let serial_data = tmp.path().join("serial-data");
    let serial_args = [
        "--data",
        serial_data.to_str().unwrap(),
        "--from",
        root.to_str().unwrap(),
        "--jobs",
        "1",
    ];
    let serial = timed_import(&serial_args);
    eprintln!(
        "1000 manifests (2000 blob links, 1000 tags): in place {in_place:?}, copying {copying:?}, \
         copying one at a time {serial:?}, a second run in place {rerun:?} (on {})",
        filesystem_of(tmp.path())
    );

    // Where bytes dominate: 8 images of a 64 MiB layer each.
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let big_root = big.join("registry");
    let dist = distribution_on_dir(&big_root);
    let pusher = Pusher::new(&dist.url);
    for i in 0..8u64 {
        let layer = noise(i + 77, 64 << 20);
        let config = json!({"architecture": "amd64", "os": "linux", "big": i}).to_string();
        let c = pusher.blob("load/big", config.as_bytes()).await;
        let l = pusher.blob("load/big", &layer).await;
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        });
        pusher
            .manifest("load/big", &format!("v{i}"), &manifest)
            .await;
    }
    dist.stop();
    let storage = format!(
        "[storage]\nbackend = \"filesystem\"\npath = \"{}\"\nlayout = \"distribution\"\n",
        big_root.display()
    );
    let config = berth_config(&big, &big.join("data"), &storage);
    let in_place = timed_import(&["--config", config.to_str().unwrap()]);
    let copy_data = big.join("copy-data");
    let copy_args = [
        "--data",
        copy_data.to_str().unwrap(),
        "--from",
        big_root.to_str().unwrap(),
    ];
    let copying = timed_import(&copy_args);
    eprintln!(
        "8 manifests of a 64 MiB layer (512 MiB): in place {in_place:?}, copying {copying:?}"
    );
}

fn filesystem_of(path: &Path) -> String {
    let out = Command::new("df")
        .args(["--output=fstype"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap_or("?")
        .trim()
        .to_owned()
}
