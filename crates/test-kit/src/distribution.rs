//! A real CNCF Distribution registry (Debian's `docker-registry`, 2.8, at
//! `/usr/bin/docker-registry`) for tests that talk to another registry:
//! berth's outbound client, imports, replication. It runs `serve` on a
//! `config.yml` written into a temporary directory of its own —
//!
//! - storage on the filesystem ([`Storage::Filesystem`], by default under
//!   `data/` in that directory) or on S3 ([`Storage::S3`], e.g. on the
//!   kit's [`Garage`]), deletes enabled either way;
//! - anonymous, or htpasswd Basic auth for the [`Setup::users`] given;
//! - plain http, or TLS on the certificate and key given ([`Setup::tls`],
//!   e.g. from [`crate::pki::Pki`]);
//! - on `127.0.0.1:0` (the port it chose is read from its log) or on the
//!   port given; its access log kept in `access.log`
//!   ([`Distribution::requests`]); killed on drop.
//!
//! The storage it used stays reachable ([`Distribution::storage`]), so that
//! a test can point berth at the same directory or bucket afterwards.
//!
//! [`Recorder`] is HAProxy as a recording proxy, to put in front of the S3
//! host and see what reached it (the registry's signed calls, clients
//! following redirects to presigned URLs).

use crate::garage::{Garage, BUCKET, REGION};
use crate::{random_u64, run_ok, Killed};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs CNCF Distribution.
pub const BINARY: &str = "/usr/bin/docker-registry";

/// Where a registry keeps its content.
#[derive(Clone, Debug)]
pub enum Storage {
    /// The filesystem driver, its `rootdirectory` here; `None`: `data/` in
    /// the registry's temporary directory (resolved once started).
    Filesystem(Option<PathBuf>),
    /// The S3 driver.
    S3(S3),
}

impl Default for Storage {
    fn default() -> Storage {
        Storage::Filesystem(None)
    }
}

/// The S3 driver's settings (path-style, signature v4).
#[derive(Clone, Debug)]
pub struct S3 {
    /// `http://host:port` of the S3 API.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The driver's `rootdirectory` in the bucket (e.g. `/dist`); `None`
    /// for the bucket's root.
    pub root: Option<String>,
    /// Blob GETs and HEADs answered by redirects to presigned URLs
    /// (Distribution's default), or, when false, served by the registry.
    pub redirect: bool,
}

impl S3 {
    /// The bucket of `garage` (the kit's [`BUCKET`]), at its root,
    /// with redirects.
    pub fn garage(garage: &Garage) -> S3 {
        S3 {
            endpoint: format!("http://127.0.0.1:{}", garage.s3_port),
            region: REGION.to_owned(),
            bucket: BUCKET.to_owned(),
            access_key: garage.key_id.clone(),
            secret_key: garage.secret.clone(),
            root: None,
            redirect: true,
        }
    }

    /// The same, reached at `127.0.0.1:<port>` instead (e.g. a
    /// [`Recorder`] in front of the S3 host).
    pub fn via_port(mut self, port: u16) -> S3 {
        self.endpoint = format!("http://127.0.0.1:{port}");
        self
    }

    /// The same, under `rootdirectory` `root` (e.g. `/dist`).
    pub fn under(mut self, root: &str) -> S3 {
        self.root = Some(root.to_owned());
        self
    }

    /// The same, blobs served through the registry (no redirects).
    pub fn without_redirect(mut self) -> S3 {
        self.redirect = false;
        self
    }
}

impl Storage {
    /// The `storage:` section of `config.yml`, `default_root` standing for
    /// `Filesystem(None)`.
    fn yaml(&self, default_root: &Path) -> String {
        let mut y = String::from("storage:\n");
        match self {
            Storage::Filesystem(root) => {
                let root = root.as_deref().unwrap_or(default_root);
                y.push_str(&format!(
                    "  filesystem:\n    rootdirectory: {}\n",
                    root.display()
                ));
            }
            Storage::S3(s3) => {
                y.push_str(&format!(
                    "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: {}\n    \
                     regionendpoint: {}\n    bucket: {}\n    secure: false\n    \
                     v4auth: true\n    forcepathstyle: true\n",
                    s3.access_key, s3.secret_key, s3.region, s3.endpoint, s3.bucket
                ));
                if let Some(root) = &s3.root {
                    y.push_str(&format!("    rootdirectory: {root}\n"));
                }
                if !s3.redirect {
                    y.push_str("  redirect:\n    disable: true\n");
                }
            }
        }
        y.push_str("  delete:\n    enabled: true\n");
        y
    }
}

/// How a registry is set up: the default is anonymous plain http on the
/// filesystem, on a port it picks.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    pub storage: Storage,
    /// htpasswd users and their passwords (hashed with bcrypt by
    /// `htpasswd -Bbn`, from Debian's apache2-utils); none: anonymous.
    pub users: Vec<(String, String)>,
    /// PEM certificate and key files to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The port to listen on (127.0.0.1); 0: one it picks. A port taken
    /// fails the start.
    pub port: u16,
}

impl Setup {
    /// With `storage`.
    pub fn storage(mut self, storage: Storage) -> Setup {
        self.storage = storage;
        self
    }

    /// With one more htpasswd user.
    pub fn user(mut self, user: &str, password: &str) -> Setup {
        self.users.push((user.to_owned(), password.to_owned()));
        self
    }

    /// With TLS on `cert` and `key` (PEM files).
    pub fn tls(mut self, cert: &Path, key: &Path) -> Setup {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// On `port` (127.0.0.1).
    pub fn port(mut self, port: u16) -> Setup {
        self.port = port;
        self
    }
}

/// A running `docker-registry serve`, killed on drop.
pub struct Distribution {
    child: Killed,
    /// `http://127.0.0.1:<port>`, or `https://...` with TLS.
    pub url: String,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Its temporary directory: `config.yml`, `access.log`, `htpasswd`,
    /// and `data/` for the default filesystem storage.
    pub dir: tempfile::TempDir,
    /// Its storage, a default filesystem root resolved to its path.
    pub storage: Storage,
}

impl Distribution {
    /// An anonymous plain-http registry on the filesystem.
    pub fn start() -> Distribution {
        Distribution::start_with(Setup::default())
    }

    /// A registry set up as `setup` says, once it listens.
    pub fn start_with(setup: Setup) -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = match setup.storage {
            Storage::Filesystem(None) => Storage::Filesystem(Some(dir.path().join("data"))),
            s => s,
        };
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n{}\
             http:\n  addr: 127.0.0.1:{}\n  secret: berth-test-{:x}\n",
            storage.yaml(&dir.path().join("data")),
            setup.port,
            random_u64()
        );
        if let Some((cert, key)) = &setup.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if !setup.users.is_empty() {
            let lines: String = setup
                .users
                .iter()
                .map(|(user, password)| {
                    let line = run_ok("htpasswd", &["-Bbn", user, password], &[], None);
                    format!("{}\n", line.trim())
                })
                .collect();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, lines).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("write config.yml");
        // The access log (combined format) goes to standard output, the
        // rest of the log to standard error.
        let access = std::fs::File::create(dir.path().join("access.log")).expect("access.log");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_file)
            // Its S3 driver (aws-sdk-go) panics on a custom CA bundle with
            // its own transport; the S3 servers here are plain http.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(access))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{BINARY} could not be run ({e}): install docker-registry"));
        let mut child = Killed(child);
        let mut reader = BufReader::new(child.0.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if reader
                .read_line(&mut line)
                .expect("read the registry's log")
                == 0
            {
                panic!("docker-registry exited before listening:\n{seen}");
            }
            seen.push_str(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| !matches!(c, ',' | '"' | ' ' | '\n'))
                    .collect();
                break addr;
            }
        };
        // Drained, so that the registry never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        Distribution {
            child,
            url: format!("{scheme}://{addr}"),
            addr,
            dir,
            storage,
        }
    }

    /// The filesystem storage's root directory, if on the filesystem.
    pub fn root(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Filesystem(root) => root.as_deref(),
            Storage::S3(_) => None,
        }
    }

    /// The S3 storage's settings (bucket, root directory), if on S3.
    pub fn s3(&self) -> Option<&S3> {
        match &self.storage {
            Storage::S3(s3) => Some(s3),
            Storage::Filesystem(_) => None,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The access log so far (combined log format), empty if none.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The access log's requests so far, each as `METHOD path status`
    /// (query strings dropped).
    pub fn requests(&self) -> Vec<String> {
        self.access_log()
            .lines()
            .filter_map(|l| {
                let mut quoted = l.split('"');
                let request = quoted.nth(1)?;
                let status = quoted.next()?.split_whitespace().next()?;
                let mut parts = request.split_whitespace();
                let method = parts.next()?;
                let path = parts.next()?.split('?').next()?;
                Some(format!("{method} {path} {status}"))
            })
            .collect()
    }

    /// Stops it (SIGKILL), keeping its directory (and so its filesystem
    /// storage), which is returned.
    pub fn stop(self) -> tempfile::TempDir {
        let Distribution { child, dir, .. } = self;
        drop(child);
        dir
    }
}

/// HAProxy (Debian's) as a recording proxy in front of a server: it logs
/// every request's method, URI and `Authorization` header. On a random
/// port, retried when taken; killed on drop.
pub struct Recorder {
    _child: Killed,
    dir: tempfile::TempDir,
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
}

/// One request a [`Recorder`] passed on.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// The `Authorization` header, empty when there was none.
    pub authorization: String,
}

impl Recorder {
    /// A proxy to `127.0.0.1:<target>`.
    pub fn start(target: u16) -> Recorder {
        for _ in 0..20 {
            let port = 20_000 + (random_u64() % 40_000) as u16;
            let dir = tempfile::tempdir().expect("tempdir");
            let config = format!(
                "global\n  log stdout format raw local0\n\
                 defaults\n  mode http\n  log global\n  timeout connect 5s\n  \
                 timeout client 60s\n  timeout server 60s\n\
                 frontend recorder\n  bind 127.0.0.1:{port}\n  \
                 http-request capture req.fhdr(Authorization) len 500\n  \
                 log-format \"%HM %HU %hr\"\n  default_backend target\n\
                 backend target\n  server t 127.0.0.1:{target}\n"
            );
            let file = dir.path().join("haproxy.cfg");
            std::fs::write(&file, config).expect("write haproxy.cfg");
            let log = std::fs::File::create(dir.path().join("requests.log")).expect("log");
            let child = Command::new("haproxy")
                .arg("-f")
                .arg(&file)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("haproxy could not be run ({e}): install it"));
            let mut child = Killed(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.0.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Recorder {
                        _child: child,
                        dir,
                        port,
                    };
                }
                assert!(Instant::now() < deadline, "haproxy did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port for haproxy after 20 attempts");
    }

    /// The requests passed on so far.
    pub fn seen(&self) -> Vec<Seen> {
        let log = std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (method, rest) = l.split_once(' ')?;
                let (uri, captured) = rest.split_once(' ')?;
                let authorization = captured.trim().strip_prefix('{')?.strip_suffix('}')?;
                Some(Seen {
                    method: method.to_owned(),
                    uri: uri.to_owned(),
                    authorization: authorization.to_owned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_sections() {
        let fs = Storage::default().yaml(Path::new("/tmp/x/data"));
        assert_eq!(
            fs,
            "storage:\n  filesystem:\n    rootdirectory: /tmp/x/data\n  \
             delete:\n    enabled: true\n"
        );
        let s3 = S3 {
            endpoint: "http://127.0.0.1:3900".into(),
            region: REGION.into(),
            bucket: BUCKET.into(),
            access_key: "GK1".into(),
            secret_key: "s".into(),
            root: None,
            redirect: true,
        };
        let plain = Storage::S3(s3.clone().via_port(3901)).yaml(Path::new("/unused"));
        assert!(
            plain.contains("regionendpoint: http://127.0.0.1:3901\n"),
            "{plain}"
        );
        assert!(!plain.contains("rootdirectory") && !plain.contains("redirect"));
        assert!(plain.ends_with("  delete:\n    enabled: true\n"), "{plain}");
        let served = Storage::S3(s3.under("/dist").without_redirect()).yaml(Path::new("/unused"));
        assert!(served.contains("    rootdirectory: /dist\n"), "{served}");
        assert!(
            served.contains("  redirect:\n    disable: true\n"),
            "{served}"
        );
    }

    #[test]
    fn a_default_registry_answers_and_exposes_its_root() {
        let reg = Distribution::start();
        let root = reg.root().expect("filesystem storage").to_path_buf();
        assert_eq!(root, reg.dir.path().join("data"));
        assert!(reg.s3().is_none());
        assert!(reg.url.starts_with("http://127.0.0.1:"), "{}", reg.url);
        let mut s = std::net::TcpStream::connect(&reg.addr).expect("connect");
        use std::io::{Read, Write};
        s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        // The access log is written as the request is answered.
        let deadline = Instant::now() + Duration::from_secs(5);
        while reg.requests().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(reg.requests(), ["GET /v2/ 200"]);
        let dir = reg.stop();
        assert!(dir.path().join("config.yml").exists());
    }
}
