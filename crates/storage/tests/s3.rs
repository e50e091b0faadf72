//! `S3BlobStore` against a real Garage server: the shared conformance suite,
//! a chunked upload spread over several store instances (nodes) with
//! rewinds and dead writers, the sweep of stale multipart uploads, and
//! failures that must surface as `Unavailable` rather than hang.

use berth_core::blob_suite::{self, content, read_all};
use berth_core::{BlobStore, StoreError};
use berth_oci::Digest;
use berth_storage::{S3BlobStore, S3Config};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "berth-test";
const REGION: &str = "garage";

/// A single-node Garage in a temporary directory, killed on drop.
struct Garage {
    child: Child,
    dir: tempfile::TempDir,
    s3_port: u16,
    key_id: String,
    secret: String,
}

fn garage_bin() -> String {
    std::env::var("GARAGE_BIN").unwrap_or_else(|_| "garage".into())
}

fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64
}

impl Garage {
    async fn start() -> Garage {
        Garage::start_at(None).await
    }

    /// Starts Garage on random ports, or first on `first_base` and the next
    /// two (for the test of this retry): parallel tests each run their own.
    /// When a port is taken, Garage is stopped and new ports are tried.
    async fn start_at(first_base: Option<u16>) -> Garage {
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
            let child = Command::new(garage_bin())
                .arg("-c")
                .arg(&conf)
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
                });
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
    async fn s3_is_ours(&self) -> bool {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Garage could not bind a port: it exits when that is the RPC port,
    /// and carries on without S3 when that is the S3 port.
    fn bind_failed(&self) -> bool {
        let log = self.log();
        log.contains("already in use") || log.contains("AddrInUse")
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(garage_bin())
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls until the node answers on RPC and S3; false when it exited or
    /// could not bind its ports.
    fn wait_ready(&mut self) -> bool {
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

    fn set_up(&mut self) {
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

    fn config(&self) -> S3Config {
        let mut c = S3Config::new(&format!("http://127.0.0.1:{}", self.s3_port), BUCKET);
        c.region = REGION.into();
        c.access_key_id = Some(self.key_id.clone());
        c.secret_access_key = Some(self.secret.clone());
        c.timeout_secs = 20;
        c
    }

    /// A new store instance: a node of its own, sharing the bucket.
    fn node(&self) -> S3BlobStore {
        S3BlobStore::new(&self.config()).unwrap()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, rpc: u16, s3: u16, admin: u16) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_garage() {
    let garage = Garage::start().await;
    // Two nodes sharing the bucket, then a store under a key prefix.
    blob_suite::run_all(&garage.node()).await;
    blob_suite::run_all(&garage.node()).await;
    let mut prefixed = garage.config();
    prefixed.prefix = "tenant/berth/".into();
    prefixed.part_size_mib = 5;
    let store = S3BlobStore::new(&prefixed).unwrap();
    blob_suite::run_all(&store).await;

    let data = content(100);
    let digest = Digest::sha256_of(&data);
    store.put(&digest, Bytes::from(data)).await.unwrap();
    let hex = digest.encoded();
    let keys = store
        .client()
        .list_keys(&format!("tenant/berth/blobs/sha256/{}/", &hex[..2]))
        .await
        .unwrap();
    assert!(
        keys.contains(&format!("tenant/berth/blobs/sha256/{}/{hex}", &hex[..2])),
        "{keys:?}"
    );
    // Every upload the suite made is gone, and no commit left a multipart
    // upload behind.
    assert!(store
        .client()
        .list_keys("uploads/")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .client()
        .list_keys("tenant/berth/uploads/")
        .await
        .unwrap()
        .is_empty());
    assert!(store.client().list_multipart("").await.unwrap().is_empty());
}

/// One PATCH: a writer on `node` at `offset`, `chunks` written, finished.
async fn patch(node: &S3BlobStore, id: &str, offset: usize, chunks: &[&[u8]]) {
    let mut w = node.upload_writer(id, offset as u64).await.unwrap();
    for c in chunks {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w.finish().await.unwrap();
}

/// A node with the given part size, as separate nodes may be configured.
fn node_with_parts(garage: &Garage, part_size_mib: u64) -> S3BlobStore {
    let mut c = garage.config();
    c.part_size_mib = part_size_mib;
    S3BlobStore::new(&c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_upload_across_nodes_with_rewinds() {
    let garage = Garage::start().await;
    let len = 40 * MIB;
    let data = content(len);
    let id = uuid::Uuid::new_v4().to_string();
    let m = MIB;

    // Each PATCH runs on a fresh store instance: no state survives between
    // them but the bucket's.
    patch(
        &garage.node(),
        &id,
        0,
        &[&data[..m], &data[m..2 * m], &data[2 * m..3 * m]],
    )
    .await;
    patch(
        &node_with_parts(&garage, 5),
        &id,
        3 * m,
        &[&data[3 * m..10 * m]],
    )
    .await;
    patch(&garage.node(), &id, 10 * m, &[&data[10 * m..10 * m + 1]]).await;
    let slices: Vec<&[u8]> = data[10 * m + 1..22 * m + 1].chunks(64 * 1024 + 3).collect();
    patch(&garage.node(), &id, 10 * m + 1, &slices).await;

    // A PATCH that finished but died before the registry recorded it: its
    // bytes must not survive the next writer at the recorded offset.
    patch(
        &node_with_parts(&garage, 5),
        &id,
        22 * m + 1,
        &[&content(18 * m)],
    )
    .await;

    // A rewind into the middle of the 12 MiB chunk, then the right bytes.
    let at = 17 * m - 12345;
    let node = garage.node();
    let mut w = node.upload_writer(&id, at as u64).await.unwrap();
    assert!(matches!(
        node.upload_writer(&id, 22 * m as u64 + 2).await,
        Err(StoreError::NotFound)
    ));
    drop(node);
    for c in [
        &data[at..at + 5 * m],
        &data[at + 5 * m..at + 5 * m + 2],
        &data[at + 5 * m + 2..29 * m],
    ] {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w.finish().await.unwrap();

    // A writer dropped midway, one chunk in flight, another buffered.
    let node = node_with_parts(&garage, 5);
    let mut w = node.upload_writer(&id, 29 * m as u64).await.unwrap();
    w.write(Bytes::from(content(7 * m))).await.unwrap();
    drop(w);

    let slices: Vec<&[u8]> = data[29 * m..].chunks(m + 7).collect();
    patch(&garage.node(), &id, 29 * m, &slices).await;
    assert!(matches!(
        garage.node().upload_writer(&id, len as u64 + 1).await,
        Err(StoreError::NotFound)
    ));

    let digest = Digest::sha256_of(&data);
    let committer = garage.node();
    committer
        .commit_upload(&id, &digest, len as u64)
        .await
        .unwrap();

    let reader = garage.node();
    assert_eq!(reader.stat(&digest).await.unwrap(), Some(len as u64));
    let back = read_all(&reader, &digest, 0, len as u64).await;
    assert_eq!(back.len(), len);
    assert_eq!(Digest::sha256_of(&back), digest, "40 MiB round trip");
    for (offset, n) in [
        (0, 1),
        (3 * m - 1, 2),
        (10 * m, 1),
        (at - 7, 5 * m + 13),
        (22 * m, 3 * m),
        (len - 1, 1),
        (len - 12 * m, 12 * m),
    ] {
        let got = read_all(&reader, &digest, offset as u64, n as u64).await;
        assert!(got == data[offset..offset + n], "range {offset}+{n}");
    }
    // Past the end is an error, not a short read.
    assert!(reader.read(&digest, len as u64 - 10, 11).await.is_err());

    assert!(matches!(
        reader.upload_writer(&id, 1).await,
        Err(StoreError::NotFound)
    ));
    let left = reader
        .client()
        .list_keys(&format!("uploads/{id}/"))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "upload objects left after commit: {left:?}"
    );
    assert!(reader.client().list_multipart("").await.unwrap().is_empty());
    reader.delete(&digest).await.unwrap();
    assert_eq!(reader.stat(&digest).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_multipart_uploads_are_aborted() {
    let garage = Garage::start().await;
    let store = garage.node();
    let client = store.client();
    // Commits that died after starting their multipart upload.
    let first = client
        .create_multipart("blobs/sha256/aa/aa01")
        .await
        .unwrap();
    client
        .upload_part("blobs/sha256/aa/aa01", &first, 1, Bytes::from(content(MIB)))
        .await
        .unwrap();
    client
        .create_multipart("blobs/sha256/bb/bb02")
        .await
        .unwrap();
    assert_eq!(client.list_multipart("").await.unwrap().len(), 2);

    // Young ones stay: they may be commits in progress on other nodes.
    assert_eq!(
        store
            .abort_stale_multipart(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(client.list_multipart("").await.unwrap().len(), 2);

    assert_eq!(
        store.abort_stale_multipart(Duration::ZERO).await.unwrap(),
        2
    );
    let left = client.list_multipart("").await.unwrap();
    assert!(left.is_empty(), "multipart uploads left: {left:?}");
    assert_eq!(
        store.abort_stale_multipart(Duration::ZERO).await.unwrap(),
        0
    );
}

fn assert_unavailable<T>(what: &str, r: Result<T, StoreError>) {
    match r {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("{what}: want Unavailable, got {e}"),
        Ok(_) => panic!("{what}: want Unavailable, got success"),
    }
}

/// Every kind of call against `store`, each expected to fail `Unavailable`.
async fn all_unavailable(store: &S3BlobStore) {
    let digest = Digest::sha256_of(b"x");
    assert_unavailable("stat", store.stat(&digest).await);
    assert_unavailable("read", store.read(&digest, 0, 1).await);
    assert_unavailable("put", store.put(&digest, Bytes::from_static(b"x")).await);
    assert_unavailable("delete", store.delete(&digest).await);
    assert_unavailable("upload_writer", store.upload_writer("u1", 0).await);
    assert_unavailable("commit_upload", store.commit_upload("u1", &digest, 1).await);
    assert_unavailable("delete_upload", store.delete_upload("u1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_store_is_unavailable_not_a_hang() {
    // A store that went down: connections are refused.
    let garage = Garage::start().await;
    let store = garage.node();
    let digest = Digest::sha256_of(b"kept");
    store
        .put(&digest, Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let mut w = store.upload_writer("writer-open", 0).await.unwrap();
    drop(garage);
    let started = Instant::now();
    all_unavailable(&store).await;
    // A writer opened before the outage fails on its next chunk PUT.
    w.write(Bytes::from(content(5 * MIB))).await.unwrap();
    let mut failed = w.write(Bytes::from(content(12 * MIB))).await.err();
    if failed.is_none() {
        failed = w.finish().await.err();
    }
    assert!(
        matches!(failed, Some(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused connections took {:?}",
        started.elapsed()
    );

    // A server that accepts connections and never answers: the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = S3Config::new(&format!("http://{}", silent.local_addr().unwrap()), BUCKET);
    c.access_key_id = Some("id".into());
    c.secret_access_key = Some("secret".into());
    c.timeout_secs = 1;
    let store = S3BlobStore::new(&c).unwrap();
    let started = Instant::now();
    assert_unavailable("stat on a silent server", store.stat(&digest).await);
    assert_unavailable("read on a silent server", store.read(&digest, 0, 1).await);
    assert_unavailable(
        "upload_writer on a silent server",
        store.upload_writer("u2", 0).await,
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "three timed-out calls took {took:?}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn harness_moves_off_taken_ports() {
    // The S3 port taken: Garage runs on without S3; the harness must notice
    // and start over elsewhere.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let garage = Garage::start_at(Some(port - 1)).await;
    assert_ne!(garage.s3_port, port);
    let store = garage.node();
    let digest = Digest::sha256_of(b"moved");
    store
        .put(&digest, Bytes::from_static(b"moved"))
        .await
        .unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(5));
    drop(taken);
}
