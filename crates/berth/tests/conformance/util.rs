//! Shared machinery of the conformance suite: a client bound to one running
//! server, responses read whole with assertions that explain themselves,
//! deterministic random content, and builders for the manifests the tests
//! push.

use crate::common::Server;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const OCTET: &str = "application/octet-stream";

/// Every error code the distribution spec defines.
pub const SPEC_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// A client talking to one running `berth`.
pub struct Reg {
    server: Server,
    http: reqwest::Client,
}

impl Reg {
    /// A fresh server with an empty temporary data directory.
    pub fn start() -> Reg {
        Reg::on(Server::start())
    }

    pub fn on(server: Server) -> Reg {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            crate::common::basic("admin", crate::common::ADMIN_PASSWORD)
                .parse()
                .expect("header"),
        );
        let http = berth_net::builder()
            .no_proxy()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("http client");
        Reg { server, http }
    }

    /// A fresh server holding one blob of `len` random bytes (from `seed`)
    /// in `repo`: the client, the bytes and their digest.
    pub async fn with_blob(repo: &str, seed: u64, len: usize) -> (Reg, Vec<u8>, String) {
        let reg = Reg::start();
        let data = random_bytes(seed, len);
        let digest = reg.push_blob(repo, &data).await;
        (reg, data, digest)
    }

    /// A fresh server holding the OCI image of `seed` as `repo:reference`.
    pub async fn with_image(repo: &str, reference: &str, seed: u64) -> (Reg, Image) {
        let reg = Reg::start();
        let img = Image::oci(seed);
        img.push(&reg, repo, reference).await;
        (reg, img)
    }

    /// A fresh server holding the blobs of the OCI image of `seed` in
    /// `repo`, ready for its manifest.
    pub async fn with_image_blobs(repo: &str, seed: u64) -> (Reg, Image) {
        let reg = Reg::start();
        let img = Image::oci(seed);
        img.push_blobs(&reg, repo).await;
        (reg, img)
    }

    pub fn into_server(self) -> Server {
        self.server
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.server.data
    }

    /// An absolute URL for a path (`/v2/...`) or for a `Location` header,
    /// which the spec lets be absolute or relative.
    pub fn url(&self, path_or_location: &str) -> String {
        if path_or_location.starts_with("http://") || path_or_location.starts_with("https://") {
            path_or_location.to_owned()
        } else {
            assert!(
                path_or_location.starts_with('/'),
                "not a path or absolute URL: {path_or_location:?}"
            );
            self.server.url(path_or_location)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        self.try_send(rb)
            .await
            .expect("request failed at the HTTP level")
    }

    /// Like [`Reg::send`], for requests the server may refuse before reading
    /// their whole body: it then answers early and closes the connection,
    /// which this client may report as a failed body write.
    pub async fn try_send(&self, rb: RequestBuilder) -> Result<Resp, reqwest::Error> {
        let resp = rb.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(self.req(Method::HEAD, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// `method` on `path` (or a `Location`) with the one header `name`.
    pub async fn send_with(&self, method: Method, path: &str, name: &str, value: &str) -> Resp {
        self.send(self.req(method, path).header(name, value)).await
    }

    /// `POST /v2/<repo>/blobs/uploads/<query>` (`query` empty or starting
    /// with `?`): opens an upload, or with `?digest=` and a body pushes a
    /// blob whole, or with `?mount=` mounts one.
    pub fn post_upload(&self, repo: &str, query: &str) -> RequestBuilder {
        self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/{query}"))
    }

    /// A `HEAD` of the blob `digest` in `repo` is 404: `repo` does not
    /// hold it.
    pub async fn expect_no_blob(&self, repo: &str, digest: &str) {
        self.head(&format!("/v2/{repo}/blobs/{digest}"))
            .await
            .expect(404);
    }

    /// `method` (`GET` or `DELETE`) on the blob `digest` of `repo` is 404
    /// `BLOB_UNKNOWN`.
    pub async fn expect_blob_unknown(&self, method: Method, repo: &str, digest: &str) {
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.send(self.req(method, &path))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
    }

    /// `POST /v2/<repo>/blobs/uploads/`, expecting a new session; returns
    /// its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send(self.post_upload(repo, "").header("Content-Length", "0"))
            .await;
        r.expect(202);
        let loc = r.must_header("Location").to_owned();
        assert!(
            loc.contains(&format!("/v2/{repo}/blobs/uploads/")),
            "upload location {loc:?} is not under /v2/{repo}/blobs/uploads/"
        );
        assert_eq!(r.header("Range"), Some("0-0"), "a new upload has no bytes");
        loc
    }

    /// Pushes a blob monolithically (`POST ?digest=`) and checks the 201.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .send(
                self.post_upload(repo, &format!("?digest={digest}"))
                    .header("Content-Type", OCTET)
                    .body(data.to_vec()),
            )
            .await;
        r.expect(201);
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        assert_eq!(
            r.header("Location")
                .map(|l| l.ends_with(&format!("/v2/{repo}/blobs/{digest}"))),
            Some(true),
            "Location of a pushed blob: {:?}",
            r.header("Location")
        );
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `body` as given.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Resp {
        let mut rb = self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"));
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct);
        }
        self.send(rb.body(body.to_vec())).await
    }

    /// Pushes a manifest and checks the 201 and its headers; returns the
    /// digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let r = self
            .put_manifest(repo, reference, Some(media_type), body)
            .await;
        r.expect(201);
        let digest = sha256(body);
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        let loc = r.must_header("Location");
        assert!(
            loc.ends_with(&format!("/v2/{repo}/manifests/{digest}")),
            "Location of a pushed manifest: {loc:?}"
        );
        digest
    }

    /// Pushes a manifest ([`Reg::push_manifest`]) and pulls it back by the
    /// same reference ([`Reg::expect_manifest`]).
    pub async fn round_trip_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) {
        self.push_manifest(repo, reference, media_type, body).await;
        self.expect_manifest(repo, reference, media_type, body)
            .await;
    }

    /// GETs a manifest and checks it is exactly `body`, with its type and
    /// digest.
    pub async fn expect_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let r = self
            .send_with(Method::GET, &path, "Accept", ALL_MANIFEST_TYPES)
            .await;
        r.expect(200);
        assert_eq!(
            r.body.as_ref(),
            body,
            "manifest bytes differ from those pushed"
        );
        assert_eq!(r.header("Content-Type"), Some(media_type));
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(sha256(body).as_str())
        );
        assert_eq!(
            r.header("Content-Length"),
            Some(body.len().to_string().as_str())
        );
    }

    /// GETs a blob and checks its bytes and digest.
    pub async fn expect_blob(&self, repo: &str, data: &[u8]) {
        let digest = sha256(data);
        let r = self.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        r.expect(200);
        assert!(
            r.body.as_ref() == data,
            "blob bytes differ ({} bytes received, {} expected)",
            r.body.len(),
            data.len()
        );
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    }

    /// `method` on `url` (a path or a `Location`) with `body` as the bytes
    /// `range` (a `Content-Range` such as `0-99`).
    pub async fn send_range(&self, method: Method, url: &str, range: &str, body: Vec<u8>) -> Resp {
        let req = self.req(method, url).header("Content-Range", range);
        self.send(req.body(body)).await
    }

    /// A `PATCH` of `body` to the upload at `location` (a path or a
    /// `Location`), without a range.
    pub async fn patch(&self, location: &str, body: impl Into<reqwest::Body>) -> Resp {
        self.send(self.req(Method::PATCH, location).body(body))
            .await
    }

    /// A `PATCH` of the upload at `location` (a path or a `Location`) with
    /// `body` as the bytes `range`.
    pub async fn patch_range(&self, location: &str, range: &str, body: Vec<u8>) -> Resp {
        self.send_range(Method::PATCH, location, range, body).await
    }

    /// The closing `PUT ?digest=` of the upload at `location` (a path or a
    /// `Location`), carrying its last chunk `body` without a range.
    pub async fn close_with(&self, location: &str, digest: &str, body: Vec<u8>) -> Resp {
        let url = with_query(location, "digest", digest);
        self.send(self.req(Method::PUT, &url).body(body)).await
    }

    /// The closing `PUT ?digest=` of the upload at `location` (a path or a
    /// `Location`), carrying its last chunk `body` as the bytes `range`.
    pub async fn close_range(
        &self,
        location: &str,
        digest: &str,
        range: &str,
        body: Vec<u8>,
    ) -> Resp {
        let url = with_query(location, "digest", digest);
        self.send_range(Method::PUT, &url, range, body).await
    }

    /// `r` stored the blob `data` in `repo`: a 201 naming its digest, and
    /// the blob reads back.
    pub async fn expect_created(&self, r: &Resp, repo: &str, data: &[u8]) {
        r.expect(201);
        let digest = sha256(data);
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        self.expect_blob(repo, data).await;
    }

    /// Closes the upload at `location` (a `PUT ?digest=` without a body),
    /// whose bytes are `data`, and checks the blob is stored in `repo`.
    pub async fn close_and_check(&self, repo: &str, location: &str, data: &[u8]) {
        let url = with_query(location, "digest", &sha256(data));
        self.send(self.req(Method::PUT, &url)).await.expect(201);
        self.expect_blob(repo, data).await;
    }

    /// The status of an upload: `(status, Range header)`.
    pub async fn upload_range(&self, location: &str) -> String {
        let r = self.get(location).await;
        r.expect(204);
        r.must_header("Range").to_owned()
    }
}

/// An `Accept` header naming every manifest type.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A response read whole.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is not text"))
    }

    #[track_caller]
    pub fn must_header(&self, name: &str) -> &str {
        match self.header(name) {
            Some(v) => v,
            None => panic!(
                "response {} lacks header {name}; headers {:?}",
                self.status, self.headers
            ),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}; headers: {:?}",
            self.text(),
            self.headers
        );
        self
    }

    /// Asserts an error response: the status, a JSON body of the spec's
    /// shape whose every code is one of the spec's, and `code` first.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        let ct = self.header("Content-Type").unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "error Content-Type is {ct:?}"
        );
        let v = self.json();
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {v}"));
        assert!(!errors.is_empty(), "empty errors array");
        for e in errors {
            let c = e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("error without a code: {e}"));
            assert!(
                SPEC_CODES.contains(&c),
                "code {c:?} is not one of the spec's"
            );
            assert!(
                e.get("message").is_none_or(Value::is_string),
                "message must be a string: {e}"
            );
        }
        assert_eq!(errors[0]["code"], code, "error body: {v}");
        self
    }

    /// The target of `Link: <url>; rel="next"`, if any.
    pub fn next_link(&self) -> Option<String> {
        let link = self.header("Link")?;
        let (target, params) = link.split_once(';')?;
        assert!(
            params.contains("rel=\"next\""),
            "Link without rel=\"next\": {link}"
        );
        let target = target.trim();
        assert!(
            target.starts_with('<') && target.ends_with('>'),
            "malformed Link: {link}"
        );
        Some(target[1..target.len() - 1].to_owned())
    }
}

pub fn sha256(data: &[u8]) -> String {
    crate::common::sha256(data)
}

/// Deterministic pseudo-random bytes, distinct per seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    crate::common::noise(seed, len)
}

/// Appends `key=value` to a URL that may already carry a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", encode(value))
}

/// Percent-encodes a query value (everything but unreserved characters, so
/// `+` and `/` survive form decoding).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

pub fn to_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("serialize")
}

/// An image: a config, layers, and the manifest naming them.
#[derive(Clone)]
pub struct Image {
    pub media_type: &'static str,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

impl Image {
    /// An OCI image manifest with a config and two layers, distinct per seed.
    pub fn oci(seed: u64) -> Image {
        Image::build(seed, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, |_| {})
    }

    /// A Docker schema 2 image manifest.
    pub fn docker(seed: u64) -> Image {
        Image::build(seed, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, |_| {})
    }

    /// An OCI image manifest whose JSON `edit` may change before encoding.
    pub fn oci_with(seed: u64, edit: impl FnOnce(&mut Value)) -> Image {
        Image::build(seed, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, edit)
    }

    fn build(
        seed: u64,
        media_type: &'static str,
        config_type: &str,
        layer_type: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Image {
        let config = to_json(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "seed": seed,
        }));
        let layers = vec![
            random_bytes(seed * 2 + 1, 1500),
            random_bytes(seed * 2 + 2, 700),
        ];
        let mut v = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(config_type, &config),
            "layers": layers.iter().map(|l| descriptor(layer_type, l)).collect::<Vec<_>>(),
        });
        edit(&mut v);
        let manifest = to_json(&v);
        let digest = sha256(&manifest);
        Image {
            media_type,
            config,
            layers,
            manifest,
            digest,
        }
    }

    pub fn descriptor(&self) -> Value {
        descriptor(self.media_type, &self.manifest)
    }

    pub async fn push_blobs(&self, reg: &Reg, repo: &str) {
        reg.push_blob(repo, &self.config).await;
        for l in &self.layers {
            reg.push_blob(repo, l).await;
        }
    }

    /// Pushes the blobs, then the manifest under `reference`.
    pub async fn push(&self, reg: &Reg, repo: &str, reference: &str) -> String {
        self.push_blobs(reg, repo).await;
        let d = reg
            .push_manifest(repo, reference, self.media_type, &self.manifest)
            .await;
        assert_eq!(d, self.digest);
        d
    }
}

/// An index (OCI or Docker list) over `children` (descriptors).
pub fn index_of(media_type: &str, children: &[Value]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            c["platform"] =
                json!({"architecture": if i % 2 == 0 { "amd64" } else { "arm64" }, "os": "linux"});
            c
        })
        .collect();
    to_json(&json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}))
}

/// An artifact: an OCI image manifest with the empty config and one layer,
/// optionally typed and pointing at a subject.
pub struct Artifact {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub layer: Vec<u8>,
}

pub const EMPTY_CONFIG: &[u8] = b"{}";

impl Artifact {
    pub fn new(
        seed: u64,
        artifact_type: Option<&str>,
        subject: Option<&Value>,
        annotations: Option<Value>,
    ) -> Artifact {
        let layer = random_bytes(1000 + seed, 64);
        let mut v = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_EMPTY, EMPTY_CONFIG),
            "layers": [descriptor("application/vnd.example.data", &layer)],
        });
        if let Some(t) = artifact_type {
            v["artifactType"] = json!(t);
        }
        if let Some(s) = subject {
            v["subject"] = s.clone();
        }
        if let Some(a) = annotations {
            v["annotations"] = a;
        }
        let manifest = to_json(&v);
        Artifact {
            digest: sha256(&manifest),
            manifest,
            layer,
        }
    }

    pub async fn push(&self, reg: &Reg, repo: &str, reference: &str) -> Resp {
        reg.push_blob(repo, EMPTY_CONFIG).await;
        reg.push_blob(repo, &self.layer).await;
        reg.put_manifest(repo, reference, Some(OCI_MANIFEST), &self.manifest)
            .await
    }
}
