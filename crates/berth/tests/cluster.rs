//! Three berth nodes sharing a real three-member etcd cluster for metadata
//! and one directory for blobs (as on CephFS or NFS), a real Garage, or a
//! real Ceph RGW, behind a real HAProxy doing plain round robin: no
//! node-local state is needed for correctness.

mod common;

use berth_test_kit::{ceph, etcd, garage, haproxy, Docker, Killed};
use common::{expect_status, sha256, Server, Who, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn node_config(etcd: &etcd::Cluster, prefix: &str, storage: &str) -> String {
    let endpoints = etcd_endpoints(etcd);
    format!(
        r#"
[metadata]
backend = "etcd"
endpoints = [{}]
prefix = "{prefix}"

{storage}
"#,
        endpoints.join(", "),
    )
}

fn shared_directory(blobs: &std::path::Path) -> String {
    format!(
        "[storage]\nbackend = \"filesystem\"\npath = \"{}\"\n",
        blobs.display()
    )
}

/// Where the nodes keep blobs, and what runs it (killed on drop).
enum Blobs {
    Shared(tempfile::TempDir),
    Garage(garage::Garage),
    Rgw(ceph::Ceph),
    /// One ceph-fuse mount of the same CephFS per node.
    CephFs(ceph::CephFs),
}

impl Blobs {
    /// The `[storage]` section of node `i`.
    fn storage_of(&self, i: usize) -> String {
        match self {
            Blobs::CephFs(fs) => shared_directory(&fs.mount(i).join("berth")),
            _ => self.storage(),
        }
    }

    fn storage(&self) -> String {
        match self {
            Blobs::CephFs(fs) => shared_directory(&fs.mount(0).join("berth")),
            Blobs::Shared(dir) => shared_directory(dir.path()),
            Blobs::Garage(g) => g.storage_toml("timeout_secs = 10\n"),
            Blobs::Rgw(c) => c.storage_toml("timeout_secs = 10\npart_size_mib = 5\n"),
        }
    }
}

struct Nodes {
    nodes: Vec<Server>,
    _blobs: Blobs,
    _etcd: etcd::Cluster,
}

/// A failing test shows what the nodes still running logged (at debug
/// level): a failure seen once under load can then be read, not guessed.
impl Drop for Nodes {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let log = node.log();
            let start = log.len().saturating_sub(20_000);
            let start = (start..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(log.len());
            eprintln!(
                "---- node {i} ({}), last of its log ----\n{}",
                node.addr,
                &log[start..]
            );
        }
    }
}

async fn three_nodes() -> Nodes {
    three_nodes_on(Blobs::Shared(tempfile::tempdir().unwrap())).await
}

async fn three_nodes_on(blobs: Blobs) -> Nodes {
    let etcd = etcd::Cluster::start().await;
    let prefix = format!("berth-{}/", std::process::id());
    let configs: Vec<String> = (0..3)
        .map(|i| node_config(&etcd, &prefix, &blobs.storage_of(i)))
        .collect();
    Nodes {
        nodes: start_nodes_each(&configs),
        _blobs: blobs,
        _etcd: etcd,
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_spans_three_nodes_and_every_node_serves_every_write() {
    let n = three_nodes().await;
    let c = common::admin_client();
    let data = common::noise(7, 5 * 1024 * 1024 + 17);
    let digest = sha256(&data);

    // POST on node 1, PATCH on node 2, PATCH on node 3, PUT on node 1.
    let r = c
        .post(n.nodes[0].url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = location(&r);
    let third = data.len() / 3;
    let r = c
        .patch(n.nodes[1].url(&loc))
        .header("Content-Range", format!("0-{}", third - 1))
        .body(data[..third].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let loc = location(&r);
    let r = c
        .patch(n.nodes[2].url(&loc))
        .header("Content-Range", format!("{third}-{}", 2 * third - 1))
        .body(data[third..2 * third].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = location(&r);
    // Node 3 knows the upload's progress that node 2 recorded.
    let status = c.get(n.nodes[2].url(&loc)).send().await.unwrap();
    assert_eq!(status.headers()["range"], format!("0-{}", 2 * third - 1));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(n.nodes[0].url(&format!("{loc}{sep}digest={digest}")))
        .body(data[2 * third..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    for node in &n.nodes {
        let r = c
            .get(node.url(&format!("/v2/team/app/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == data);
    }

    // A manifest pushed through node 2 is served by node 3 at once, and a
    // tag moved on node 3 is seen by node 1 at once.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let r = c
        .post(n.nodes[1].url(&format!(
            "/v2/team/app/blobs/uploads/?digest={}",
            sha256(&config)
        )))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let manifest = |layers: &[(&str, usize)]| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": layers.iter().map(|(d, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let m1 = manifest(&[(&digest, data.len())]);
    let m2 = manifest(&[]);
    for (node, body) in [(1, &m1), (2, &m2)] {
        let put = c
            .put(n.nodes[node].url("/v2/team/app/manifests/latest"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone());
        expect_status(put, 201).await;
        let reader = &n.nodes[(node + 1) % 3];
        let get = c
            .get(reader.url("/v2/team/app/manifests/latest"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json");
        let r = expect_status(get, 200).await;
        assert_eq!(r.text().await.unwrap(), *body, "a node served a stale tag");
    }

    // A token issued by one node is accepted by the others.
    let path = "/service/token?service=berth&scope=repository:team/app:pull";
    let admin = Who::Basic("admin", ADMIN_PASSWORD);
    let t: Value = n.nodes[0]
        .call(Method::GET, path, admin)
        .await
        .json()
        .await
        .unwrap();
    let token = t["token"].as_str().unwrap();
    for node in &n.nodes {
        let r = node
            .call(Method::GET, "/v2/team/app/tags/list", Who::Bearer(token))
            .await;
        assert_eq!(r.status(), 200);
    }
}

/// HAProxy on 127.0.0.1 in front of the nodes, killed on drop.
struct Haproxy {
    _process: Killed,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    async fn start(nodes: &[Server]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "    server berth{i} {} check inter 500ms fall 1 rise 1\n",
                    n.addr
                )
            })
            .collect();
        for attempt in 0..20u16 {
            let port = 20_000 + (std::process::id() as u16 % 500) * 20 + attempt;
            let cfg = dir.path().join("haproxy.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "defaults\n    mode http\n    timeout connect 2s\n    timeout client 5m\n    timeout server 5m\n    retries 3\n    option redispatch\n\
                     frontend registry\n    bind 127.0.0.1:{port}\n    default_backend berth\n\
                     backend berth\n    balance roundrobin\n    option httpchk GET /readyz\n{servers}"
                ),
            )
            .unwrap();
            let Some(process) = haproxy(&cfg, port) else {
                continue; // The port was taken: try another.
            };
            // Up once it has found the nodes healthy.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let ok = berth_net::client()
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    return Haproxy {
                        _process: process,
                        port,
                        _dir: dir,
                    };
                }
                assert!(Instant::now() < deadline, "haproxy did not come up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("no free port for haproxy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_pushes_and_pulls_through_round_robin_haproxy_while_a_node_is_killed_mid_push() {
    node_killed_mid_push(three_nodes().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_garage_a_node_killed_mid_push_loses_nothing() {
    node_killed_mid_push(three_nodes_on(Blobs::Garage(garage::Garage::start().await)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_ceph_rgw_a_node_killed_mid_push_loses_nothing() {
    node_killed_mid_push(three_nodes_on(Blobs::Rgw(ceph::Ceph::start().await)).await).await;
}

/// Each node on its own ceph-fuse mount of one CephFS, as on three hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_cephfs_a_node_killed_mid_push_loses_nothing() {
    let fs = ceph::Ceph::start().await.cephfs(3);
    std::fs::create_dir_all(fs.mount(0).join("berth")).unwrap();
    node_killed_mid_push(three_nodes_on(Blobs::CephFs(fs)).await).await;
}

/// Docker pushes three images through a round-robin HAProxy; one node is
/// killed with SIGKILL during the second push and an etcd member stops
/// later. Every image pushed pulls back with the same image ID.
async fn node_killed_mid_push(mut n: Nodes) {
    let lb = Haproxy::start(&n.nodes).await;
    let addr = format!("127.0.0.1:{}", lb.port);
    let tmp = tempfile::tempdir().unwrap();
    let docker = Docker::new(&tmp.path().join("docker"));
    docker.login(&addr, "admin", ADMIN_PASSWORD);

    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut images = Vec::new();
    for i in 0..3u64 {
        std::fs::write(
            root.join("data.bin"),
            common::noise(100 + i, 48 * 1024 * 1024),
        )
        .unwrap();
        let tar = tmp.path().join(format!("rootfs{i}.tar"));
        berth_test_kit::tar(&root, &tar);
        let image = format!("{addr}/cluster/app{i}:v1");
        docker.ok(&["import", tar.to_str().unwrap(), &image]);
        images.push(image);
    }
    let id_of = |image: &str| {
        let out = docker.run(&["image", "inspect", "--format", "{{.Id}}", image], None);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let ids: Vec<String> = images.iter().map(|i| id_of(i)).collect();

    docker.ok(&["push", &images[0]]);
    // A node is killed with SIGKILL while the second push is under way.
    // The push completes (docker's own retries, and at most a retry of the
    // command, go through the load balancer to the live nodes), and HAProxy's
    // health check takes the dead node out.
    let mut pushing = docker.spawn(&["push", &images[1]]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dead = n.nodes.remove(1);
    let _ = dead.kill();
    let first_try = pushing.wait().unwrap().success();
    for image in &images[1..] {
        let mut pushed = first_try && image == &images[1];
        for _ in 0..3 {
            if pushed {
                break;
            }
            pushed = docker.run(&["push", image], None).status.success();
        }
        assert!(pushed, "push of {image} failed after a node died");
    }
    // One etcd member stops: pushes and pulls go on with the other two.
    n._etcd.kill(0);
    let extra = format!("{addr}/cluster/app0:after-member-loss");
    docker.ok(&["tag", &images[0], &extra]);
    docker.ok(&["push", &extra]);
    docker.ok(&["rmi", &extra]);
    docker.ok(&["pull", &extra]);
    assert_eq!(id_of(&extra), ids[0]);
    let _ = docker.run(&["rmi", &extra], None);
    for (image, id) in images.iter().zip(&ids) {
        docker.ok(&["rmi", image]);
        docker.ok(&["pull", image]);
        assert_eq!(&id_of(image), id);
        let _ = docker.run(&["rmi", image], None);
    }
    // The stopped member rejoins (restart waits until it reports healthy).
    n._etcd.restart(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_etcd_quorum_and_recovers_by_itself() {
    let mut n = three_nodes().await;
    let http = berth_net::client();
    let node = &n.nodes[0];
    assert_eq!(status(&http, node, "/readyz").await, 200);
    n._etcd.kill(1);
    n._etcd.kill(2);
    // Without quorum: not ready, and a request needing metadata answers 503
    // (it must return, not hang: the client's own timeout is only a guard).
    let guard = guard();
    assert_eq!(status(&guard, node, "/readyz").await, 503);
    let r = guard
        .get(node.url("/v2/team/app/tags/list"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_unavailable(r).await;
    assert_eq!(status(&http, node, "/healthz").await, 200);
    // Quorum returns: the node is ready again without a restart.
    n._etcd.restart(1).await;
    n._etcd.restart(2).await;
    wait_ready(&guard, node, "the node did not recover").await;
}

/// A 503 with the registry error `UNAVAILABLE`.
async fn assert_unavailable(r: reqwest::Response) {
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
}

/// A client that gives up after a minute: a guard against hangs, not a
/// limit under test.
fn guard() -> reqwest::Client {
    berth_net::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The status of `GET path` on `node`.
async fn status(http: &reqwest::Client, node: &Server, path: &str) -> u16 {
    let r = http.get(node.url(path)).send().await.unwrap();
    r.status().as_u16()
}

/// Waits a minute at most for `node` to be ready; then fails with `why`.
async fn wait_ready(http: &reqwest::Client, node: &Server, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(http, node, "/readyz").await != 200 {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn cluster_status(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cluster", "status", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_status_lists_live_nodes_and_health() {
    let mut n = three_nodes().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("berth.toml");
    let prefix = format!("berth-{}/", std::process::id());
    std::fs::write(&config, node_config(&n._etcd, &prefix, &n._blobs.storage())).unwrap();
    let count = |out: &str| out.lines().filter(|l| l.contains(" listen ")).count();
    // Nodes register right after they start listening.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ok, out) = loop {
        let (ok, out) = cluster_status(&config);
        if count(&out) == 3 || Instant::now() > deadline {
            break (ok, out);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ok, "{out}");
    assert_eq!(count(&out), 3, "{out}");
    assert_eq!(
        out.matches(" healthy").count(),
        3 + 1,
        "three etcd members and storage: {out}"
    );
    for node in &n.nodes {
        assert!(out.contains(&node.addr), "{} missing from {out}", node.addr);
        // Listening on one address, a node advertises it to the others.
        let advertised = format!("advertise http://{} ", node.addr);
        assert!(out.contains(&advertised), "{advertised} missing from {out}");
    }
    // Each node reports its copy of the metadata (the watch cache).
    assert_eq!(out.matches("  cache: ").count(), 3, "{out}");
    assert!(!out.contains("cache: off"), "{out}");
    // A killed node drops out once its lease expires; a stopped etcd member
    // shows as unreachable and the status fails.
    let dead = n.nodes.remove(2);
    let dead_addr = dead.addr.clone();
    let _ = dead.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out) = cluster_status(&config);
        if !out.contains(&dead_addr) {
            assert_eq!(count(&out), 2, "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a dead node is still listed: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    n._etcd.kill(0);
    let (ok, out) = cluster_status(&config);
    assert!(!ok, "status succeeded with an etcd member down: {out}");
    assert!(out.contains("unreachable"), "{out}");
}

/// Pushes a one-layer OCI image through `node` and returns (manifest, layer).
async fn push_small_image(
    c: &reqwest::Client,
    node: &Server,
    repo: &str,
    tag: &str,
    seed: u64,
) -> (String, Vec<u8>) {
    let layer = common::noise(seed, 6 * 1024 * 1024 + 3);
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let manifest = common::push_image(c, node, repo, tag, &config, &[&layer]).await;
    (manifest, layer)
}

async fn assert_pulls(
    c: &reqwest::Client,
    node: &Server,
    repo: &str,
    tag: &str,
    manifest: &str,
    layer: &[u8],
) {
    let r = c
        .get(node.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), manifest);
    let r = c
        .get(node.url(&format!("/v2/{repo}/blobs/{}", sha256(layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.unwrap() == layer,
        "layer of {repo}:{tag} differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_etcd_and_garage_an_s3_outage_gives_clear_errors_then_recovers() {
    let etcd = etcd::Cluster::start().await;
    let mut s3 = garage::Garage::start().await;
    let config = etcd_s3_config(
        &etcd,
        &s3,
        &format!("berth-s3-{}/", std::process::id()),
        "",
        "",
    );
    let nodes = start_nodes(&config);
    let c = common::admin_client();
    let (m1, l1) = push_small_image(&c, &nodes[0], "s3/app", "v1", 1).await;
    assert_pulls(&c, &nodes[2], "s3/app", "v1", &m1, &l1).await;

    s3.stop();
    // Clear errors, quickly: 503 UNAVAILABLE, and the nodes report not ready.
    let blob = common::noise(2, 1024);
    let guard = guard();
    let r = guard
        .post(nodes[1].url(&format!(
            "/v2/s3/app/blobs/uploads/?digest={}",
            sha256(&blob)
        )))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_unavailable(r).await;
    let r = guard
        .get(nodes[1].url(&format!("/v2/s3/app/blobs/{}", sha256(&l1))))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a pull during the outage");
    assert_eq!(status(&guard, &nodes[0], "/readyz").await, 503);
    // The blob refused during the outage is not visible.
    let r = c
        .head(nodes[0].url(&format!("/v2/s3/app/blobs/{}", sha256(&blob))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    s3.restart();
    // Recovery without restarting berth: pushes work again, and what was
    // acknowledged before the outage pulls back identical.
    wait_ready(
        &guard,
        &nodes[0],
        "berth did not recover after S3 came back",
    )
    .await;
    let (m2, l2) = push_small_image(&c, &nodes[1], "s3/app", "v2", 3).await;
    for node in &nodes {
        assert_pulls(&c, node, "s3/app", "v1", &m1, &l1).await;
        assert_pulls(&c, node, "s3/app", "v2", &m2, &l2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_on_etcd_and_garage_runs_once_at_a_time() {
    use common::oci::{Client, Image};
    let etcd = etcd::Cluster::start().await;
    let s3 = garage::Garage::start().await;
    let prefix = format!("gc-{}/", std::process::id());
    let config = etcd_s3_config(
        &etcd,
        &s3,
        &format!("berth-{prefix}"),
        &prefix,
        "[gc]\ngrace_period = \"0s\"\ninterval = \"0s\"",
    );
    let nodes = start_nodes(&config);
    let client = |i: usize| Client::new(&nodes[i].url(""), "admin", ADMIN_PASSWORD);
    let keep = Image::new("keep", vec![common::noise(1, 6000)], None);
    let drop_: Vec<Image> = (0..30)
        .map(|i| {
            Image::new(
                &format!("drop{i}"),
                vec![common::noise(100 + i, 2000)],
                None,
            )
        })
        .collect();
    client(0).push("gc/app", "keep", &keep).await.unwrap();
    for (i, image) in drop_.iter().enumerate() {
        client(i % 3)
            .push("gc/app", &format!("d{i}"), image)
            .await
            .unwrap();
        assert_eq!(
            client((i + 1) % 3)
                .delete(&format!("/v2/gc/app/manifests/d{i}"))
                .await,
            202
        );
    }

    // Two nodes asked at once: one runs, the other waits its turn or is
    // told one is running; nothing is deleted twice.
    let (c1, c2) = (client(1), client(2));
    let (a, b) = tokio::join!(c1.gc(false), c2.gc(false));
    let mut deleted = 0;
    for (status, report) in [&a, &b] {
        assert!(*status == 200 || *status == 409, "{status} {report}");
        deleted += report["blobs_deleted"].as_u64().unwrap_or(0);
    }
    assert!(a.0 == 200 || b.0 == 200);
    // Each dropped image had a layer and a config of its own.
    assert_eq!(deleted, 60, "{a:?} {b:?}");

    // Gone from the bucket, in batches; what is tagged is intact.
    let mut config_s3 = s3.config();
    config_s3.prefix = prefix.clone();
    let prefixed = berth_storage::S3BlobStore::new(&config_s3).unwrap();
    let keys = prefixed
        .client()
        .list_keys(&format!("{prefix}blobs/"))
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for i in 0..3 {
        client(i).assert_pulls("gc/app", "keep", &keep).await;
    }
    let (_, history) = client(0).get("/api/v1/gc").await;
    let history: Value = serde_json::from_slice(&history).unwrap();
    assert!(!history["runs"].as_array().unwrap().is_empty(), "{history}");

    // The offline check runs against the cluster's backends while it serves.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, &config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["fsck", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 problems"), "{text}");
}

/// A node configuration on `etcd` and Garage: metadata under `key_prefix`,
/// blobs under `s3_prefix` in the bucket, then `extra` TOML.
fn etcd_s3_config(
    etcd: &etcd::Cluster,
    s3: &garage::Garage,
    key_prefix: &str,
    s3_prefix: &str,
    extra: &str,
) -> String {
    let endpoints = etcd_endpoints(etcd);
    format!(
        "[metadata]\nbackend = \"etcd\"\nendpoints = [{}]\nprefix = \"{key_prefix}\"\n\n{}",
        endpoints.join(", "),
        s3.storage_toml(&format!(
            "prefix = \"{s3_prefix}\"\ntimeout_secs = 5\n{extra}\n"
        ))
    )
}

/// Three nodes started together (the administrator is created once).
fn start_nodes(config: &str) -> Vec<Server> {
    start_nodes_each(&[config, config, config].map(str::to_owned))
}

/// One node per configuration, started together.
fn start_nodes_each(configs: &[String]) -> Vec<Server> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = configs
            .iter()
            .map(|config| sc.spawn(move || Server::start_with_config(config)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The members' client URLs as TOML strings.
fn etcd_endpoints(etcd: &etcd::Cluster) -> Vec<String> {
    (0..3)
        .map(|i| format!("\"{}\"", etcd.endpoint(i)))
        .collect()
}

/// Fifty clients spread over three nodes ask a proxy project for the same
/// cold 256 MiB layer at once, the upstream (Distribution) slowed to
/// 64 MiB/s by a relay that counts what it passed on: the upstream sends
/// the layer once for the whole cluster, every client gets every byte,
/// and every client's first bytes come before the upstream has sent the
/// whole layer, on the fetching node and on the two that read its fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_layer_pulled_on_three_nodes_is_fetched_once_and_streamed_to_all() {
    use berth_test_kit::registry_client::push_image;
    use berth_test_kit::relay::{Faults, Relay};
    use futures_util::StreamExt;
    use sha2::Digest as _;
    let n = three_nodes().await;
    let registry = berth_test_kit::distribution::Distribution::start();
    let endpoint = berth_registry_client::Endpoint::new(registry.url.clone());
    let up = berth_registry_client::Client::new(&endpoint).unwrap();
    let layer = common::noise(21, 256 << 20);
    let len = layer.len() as u64;
    let name = berth_oci::RepoName::parse("big/app").unwrap();
    let v1 = berth_oci::Reference::parse("v1").unwrap();
    push_image(&up, &name, &v1, b"{}", &[&layer]).await;
    let digest = sha256(&layer);
    drop(layer);
    let faults = Faults {
        bytes_per_sec: Some(64 << 20),
        ..Faults::default()
    };
    let relay = std::sync::Arc::new(Relay::start(&registry.addr, faults).await);

    proxy_hub(&n.nodes[0], &format!("http://{}", relay.addr)).await;

    let pulls = (0..50).map(|i| {
        let url = n.nodes[i % 3].url(&format!("/v2/hub/big/app/blobs/{digest}"));
        let relay = relay.clone();
        tokio::spawn(async move {
            let r = common::admin_client().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            if status != 200 {
                return (status, r.text().await.unwrap_or_default(), u64::MAX);
            }
            let mut body = r.bytes_stream();
            let mut hash = sha2::Sha256::new();
            let mut carried_at_first = None;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                carried_at_first.get_or_insert_with(|| relay.carried());
                hash.update(&chunk);
            }
            let got = format!("sha256:{}", berth_oci::digest::hex(&hash.finalize()));
            (status, got, carried_at_first.unwrap_or(u64::MAX))
        })
    });
    for (i, pull) in futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .enumerate()
    {
        let (status, got, carried) = pull.unwrap();
        assert_eq!((status, &got), (200, &digest), "client {i}");
        assert!(
            carried < len,
            "client {i} (node {}) got its first bytes when the upstream had sent {carried} of {len}",
            i % 3
        );
    }
    let path = format!("GET /v2/big/app/blobs/{digest} 200");
    let gets = registry.requests().iter().filter(|r| **r == path).count();
    assert_eq!(gets, 1, "{:?}", registry.requests());

    // The route the nodes read each other's fetches by is theirs alone.
    let url = n.nodes[0].url(&format!("/internal/v1/proxy/fetches/{digest}"));
    for auth in [None, Some("Berth-Peer guess"), Some("Berth-Peer ")] {
        let mut req = common::admin_client().get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
    }
}

/// The node fetching a proxied layer dies mid-fetch (the upstream is
/// slowed so that it is still fetching): the clients of the other nodes,
/// which were reading its fetch, get every byte once another node takes
/// the fetch over (the lock's lease ends with its node) and asks the
/// upstream for the rest only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxied_fetch_whose_node_dies_is_taken_over() {
    use berth_test_kit::registry_client::push_image;
    use berth_test_kit::relay::{Faults, Relay};
    let mut n = three_nodes().await;
    let registry = berth_test_kit::distribution::Distribution::start();
    let up = berth_registry_client::Client::new(&berth_registry_client::Endpoint::new(
        registry.url.clone(),
    ))
    .unwrap();
    let layer = common::noise(22, 12 << 20);
    let name = berth_oci::RepoName::parse("slow/app").unwrap();
    let v1 = berth_oci::Reference::parse("v1").unwrap();
    push_image(&up, &name, &v1, b"{}", &[&layer]).await;
    // 4 MiB/s: the layer takes three seconds.
    let faults = Faults {
        bytes_per_sec: Some(4 << 20),
        ..Faults::default()
    };
    let relay = Relay::start(&registry.addr, faults).await;

    proxy_hub(&n.nodes[0], &format!("http://{}", relay.addr)).await;

    let digest = sha256(&layer);
    let get = |node: &Server| {
        let url = node.url(&format!("/v2/hub/slow/app/blobs/{digest}"));
        tokio::spawn(async move {
            let r = common::admin_client().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.bytes().await.map(|b| sha256(&b)).unwrap_or_default();
            (status, body)
        })
    };
    // Node 0 starts the fetch; the others wait for it.
    let doomed = get(&n.nodes[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: Vec<_> = (0..4).map(|i| get(&n.nodes[1 + i % 2])).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = n.nodes.remove(0).kill();
    let _ = doomed.await;
    for w in futures_util::future::join_all(waiting).await {
        assert_eq!(w.unwrap(), (200, digest.clone()));
    }
    // The node that took over asked for the bytes it had not read from
    // the dead one (a Range: 206), or for all of them if it had none.
    let path = format!("GET /v2/slow/app/blobs/{digest} ");
    let gets: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(&path))
        .collect();
    assert_eq!(
        gets.len(),
        2,
        "the dead node's fetch and the one that took over: {gets:?}"
    );
    assert!(gets[0].ends_with(" 200"), "{gets:?}");
    assert!(
        gets[1].ends_with(" 206"),
        "the survivors had read part of the dead node's fetch: {gets:?}"
    );
}

/// Makes `hub` on `node` (of the cluster) a proxy project of an endpoint
/// at `url`, without credentials.
async fn proxy_hub(node: &Server, url: &str) {
    common::create_project(node, "hub", false).await;
    let admin = common::basic("admin", ADMIN_PASSWORD);
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/replication/endpoints",
            json!({"name": "up", "url": url}),
        ),
        (
            Method::PUT,
            "/api/v1/projects/hub/proxy",
            json!({"endpoint": "up"}),
        ),
    ] {
        let r = node
            .send_json(method, path, Some(&admin), Some(body.to_string()))
            .await;
        assert!(r.status().is_success(), "{path}: {:?}", r.text().await);
    }
}
