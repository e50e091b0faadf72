//! An import killed with SIGKILL midway, then run again; and the
//! measurement of an import's speed (ignored: run it by hand).

use super::fixture::*;
use crate::common::{noise, Server, ADMIN_PASSWORD};
use futures_util::StreamExt;
use serde_json::json;
use std::io::{BufRead, BufReader};
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

/// `manifests X/Y` of a progress line.
fn manifests_done(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("manifests ").nth(1)?;
    let (done, rest) = rest.split_once('/')?;
    let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// Starts `berth import` with `args` and kills it (SIGKILL) once its
/// progress shows a third of the manifests done; panics if it finished
/// first.
fn import_killed_midway(args: &[&str]) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("import")
        .args(args)
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if let Some((done, total)) = manifests_done(&line) {
            if done * 3 >= total && done < total {
                child.kill().unwrap();
                let status = child.wait().unwrap();
                assert!(!status.success(), "{status}");
                return done;
            }
        }
    }
    let status = child.wait().unwrap();
    panic!("the import ended ({status}) before it could be killed midway:\n{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_is_finished_by_the_next_run() {
    const IMAGES: u64 = 400;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    let dist = Distribution::on_dir(tmp.path(), &root);
    push_many(&dist, 8, IMAGES as usize).await;
    let before = content(&dist.url, None).await;
    dist.stop();

    let data = tmp.path().join("berth-data");
    let storage = format!(
        "[storage]\nbackend = \"filesystem\"\npath = \"{}\"\nlayout = \"distribution\"\n",
        root.display()
    );
    let config = berth_config(tmp.path(), &data, &storage);
    let config = config.to_str().unwrap();
    let killed_at = import_killed_midway(&["--config", config]);
    eprintln!("killed after {killed_at} of {IMAGES} manifests");

    // What the killed run made visible is consistent: every tag names a
    // manifest, every manifest's blobs are linked and stored.
    let fsck = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["fsck", "--config", config])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    let rerun = berth_import_ok(&["--config", config]);
    let (imported, present) = (
        rerun.count("manifests", "imported"),
        rerun.count("manifests", "already present"),
    );
    assert_eq!(imported + present, IMAGES, "{}", rerun.stdout);
    assert!(present >= killed_at && imported > 0, "{}", rerun.stdout);
    assert!(
        rerun.stdout.contains("skipped: nothing"),
        "{}",
        rerun.stdout
    );
    let third = berth_import_ok(&["--config", config]);
    assert!(third.stdout.contains("nothing new"), "{}", third.stdout);

    let server = Server::start_in(&data, &["--config", config]);
    let admin = Some(("admin", ADMIN_PASSWORD));
    assert_eq!(content(&server.url(""), admin).await, before);
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
    let dist = Distribution::on_dir(tmp.path(), &root);
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
    eprintln!(
        "1000 manifests (2000 blob links, 1000 tags): in place {in_place:?}, copying {copying:?}, \
         a second run in place {rerun:?} (on {})",
        filesystem_of(tmp.path())
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
