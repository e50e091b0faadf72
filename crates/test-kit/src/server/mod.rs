//! Test harness: runs the real `berth` binary on `127.0.0.1:0` (the port is
//! read from its first line of output, so tests never race for ports) in a
//! temporary data directory, and kills it when dropped.
//!
//! Only berth's own integration tests know where cargo put the binary
//! (`env!("CARGO_BIN_EXE_berth")`), so they name it with a [`Binary`] and
//! use `Server<TheirBinary>` under a short alias.

use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub mod oci;

/// The system administrator's password in every test server.
pub const ADMIN_PASSWORD: &str = "berth-test-admin";

/// A Basic `Authorization` header value for `user`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// An HTTP client that sends the administrator's credentials.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        basic("admin", ADMIN_PASSWORD).parse().expect("header"),
    );
    berth_net::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// The claims of a JWT (its middle part), unchecked.
pub fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&json).expect("JSON claims")
}

/// Who sends a request: no one in particular, a user or robot with a
/// password (Basic), or the holder of a bearer token.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

/// A `berth` executable: `PATH` is where it is.
pub trait Binary {
    const PATH: &'static str;
}

/// A running `berth serve` of the binary `B`, killed on drop.
pub struct Server<B: Binary> {
    child: Child,
    pub addr: String,
    /// "https" when the server terminates TLS.
    pub scheme: &'static str,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    binary: PhantomData<B>,
}

impl<B: Binary> Server<B> {
    /// A fresh server with its own temporary data directory.
    pub fn start() -> Server<B> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().to_path_buf();
        let mut s = Server::start_in(&data, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server with a configuration file, logging at debug level
    /// into `<data>/berth.log` (see [`Server::log`]).
    pub fn start_with_config(toml: &str) -> Server<B> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let config = tmp.path().join("berth.toml");
        std::fs::write(&config, toml).expect("write config");
        let log = std::fs::File::create(tmp.path().join("berth.log")).expect("log file");
        let mut s = Server::spawn(
            &data,
            &["--config", config.to_str().expect("utf-8 path")],
            Stdio::from(log),
            "debug",
        );
        s._tmp = Some(tmp);
        s
    }

    /// A server terminating TLS with a certificate that `berth cert
    /// self-signed` writes into `dir` (for localhost and 127.0.0.1, with
    /// its CA as `ca.crt`); also what that command printed.
    pub fn start_self_signed(dir: &Path) -> (Server<B>, String) {
        let out = Command::new(B::PATH)
            .args(["cert", "self-signed", "--domain", "localhost"])
            .args(["--ip", "127.0.0.1", "--out"])
            .arg(dir)
            .output()
            .expect("run berth cert");
        let printed = crate::stdout_ok(out, "berth cert self-signed");
        let server = Server::start_with_config(&format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ));
        (server, printed)
    }

    /// Everything the server logged, for servers from
    /// [`Server::start_with_config`].
    pub fn log(&self) -> String {
        let dir = self._tmp.as_ref().expect("a logging server").path();
        std::fs::read_to_string(dir.join("berth.log")).expect("read log")
    }

    /// A server on an existing data directory (to test restarts), with
    /// extra command-line arguments.
    pub fn start_in(data: &Path, extra: &[&str]) -> Server<B> {
        let level = std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into());
        Server::spawn(data, extra, Stdio::inherit(), &level)
    }

    fn spawn(data: &Path, extra: &[&str], stderr: Stdio, level: &str) -> Server<B> {
        let mut child = Command::new(B::PATH)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("BERTH_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            if reader.read_line(&mut line).expect("read berth output") == 0 {
                panic!("berth exited before listening");
            }
        }
        // Keep draining so that later output never hits a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let scheme = if line.contains("https://") {
            "https"
        } else {
            "http"
        };
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("berth did not report its address: {line:?}"))
            .to_owned();
        Server {
            child,
            addr,
            scheme,
            data: data.to_path_buf(),
            _tmp: None,
            binary: PhantomData,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// `method` on `path`, sent as `who` by a client of its own (no proxy,
    /// no credentials of its own); the response.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: Who<'_>,
    ) -> reqwest::Response {
        let http = berth_net::builder()
            .no_proxy()
            .build()
            .expect("http client");
        let req = http.request(method, self.url(path));
        let req = match who {
            Who::Anonymous => req,
            Who::Basic(user, password) => req.header("Authorization", basic(user, password)),
            Who::Bearer(token) => req.bearer_auth(token),
        };
        req.send().await.expect("request")
    }

    /// `method` on `path` with the `Authorization` header `auth` (none
    /// when `None`) and, when given, the JSON text `body`, sent by a client
    /// of its own (no proxy); the response. See [`send_json`].
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
    ) -> reqwest::Response {
        let http = berth_net::builder()
            .no_proxy()
            .build()
            .expect("http client");
        send_json(&http, method, self.url(path), auth, body).await
    }

    /// A registry token from `/service/token` for `scopes`, asked for as
    /// `who`, who must be answered 200.
    pub async fn token(&self, who: Who<'_>, scopes: &[&str]) -> String {
        let mut path = "/service/token?service=berth".to_owned();
        for s in scopes {
            path.push_str(&format!("&scope={s}"));
        }
        let resp = self.call(reqwest::Method::GET, &path, who).await;
        assert_eq!(resp.status(), 200, "a token for {scopes:?}");
        let body: serde_json::Value = resp.json().await.expect("a JSON answer");
        body["token"].as_str().expect("a token").to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to clean up, as in a crash. Returns the
    /// temporary data directory, if the server owned one, so that the caller
    /// can restart on it.
    pub fn kill(mut self) -> Option<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self._tmp.take()
    }

    /// Sends SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "could not signal berth");
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs `berth fsck --data DIR` with `extra` arguments (the server on that
    /// directory stopped); whether it succeeded, and its output.
    pub fn fsck(data: &Path, extra: &[&str]) -> (bool, String) {
        let out = Command::new(B::PATH)
            .arg("fsck")
            .arg("--data")
            .arg(data)
            .args(extra)
            .output()
            .expect("run berth fsck");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Peak resident memory (VmHWM) in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM")
    }
}

impl<B: Binary> Drop for Server<B> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `method` on `url`, sent by `http` with the `Authorization` header `auth`
/// (none when `None`) and, when given, the JSON text `body`: a call of the
/// management API. The response.
pub async fn send_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    auth: Option<&str>,
    body: Option<String>,
) -> reqwest::Response {
    let mut req = http.request(method, url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    req.send().await.expect("request")
}

/// Sends `request` and asserts that the answer has `status`; the response.
/// (A failure names the URL and shows the body, the caller's line being
/// lost in async code.)
pub async fn expect_status(request: reqwest::RequestBuilder, status: u16) -> reqwest::Response {
    let r = request.send().await.expect("request");
    if r.status() != status {
        let (url, got) = (r.url().clone(), r.status());
        let body = r.text().await.unwrap_or_default();
        panic!("{url} answered {got}, not {status}: {body}");
    }
    r
}

/// GETs `url` with `c`, accepting an OCI image manifest should it name
/// one; the status and the body.
pub async fn get_bytes(c: &reqwest::Client, url: String) -> (u16, Vec<u8>) {
    let r = c
        .get(url)
        .header("Accept", oci::MANIFEST)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

/// Uploads `blob` into `repo` in one monolithic `POST ?digest=` with `c`'s
/// credentials, asserting 201.
pub async fn put_blob<B: Binary>(c: &reqwest::Client, server: &Server<B>, repo: &str, blob: &[u8]) {
    let r = c
        .post(server.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            sha256(blob)
        )))
        .body(blob.to_vec())
        .send()
        .await
        .expect("blob upload");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

/// Pushes an image of `config` and `layers` as `repo:tag` with `c`'s
/// credentials (monolithic blob uploads, then the manifest), asserting
/// success; the manifest.
pub async fn push_image<B: Binary>(
    c: &reqwest::Client,
    server: &Server<B>,
    repo: &str,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> String {
    for blob in layers.iter().copied().chain([config]) {
        put_blob(c, server, repo, blob).await;
    }
    let manifest = oci::manifest(config, layers).to_string();
    let r = c
        .put(server.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Content-Type", oci::MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("manifest upload");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    manifest
}

/// Creates `user` with `password` through the management API.
pub async fn create_user<B: Binary>(server: &Server<B>, user: &str, password: &str) {
    let user = serde_json::json!({"name": user, "password": password});
    admin_create(server, "/api/v1/users", user).await;
}

/// Creates the project `name` as the administrator.
pub async fn create_project<B: Binary>(server: &Server<B>, name: &str, public: bool) {
    let project = serde_json::json!({"name": name, "public": public});
    admin_create(server, "/api/v1/projects", project).await;
}

/// POSTs `body` to the management API's `path` as the administrator,
/// expecting 201 Created.
async fn admin_create<B: Binary>(server: &Server<B>, path: &str, body: serde_json::Value) {
    let r = admin_client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("management API");
    assert_eq!(r.status(), 201, "POST {path}: {:?}", r.text().await);
}

/// Creates `user` (password `<user>-password`) through the management API
/// and makes it a member of each project with its role.
pub async fn user_with_roles<B: Binary>(server: &Server<B>, user: &str, roles: &[(&str, &str)]) {
    create_user(server, user, &format!("{user}-password")).await;
    let admin = admin_client();
    for (project, role) in roles {
        let r = admin
            .post(server.url(&format!("/api/v1/projects/{project}/members")))
            .json(&serde_json::json!({"kind": "user", "name": user, "role": role}))
            .send()
            .await
            .expect("add member");
        assert!(r.status().is_success(), "{}", r.status());
    }
}

pub fn sha256(data: &[u8]) -> String {
    berth_oci::Digest::sha256_of(data).to_string()
}

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
