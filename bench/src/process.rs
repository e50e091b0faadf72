//! The servers under test: berth, Distribution, and berth in cluster mode
//! with the etcd cluster and the Garage it stands on. Each in a temporary
//! directory (under `--dir`, through `TMPDIR`), on a port it picked itself,
//! killed when dropped.

use crate::oci::{ClientAuth, Endpoint};
use crate::{Res, PASSWORD};
use berth_test_kit::etcd::{Cluster, MEMBERS};
use berth_test_kit::garage::Garage;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, which must succeed (`what` names it in the error, with
/// everything it printed); its standard output.
pub fn stdout_of(cmd: &mut Command, what: &str) -> Res<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One registry under test.
pub struct Server {
    pub name: &'static str,
    pub ep: Endpoint,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The most memory the server has held resident so far (`VmHWM`).
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Kills the server; its data directory stays until it is dropped.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Distribution's storage (its `rootdirectory`).
    pub fn distribution_root(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

/// A data directory in the temporary directory (`--dir` sets `TMPDIR`).
fn data_dir() -> Res<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))
}

/// berth on a port of its choosing (it prints its address on its first
/// line), with `config` if given, driven with `auth` as `admin`.
pub async fn start_berth(
    bin: &str,
    name: &'static str,
    config: Option<&str>,
    auth: ClientAuth,
) -> Res<Server> {
    let dir = data_dir()?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path());
    if let Some(config) = config {
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .env("BERTH_ADMIN_PASSWORD", PASSWORD)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    let read = BufReader::new(out).read_line(&mut line);
    let addr = read.ok().and_then(|_| {
        line.split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
    });
    let Some(addr) = addr else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("berth said {line:?}"));
    };
    let base = format!("http://{addr}");
    // A server that is killed if the client cannot be set up.
    let mut server = Server {
        name,
        ep: Endpoint::anonymous(&base),
        child,
        _dir: dir,
    };
    server.ep = Endpoint::berth(&base, "admin", PASSWORD, auth).await?;
    Ok(server)
}

/// Distribution with filesystem storage, no auth, logging errors only (at
/// `info` it logs every request), on a port it picks itself (`:0`).
pub fn start_distribution(bin: &str) -> Res<Server> {
    start_distribution_with(bin, &DistOptions::default())
}

/// What else a Distribution is started with.
#[derive(Default)]
pub struct DistOptions {
    /// Its access log goes to `access.log` in its directory
    /// ([`Server::dir`]), to count what it was asked.
    pub access_log: bool,
    /// A pull-through cache of this registry (`proxy.remoteurl`).
    pub proxy_of: Option<String>,
    /// Its storage: this S3 bucket (under `/distribution` in it) instead
    /// of a directory.
    pub s3: Option<berth_storage::S3Config>,
}

/// Distribution's `storage:` section: its directory, or `s3`.
fn distribution_storage(options: &DistOptions, dir: &std::path::Path) -> String {
    match &options.s3 {
        // regionendpoint makes Distribution 2.8 use path-style URLs and
        // skip its list of AWS regions.
        Some(s3) => format!(
            "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: {}\n    regionendpoint: {}\n    bucket: {}\n    rootdirectory: /distribution\n    secure: false\n    v4auth: true\n",
            s3.access_key_id.as_deref().unwrap_or_default(),
            s3.secret_access_key.as_deref().unwrap_or_default(),
            s3.region,
            s3.endpoint,
            s3.bucket
        ),
        None => format!(
            "  filesystem:\n    rootdirectory: {}\n",
            dir.join("data").display()
        ),
    }
}

pub fn start_distribution_with(bin: &str, options: &DistOptions) -> Res<Server> {
    let dir = data_dir()?;
    let config = dir.path().join("config.yml");
    let proxy = match &options.proxy_of {
        Some(url) => format!("proxy:\n  remoteurl: {url}\n"),
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {}\nstorage:\n{}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n{proxy}",
            !options.access_log,
            distribution_storage(options, dir.path())
        ),
    )
    .map_err(|e| e.to_string())?;
    let stdout = if options.access_log {
        let log =
            std::fs::File::create(dir.path().join("access.log")).map_err(|e| e.to_string())?;
        Stdio::from(log)
    } else {
        Stdio::null()
    };
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        // Its AWS SDK panics on a custom CA bundle with its own transport
        // (some machines set one for every tool).
        .env_remove("AWS_CA_BUNDLE")
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    let mut server = Server {
        name: "distribution",
        ep: Endpoint::anonymous(""),
        child,
        _dir: dir,
    };
    // Distribution says where it listens only at `info` (with the bound
    // port: "listening on 127.0.0.1:46161"), which would also log each
    // request; its listening socket is found in /proc instead.
    let started = Instant::now();
    let port = loop {
        if let Some(port) = listening_port(server.child.id()) {
            break port;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("docker-registry exited: {status}"));
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err("docker-registry did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    server.ep = Endpoint::anonymous(&format!("http://127.0.0.1:{port}"));
    Ok(server)
}

/// The port of the TCP socket process `pid` listens on: its sockets'
/// inodes (the links in /proc/PID/fd) looked up in the kernel's table of
/// TCP sockets (/proc/PID/net/tcp, and tcp6).
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        text.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            // 0A: LISTEN.
            if *state != "0A" || !inodes.contains(*inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
    })
}

/// berth in cluster mode and what it stands on: a three-member etcd
/// cluster and a Garage S3 server, in temporary directories, killed on drop.
pub struct ClusterBerth {
    pub server: Server,
    /// Distribution on the same Garage, for the comparison on one store.
    pub distribution: Server,
    _etcd: Cluster,
    _s3: Garage,
}

/// The `[metadata]` section of a berth node on `etcd`.
fn metadata_toml(etcd: &Cluster) -> String {
    let endpoints: Vec<String> = (0..MEMBERS)
        .map(|i| format!("\"{}\"", etcd.endpoint(i)))
        .collect();
    format!(
        "[metadata]\nbackend = \"etcd\"\nendpoints = [{}]\n",
        endpoints.join(", ")
    )
}

/// berth in cluster mode (etcd and Garage), and Distribution (`registry`)
/// on the same Garage.
pub async fn start_cluster(bin: &str, registry: &str, auth: ClientAuth) -> Res<ClusterBerth> {
    let etcd = Cluster::start().await;
    let s3 = Garage::start().await;
    let config = format!("{}\n{}", metadata_toml(&etcd), s3.storage_toml(""));
    let server = start_berth(bin, "berth-cluster", Some(&config), auth).await?;
    let mut distribution = start_distribution_with(
        registry,
        &DistOptions {
            s3: Some(s3.config()),
            ..DistOptions::default()
        },
    )?;
    distribution.name = "dist-garage";
    Ok(ClusterBerth {
        server,
        distribution,
        _etcd: etcd,
        _s3: s3,
    })
}

/// `count` berth nodes of one cluster: a three-member etcd cluster and one
/// blob directory they share (as on CephFS or NFS), each node on its own
/// address (which it advertises to the others). Killed on drop.
pub struct BerthNodes {
    pub servers: Vec<Server>,
    _etcd: Cluster,
    _blobs: tempfile::TempDir,
}

pub async fn start_berth_nodes(bin: &str, count: usize) -> Res<BerthNodes> {
    let etcd = Cluster::start().await;
    let blobs = data_dir()?;
    let config = format!(
        "{}\n[storage]\nbackend = \"filesystem\"\npath = \"{}\"\n",
        metadata_toml(&etcd),
        blobs.path().display()
    );
    let mut servers = Vec::new();
    for _ in 0..count {
        servers.push(start_berth(bin, "berth-node", Some(&config), ClientAuth::Bearer).await?);
    }
    Ok(BerthNodes {
        servers,
        _etcd: etcd,
        _blobs: blobs,
    })
}
