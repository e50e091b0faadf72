//! A Distribution on S3 (Garage) taken over in place on its bucket.

use super::fixture::*;
use crate::common::{self, Server, ADMIN_PASSWORD};
use berth_test_kit::garage::Garage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_bucket_is_served_in_place() {
    let garage = Garage::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dist = distribution_on_s3(&garage, "/dist");
    let filled = fill(&dist, tmp.path()).await;
    let before = content(&dist.url, None).await;
    dist.stop();
    let store = garage.node();
    let client = store.client();
    let blob_keys = client
        .list_keys("dist/docker/registry/v2/blobs/")
        .await
        .unwrap();
    assert!(
        !blob_keys.is_empty(),
        "Distribution wrote no blobs under dist/"
    );

    let data = tmp.path().join("berth-data");
    let storage = garage.storage_toml("prefix = \"dist\"\nlayout = \"distribution\"\n");
    let config = berth_config(tmp.path(), &data, &storage);
    let config = config.to_str().unwrap();
    let run = berth_import_ok(&["--config", config, "--verify"]);
    let out = &run.stdout;
    assert!(run.stderr.contains("in place"), "{}", run.stderr);
    assert_eq!(run.count("manifests", "imported"), 7, "{out}");
    assert!(out.contains("skipped: nothing"), "{out}");
    assert!(out.contains("0 copied (0 B)"), "{out}");
    assert!(out.contains("re-hashed and verified"), "{out}");
    assert_eq!(
        client
            .list_keys("dist/docker/registry/v2/blobs/")
            .await
            .unwrap(),
        blob_keys,
        "a blob object was written or removed"
    );
    assert!(client.list_keys("dist/blobs/").await.unwrap().is_empty());

    let again = berth_import_ok(&["--config", config]);
    assert!(again.stdout.contains("nothing new"), "{}", again.stdout);

    let server = Server::start_in(&data, &["--config", config]);
    let admin = Some(("admin", ADMIN_PASSWORD));
    assert_eq!(content(&server.url(""), admin).await, before);
    let referrers = berth_net::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(server.url(&format!("/v2/proj/app/referrers/{}", filled.v1.0)))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(referrers.contains(&filled.signature), "{referrers}");

    // A push through berth lands where Distribution's S3 driver keeps
    // blobs.
    let pushed = b"pushed to berth on S3";
    common::put_blob(&common::admin_client(), &server, "proj/app", pushed).await;
    let key = format!("dist/{}", blob_data(&common::sha256(pushed)));
    assert_eq!(
        client.head_object(&key).await.unwrap(),
        Some(pushed.len() as u64)
    );
    drop(server);

    // Another berth, in its own layout under another prefix of the bucket,
    // copies the same Distribution from s3://.
    let copy_dir = tmp.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let storage = garage.storage_toml("prefix = \"copy\"\n");
    let copy_config = berth_config(&copy_dir, &copy_dir.join("data"), &storage);
    let copy_config = copy_config.to_str().unwrap();
    let from = format!("s3://{}/dist", berth_test_kit::garage::BUCKET);
    let copied = berth_import_ok(&["--config", copy_config, "--from", &from]);
    assert!(copied.stderr.contains("copying"), "{}", copied.stderr);
    assert!(
        copied.stdout.contains(" 0 adopted in place (0 B)"),
        "{}",
        copied.stdout
    );
    assert!(!client.list_keys("copy/blobs/").await.unwrap().is_empty());
    let server = Server::start_in(&copy_dir.join("data"), &["--config", copy_config]);
    assert_eq!(content(&server.url(""), admin).await, before);
}
