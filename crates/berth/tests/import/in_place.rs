//! A Distribution's directory taken over where it lies.

use super::fixture::*;
use crate::common::{self, Server, ADMIN_PASSWORD};
use berth_test_kit::Docker;
use serde_json::Value;
use std::path::Path;

/// Adds what old registries hold and berth cannot serve: a Docker schema 1
/// manifest under a tag, a repository whose name berth's grammar refuses,
/// and a layer link whose data is gone.
fn add_what_berth_cannot_serve(root: &Path) {
    let tree = root.join("docker/registry/v2");
    let schema1 = br#"{"schemaVersion":1,"name":"proj/app","tag":"old","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let digest = common::sha256(schema1);
    let data = root.join(blob_data(&digest));
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, schema1).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let app = tree.join("repositories/proj/app/_manifests");
    for link in [
        app.join(format!("revisions/sha256/{hex}/link")),
        app.join("tags/old/current/link"),
    ] {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::fs::write(link, &digest).unwrap();
    }
    let gone = common::sha256(b"a layer whose data was deleted");
    let link = tree.join(format!(
        "repositories/proj/app/_layers/sha256/{}/link",
        gone.trim_start_matches("sha256:")
    ));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::write(link, &gone).unwrap();
    let bad = tree.join("repositories/proj/Bad_Name/_manifests/tags/v1/current");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("link"), &digest).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_directory_is_served_in_place_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    let dist = distribution_on_dir(&root);
    let filled = fill(&dist, tmp.path()).await;
    let before = content(&dist.url, None).await;
    assert!(before.len() > 15, "{before:?}");
    dist.stop();
    add_what_berth_cannot_serve(&root);
    let blobs_dir = root.join("docker/registry/v2/blobs");
    let blob_files = files_under(&blobs_dir);

    let data = tmp.path().join("berth-data");
    let config = berth_config(
        tmp.path(),
        &data,
        &format!(
            "[storage]\nbackend = \"filesystem\"\npath = \"{}\"\nlayout = \"distribution\"\n",
            root.display()
        ),
    );
    let config = config.to_str().unwrap();
    let first = berth_import_ok(&["--config", config]);
    let out = &first.stdout;
    assert!(first.stderr.contains("in place"), "{}", first.stderr);
    // Revisions: proj/app has v1, v2s2, the signature, its index and the
    // schema 1 manifest; team/sub/multi an index and its two images.
    assert!(first.stderr.contains("manifests 8/8"), "{}", first.stderr);
    assert_eq!(first.count("repositories", "imported"), 2, "{out}");
    assert_eq!(first.count("repositories", "skipped"), 1, "{out}");
    assert_eq!(first.count("manifests", "imported"), 7, "{out}");
    assert_eq!(first.count("manifests", "skipped"), 1, "{out}");
    assert_eq!(first.count("tags", "imported"), 4, "{out}");
    assert!(out.contains("0 copied (0 B)"), "{out}");
    assert!(out.contains("projects created: proj, team"), "{out}");
    for why in [
        "tag proj/app:old: its manifest",
        "Docker schema 1 manifest",
        "repository proj/Bad_Name: not a valid repository name",
        "its data is gone (a dangling link)",
    ] {
        assert!(out.contains(why), "{why:?} not in\n{out}");
    }
    assert_eq!(
        files_under(&blobs_dir),
        blob_files,
        "a blob was written, moved or removed"
    );

    let second = berth_import_ok(&["--config", config]);
    assert!(second.stdout.contains("nothing new"), "{}", second.stdout);
    assert_eq!(second.count("manifests", "imported"), 0);
    assert_eq!(second.count("manifests", "already present"), 7);
    assert_eq!(second.count("blobs", "imported"), 0);

    let server = Server::start_in(&data, &["--config", config]);
    let base = server.url("");
    let admin = Some(("admin", ADMIN_PASSWORD));
    assert_eq!(content(&base, admin).await, before);

    // Projects are private unless --public: anonymous pulls are refused.
    let anonymous = reqwest_get(&server.url("/v2/proj/app/manifests/v1"), None).await;
    assert_eq!(anonymous.status(), 401);

    // The signature is a referrer of its image, as if pushed to berth.
    let url = server.url(&format!("/v2/proj/app/referrers/{}", filled.v1.0));
    let r = reqwest_get(&url, admin).await;
    assert_eq!(r.status(), 200);
    let referrers: Value = r.json().await.unwrap();
    let found = &referrers["manifests"][0];
    assert_eq!(found["digest"], filled.signature.as_str(), "{referrers}");
    assert_eq!(found["artifactType"], "application/vnd.example.signature");
    assert_eq!(found["annotations"]["org.example.signer"], "ci");

    // skopeo pulls the multi-platform image back, every blob as stored.
    let back = tmp.path().join("back");
    let creds = format!("admin:{ADMIN_PASSWORD}");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            "--multi-arch",
            "all",
            &format!("docker://{}/team/sub/multi:latest", server.addr),
            &format!("oci:{}:latest", back.display()),
        ],
    );
    let pulled = files_under(&back.join("blobs/sha256"));
    assert!(pulled.len() >= 7, "{pulled:?}");
    for name in pulled.keys() {
        let digest = format!("sha256:{name}");
        let bytes = std::fs::read(back.join("blobs/sha256").join(name)).unwrap();
        assert_eq!(common::sha256(&bytes), digest);
        assert!(
            before.keys().any(|k| k.ends_with(&format!("@{digest}"))),
            "{digest} was not in the Distribution"
        );
    }

    // The Docker engine pulls the image too, and runs nothing: inspects.
    let docker = Docker::new(&tmp.path().join("docker"));
    docker.login(&server.addr, "admin", ADMIN_PASSWORD);
    let image = format!("{}/proj/app:v2s2", server.addr);
    docker.ok(&["pull", &image]);
    let arch = docker.ok(&["image", "inspect", "--format", "{{.Architecture}}", &image]);
    assert_eq!(arch.trim(), "amd64");
    docker.ok(&["rmi", &image]);

    // A push through berth lands where Distribution keeps blobs.
    let pushed = b"pushed to berth after the import";
    let http = common::admin_client();
    common::put_blob(&http, &server, "proj/app", pushed).await;
    let path = root.join(blob_data(&common::sha256(pushed)));
    assert_eq!(std::fs::read(path).unwrap(), pushed);
}

async fn reqwest_get(url: &str, auth: Option<(&str, &str)>) -> reqwest::Response {
    let http = berth_net::builder().no_proxy().build().unwrap();
    let req = http.get(url).header(
        "Accept",
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    );
    let req = match auth {
        Some((u, p)) => req.basic_auth(u, Some(p)),
        None => req,
    };
    req.send().await.unwrap()
}
