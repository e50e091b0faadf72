//! A small registry client over `/v2` for tests: pushes images made of
//! given layers (monolithic blob uploads, then the manifest), pulls them
//! back and checks every byte.

use super::{basic, sha256};
use serde_json::{json, Value};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub auth: String,
    pub http: reqwest::Client,
}

/// An image as pushed: its manifest body and digest, config and layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

impl Image {
    /// An image of `layers`, with a config naming `seed`; `subject` makes
    /// it a referrer (a signature, an SBOM) of that manifest.
    pub fn new(seed: &str, layers: Vec<Vec<u8>>, subject: Option<(&str, usize)>) -> Image {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}")
            .into_bytes();
        let mut m = manifest(&config, &layers);
        if let Some((digest, size)) = subject {
            m["subject"] = json!({"mediaType": MANIFEST, "digest": digest, "size": size});
            m["artifactType"] = json!("application/vnd.example.signature");
        }
        let manifest = m.to_string().into_bytes();
        Image {
            digest: sha256(&manifest),
            manifest,
            config,
            layers,
        }
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Vec<u8>> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// The OCI manifest of an image of `config` and `layers` (uncompressed
/// tars).
pub fn manifest<L: AsRef<[u8]>>(config: &[u8], layers: &[L]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(l.as_ref()), "size": l.as_ref().len()})).collect::<Vec<_>>(),
    })
}

/// An index of `children` (manifest digest and size).
pub fn index(children: &[&Image]) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": children.iter().enumerate().map(|(i, c)| json!({
            "mediaType": MANIFEST, "digest": c.digest, "size": c.manifest.len(),
            "platform": {"architecture": if i == 0 { "amd64" } else { "arm64" }, "os": "linux"},
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

impl Client {
    pub fn new(base: &str, user: &str, password: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            auth: basic(user, password),
            http: berth_net::builder().no_proxy().build().unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .body(body);
        if let Some(t) = content_type {
            req = req.header("Content-Type", t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    }

    /// Opens an upload session (`POST`); the absolute URL to continue it.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        self.absolute(r.headers()["location"].to_str().unwrap())
    }

    /// A `Location` made absolute.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        }
    }

    /// A request to `url` (absolute) with this client's credentials.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("Authorization", &self.auth)
    }

    /// One `PATCH` of `body` (a sized body, or a stream) to upload `url`.
    pub async fn patch(&self, url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .patch(url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads one blob in a single `POST ?digest=`; the status.
    pub async fn upload(&self, repo: &str, blob: &[u8]) -> u16 {
        let path = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(blob));
        self.send(
            reqwest::Method::POST,
            &path,
            blob.to_vec(),
            Some("application/octet-stream"),
        )
        .await
        .0
    }

    /// Puts a manifest; the status and the response body.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media: &str,
    ) -> (u16, Vec<u8>) {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send(reqwest::Method::PUT, &path, body.to_vec(), Some(media))
            .await
    }

    /// Pushes `image` as `repo:reference`; `Err` with the first failure.
    pub async fn push(&self, repo: &str, reference: &str, image: &Image) -> Result<(), String> {
        for blob in image.blobs() {
            let s = self.upload(repo, blob).await;
            if s != 201 {
                return Err(format!("blob upload: {s}"));
            }
        }
        let (s, body) = self
            .put_manifest(repo, reference, &image.manifest, MANIFEST)
            .await;
        if s != 201 {
            return Err(format!("manifest: {s} {}", String::from_utf8_lossy(&body)));
        }
        Ok(())
    }

    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.send(reqwest::Method::GET, path, Vec::new(), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, Vec::new(), None)
            .await
            .0
    }

    /// Pulls `repo:reference` and asserts it is exactly `image`.
    pub async fn assert_pulls(&self, repo: &str, reference: &str, image: &Image) {
        let (s, body) = self.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        assert_eq!(s, 200, "manifest {repo}:{reference}");
        assert_eq!(body, image.manifest, "manifest {repo}:{reference}");
        for blob in image.blobs() {
            let (s, got) = self
                .get(&format!("/v2/{repo}/blobs/{}", sha256(blob)))
                .await;
            assert_eq!(s, 200, "blob {} of {repo}:{reference}", sha256(blob));
            assert!(
                got == *blob,
                "blob {} of {repo}:{reference} differs",
                sha256(blob)
            );
        }
    }

    /// Runs a garbage collection through the API; its report.
    pub async fn gc(&self, dry_run: bool) -> (u16, Value) {
        let (s, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/gc?dry_run={dry_run}"),
                Vec::new(),
                None,
            )
            .await;
        (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

/// One image of an OCI image layout: its platform's architecture, its one
/// layer (an uncompressed tar) and the `config` object of its
/// configuration (`Env`, `Cmd`, ...).
pub struct LayoutImage {
    pub arch: String,
    pub layer: Vec<u8>,
    pub config: Value,
}

/// Writes an OCI image layout in `dir` holding `images`, all under `tag`
/// (through an index when there are several); the layers' digests.
pub fn write_oci_layout(dir: &std::path::Path, tag: &str, images: &[LayoutImage]) -> Vec<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        (d, data.len())
    };
    let mut manifests = Vec::new();
    let mut layers = Vec::new();
    for image in images {
        let (layer, layer_size) = put(&image.layer);
        let config = json!({
            "architecture": image.arch, "os": "linux",
            "config": image.config,
            "rootfs": {"type": "layers", "diff_ids": [layer]},
        });
        let (config, config_size) = put(config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
        });
        let (m, m_size) = put(manifest.to_string().as_bytes());
        manifests.push(json!({
            "mediaType": MANIFEST, "digest": m, "size": m_size,
            "platform": {"architecture": image.arch, "os": "linux"},
        }));
        layers.push(layer);
    }
    let top = if manifests.len() == 1 {
        let mut m = manifests[0].clone();
        m["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        m
    } else {
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
        let (d, size) = put(index.to_string().as_bytes());
        json!({"mediaType": INDEX, "digest": d, "size": size,
               "annotations": {"org.opencontainers.image.ref.name": tag}})
    };
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    layers
}

/// The first file named `name` anywhere under `dir`.
pub fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Every file under `dir` whose name is a hex SHA-256: the blobs a
/// filesystem store holds.
pub fn stored_blobs(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name()
                    .is_some_and(|n| n == "uploads" || n == "_uploads")
                {
                    continue;
                }
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.insert(format!("sha256:{name}"));
                }
            }
        }
    }
    out
}
