//! What the import tests share: a real CNCF Distribution registry (Debian's
//! `docker-registry` 2.8, the kit's fixture) on a directory or on Garage,
//! filled by real clients (skopeo, and plain HTTP for what skopeo does not push); `berth
//! import` run as a user runs it; and a walk of a registry's whole content
//! over `/v2`, to compare two registries byte for byte.

use crate::common::oci::{write_oci_layout, LayoutImage};
use crate::common::{expect_status, noise, sha256, ADMIN_PASSWORD};
pub use berth_test_kit::distribution::Distribution;
use berth_test_kit::distribution::{Setup, Storage, S3};
use berth_test_kit::garage::Garage;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A Distribution with filesystem storage under `root` (its
/// `rootdirectory`).
pub fn distribution_on_dir(root: &Path) -> Distribution {
    let storage = Storage::Filesystem(Some(root.to_path_buf()));
    Distribution::start_with(Setup::default().storage(storage))
}

/// A Distribution with S3 storage in Garage's bucket under `root` (its
/// `rootdirectory`, e.g. `/dist`), blobs served through the registry (no
/// redirects to the bucket).
pub fn distribution_on_s3(garage: &Garage, root: &str) -> Distribution {
    let s3 = S3::garage(garage).under(root).without_redirect();
    Distribution::start_with(Setup::default().storage(Storage::S3(s3)))
}

/// Runs a program, which must succeed; its standard output.
pub fn run(program: &str, args: &[&str]) -> String {
    berth_test_kit::run_ok(program, args, &[], None)
}

/// An OCI image layout in `dir` with one image per platform (a layer of a
/// tarred random file each), all under `tag` (through an index when there
/// are several).
pub fn oci_layout(dir: &Path, tag: &str, seed: u64, platforms: &[&str]) {
    let images: Vec<LayoutImage> = platforms
        .iter()
        .enumerate()
        .map(|(i, arch)| {
            let root = dir.join(format!("rootfs-{seed}-{i}"));
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/arch"), arch).unwrap();
            let data = noise(seed * 10 + i as u64, 150_000);
            std::fs::write(root.join("etc/data.bin"), data).unwrap();
            let tar = dir.join(format!("rootfs-{seed}-{i}.tar"));
            berth_test_kit::tar(&root, &tar);
            LayoutImage {
                arch: arch.to_string(),
                layer: std::fs::read(&tar).unwrap(),
                config: json!({"Env": [format!("SEED={seed}")], "Cmd": ["/bin/true"]}),
            }
        })
        .collect();
    write_oci_layout(dir, tag, &images);
}

/// `skopeo copy` of the layout's `tag` to `dest` (`host/repo:tag`), all
/// platforms, with `extra` options.
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dest = format!("docker://{dest}");
    let mut args = vec!["copy", "--dest-tls-verify=false", "--multi-arch", "all"];
    args.extend_from_slice(extra);
    args.push(&src);
    args.push(&dest);
    run("skopeo", &args);
}

/// Plain `/v2` pushes, for what skopeo does not push (an artifact by
/// digest whose `subject` is an image).
pub struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    pub fn new(base: &str) -> Pusher {
        Pusher {
            http: berth_net::builder().no_proxy().build().unwrap(),
            base: base.to_owned(),
        }
    }

    /// Uploads a blob (POST, then PUT with the digest); its digest.
    pub async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let start = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base));
        let r = expect_status(start, 202).await;
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec());
        expect_status(put, 201).await;
        digest
    }

    /// Puts a manifest as `reference` (a tag, or its digest); its digest.
    pub async fn manifest(&self, repo: &str, reference: &str, manifest: &Value) -> String {
        let body = manifest.to_string();
        let media_type = manifest["mediaType"].as_str().unwrap().to_owned();
        let put = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("Content-Type", media_type)
            .body(body.clone());
        expect_status(put, 201).await;
        sha256(body.as_bytes())
    }

    /// The digest and size of what `reference` names in `repo`.
    pub async fn resolve(&self, repo: &str, reference: &str) -> (String, usize) {
        let get = self
            .http
            .get(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("Accept", ACCEPT);
        let body = expect_status(get, 200).await.bytes().await.unwrap();
        (sha256(&body), body.len())
    }

    /// A signature of `subject` (an OCI image manifest of `repo`): an
    /// artifact pushed by digest whose `subject` is the image, and, as
    /// clients do for registries without the referrers API (Distribution
    /// 2.8), the index of its referrers under the tag `sha256-<hex>`. The
    /// artifact's digest.
    pub async fn sign(&self, repo: &str, subject: &(String, usize)) -> String {
        let empty = self.blob(repo, b"{}").await;
        let payload = format!("signed {}", subject.0);
        let layer = self.blob(repo, payload.as_bytes()).await;
        let signature = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.example.signature.payload", "digest": layer, "size": payload.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
            "annotations": {"org.example.signer": "ci"},
        });
        let digest = sha256(signature.to_string().as_bytes());
        assert_eq!(self.manifest(repo, &digest, &signature).await, digest);
        let fallback = json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest,
                           "size": signature.to_string().len(),
                           "artifactType": "application/vnd.example.signature"}],
        });
        let tag = format!("sha256-{}", subject.0.trim_start_matches("sha256:"));
        self.manifest(repo, &tag, &fallback).await;
        digest
    }
}

/// What [`fill`] pushed.
pub struct Filled {
    /// `proj/app:v1`, an OCI image.
    pub v1: (String, usize),
    /// Its signature.
    pub signature: String,
}

/// Fills a Distribution as a team would have: an OCI image (`proj/app:v1`),
/// the same as Docker schema 2 (`proj/app:v2s2`), a multi-platform image
/// under a deep name (`team/sub/multi:latest`), all by skopeo, and a
/// signature of `proj/app:v1` with its referrers tag.
pub async fn fill(dist: &Distribution, work: &Path) -> Filled {
    let single = work.join("layout-single");
    oci_layout(&single, "v1", 1, &["amd64"]);
    let multi = work.join("layout-multi");
    oci_layout(&multi, "latest", 2, &["amd64", "arm64"]);
    skopeo_push(&single, "v1", &format!("{}/proj/app:v1", dist.addr), &[]);
    let v2s2 = format!("{}/proj/app:v2s2", dist.addr);
    skopeo_push(&single, "v1", &v2s2, &["--format", "v2s2"]);
    let deep = format!("{}/team/sub/multi:latest", dist.addr);
    skopeo_push(&multi, "latest", &deep, &[]);
    let pusher = Pusher::new(&dist.url);
    let v1 = pusher.resolve("proj/app", "v1").await;
    let signature = pusher.sign("proj/app", &v1).await;
    Filled { v1, signature }
}

/// A registry's content as seen over `/v2`: `repo:tag` -> the digest it
/// names, `repo@digest` -> the Content-Type and SHA-256 of the manifest
/// served, or the SHA-256 of the blob, for everything reachable from a tag
/// (index children, configs, layers).
pub async fn content(base: &str, auth: Option<(&str, &str)>) -> BTreeMap<String, String> {
    let http = berth_net::builder().no_proxy().build().unwrap();
    let get = |path: String| {
        let req = http.get(format!("{base}{path}")).header("Accept", ACCEPT);
        match auth {
            Some((user, password)) => req.basic_auth(user, Some(password)),
            None => req,
        }
    };
    let json_of = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200, "{}", r.url());
        r.json::<Value>().await.unwrap()
    };
    let mut seen = BTreeMap::new();
    // Pages of 100: Distribution refuses larger ones.
    let mut repos: Vec<String> = Vec::new();
    loop {
        let mut path = "/v2/_catalog?n=100".to_owned();
        if let Some(last) = repos.last() {
            path.push_str(&format!("&last={last}"));
        }
        let page = json_of(get(path).send().await.unwrap()).await;
        let names = page["repositories"].as_array().cloned().unwrap_or_default();
        repos.extend(names.iter().map(|n| n.as_str().unwrap().to_owned()));
        if names.len() < 100 {
            break;
        }
    }
    let mut pending = Vec::new();
    for repo in repos {
        let tags = json_of(get(format!("/v2/{repo}/tags/list")).send().await.unwrap()).await;
        for tag in tags["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            let r = get(format!("/v2/{repo}/manifests/{tag}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{repo}:{tag}");
            let body = r.bytes().await.unwrap();
            let digest = sha256(&body);
            seen.insert(format!("{repo}:{tag}"), digest.clone());
            pending.push((repo.clone(), digest, true));
        }
    }
    while let Some((repo, digest, is_manifest)) = pending.pop() {
        let key = format!("{repo}@{digest}");
        if seen.contains_key(&key) {
            continue;
        }
        let kind = if is_manifest { "manifests" } else { "blobs" };
        let r = get(format!("/v2/{repo}/{kind}/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{key}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        let body = r.bytes().await.unwrap();
        assert_eq!(sha256(&body), digest, "{key} served other bytes");
        if !is_manifest {
            seen.insert(key, format!("{} bytes", body.len()));
            continue;
        }
        seen.insert(key, format!("{content_type} {} bytes", body.len()));
        let m: Value = serde_json::from_slice(&body).unwrap();
        for child in m["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap().to_owned();
            pending.push((repo.clone(), d, true));
        }
        for blob in m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(m.get("config"))
        {
            let d = blob["digest"].as_str().unwrap().to_owned();
            pending.push((repo.clone(), d, false));
        }
    }
    seen
}

/// Every file under `dir` with its size, by path relative to `dir`.
pub fn files_under(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, entry.metadata().unwrap().len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Where Distribution keeps the bytes of `digest` under its root.
pub fn blob_data(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// A berth configuration file in `dir` with data in `data` and the
/// `[storage]` section `storage`.
pub fn berth_config(dir: &Path, data: &Path, storage: &str) -> PathBuf {
    let path = dir.join("berth.toml");
    let text = format!("data_dir = \"{}\"\n{storage}", data.display());
    std::fs::write(&path, text).unwrap();
    path
}

/// What a `berth import` run did and printed.
pub struct ImportRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl ImportRun {
    /// The count `label` (e.g. "imported") on the report's line for `what`
    /// (e.g. "manifests").
    pub fn count(&self, what: &str, label: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{what}:")))
            .unwrap_or_else(|| panic!("no {what} line in\n{}", self.stdout));
        let before = line
            .split(',')
            .find(|part| part.trim_end().ends_with(label))
            .unwrap_or_else(|| panic!("no {label} in {line:?}"));
        let number = before
            .split_whitespace()
            .rev()
            .nth(label.split_whitespace().count())
            .unwrap();
        number.parse().unwrap()
    }
}

/// Runs `berth import` with `args`, as the administrator of the tests.
pub fn berth_import(args: &[&str]) -> ImportRun {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("import")
        .args(args)
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_LOG", "warn")
        .output()
        .unwrap();
    ImportRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`berth_import`], which must succeed.
pub fn berth_import_ok(args: &[&str]) -> ImportRun {
    let run = berth_import(args);
    assert!(
        run.ok,
        "berth import {args:?} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    run
}
