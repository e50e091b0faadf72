//! berth against the CNCF Distribution registry (Debian's `docker-registry`),
//! side by side in one run on one machine: both servers are started here on
//! loopback, driven with the same load from this process, alternating
//! between them, and compared as ratios. See `bench/run` and
//! docs/benchmarks.md.
//!
//! `berth-bench --berth PATH [--registry PATH] [--rounds N] [--quick]
//! [--dir DIR] [--json FILE] [--only TEXT] [--no-cluster]`
//!
//! Each measurement starts once the machine is idle; each number is the
//! median of the rounds (5 unless `--rounds`). After the comparison, a third
//! server, berth in cluster mode (a real three-member etcd cluster and a
//! real Garage S3 server, both started here as in the tests), runs the push
//! and manifest workloads on its own.
//!
//! `berth-bench --rgw [--quick]` instead measures Ceph: native RADOS
//! (`rados bench`) against berth on RGW, on the tests' throwaway Ceph.

#[path = "../../crates/storage/tests/ceph/mod.rs"]
mod ceph;
#[path = "../../crates/meta/tests/etcd_cluster/mod.rs"]
mod etcd_cluster;
#[path = "../../crates/storage/tests/garage/mod.rs"]
mod garage;

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-admin-password";
const MIB: usize = 1024 * 1024;

type Res<T> = Result<T, String>;

fn sha(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// One registry under test.
struct Server {
    name: &'static str,
    ep: Endpoint,
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
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(15_000)
}

/// A data directory under `--dir` (the system's temporary directory by
/// default; `/dev/shm` takes the disk out of the comparison).
fn data_dir() -> Res<tempfile::TempDir> {
    match std::env::var_os("BERTH_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .map_err(|e| e.to_string())
}

fn start_berth(bin: &str, name: &'static str, config: Option<&str>) -> Res<Server> {
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
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| format!("berth said {line:?}"))?
        .to_owned();
    use base64_lite::encode;
    Ok(Server {
        name,
        ep: Endpoint {
            base: format!("http://{addr}"),
            auth: Some(format!("Basic {}", encode(&format!("admin:{PASSWORD}")))),
        },
        child,
        _dir: dir,
    })
}

/// berth in cluster mode and what it stands on: a three-member etcd
/// cluster and a Garage S3 server, in temporary directories, killed on drop.
struct ClusterBerth {
    server: Server,
    _etcd: etcd_cluster::Cluster,
    _s3: garage::Garage,
}

async fn start_cluster(bin: &str) -> Res<ClusterBerth> {
    let etcd = etcd_cluster::Cluster::start().await;
    let s3 = garage::Garage::start().await;
    let endpoints: Vec<String> = (0..etcd_cluster::MEMBERS)
        .map(|i| format!("\"{}\"", etcd.endpoint(i)))
        .collect();
    let config = format!(
        "[metadata]\nbackend = \"etcd\"\nendpoints = [{}]\n\n{}",
        endpoints.join(", "),
        s3.storage_toml("")
    );
    let server = start_berth(bin, "berth-cluster", Some(&config))?;
    Ok(ClusterBerth {
        server,
        _etcd: etcd,
        _s3: s3,
    })
}

/// The workloads berth in cluster mode runs too.
fn cluster_runs(name: &str) -> bool {
    name.starts_with("push") || name.starts_with("manifest")
}

/// `rados bench` on a fresh pool of `ceph`: 4 MiB objects, 16 in flight,
/// for `secs`; MB/s written, then read back in order.
fn rados_bench(ceph: &ceph::Ceph, secs: u32) -> Res<(f64, f64)> {
    let conf = ceph.path().join("ceph.conf");
    let run = |program: &str, args: &[&str]| -> Res<String> {
        let out = Command::new(program)
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run("ceph", &["osd", "pool", "create", "bench", "8"])?;
    let bandwidth = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("Bandwidth (MB/sec):"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no bandwidth in rados bench output:\n{out}"))
    };
    let secs = secs.to_string();
    let write = run(
        "rados",
        &[
            "-p",
            "bench",
            "bench",
            &secs,
            "write",
            "-b",
            "4194304",
            "-t",
            "16",
            "--no-cleanup",
        ],
    )?;
    let read = run("rados", &["-p", "bench", "bench", &secs, "seq", "-t", "16"])?;
    run("rados", &["-p", "bench", "cleanup"])?;
    // rados bench reports MiB/s; the table is in MB/s like the rest.
    let mb = 1.048_576;
    Ok((bandwidth(&write)? * mb, bandwidth(&read)? * mb))
}

/// RGW alone: the 200 layers PUT as objects and read back, 16 at a time,
/// by berth's own S3 client (no registry in between). MB/s each way.
async fn rgw_direct(ceph: &ceph::Ceph, layers: &[Blob]) -> Res<(f64, f64)> {
    use berth_core::BlobStore;
    let store = Arc::new(ceph.node());
    let blobs: Vec<(berth_oci::Digest, Bytes)> = layers
        .iter()
        .map(|l| {
            let digest = l.digest.parse().map_err(|e| format!("{e:?}"))?;
            Ok((digest, Bytes::from(l.pieces.concat())))
        })
        .collect::<Res<_>>()?;
    let total: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    let blobs = Arc::new(blobs);
    let mut rates = Vec::new();
    for read in [false, true] {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = Instant::now();
        let mut hs = Vec::new();
        for _ in 0..16 {
            let (store, blobs, next) = (store.clone(), blobs.clone(), next.clone());
            hs.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((digest, data)) = blobs.get(i) else {
                        return Ok::<_, String>(());
                    };
                    if read {
                        let mut s = store
                            .read(digest, 0, data.len() as u64)
                            .await
                            .map_err(|e| e.to_string())?;
                        while let Some(chunk) = s.next().await {
                            chunk.map_err(|e| e.to_string())?;
                        }
                    } else {
                        store
                            .put(digest, data.clone())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }));
        }
        for h in hs {
            h.await.map_err(|e| e.to_string())??;
        }
        rates.push(total as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    // Out of berth's way: it pushes the same layers next.
    let digests: Vec<berth_oci::Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    store
        .delete_many(&digests)
        .await
        .map_err(|e| e.to_string())?;
    Ok((rates[0], rates[1]))
}

/// Native RADOS against berth on RGW, same throwaway Ceph, same run.
async fn rgw_against_rados(berth_bin: &str, w: &Workloads, rounds: usize) -> Res<()> {
    eprintln!("starting Ceph (mon, mgr, memstore OSD, radosgw)...");
    let ceph = ceph::Ceph::start().await;
    let (write, read) = rados_bench(&ceph, 5)?;
    eprintln!("  rados bench: write {write:.0} MB/s, seq read {read:.0} MB/s");
    let config = ceph.storage_toml("");
    let (s3_put, s3_get) = rgw_direct(&ceph, &w.layers).await?;
    eprintln!("  S3 to RGW without berth: PUT {s3_put:.0} MB/s, GET {s3_get:.0} MB/s");
    let berth = start_berth(berth_bin, "berth-rgw", Some(&config))?;
    let names = [
        "push 1 GiB, monolithic PUT (MB/s)",
        "pull 1 GiB (MB/s)",
        "push 200 layers of 4 MiB, 16 clients (layers/s)",
        "pull 200 layers, 16 clients (MB/s)",
    ];
    let mut results: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for name in names {
            let (v, _) = w
                .run(name, &berth.ep, round)
                .await
                .map_err(|e| format!("{name} on RGW: {e}"))?;
            eprintln!("  round {round} berth-rgw {name}: {v:.1}");
            results.entry(name).or_default().push(v);
        }
    }
    println!("\n| on one throwaway Ceph 16 (memstore OSD) | MB/s |");
    println!("|---|---:|");
    println!("| rados bench write, 4 MiB objects, 16 in flight (native RADOS) | {write:.0} |");
    println!("| rados bench sequential read, 16 in flight (native RADOS) | {read:.0} |");
    println!("| S3 PUT of the 200 layers to RGW, 16 in flight, no berth | {s3_put:.0} |");
    println!("| S3 GET of the 200 layers from RGW, 16 in flight, no berth | {s3_get:.0} |");
    for name in names {
        let v = median(results[name].clone());
        let (label, mbs) = if name.contains("layers/s") {
            (
                name.replace("(layers/s)", "(MB/s)"),
                v * 4.0 * MIB as f64 / 1e6,
            )
        } else {
            (name.to_owned(), v)
        };
        let label = label.replace("1 GiB", &format!("{} MiB", w.big_len() / MIB));
        println!("| berth on RGW: {label} | {mbs:.0} |");
    }
    Ok(())
}

fn start_distribution(bin: &str) -> Res<Server> {
    let dir = data_dir()?;
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            return Err("docker-registry did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Server {
        name: "distribution",
        ep: Endpoint {
            base: format!("http://127.0.0.1:{port}"),
            auth: None,
        },
        child,
        _dir: dir,
    })
}

/// Minimal base64 for one Basic header.
mod base64_lite {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn client() -> reqwest::Client {
    berth_net::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

async fn check(r: reqwest::Response, want: u16, what: &str) -> Res<reqwest::Response> {
    if r.status().as_u16() == want {
        Ok(r)
    } else {
        let s = r.status();
        Err(format!(
            "{what}: {s} {}",
            r.text().await.unwrap_or_default()
        ))
    }
}

fn absolute(s: &Endpoint, location: &str) -> String {
    if location.starts_with('/') {
        format!("{}{location}", s.base)
    } else {
        location.to_owned()
    }
}

fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// A blob of `len` bytes as shared pieces (no copy per request).
#[derive(Clone)]
struct Blob {
    pieces: Vec<Bytes>,
    len: usize,
    digest: String,
}

impl Blob {
    fn new(seed: u64, len: usize) -> Blob {
        // A random 4 MiB block, repeated, with the seed in front: distinct
        // digests, cheap to make.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let block: Vec<u8> = (0..4 * MIB)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let block = Bytes::from(block);
        let mut pieces = vec![Bytes::from(seed.to_le_bytes().to_vec())];
        let mut left = len - 8;
        while left > 0 {
            let n = left.min(block.len());
            pieces.push(block.slice(..n));
            left -= n;
        }
        let mut h = Sha256::new();
        for p in &pieces {
            h.update(p);
        }
        Blob {
            pieces,
            len,
            digest: format!("sha256:{:x}", h.finalize()),
        }
    }

    fn body(&self) -> reqwest::Body {
        let pieces = self.pieces.clone();
        reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces.into_iter().map(Ok::<Bytes, std::io::Error>),
        ))
    }

    /// The bytes from `start`, `len` of them, as pieces.
    fn range(&self, start: usize, len: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let (mut pos, end) = (0usize, start + len);
        for p in &self.pieces {
            let (a, b) = (pos, pos + p.len());
            if b > start && a < end {
                out.push(p.slice(start.max(a) - a..end.min(b) - a));
            }
            pos = b;
        }
        out
    }
}

/// The absolute `Location` of a response.
fn location(s: &Endpoint, r: &reqwest::Response) -> Res<String> {
    let loc = r.headers()["location"]
        .to_str()
        .map_err(|e| e.to_string())?;
    Ok(absolute(s, loc))
}

/// Opens an upload session (`POST`); where to continue it.
async fn open_upload(s: &Endpoint, c: &reqwest::Client, repo: &str) -> Res<String> {
    let r = s
        .req(
            c,
            reqwest::Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    location(s, &check(r, 202, "POST").await?)
}

/// `POST` then one streamed `PUT` with the whole blob.
async fn push_monolithic(s: &Endpoint, c: &reqwest::Client, repo: &str, blob: &Blob) -> Res<()> {
    let loc = open_upload(s, c, repo).await?;
    let r = s
        .req(c, reqwest::Method::PUT, &with_digest(&loc, &blob.digest))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", blob.len)
        .body(blob.body())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    check(r, 201, "PUT").await.map(|_| ())
}

/// `POST`, `PATCH`es of `chunk` bytes, then `PUT ?digest=` (Docker's way
/// with one chunk).
async fn push_chunked(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    blob: &Blob,
    chunk: usize,
) -> Res<()> {
    let mut loc = open_upload(s, c, repo).await?;
    let mut start = 0;
    while start < blob.len {
        let n = chunk.min(blob.len - start);
        let pieces = blob.range(start, n);
        let r = s
            .req(c, reqwest::Method::PATCH, &loc)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", start, start + n - 1))
            .header("Content-Length", n)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                pieces.into_iter().map(Ok::<Bytes, std::io::Error>),
            )))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        loc = location(s, &check(r, 202, "PATCH").await?)?;
        start += n;
    }
    let r = s
        .req(c, reqwest::Method::PUT, &with_digest(&loc, &blob.digest))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    check(r, 201, "PUT").await.map(|_| ())
}

async fn pull(s: &Endpoint, c: &reqwest::Client, repo: &str, digest: &str) -> Res<usize> {
    let r = s
        .req(
            c,
            reqwest::Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let r = check(r, 200, "GET blob").await?;
    let mut stream = r.bytes_stream();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.map_err(|e| e.to_string())?.len();
    }
    Ok(n)
}

async fn put_manifest(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    reference: &str,
    body: &[u8],
) -> Res<()> {
    let r = s
        .req(
            c,
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    check(r, 201, "PUT manifest").await.map(|_| ())
}

/// A config blob and an image manifest naming it and `layers`.
fn manifest(config: &[u8], layers: &[(String, usize)]) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": layers.iter().map(|(d, n)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

async fn upload_small(s: &Endpoint, c: &reqwest::Client, repo: &str, data: &[u8]) -> Res<()> {
    let loc = open_upload(s, c, repo).await?;
    let r = s
        .req(c, reqwest::Method::PUT, &with_digest(&loc, &sha(data)))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    check(r, 201, "PUT").await.map(|_| ())
}

/// Runs `per_task` on `tasks` concurrent workers for `secs`; requests per
/// second and the 99th percentile latency in milliseconds.
async fn hammer<F, Fut>(tasks: usize, secs: f64, per_task: F) -> Res<(f64, f64)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let f = Arc::new(per_task);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                f().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(0.0);
    Ok((all.len() as f64 / elapsed, p99))
}

/// What one workload measured on one server: value, and p99 when relevant.
type Measure = (f64, Option<f64>);

struct Workloads {
    quick: bool,
    big: Blob,
    layers: Vec<Blob>,
}

impl Workloads {
    fn big_len(&self) -> usize {
        self.big.len
    }

    async fn run(&self, name: &str, s: &Endpoint, round: usize) -> Res<Measure> {
        let c = client();
        let mb = |bytes: usize, t: Instant| bytes as f64 / 1e6 / t.elapsed().as_secs_f64();
        match name {
            "push 1 GiB, monolithic PUT (MB/s)" => {
                let t = Instant::now();
                push_monolithic(s, &c, &format!("big/mono{round}"), &self.big).await?;
                Ok((mb(self.big_len(), t), None))
            }
            "push 1 GiB, chunked PATCH (MB/s)" => {
                let t = Instant::now();
                push_chunked(s, &c, &format!("big/chunk{round}"), &self.big, 64 * MIB).await?;
                Ok((mb(self.big_len(), t), None))
            }
            "pull 1 GiB (MB/s)" => {
                // Three pulls in a row: one lasts a third of a second here,
                // and single ones moved by a quarter from round to round.
                let t = Instant::now();
                let mut n = 0;
                for _ in 0..3 {
                    n += pull(s, &c, &format!("big/mono{round}"), &self.big.digest).await?;
                }
                Ok((mb(n, t), None))
            }
            "push 200 layers of 4 MiB, 16 clients (layers/s)" => {
                let t = Instant::now();
                let repo = format!("layers/r{round}");
                let layers = Arc::new(self.layers.clone());
                let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut hs = Vec::new();
                for _ in 0..16 {
                    let (layers, next, c, repo) =
                        (layers.clone(), next.clone(), c.clone(), repo.clone());
                    let srv = s.clone();
                    hs.push(tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let Some(l) = layers.get(i) else {
                                return Ok::<_, String>(());
                            };
                            push_chunked(&srv, &c, &repo, l, l.len).await?;
                        }
                    }));
                }
                for h in hs {
                    h.await.map_err(|e| e.to_string())??;
                }
                Ok((self.layers.len() as f64 / t.elapsed().as_secs_f64(), None))
            }
            "pull 200 layers, 16 clients (MB/s)" => {
                let t = Instant::now();
                let repo = format!("layers/r{round}");
                let digests: Arc<Vec<String>> =
                    Arc::new(self.layers.iter().map(|l| l.digest.clone()).collect());
                let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut hs = Vec::new();
                for _ in 0..16 {
                    let (digests, next, c, repo) =
                        (digests.clone(), next.clone(), c.clone(), repo.clone());
                    let srv = s.clone();
                    hs.push(tokio::spawn(async move {
                        let mut n = 0;
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let Some(d) = digests.get(i) else {
                                return Ok::<_, String>(n);
                            };
                            n += pull(&srv, &c, &repo, d).await?;
                        }
                    }));
                }
                let mut total = 0;
                for h in hs {
                    total += h.await.map_err(|e| e.to_string())??;
                }
                Ok((mb(total, t), None))
            }
            "manifest GET by tag, 64 connections (req/s)"
            | "manifest HEAD by digest, 64 connections (req/s)" => {
                let by_tag = name.contains("GET");
                let config = format!("{{\"round\":{round}}}").into_bytes();
                let repo = format!("man/r{round}");
                upload_small(s, &c, &repo, &config).await?;
                let body = manifest(&config, &[]);
                put_manifest(s, &c, &repo, "latest", &body).await?;
                let (method, reference) = if by_tag {
                    (reqwest::Method::GET, "latest".to_owned())
                } else {
                    (reqwest::Method::HEAD, sha(&body))
                };
                let url = format!("{}/v2/{repo}/manifests/{reference}", s.base);
                let srv = s.clone();
                let secs = if self.quick { 2.0 } else { 5.0 };
                let (rps, p99) = hammer(64, secs, move || {
                    let (c, url, method, srv) =
                        (c.clone(), url.clone(), method.clone(), srv.clone());
                    async move {
                        let r = srv
                            .req(&c, method, &url)
                            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        let r = check(r, 200, "manifest").await?;
                        r.bytes().await.map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
                .await?;
                Ok((rps, Some(p99)))
            }
            "tags list of 10,000 tags (lists/s)" => {
                let repo = "many/tags";
                let t = Instant::now();
                let mut n = 0;
                while t.elapsed() < Duration::from_secs(if self.quick { 2 } else { 4 }) {
                    let r = s
                        .req(
                            &c,
                            reqwest::Method::GET,
                            &format!("/v2/{repo}/tags/list?n=100000"),
                        )
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let r = check(r, 200, "tags list").await?;
                    let body = r.bytes().await.map_err(|e| e.to_string())?;
                    let count = listed(&body, "tags")?;
                    if count < self.tag_count() {
                        return Err(format!("tags list had {count} tags"));
                    }
                    n += 1;
                }
                Ok((n as f64 / t.elapsed().as_secs_f64(), None))
            }
            "catalog of 10,000 repositories, pages of 1000 (catalogs/s)" => {
                let t = Instant::now();
                let mut n = 0;
                while t.elapsed() < Duration::from_secs(if self.quick { 2 } else { 4 }) {
                    let mut url = format!("{}/v2/_catalog?n=1000", s.base);
                    let mut count = 0;
                    loop {
                        let r = s
                            .req(&c, reqwest::Method::GET, &url)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        let r = check(r, 200, "catalog").await?;
                        let link = r
                            .headers()
                            .get("link")
                            .and_then(|l| l.to_str().ok())
                            .map(str::to_owned);
                        let body = r.bytes().await.map_err(|e| e.to_string())?;
                        count += listed(&body, "repositories")?;
                        match link.and_then(|l| l.split(['<', '>']).nth(1).map(str::to_owned)) {
                            Some(next) => url = absolute(s, &next),
                            None => break,
                        }
                    }
                    if count < self.repo_count() {
                        return Err(format!("catalog had {count} repositories"));
                    }
                    n += 1;
                }
                Ok((n as f64 / t.elapsed().as_secs_f64(), None))
            }
            other => Err(format!("unknown workload {other}")),
        }
    }

    fn tag_count(&self) -> usize {
        if self.quick {
            1000
        } else {
            10_000
        }
    }

    fn repo_count(&self) -> usize {
        if self.quick {
            1000
        } else {
            10_000
        }
    }

    /// Fills a repository with many tags and the catalog with many
    /// repositories (not timed).
    async fn populate(&self, s: &Endpoint) -> Res<()> {
        let c = client();
        let config = b"{\"populate\":true}".to_vec();
        upload_small(s, &c, "many/tags", &config).await?;
        let body = Arc::new(manifest(&config, &[]));
        let srv = s.clone();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tags, repos) = (self.tag_count(), self.repo_count());
        let mut hs = Vec::new();
        for _ in 0..16 {
            let (c, body, srv, next, config) = (
                c.clone(),
                body.clone(),
                srv.clone(),
                next.clone(),
                config.clone(),
            );
            hs.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i < tags {
                        put_manifest(&srv, &c, "many/tags", &format!("t{i}"), &body).await?;
                    } else if i < tags + repos {
                        let repo = format!("catalog/r{:05}", i - tags);
                        let s = &srv;
                        let r = s
                            .req(
                                &c,
                                reqwest::Method::POST,
                                &format!(
                                    "/v2/{repo}/blobs/uploads/?mount={}&from=many/tags",
                                    sha(&config)
                                ),
                            )
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        check(r, 201, "mount").await?;
                        put_manifest(s, &c, &repo, "latest", &body).await?;
                    } else {
                        return Ok::<_, String>(());
                    }
                }
            }));
        }
        for h in hs {
            h.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }
}

/// Where requests go and how they authenticate; cheap to clone into tasks.
#[derive(Clone)]
struct Endpoint {
    base: String,
    auth: Option<String>,
}

impl Endpoint {
    fn req(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let r = c.request(method, url);
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }
}

/// How many names the JSON listing `body` holds under `field`. Each name
/// is checked to be a JSON string but neither copied nor collected: the
/// load generator shares the CPU with the server it measures, so its own
/// cost is kept small (and the same for both registries). A `Vec<Cow<str>>`
/// looked borrowed but was not (serde borrows a `Cow` only as a field of
/// its own): 10,000 allocations per tags list, most of the generator's CPU.
fn listed(body: &[u8], field: &str) -> Res<usize> {
    #[derive(serde::Deserialize)]
    struct Listing {
        #[serde(default)]
        tags: Option<NameCount>,
        #[serde(default)]
        repositories: Option<NameCount>,
    }
    let l: Listing = serde_json::from_slice(body).map_err(|e| format!("listing: {e}"))?;
    let names = if field == "tags" {
        l.tags
    } else {
        l.repositories
    };
    names
        .map(|n| n.0)
        .ok_or_else(|| format!("listing has no {field:?}"))
}

/// The length of a JSON array of strings.
struct NameCount(usize);

impl<'de> serde::Deserialize<'de> for NameCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = NameCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of names")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NameCount, A::Error> {
                let mut n = 0;
                // Names hold no characters JSON escapes, so each borrows.
                while seq.next_element::<&'de str>()?.is_some() {
                    n += 1;
                }
                Ok(NameCount(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}

/// The busy and total CPU time of the whole machine so far, in jiffies
/// (the first line of /proc/stat).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Some((total - idle, total))
}

/// Waits, up to 15 s, until the machine is idle (under 10% busy over 200
/// ms) before a measurement starts, so that what one workload leaves
/// running (a server freeing memory, flushing, compacting) does not land
/// on the next server's measurement.
async fn settle() {
    let give_up = Instant::now() + Duration::from_secs(15);
    let Some(mut last) = cpu_jiffies() else {
        return;
    };
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(now) = cpu_jiffies() else {
            return;
        };
        let (busy, total) = (now.0 - last.0, now.1 - last.1);
        if total > 0 && busy * 10 < total {
            return;
        }
        last = now;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn sha256_speed_mb() -> f64 {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2",
        ])
        .stderr(Stdio::null())
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("sha256"))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|v| v.trim_end_matches('k').parse::<f64>().ok())
        .map(|kb| kb * 1000.0 / 1e6)
        .next_back()
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    if let Err(e) = real_main().await {
        eprintln!("berth-bench: {e}");
        std::process::exit(1);
    }
}

async fn real_main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let berth_bin = arg("--berth").unwrap_or_else(|| "target/release/berth".into());
    let registry_bin = arg("--registry").unwrap_or_else(|| "/usr/bin/docker-registry".into());
    let quick = args.iter().any(|a| a == "--quick");
    let only = arg("--only");
    if let Some(dir) = arg("--dir") {
        std::env::set_var("BERTH_BENCH_DIR", &dir);
        // etcd's and Garage's temporary directories too.
        std::env::set_var("TMPDIR", dir);
    }
    let rounds: usize = arg("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 1 } else { 5 });
    let big = if quick { 256 * MIB } else { 1024 * MIB };

    eprintln!("preparing blobs...");
    let w = Workloads {
        quick,
        big: Blob::new(7, big),
        layers: (0..200).map(|i| Blob::new(1000 + i, 4 * MIB)).collect(),
    };
    if args.iter().any(|a| a == "--rgw") {
        return rgw_against_rados(&berth_bin, &w, rounds).await;
    }
    let no_cluster = args.iter().any(|a| a == "--no-cluster");
    let berth = start_berth(&berth_bin, "berth", None)?;
    let dist = start_distribution(&registry_bin)?;
    eprintln!("populating tags and repositories...");
    let listing = only
        .as_deref()
        .is_none_or(|o| o.contains("list") || o.contains("catalog"));
    for s in [&berth, &dist].into_iter().filter(|_| listing) {
        let t = Instant::now();
        w.populate(&s.ep).await?;
        eprintln!("  {}: {:.1} s", s.name, t.elapsed().as_secs_f64());
    }

    let names = [
        "push 1 GiB, monolithic PUT (MB/s)",
        "push 1 GiB, chunked PATCH (MB/s)",
        "pull 1 GiB (MB/s)",
        "push 200 layers of 4 MiB, 16 clients (layers/s)",
        "pull 200 layers, 16 clients (MB/s)",
        "manifest GET by tag, 64 connections (req/s)",
        "manifest HEAD by digest, 64 connections (req/s)",
        "tags list of 10,000 tags (lists/s)",
        "catalog of 10,000 repositories, pages of 1000 (catalogs/s)",
    ];
    // `--only TEXT`: just the workloads whose name contains it (pushes run
    // too, when a pull needs their blob).
    let wanted = |name: &str| match &only {
        None => true,
        Some(o) => {
            name.contains(o.as_str())
                || (o.contains("pull") && name.contains("push 1 GiB, mono"))
                || (o.contains("pull") && name.contains("push 200"))
        }
    };
    let names: Vec<&str> = names.into_iter().filter(|n| wanted(n)).collect();
    // Columns: 0 berth, 1 distribution, 2 berth in cluster mode.
    let mut results: BTreeMap<&str, [Vec<Measure>; 3]> = BTreeMap::new();
    let measure = |name: &'static str, s: &Server, round: usize| {
        let w = &w;
        let ep = s.ep.clone();
        let server = s.name;
        async move {
            settle().await;
            let m = w
                .run(name, &ep, round)
                .await
                .map_err(|e| format!("{name} on {server}: {e}"))?;
            eprintln!(
                "  round {round} {server:<14} {name}: {:.1}{}",
                m.0,
                m.1.map(|p| format!(" (p99 {p:.2} ms)")).unwrap_or_default()
            );
            Ok::<_, String>(m)
        }
    };
    for round in 0..rounds {
        for &name in &names {
            // Alternate which server goes first.
            let order: [(usize, &Server); 2] = if round % 2 == 0 {
                [(0, &berth), (1, &dist)]
            } else {
                [(1, &dist), (0, &berth)]
            };
            for (i, s) in order {
                let m = measure(name, s, round).await?;
                results.entry(name).or_default()[i].push(m);
            }
        }
    }
    // berth in cluster mode runs after the comparison, on its own. Run
    // between the two, it always came just before berth in even rounds;
    // there berth's pull of 1 GiB measured 3.1 GB/s, against 4.8 GB/s in
    // the next round, with the machine idle before both.
    let cluster = if no_cluster {
        None
    } else {
        eprintln!("starting etcd, Garage and berth in cluster mode...");
        Some(start_cluster(&berth_bin).await?)
    };
    if let Some(c) = &cluster {
        for round in 0..rounds {
            for &name in names.iter().filter(|n| cluster_runs(n)) {
                let m = measure(name, &c.server, round).await?;
                results.entry(name).or_default()[2].push(m);
            }
        }
    }

    let sha_speed = sha256_speed_mb();
    let mut rows = Vec::new();
    println!(
        "\n| workload | berth | distribution | berth / distribution | berth cluster (etcd + Garage) | cluster / distribution |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for &name in &names {
        let r = &results[name];
        let value =
            |k: usize| (!r[k].is_empty()).then(|| median(r[k].iter().map(|m| m.0).collect()));
        let p99 = |k: usize| {
            let v: Vec<f64> = r[k].iter().filter_map(|m| m.1).collect();
            (!v.is_empty()).then(|| median(v))
        };
        let fmt = |k: usize| match (value(k), p99(k)) {
            (Some(v), Some(p)) => format!("{v:.0} (p99 {p:.2} ms)"),
            (Some(v), None) => format!("{v:.1}"),
            (None, _) => "—".to_owned(),
        };
        let (b, d, c) = (value(0).unwrap_or(0.0), value(1).unwrap_or(0.0), value(2));
        println!(
            "| {name} | {} | {} | {:.2}× | {} | {} |",
            fmt(0),
            fmt(1),
            b / d,
            fmt(2),
            c.map(|c| format!("{:.2}×", c / d))
                .unwrap_or_else(|| "—".into())
        );
        rows.push(serde_json::json!({
            "workload": name,
            "berth": b,
            "distribution": d,
            "ratio": b / d,
            "berth_p99_ms": p99(0),
            "distribution_p99_ms": p99(1),
            "cluster": c,
            "cluster_ratio": c.map(|c| c / d),
            "cluster_p99_ms": p99(2),
        }));
    }
    let (rb, rd) = (berth.peak_rss_mib(), dist.peak_rss_mib());
    println!(
        "| peak resident memory (MiB, lower is better) | {rb:.1} | {rd:.1} | {:.2}× | {} | |",
        rb / rd,
        cluster
            .as_ref()
            .map(|c| format!("{:.1}", c.server.peak_rss_mib()))
            .unwrap_or_else(|| "—".into())
    );
    let mono = results
        .get("push 1 GiB, monolithic PUT (MB/s)")
        .map_or(0.0, |r| median(r[0].iter().map(|m| m.0).collect()));
    println!(
        "\nSHA-256 on this machine (openssl speed -evp sha256, 1 MiB blocks): {sha_speed:.0} MB/s; berth's single-stream monolithic push reaches {:.0}% of it.",
        100.0 * mono / sha_speed
    );
    if let Some(path) = arg("--json") {
        let doc = serde_json::json!({
            "rounds": rounds,
            "quick": quick,
            "rows": rows,
            "peak_rss_mib": {"berth": rb, "distribution": rd},
            "sha256_mb_s": sha_speed,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        });
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
