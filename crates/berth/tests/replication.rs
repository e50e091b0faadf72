//! Replication against the real things: the berth binary on both ends or
//! CNCF Distribution (Debian's `docker-registry` 2.8, htpasswd Basic auth)
//! on the other. Each test drives the management API as an administrator
//! would and checks the destination byte by byte.

mod common;

use berth_oci::{Digest, Reference, RepoName};
use berth_test_kit::distribution::{Distribution, Setup};
use berth_test_kit::server::oci::{self, Image, INDEX, MANIFEST};
use berth_test_kit::webdriver::Browser;
use common::{Server, ADMIN_PASSWORD};
use futures_util::TryStreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const USER: &str = "repl";
const PASSWORD: &str = "repl-secret-1";

fn dist() -> Distribution {
    Distribution::start_with(Setup::default().user(USER, PASSWORD))
}

/// The management API as admin: status and JSON body.
async fn api(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let admin = common::basic("admin", ADMIN_PASSWORD);
    let body = body.map(|b| b.to_string());
    let r = server.send_json(method, path, Some(&admin), body).await;
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn ok(server: &Server, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, v) = api(server, method.clone(), path, body).await;
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

async fn endpoint(server: &Server, name: &str, url: &str, kind: &str, user: &str, secret: &str) {
    let body = json!({"name": name, "url": url, "kind": kind, "username": user, "secret": secret});
    ok(
        server,
        Method::POST,
        "/api/v1/replication/endpoints",
        Some(body),
    )
    .await;
}

/// Endpoint `dist`: `registry` with the test's htpasswd user.
async fn dist_endpoint(server: &Server, registry: &Distribution) {
    endpoint(
        server,
        "dist",
        &registry.url,
        "distribution",
        USER,
        PASSWORD,
    )
    .await;
}

async fn policy(server: &Server, body: Value) {
    ok(
        server,
        Method::POST,
        "/api/v1/replication/policies",
        Some(body),
    )
    .await;
}

/// Polls `check` every 200 ms until it is true, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for execution `id` to end; its detail.
async fn finished(server: &Server, id: &str, limit: Duration) -> Value {
    let path = format!("/api/v1/replication/executions/{id}");
    let start = Instant::now();
    loop {
        let d = ok(server, Method::GET, &path, None).await;
        if !matches!(d["status"].as_str(), Some("running" | "pending")) {
            return d;
        }
        assert!(start.elapsed() < limit, "execution {id} still {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(server: &Server, policy: &str) -> String {
    let path = format!("/api/v1/replication/policies/{policy}/executions");
    let e = ok(server, Method::POST, &path, None).await;
    e["id"].as_str().unwrap().to_owned()
}

fn berth_client(server: &Server) -> oci::Client {
    oci::Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
}

/// A fresh server with the private project `project`.
async fn with_project(project: &str) -> Server {
    let server = Server::start();
    common::create_project(&server, project, false).await;
    server
}

/// A fresh server with the private project `project`, and `registry` as
/// its replication endpoint `dist`.
async fn with_dist(project: &str, registry: &Distribution) -> Server {
    let server = with_project(project).await;
    dist_endpoint(&server, registry).await;
    server
}

/// Pushes `image` as `repo:reference` to `server`, as the administrator.
async fn push_local(server: &Server, repo: &str, reference: &str, image: &Image) {
    berth_client(server)
        .push(repo, reference, image)
        .await
        .unwrap();
}

/// Tests the endpoint `name`, which must answer ok; the report.
async fn test_endpoint(server: &Server, name: &str) -> Value {
    let path = format!("/api/v1/replication/endpoints/{name}/test");
    let report = ok(server, Method::POST, &path, None).await;
    assert_eq!(report["ok"], true, "{report}");
    report
}

/// berth's outbound client of the Distribution registry: it sends the
/// `Accept` header Distribution needs to serve OCI manifests at all.
fn remote(d: &Distribution) -> berth_registry_client::Client {
    let endpoint = berth_registry_client::Endpoint::new(d.url.clone())
        .with_credentials(berth_registry_client::Credentials::new(USER, PASSWORD));
    berth_registry_client::Client::new(&endpoint).unwrap()
}

fn name(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

/// The manifest `reference` of `repo` at Distribution, if there.
async fn remote_manifest(
    c: &berth_registry_client::Client,
    repo: &str,
    reference: &str,
) -> Option<Vec<u8>> {
    match c
        .manifest_get(&name(repo), &Reference::parse(reference).unwrap())
        .await
    {
        Ok(m) => Some(m.bytes.to_vec()),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("{repo}:{reference}: {e}"),
    }
}

/// Asserts Distribution serves `image` as `repo:reference`, every byte.
async fn assert_remote(
    c: &berth_registry_client::Client,
    repo: &str,
    reference: &str,
    image: &Image,
) {
    let got = remote_manifest(c, repo, reference).await;
    assert_eq!(
        got.as_deref(),
        Some(&image.manifest[..]),
        "{repo}:{reference}"
    );
    for blob in image.blobs() {
        let d: Digest = common::sha256(blob).parse().unwrap();
        let stream = c.blob_get(&name(repo), &d, 0).await.unwrap();
        let parts: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        assert!(parts.concat() == *blob, "blob {d} of {repo}:{reference}");
    }
}

/// Pushes `image` to Distribution as `reference` (a tag or its digest).
async fn push_remote(
    c: &berth_registry_client::Client,
    repo: &str,
    reference: &str,
    image: &Image,
) {
    for blob in image.blobs() {
        let d: Digest = common::sha256(blob).parse().unwrap();
        let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
            blob.clone(),
        ))]);
        c.blob_put(&name(repo), &d, blob.len() as u64, body)
            .await
            .unwrap();
    }
    c.manifest_put(
        &name(repo),
        &Reference::parse(reference).unwrap(),
        MANIFEST,
        bytes::Bytes::from(image.manifest.clone()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_push_replicates_to_distribution_and_so_do_deletes() {
    let registry = dist();
    let server = with_dist("lib", &registry).await;
    // The secret is never shown.
    let shown = ok(&server, Method::GET, "/api/v1/replication/endpoints", None).await;
    assert!(!shown.to_string().contains(PASSWORD), "{shown}");
    assert_eq!(shown[0]["has_secret"], true);
    test_endpoint(&server, "dist").await;
    policy(
        &server,
        json!({
            "name": "to-dist", "direction": "push", "endpoint": "dist",
            "filters": {"repository": "lib/**"},
            "triggers": {"event": true}, "replicate_deletes": true,
        }),
    )
    .await;

    let b = berth_client(&server);
    let d = remote(&registry);
    let v1 = Image::new(
        "v1",
        vec![b"layer-one".to_vec(), b"layer-shared".to_vec()],
        None,
    );
    let v2 = Image::new(
        "v2",
        vec![b"layer-two".to_vec(), b"layer-shared".to_vec()],
        None,
    );
    b.push("lib/app", "v1", &v1).await.unwrap();
    b.push("lib/app", "v2", &v2).await.unwrap();
    // Outside the filter: not copied.
    common::create_project(&server, "other", false).await;
    b.push("other/app", "v1", &v1).await.unwrap();

    for tag in ["v1", "v2"] {
        let start = Instant::now();
        while remote_manifest(&d, "lib/app", tag).await.is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let execs = ok(&server, Method::GET, "/api/v1/replication/executions", None).await;
                let mut details = Vec::new();
                for e in execs.as_array().unwrap() {
                    let path = format!(
                        "/api/v1/replication/executions/{}",
                        e["id"].as_str().unwrap()
                    );
                    details.push(ok(&server, Method::GET, &path, None).await);
                }
                panic!("lib/app:{tag} never reached Distribution: {details:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_remote(&d, "lib/app", "v1", &v1).await;
    assert_remote(&d, "lib/app", "v2", &v2).await;
    let execs = ok(
        &server,
        Method::GET,
        "/api/v1/replication/executions?policy=to-dist",
        None,
    )
    .await;
    let execs = execs.as_array().unwrap();
    assert_eq!(execs.len(), 2, "{execs:?}");
    for e in execs {
        let e = finished(&server, e["id"].as_str().unwrap(), Duration::from_secs(30)).await;
        assert_eq!(e["status"], "succeeded", "{e}");
        assert_eq!(e["trigger"], "event");
    }

    // A tag delete: Distribution cannot delete a tag alone, so the
    // manifest it named goes (it has no other tag there).
    assert_eq!(b.delete("/v2/lib/app/manifests/v2").await, 202);
    eventually(
        "v2 deleted at Distribution",
        Duration::from_secs(30),
        || async { remote_manifest(&d, "lib/app", "v2").await.is_none() },
    )
    .await;
    // A manifest delete by digest.
    assert_eq!(
        b.delete(&format!("/v2/lib/app/manifests/{}", v1.digest))
            .await,
        202
    );
    eventually(
        "v1 deleted at Distribution",
        Duration::from_secs(30),
        || async { remote_manifest(&d, "lib/app", &v1.digest).await.is_none() },
    )
    .await;
    assert!(remote_manifest(&d, "other/app", "v1").await.is_none());
}

#[tokio::test]
async fn a_pull_brings_an_index_with_every_platform_and_its_referrer() {
    let registry = dist();
    let d = remote(&registry);
    let amd = Image::new("amd64", vec![b"amd64-layer".to_vec()], None);
    let arm = Image::new("arm64", vec![b"arm64-layer".to_vec()], None);
    push_remote(&d, "team/app", &amd.digest, &amd).await;
    push_remote(&d, "team/app", &arm.digest, &arm).await;
    let index = oci::index(&[&amd, &arm]);
    let index_digest = common::sha256(&index);
    d.manifest_put(
        &name("team/app"),
        &Reference::parse("multi").unwrap(),
        INDEX,
        bytes::Bytes::from(index.clone()),
    )
    .await
    .unwrap();
    // A signature of the index. Distribution has no referrers API: the
    // client also writes the tag schema's index (`sha256-<hex>`).
    let sig = Image::new(
        "sig",
        vec![b"signature-bytes".to_vec()],
        Some((&index_digest, index.len())),
    );
    push_remote(&d, "team/app", &sig.digest, &sig).await;
    assert!(
        remote_manifest(&d, "team/app", &format!("sha256-{}", &index_digest[7..]))
            .await
            .is_some()
    );

    let server = with_dist("mirror", &registry).await;
    policy(
        &server,
        json!({
            "name": "from-dist", "direction": "pull", "endpoint": "dist",
            "filters": {"repository": "team/**", "tag": "multi"},
            "namespace": {"mode": "replace", "with": "mirror"},
        }),
    )
    .await;
    let id = run(&server, "from-dist").await;
    let e = finished(&server, &id, Duration::from_secs(60)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    // One task: the tag schema's `sha256-...` tag is no artifact of its own.
    assert_eq!(e["tasks"], 1, "{e}");

    let b = berth_client(&server);
    let (s, got) = b.get("/v2/mirror/app/manifests/multi").await;
    assert_eq!(s, 200);
    assert_eq!(got, index, "the index, byte-identical");
    b.assert_pulls("mirror/app", &amd.digest, &amd).await;
    b.assert_pulls("mirror/app", &arm.digest, &arm).await;
    b.assert_pulls("mirror/app", &sig.digest, &sig).await;
    let (s, refs) = b
        .get(&format!("/v2/mirror/app/referrers/{index_digest}"))
        .await;
    assert_eq!(s, 200);
    let refs: Value = serde_json::from_slice(&refs).unwrap();
    assert_eq!(refs["manifests"][0]["digest"], sig.digest, "{refs}");

    // Again: nothing to send, still a success.
    let id = run(&server, "from-dist").await;
    let e = finished(&server, &id, Duration::from_secs(60)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["bytes"], 0, "{e}");
}

#[tokio::test]
async fn berth_to_berth_with_token_auth() {
    let source = with_project("lib").await;
    let target = with_project("lib").await;
    let img = Image::new("b2b", vec![b"b2b-layer".to_vec()], None);
    push_local(&source, "lib/tool", "1.0", &img).await;
    endpoint(
        &source,
        "peer",
        &target.url(""),
        "berth",
        "admin",
        ADMIN_PASSWORD,
    )
    .await;
    let t = test_endpoint(&source, "peer").await;
    assert_eq!(
        t["auth"], "bearer",
        "berth answers with a token challenge: {t}"
    );
    assert!(
        t["realm"].as_str().unwrap().ends_with("/service/token"),
        "{t}"
    );
    policy(
        &source,
        json!({"name": "to-peer", "direction": "push", "endpoint": "peer"}),
    )
    .await;
    let id = run(&source, "to-peer").await;
    let e = finished(&source, &id, Duration::from_secs(60)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    berth_client(&target)
        .assert_pulls("lib/tool", "1.0", &img)
        .await;
}

#[tokio::test]
async fn a_stop_stops_a_long_transfer() {
    let registry = dist();
    let server = with_dist("big", &registry).await;
    // 8 MiB at 256 KiB/s: half a minute, unless stopped.
    let layer = common::noise(7, 8 << 20);
    let img = Image::new("big", vec![layer], None);
    push_local(&server, "big/blob", "v1", &img).await;
    policy(
        &server,
        json!({
            "name": "slow", "direction": "push", "endpoint": "dist", "bandwidth_kib": 256,
        }),
    )
    .await;
    let id = run(&server, "slow").await;
    let path = format!("/api/v1/replication/executions/{id}");
    eventually("bytes flowing", Duration::from_secs(30), || async {
        let d = ok(&server, Method::GET, &path, None).await;
        d["bytes"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let stopped_at = Instant::now();
    ok(&server, Method::POST, &format!("{path}/stop"), None).await;
    let e = finished(&server, &id, Duration::from_secs(15)).await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(e["status"], "stopped", "{e}");
    assert_eq!(e["task_list"][0]["status"], "stopped", "{e}");
    assert!(e["bytes"].as_u64().unwrap() < 8 << 20, "{e}");
    assert!(remote_manifest(&remote(&registry), "big/blob", "v1")
        .await
        .is_none());
}

#[tokio::test]
async fn a_cron_pull_fires_on_its_minute() {
    let registry = dist();
    let d = remote(&registry);
    let img = Image::new("cron", vec![b"cron-layer".to_vec()], None);
    push_remote(&d, "nightly/app", "v1", &img).await;
    let server = with_dist("nightly", &registry).await;
    policy(
        &server,
        json!({
            "name": "every-minute", "direction": "pull", "endpoint": "dist",
            "triggers": {"cron": "* * * * *"},
        }),
    )
    .await;
    // The next minute boundary, plus the scheduler's 5-second tick.
    eventually("a cron execution", Duration::from_secs(80), || async {
        let list = ok(&server, Method::GET, "/api/v1/replication/executions", None).await;
        list.as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    let list = ok(&server, Method::GET, "/api/v1/replication/executions", None).await;
    let e = &list[0];
    assert_eq!(e["trigger"], "cron", "{e}");
    let e = finished(&server, e["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    berth_client(&server)
        .assert_pulls("nightly/app", "v1", &img)
        .await;
}

/// Three nodes on a real etcd cluster and one blob directory: the node
/// running a task is killed mid-transfer, its lock's lease expires, and
/// another node takes the task up and completes the execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_whose_node_dies_completes_on_another_node() {
    use berth_test_kit::etcd;
    let registry = dist();
    let etcd = etcd::Cluster::start().await;
    let blobs = tempfile::tempdir().unwrap();
    let key = blobs.path().join("replication.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let endpoints: Vec<String> = (0..3)
        .map(|i| format!("\"{}\"", etcd.endpoint(i)))
        .collect();
    let config = format!(
        "[metadata]\nbackend = \"etcd\"\nendpoints = [{}]\nprefix = \"berth-repl-{}/\"\n\n\
         [storage]\nbackend = \"filesystem\"\npath = \"{}\"\n\n\
         [replication]\nsecret_key_file = \"{}\"\n",
        endpoints.join(", "),
        std::process::id(),
        blobs.path().join("blobs").display(),
        key.display(),
    );
    let mut nodes: Vec<Option<Server>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| sc.spawn(|| Server::start_with_config(&config)))
            .collect();
        hs.into_iter().map(|h| Some(h.join().unwrap())).collect()
    });
    let first = nodes[0].as_ref().unwrap();
    common::create_project(first, "big", false).await;
    // 4 MiB at 256 KiB/s: 16 s a run, so the kill lands mid-transfer.
    let img = Image::new("cluster", vec![common::noise(11, 4 << 20)], None);
    berth_client(first)
        .push("big/app", "v1", &img)
        .await
        .unwrap();
    endpoint(first, "dist", &registry.url, "distribution", USER, PASSWORD).await;
    policy(
        first,
        json!({
            "name": "slow", "direction": "push", "endpoint": "dist", "bandwidth_kib": 256,
        }),
    )
    .await;
    let id = run(first, "slow").await;
    let path = format!("/api/v1/replication/executions/{id}");
    let start = Instant::now();
    let runner = loop {
        let d = ok(first, Method::GET, &path, None).await;
        let t = &d["task_list"][0];
        if t["status"] == "running" && t["bytes"].as_u64().unwrap_or(0) > 0 {
            break t["node"].as_str().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never running: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let victim = nodes
        .iter()
        .position(|n| {
            n.as_ref()
                .is_some_and(|n| runner.ends_with(&format!("-{}", n.pid())))
        })
        .unwrap_or_else(|| panic!("no node runs {runner}"));
    nodes[victim].take().unwrap().kill();
    let survivor = nodes.iter().flatten().next().unwrap();
    // The lease (15 s) expires, another node runs the task again (16 s).
    let e = finished(survivor, &id, Duration::from_secs(90)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    let t = &e["task_list"][0];
    assert_ne!(t["node"].as_str().unwrap(), runner, "{e}");
    assert!(t["attempts"].as_u64().unwrap() >= 2, "{e}");
    assert_remote(&remote(&registry), "big/app", "v1", &img).await;
}

/// The replication pages in a real browser (headless Chromium through
/// WebDriver): an endpoint added through its form and its connection
/// tested; a policy added, changed (a bad cron refused, the policy kept)
/// and run; its execution followed to the end; both deleted. The secret
/// is never on a page.
#[tokio::test]
async fn the_ui_adds_tests_runs_and_deletes_endpoints_and_policies() {
    let registry = dist();
    let server = with_project("web").await;
    let img = Image::new("web", vec![b"web-layer".to_vec()], None);
    let beta = Image::new("web", vec![b"web-beta-layer".to_vec()], None);
    push_local(&server, "web/app", "v1", &img).await;
    push_local(&server, "web/app", "beta", &beta).await;

    let browser = Browser::start(1280, 900).await;
    browser.goto(&server.url("/ui/login")).await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("form.stack button[type=submit]").await;
    browser.find("form.logout").await;
    let source = || async {
        browser
            .script("return document.documentElement.outerHTML", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let notice = |text: &'static str| {
        let browser = &browser;
        async move {
            let shown = browser.text("p.notice").await;
            assert!(shown.contains(text), "{shown}");
        }
    };

    // An endpoint, through the form.
    browser.goto(&server.url("/ui/replication")).await;
    browser
        .click("a[href='/ui/replication/new/endpoint']")
        .await;
    browser.type_into("#endpoint-name", "dist").await;
    browser.type_into("#endpoint-url", &registry.url).await;
    browser
        .click("#endpoint-kind option[value=distribution]")
        .await;
    browser.type_into("#endpoint-username", USER).await;
    browser.type_into("#endpoint-secret", PASSWORD).await;
    browser.click("#endpoint-form button[type=submit]").await;
    notice("endpoint was saved").await;
    assert!(
        !source().await.contains(PASSWORD),
        "the secret is never shown"
    );
    let e = ok(
        &server,
        Method::GET,
        "/api/v1/replication/endpoints/dist",
        None,
    )
    .await;
    assert_eq!(
        (&e["url"], &e["username"], &e["has_secret"]),
        (&json!(registry.url), &json!(USER), &json!(true)),
        "{e}"
    );

    // Its connection, tested with the stored secret.
    browser
        .click("form[action='/ui/replication/endpoints/dist/test'] button")
        .await;
    browser.find("#endpoint-test[data-ok=true]").await;
    assert!(browser.text("#endpoint-test").await.contains("Connected"));

    // A policy, through the form; then changed.
    browser.goto(&server.url("/ui/replication")).await;
    browser.click("a[href='/ui/replication/new/policy']").await;
    browser.type_into("#policy-name", "web-push").await;
    browser.click("#policy-direction option[value=push]").await;
    browser.click("#policy-endpoint option[value=dist]").await;
    browser.type_into("#policy-repository", "web/**").await;
    browser.type_into("#policy-tag", "v*").await;
    browser.click("#policy-form button[type=submit]").await;
    notice("replication policy was saved").await;
    let path = "/api/v1/replication/policies/web-push";
    let p = ok(&server, Method::GET, path, None).await;
    assert_eq!(
        (&p["direction"], &p["endpoint"], &p["filters"]["tag"]),
        (&json!("push"), &json!("dist"), &json!("v*")),
        "{p}"
    );
    assert_eq!(
        (&p["enabled"], &p["overwrite"]),
        (&json!(true), &json!(true))
    );

    // From the policy's page afresh: the page the first save led to shows
    // the same notice, which the second save's could not be told from.
    browser
        .goto(&server.url("/ui/replication/policies/web-push"))
        .await;
    assert!(browser.page_text().await.contains("web-push"));
    browser.type_into("#policy-tag", "v1").await;
    browser.type_into("#policy-cron", "0 3 * * *").await;
    browser.click("#policy-form button[type=submit]").await;
    notice("replication policy was saved").await;
    let p = ok(&server, Method::GET, path, None).await;
    assert_eq!(
        (&p["filters"]["tag"], &p["triggers"]["cron"]),
        (&json!("v1"), &json!("0 3 * * *")),
        "{p}"
    );

    // A schedule that is not one is refused, and the policy is unchanged.
    browser.type_into("#policy-cron", "every night").await;
    browser.click("#policy-form button[type=submit]").await;
    let refused = browser.text("p.error").await;
    assert!(!refused.is_empty(), "an error is shown");
    assert_eq!(ok(&server, Method::GET, path, None).await, p);

    // Run now: the execution's page, followed to the end.
    browser
        .goto(&server.url("/ui/replication/policies/web-push"))
        .await;
    browser
        .click("form[action='/ui/replication/policies/web-push/run'] button")
        .await;
    browser.find("#execution-status").await;
    let url = browser.current_url().await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    assert!(url.contains("/ui/replication/executions/"), "{url}");
    let e = finished(&server, &id, Duration::from_secs(60)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    browser.goto(&url).await;
    assert_eq!(browser.text("#execution-status").await, "succeeded");
    assert!(browser.page_text().await.contains("web/app@"));
    let c = remote(&registry);
    assert_remote(&c, "web/app", "v1", &img).await;
    assert_eq!(
        remote_manifest(&c, "web/app", "beta").await,
        None,
        "filtered out"
    );

    // Both deleted from the list, after a confirmation.
    for (row, text, resource) in [
        (
            "tr[data-policy='web-push']",
            "replication policy was deleted",
            path,
        ),
        (
            "tr[data-endpoint='dist']",
            "endpoint was deleted",
            "/api/v1/replication/endpoints/dist",
        ),
    ] {
        browser.goto(&server.url("/ui/replication")).await;
        browser.click(&format!("{row} button.danger")).await;
        browser.accept_prompt().await;
        notice(text).await;
        assert_eq!(browser.count(row).await, 0, "{row}");
        let (status, _) = api(&server, Method::GET, resource, None).await;
        assert_eq!(status, 404, "{resource}");
    }
}

/// `berth replication ...` as a script would use it.
fn cli(server: &Server, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("replication")
        .args(args)
        .env("BERTH_URL", server.url(""))
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_cli_adds_endpoints_and_policies_and_runs_them() {
    let registry = dist();
    let server = with_project("cli").await;
    let img = Image::new("cli", vec![b"cli-layer".to_vec()], None);
    push_local(&server, "cli/app", "v1", &img).await;
    let (ok_, out) = cli(
        &server,
        &[
            "endpoints",
            "add",
            "dist",
            "--endpoint-url",
            &registry.url,
            "--endpoint-username",
            USER,
        ],
        &[("BERTH_ENDPOINT_SECRET", PASSWORD)],
    );
    assert!(ok_, "{out}");
    let (ok_, out) = cli(&server, &["endpoints", "test", "dist"], &[]);
    assert!(ok_ && out.contains("ok (auth basic)"), "{out}");
    let (ok_, out) = cli(&server, &["endpoints", "list"], &[]);
    assert!(
        ok_ && out.contains("dist") && !out.contains(PASSWORD),
        "{out}"
    );
    let (ok_, out) = cli(
        &server,
        &[
            "policies",
            "add",
            "cli-push",
            "--endpoint",
            "dist",
            "--repository",
            "cli/**",
            "--replace-namespace",
            "copied",
        ],
        &[],
    );
    assert!(ok_, "{out}");
    let (ok_, out) = cli(&server, &["run", "cli-push", "--wait"], &[]);
    assert!(ok_ && out.contains("succeeded"), "{out}");
    let (ok_, out) = cli(
        &server,
        &["executions", "list", "--policy", "cli-push"],
        &[],
    );
    assert!(ok_ && out.contains("manual"), "{out}");
    assert_remote(&remote(&registry), "copied/app", "v1", &img).await;
    // An endpoint in use cannot go.
    let (ok_, out) = cli(&server, &["endpoints", "remove", "dist"], &[]);
    assert!(!ok_ && out.contains("used by policies cli-push"), "{out}");
}
