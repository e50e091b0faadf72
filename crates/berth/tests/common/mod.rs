//! Test harness: runs the real `berth` binary on `127.0.0.1:0` (the port is
//! read from its first line of output, so tests never race for ports) in a
//! temporary data directory, and kills it when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
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

pub struct Server {
    child: Child,
    pub addr: String,
    /// "https" when the server terminates TLS.
    pub scheme: &'static str,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server with its own temporary data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().to_path_buf();
        let mut s = Server::start_in(&data, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server with a configuration file, logging at debug level
    /// into `<data>/berth.log` (see [`Server::log`]).
    pub fn start_with_config(toml: &str) -> Server {
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

    /// Everything the server logged, for servers from
    /// [`Server::start_with_config`].
    pub fn log(&self) -> String {
        let dir = self._tmp.as_ref().expect("a logging server").path();
        std::fs::read_to_string(dir.join("berth.log")).expect("read log")
    }

    /// A server on an existing data directory (to test restarts), with
    /// extra command-line arguments.
    pub fn start_in(data: &Path, extra: &[&str]) -> Server {
        let level = std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into());
        Server::spawn(data, extra, Stdio::inherit(), &level)
    }

    fn spawn(data: &Path, extra: &[&str], stderr: Stdio, level: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
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
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `berth fsck --data DIR` with `extra` arguments (the server on that
/// directory stopped); whether it succeeded, and its output.
pub fn fsck(data: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
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

/// Uploads `blob` into `repo` in one monolithic `POST ?digest=` with `c`'s
/// credentials, asserting 201.
pub async fn put_blob(c: &reqwest::Client, server: &Server, repo: &str, blob: &[u8]) {
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

/// Creates `user` (password `<user>-password`) through the management API
/// and makes it a member of each project with its role.
pub async fn user_with_roles(server: &Server, user: &str, roles: &[(&str, &str)]) {
    let admin = admin_client();
    let r = admin
        .post(server.url("/api/v1/users"))
        .json(&serde_json::json!({"name": user, "password": format!("{user}-password")}))
        .send()
        .await
        .expect("create user");
    assert_eq!(r.status(), 201);
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

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
