//! A real single-node Garage (the S3 server scripts/test installs), for a
//! Distribution registry on S3 storage, whose blob GETs redirect to
//! presigned URLs. Ports are picked at random and retried when taken
//! (Garage cannot report a port it chose itself); killed on drop.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "registry";
pub const REGION: &str = "garage";

pub struct Garage {
    child: Child,
    dir: tempfile::TempDir,
    pub s3_port: u16,
    pub key_id: String,
    pub secret: String,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port in 20000..60000, different at each call.
pub fn random_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    20_000 + (h.finish() % 40_000) as u16
}

impl Garage {
    pub fn start() -> Garage {
        for _ in 0..20 {
            let base = random_port();
            let dir = tempfile::tempdir().expect("tempdir");
            let (rpc, s3, admin) = (base, base + 1, base + 2);
            std::fs::write(
                dir.path().join("garage.toml"),
                config(dir.path(), rpc, s3, admin),
            )
            .expect("write garage.toml");
            let log = std::fs::File::create(dir.path().join("garage.log")).expect("log");
            let child = Command::new("garage")
                .arg("-c")
                .arg(dir.path().join("garage.toml"))
                .arg("server")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("garage could not be run ({e}): scripts/test installs it")
                });
            let mut g = Garage {
                child,
                dir,
                s3_port: s3,
                key_id: String::new(),
                secret: String::new(),
            };
            if g.wait_ready() {
                g.set_up();
                return g;
            }
            eprintln!("garage: a port of {rpc}..{admin} is taken; trying others");
        }
        panic!("no free ports for garage after 20 attempts");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    fn bind_failed(&self) -> bool {
        let log = self.log();
        log.contains("already in use") || log.contains("AddrInUse")
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new("garage")
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .expect("run garage")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls until RPC and S3 answer; false when a port was taken.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() || self.bind_failed() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            let rpc_up = self.cli(&["status"]).status.success();
            let s3_up = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok();
            if rpc_up && s3_up {
                // A listener that is not Garage's would make the S3 step
                // fail loudly further on (wrong answers to signed calls).
                return !self.bind_failed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("garage did not become ready within 60 s:\n{}", self.log());
    }

    fn set_up(&mut self) {
        let id = self.cli_ok(&["node", "id", "-q"]);
        let node = id.trim().split('@').next().unwrap_or_default().to_owned();
        self.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        self.cli_ok(&["layout", "apply", "--version", "1"]);
        let key = self.cli_ok(&["key", "create", "registry-key"]);
        let field = |label: &str| -> String {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {label:?} in `garage key create`:\n{key}"))
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

    /// The `storage.s3` section of a Distribution config reaching this
    /// server at `127.0.0.1:<port>` (its own S3 port, or a proxy's).
    /// Redirects to presigned URLs are on by default.
    pub fn distribution_storage(&self, port: u16) -> String {
        format!(
            "storage:\n  s3:\n    accesskey: {}\n    secretkey: {}\n    region: {REGION}\n    \
             regionendpoint: http://127.0.0.1:{}\n    bucket: {BUCKET}\n    secure: false\n    \
             v4auth: true\n    forcepathstyle: true\n  delete:\n    enabled: true\n",
            self.key_id, self.secret, port
        )
    }
}

fn config(dir: &Path, rpc: u16, s3: u16, admin: u16) -> String {
    let secret: String = (0..4)
        .map(|i| format!("{:016x}", random_port() as u64 * 0x9E37_79B9 + i))
        .collect();
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
