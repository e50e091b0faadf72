//! Online garbage collection against the real binary: what is collected and
//! what is kept (tags, index children, referrers, young content), the race
//! of a blob uploaded before a run and its manifest pushed after, and a
//! stress run of pushes, re-pushes and deletes from several clients while
//! collections run in a loop.

mod common;

use common::oci::{find_file, index, stored_blobs, Client, Image, INDEX};
use common::{noise, sha256, Server, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

fn admin(server: &Server) -> Client {
    Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
}

fn blob_dir(server: &Server) -> std::path::PathBuf {
    server.data.join("blobs").join("blobs")
}

fn deleted(report: &Value) -> Vec<String> {
    report["deleted"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn mentions(report: &Value, digest: &str) -> bool {
    deleted(report).iter().any(|d| d.contains(digest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collects_what_nothing_references_and_keeps_the_rest() {
    let server = Server::start_with_config("[gc]\ngrace_period = \"0s\"\ninterval = \"0s\"\n");
    let c = admin(&server);
    let shared = noise(1, 3000);
    let a = Image::new("a", vec![shared.clone(), noise(2, 2000)], None);
    let b = Image::new("b", vec![shared.clone(), noise(3, 2000)], None);
    let old = Image::new("old", vec![noise(4, 2000)], None);
    let new = Image::new("new", vec![noise(5, 2000)], None);
    let sig = Image::new(
        "sig-a",
        vec![noise(6, 100)],
        Some((&a.digest, a.manifest.len())),
    );
    let sig_old = Image::new(
        "sig-old",
        vec![noise(7, 100)],
        Some((&old.digest, old.manifest.len())),
    );
    let amd = Image::new("amd64", vec![noise(8, 500)], None);
    let arm = Image::new("arm64", vec![noise(9, 500)], None);

    c.push("team/a", "1", &a).await.unwrap();
    c.push("team/b", "1", &b).await.unwrap();
    c.push("team/a", "old", &old).await.unwrap();
    c.push("team/a", &old.digest.clone(), &old).await.unwrap();
    c.push("team/a", &sig.digest.clone(), &sig).await.unwrap();
    c.push("team/a", &sig_old.digest.clone(), &sig_old)
        .await
        .unwrap();
    c.push("team/a", "old", &new).await.unwrap(); // "old" moves: the old image is untagged
    c.push("team/a", &amd.digest.clone(), &amd).await.unwrap();
    c.push("team/a", &arm.digest.clone(), &arm).await.unwrap();
    let multi = index(&[&amd, &arm]);
    assert_eq!(
        c.put_manifest("team/a", "multi", &multi, INDEX).await.0,
        201
    );
    let orphan = noise(10, 4000);
    assert_eq!(c.upload("team/a", &orphan).await, 201);
    assert_eq!(c.delete("/v2/team/b/manifests/1").await, 202);

    // A dry run lists what would go and deletes nothing.
    let (s, dry) = c.gc(true).await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert!(mentions(&dry, &sha256(&orphan)), "{dry}");
    let before = stored_blobs(&blob_dir(&server));
    assert!(before.contains(&sha256(&orphan)));
    assert_eq!(
        c.get(&format!("/v2/team/a/manifests/{}", old.digest))
            .await
            .0,
        200
    );

    let (s, report) = c.gc(false).await;
    assert_eq!(s, 200, "{report}");
    // Gone: the untagged image and its signature, the untagged image of b,
    // their own layers and configs, and the orphan upload.
    for gone in [&old.digest, &sig_old.digest, &b.digest] {
        assert!(mentions(&report, gone), "{gone} not collected: {report}");
    }
    assert_eq!(report["manifests_deleted"], 3, "{report}");
    let mut gone_blobs = vec![sha256(&orphan), sha256(&b.layers[1]), sha256(&b.config)];
    gone_blobs.extend(old.blobs().chain(sig_old.blobs()).map(|x| sha256(x)));
    let after = stored_blobs(&blob_dir(&server));
    for digest in &gone_blobs {
        assert!(mentions(&report, digest), "{digest} not in {report}");
        assert!(!after.contains(digest), "{digest} still stored");
    }
    assert_eq!(report["blobs_deleted"], gone_blobs.len() as u64, "{report}");
    let freed: u64 = [orphan.len(), b.layers[1].len(), b.config.len()]
        .iter()
        .map(|n| *n as u64)
        .sum::<u64>()
        + old
            .blobs()
            .chain(sig_old.blobs())
            .map(|x| x.len() as u64)
            .sum::<u64>();
    assert_eq!(report["bytes_freed"], freed, "{report}");
    assert_eq!(
        c.get(&format!("/v2/team/a/manifests/{}", old.digest))
            .await
            .0,
        404
    );
    assert_eq!(
        c.get(&format!("/v2/team/b/blobs/{}", sha256(&b.layers[1])))
            .await
            .0,
        404
    );

    // Kept: tagged images, the index's children, the signature of a kept
    // image, and the layer b shared with a.
    c.assert_pulls("team/a", "1", &a).await;
    c.assert_pulls("team/a", "old", &new).await;
    c.assert_pulls("team/a", &amd.digest, &amd).await;
    c.assert_pulls("team/a", &arm.digest, &arm).await;
    c.assert_pulls("team/a", &sig.digest, &sig).await;
    assert_eq!(
        c.get("/v2/team/a/manifests/multi").await,
        (200, multi.clone())
    );
    let (s, referrers) = c.get(&format!("/v2/team/a/referrers/{}", a.digest)).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&referrers).contains(&sig.digest));
    // Every stored blob is one a kept image uses.
    let kept: BTreeSet<String> = [&a, &new, &amd, &arm, &sig]
        .iter()
        .flat_map(|i| i.blobs().map(|x| sha256(x)).collect::<Vec<_>>())
        .collect();
    assert_eq!(after, kept);

    // Nothing left to do; both real runs are in the history.
    let (_, again) = c.gc(false).await;
    assert_eq!(again["blobs_deleted"], 0, "{again}");
    assert_eq!(again["manifests_deleted"], 0, "{again}");
    let (s, history) = c.get("/api/v1/gc").await;
    assert_eq!(s, 200);
    let history: Value = serde_json::from_slice(&history).unwrap();
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{history}");
    assert_eq!(runs[1]["id"], report["id"], "newest first");

    // Only system administrators may run it.
    let users = Client::new(&server.url(""), "admin", ADMIN_PASSWORD);
    let (s, _) = users
        .send(
            reqwest::Method::POST,
            "/api/v1/users",
            br#"{"name":"dev","password":"dev-password-1"}"#.to_vec(),
            Some("application/json"),
        )
        .await;
    assert_eq!(s, 201);
    let dev = Client::new(&server.url(""), "dev", "dev-password-1");
    assert_eq!(dev.gc(false).await.0, 403);
    assert_eq!(dev.get("/api/v1/gc").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_uploaded_before_a_run_survives_for_its_manifest() {
    // The default grace period (one hour) protects a blob whose manifest is
    // not pushed yet: Distribution's users lose it.
    let server = Server::start_with_config("[gc]\ninterval = \"0s\"\n");
    let c = admin(&server);
    let image = Image::new("late", vec![noise(20, 5000)], None);
    for blob in image.blobs() {
        assert_eq!(c.upload("team/late", blob).await, 201);
    }
    let (s, report) = c.gc(false).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["blobs_deleted"], 0, "{report}");
    let (s, body) = c
        .put_manifest("team/late", "1", &image.manifest, common::oci::MANIFEST)
        .await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&body));
    c.gc(false).await;
    c.assert_pulls("team/late", "1", &image).await;

    // With no grace at all, the unreferenced upload is collected and the
    // late manifest is refused cleanly; pushing again works.
    let server = Server::start_with_config("[gc]\ngrace_period = \"0s\"\ninterval = \"0s\"\n");
    let c = admin(&server);
    for blob in image.blobs() {
        assert_eq!(c.upload("team/late", blob).await, 201);
    }
    let (_, report) = c.gc(false).await;
    assert_eq!(report["blobs_deleted"], 2, "{report}");
    let (s, body) = c
        .put_manifest("team/late", "1", &image.manifest, common::oci::MANIFEST)
        .await;
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(c.get("/v2/team/late/manifests/1").await.0, 404);
    c.push("team/late", "1", &image).await.unwrap();
    c.assert_pulls("team/late", "1", &image).await;
}

/// What a client's acknowledged pushes left: tag -> image.
type Acked = HashMap<String, Image>;

async fn client_loop(c: Client, who: u64, rounds: u64, shared: Vec<Vec<u8>>) -> Acked {
    let mut acked: Acked = HashMap::new();
    let repo = format!("stress/c{who}");
    for round in 0..rounds {
        let tag = format!("t{}", round % 4);
        let mut layers = vec![noise(
            1000 * who + round,
            3000 + (round as usize % 5) * 1000,
        )];
        layers.push(shared[(round % shared.len() as u64) as usize].clone());
        let image = Image::new(&format!("{who}-{round}"), layers, None);
        // A push may meet a collection that took a blob it had uploaded but
        // not yet referenced (the grace period is short here); a client
        // retries, as Docker's users do.
        let mut failures = Vec::new();
        for _ in 0..10 {
            match c.push(&repo, &tag, &image).await {
                Ok(()) => break,
                Err(e) => failures.push(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            failures.len() < 10,
            "client {who} could not push round {round}: {failures:?}"
        );
        acked.insert(tag.clone(), image);
        match round % 5 {
            3 => {
                // Delete a tag.
                let victim = format!("t{}", (round + 1) % 4);
                if acked.remove(&victim).is_some() {
                    assert_eq!(
                        c.delete(&format!("/v2/{repo}/manifests/{victim}")).await,
                        202
                    );
                }
            }
            4 => {
                // Delete a manifest by digest (and with it every tag on it).
                let victim = format!("t{}", (round + 2) % 4);
                if let Some(img) = acked.remove(&victim) {
                    let s = c
                        .delete(&format!("/v2/{repo}/manifests/{}", img.digest))
                        .await;
                    assert_eq!(s, 202);
                    acked.retain(|_, i| i.digest != img.digest);
                }
            }
            _ => {}
        }
        // Spread the pushes over a few seconds, past the grace period.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_in_a_loop_while_clients_push_and_delete() {
    let server = Server::start_with_config("[gc]\ngrace_period = \"2s\"\ninterval = \"0s\"\n");
    let c = admin(&server);
    let shared: Vec<Vec<u8>> = (0..3).map(|i| noise(500 + i, 8000)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut runs, mut deleted) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (s, report) = c.gc(false).await;
                assert!(s == 200 || s == 409, "{s} {report}");
                runs += 1;
                deleted += report["blobs_deleted"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (runs, deleted)
        })
    };
    let clients: Vec<_> = (1..=4)
        .map(|who| tokio::spawn(client_loop(c.clone(), who, 80, shared.clone())))
        .collect();
    let mut acked: Vec<(String, String, Image)> = Vec::new();
    for (who, task) in (1..=4).zip(clients) {
        for (tag, image) in task.await.unwrap() {
            acked.push((format!("stress/c{who}"), tag, image));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (runs, deleted) = collector.await.unwrap();
    assert!(runs >= 3, "only {runs} collections ran");
    // The collections really collected while the clients pushed.
    assert!(deleted > 0, "{runs} collections deleted nothing");

    // Past the grace period, one more run leaves exactly what the tags use.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, report) = c.gc(false).await;
    assert_eq!(s, 200, "{report}");
    for (repo, tag, image) in &acked {
        c.assert_pulls(repo, tag, image).await;
    }
    let used: BTreeSet<String> = acked
        .iter()
        .flat_map(|(_, _, i)| i.blobs().map(|x| sha256(x)).collect::<Vec<_>>())
        .collect();
    assert_eq!(stored_blobs(&blob_dir(&server)), used);

    // And the offline check finds nothing wrong.
    let mut server = server;
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    let (ok, out) = Server::fsck(&server.data, &[]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 problems"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_finds_missing_and_corrupt_blobs_and_repairs_dangling_entries() {
    let mut server = Server::start();
    let c = admin(&server);
    let good = Image::new("good", vec![noise(1, 3000)], None);
    let lost = Image::new("lost", vec![noise(2, 3000)], None);
    let rotten = Image::new("rotten", vec![noise(3, 3000)], None);
    c.push("team/good", "1", &good).await.unwrap();
    c.push("team/lost", "1", &lost).await.unwrap();
    c.push("team/rotten", "1", &rotten).await.unwrap();
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    let (ok, out) = Server::fsck(&server.data, &[]);
    assert!(ok, "{out}");

    // Lose one layer's file, and flip a byte of another.
    let path_of = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        find_file(&blob_dir(&server), hex).unwrap_or_else(|| panic!("{digest} not stored"))
    };
    std::fs::remove_file(path_of(&sha256(&lost.layers[0]))).unwrap();
    let rotten_path = path_of(&sha256(&rotten.layers[0]));
    let mut bytes = std::fs::read(&rotten_path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&rotten_path, bytes).unwrap();

    let (ok, out) = Server::fsck(&server.data, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "blob {}: recorded, but its bytes are missing",
            sha256(&lost.layers[0])
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "blob {}: its bytes hash to",
            sha256(&rotten.layers[0])
        )),
        "{out}"
    );
    // Without re-hashing, only the missing file shows.
    let (ok, quick) = Server::fsck(&server.data, &["--no-verify"]);
    assert!(!ok);
    assert!(!quick.contains("hash to"), "{quick}");

    let (ok, repaired) = Server::fsck(&server.data, &["--repair"]);
    assert!(!ok, "problems were found, even if repaired: {repaired}");
    assert!(repaired.contains("repaired"), "{repaired}");
    let (ok, after) = Server::fsck(&server.data, &[]);
    assert!(ok, "{after}");

    // The broken images are gone, not half there; the good one is intact.
    let server = Server::start_in(&server.data.clone(), &[]);
    let c = admin(&server);
    c.assert_pulls("team/good", "1", &good).await;
    assert_eq!(c.get("/v2/team/lost/manifests/1").await.0, 404);
    assert_eq!(c.get("/v2/team/rotten/manifests/1").await.0, 404);
    // A missing data directory is an error, not an empty registry.
    let (ok, out) = Server::fsck(&server.data.join("nope"), &[]);
    assert!(!ok && out.contains("no registry metadata"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_uploads_expire_with_their_bytes() {
    let server = Server::start_with_config("[gc]\nupload_expiry = \"1s\"\ninterval = \"0s\"\n");
    let c = admin(&server);
    // An upload session with some bytes, then left alone.
    let url = c.start_upload("team/idle").await;
    let patch = c.patch(&url, noise(30, 5000)).await;
    assert_eq!(patch.status(), 202);
    // And bytes no session names, as a monolithic upload that died leaves.
    let uploads = server.data.join("blobs").join("uploads");
    let orphan = uploads.join("0b5e55ed-dead-4bee-8000-000000000001");
    std::fs::write(&orphan, noise(31, 1000)).unwrap();
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 2);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (s, report) = c.gc(false).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["uploads_deleted"], 2, "{report}");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    let status = c.request(Method::GET, &url).send().await.unwrap().status();
    assert_eq!(status, 404, "the expired session is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_links_of_one_blob_all_succeed() {
    // With the default grace period, links of a popular layer do not all
    // rewrite its record, so they do not contend (found by the benchmark:
    // 16 concurrent mounts used to exhaust the transaction retries).
    let server = Server::start();
    let c = admin(&server);
    let layer = noise(40, 10_000);
    assert_eq!(c.upload("team/base", &layer).await, 201);
    let digest = sha256(&layer);
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let (c, digest) = (c.clone(), digest.clone());
            tokio::spawn(async move {
                let path = format!("/v2/team/app{i}/blobs/uploads/?mount={digest}&from=team/base");
                c.send(reqwest::Method::POST, &path, Vec::new(), None)
                    .await
                    .0
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    for i in [0, 47] {
        let (s, got) = c.get(&format!("/v2/team/app{i}/blobs/{digest}")).await;
        assert_eq!(s, 200);
        assert!(got == layer);
    }
}
