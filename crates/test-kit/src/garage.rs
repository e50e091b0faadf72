//! A real single-node Garage (S3) server for tests, in a temporary
//! directory, on ports retried until free, killed on drop: for
//! berth-storage's S3 tests, the registry's cluster tests and the benchmark.

use crate::{random_u64, stdout_ok};
use berth_storage::{S3BlobStore, S3Config};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MIB: usize = 1024 * 1024;
pub const BUCKET: &str = "berth-test";
pub const REGION: &str = "garage";

/// A single-node Garage in a temporary directory, killed on drop.
pub struct Garage {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub s3_port: u16,
    pub key_id: String,
    pub secret: String,
}

pub fn garage_bin() -> String {
    std::env::var("GARAGE_BIN").unwrap_or_else(|_| "garage".into())
}

impl Garage {
    pub async fn start() -> Garage {
        Garage::start_at(None).await
    }

    /// Starts Garage on random ports, or first on `first_base` and the next
    /// two (for the test of this retry): parallel tests each run their own.
    /// When a port is taken, Garage is stopped and new ports are tried.
    pub async fn start_at(first_base: Option<u16>) -> Garage {
        for attempt in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let base = match first_base {
                Some(b) if attempt == 0 => b,
                _ => 20_000 + (random_u64() % 40_000) as u16,
            };
            let (rpc, s3, admin) = (base, base.saturating_add(1), base.saturating_add(2));
            let conf = dir.path().join("garage.toml");
            std::fs::write(&conf, config(dir.path(), rpc, s3, admin)).unwrap();
            let log = std::fs::File::create(dir.path().join("garage.log")).unwrap();
            let child = server(&conf, log);
            let mut garage = Garage {
                child,
                dir,
                s3_port: s3,
                key_id: String::new(),
                secret: String::new(),
            };
            if garage.wait_ready() {
                garage.set_up();
                if garage.s3_is_ours().await {
                    return garage;
                }
                eprintln!("garage: a port of {rpc}, {s3}, {admin} is taken; trying others");
                continue;
            }
            assert!(garage.bind_failed(), "garage exited:\n{}", garage.log());
            eprintln!("garage: a port of {rpc}, {s3}, {admin} is taken; trying others");
        }
        panic!("no free ports for garage after 20 attempts");
    }

    /// Garage keeps running when only its S3 listener failed to bind, so
    /// the port may be another process's: a listing signed with the key
    /// just made proves it is ours. Short timeouts, repeated, because a
    /// foreign listener may never answer.
    pub async fn s3_is_ours(&self) -> bool {
        let mut config = self.config();
        config.timeout_secs = 2;
        let store = S3BlobStore::new(&config).unwrap();
        let mut last = None;
        for _ in 0..15 {
            let check = store.client().list_keys("").await;
            if self.bind_failed() {
                return false;
            }
            match check {
                Ok(_) => return true,
                Err(e) => last = Some(e),
            }
        }
        panic!(
            "garage's S3 API does not answer ({last:?}):\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Garage could not bind a port: it exits when that is the RPC port,
    /// and carries on without S3 when that is the S3 port.
    pub fn bind_failed(&self) -> bool {
        let log = self.log();
        log.contains("already in use") || log.contains("AddrInUse")
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(garage_bin())
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        stdout_ok(self.cli(args), &format!("garage {args:?}"))
    }

    /// Polls until the node answers on RPC and S3; false when it exited or
    /// could not bind its ports.
    pub fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut pause = Duration::from_millis(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() || self.bind_failed() {
                return false;
            }
            let rpc_up = self.cli(&["status"]).status.success();
            let s3_up = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok();
            if rpc_up && s3_up {
                return true;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        panic!("garage did not become ready within 60 s:\n{}", self.log());
    }

    pub fn set_up(&mut self) {
        let id_line = self.cli_ok(&["node", "id", "-q"]);
        let node = id_line.trim().split('@').next().unwrap().to_owned();
        self.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        self.cli_ok(&["layout", "apply", "--version", "1"]);
        let key = self.cli_ok(&["key", "create", "berth-test-key"]);
        let field = |label: &str| -> String {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {label:?} in `garage key create` output:\n{key}"))
        };
        self.key_id = field("Key ID:");
        self.secret = field("Secret key:");
        self.cli_ok(&["bucket", "create", BUCKET]);
        self.cli_ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            &self.key_id,
        ]);
    }

    pub fn config(&self) -> S3Config {
        let mut c = S3Config::new(&format!("http://127.0.0.1:{}", self.s3_port), BUCKET);
        c.region = REGION.into();
        c.access_key_id = Some(self.key_id.clone());
        c.secret_access_key = Some(self.secret.clone());
        c.timeout_secs = 20;
        c
    }

    /// The `[storage]` section of a berth configuration on this server,
    /// followed by `extra` (more keys of that section).
    pub fn storage_toml(&self, extra: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:{}\"\nbucket = \"{BUCKET}\"\n\
             region = \"{REGION}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
             path_style = true\n{extra}",
            self.s3_port, self.key_id, self.secret
        )
    }

    /// Stops the server (SIGKILL), keeping its data for [`Garage::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same data and ports.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("garage.log"))
            .unwrap();
        self.child = server(&self.conf(), log);
        assert!(
            self.wait_ready(),
            "garage did not come back:\n{}",
            self.log()
        );
    }

    /// A new store instance: a node of its own, sharing the bucket.
    pub fn node(&self) -> S3BlobStore {
        S3BlobStore::new(&self.config()).unwrap()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `garage server` on the configuration `conf`, logging into `log`.
fn server(conf: &Path, log: std::fs::File) -> Child {
    Command::new(garage_bin())
        .arg("-c")
        .arg(conf)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} ({e}); scripts/test installs it with `cargo install garage`",
                garage_bin()
            )
        })
}

pub fn config(dir: &Path, rpc: u16, s3: u16, admin: u16) -> String {
    let secret = format!(
        "{:016x}{:016x}{:016x}{:016x}",
        random_u64(),
        random_u64(),
        random_u64(),
        random_u64()
    );
    let d = dir.display();
    format!(
        r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#
    )
}
