//! Proxy-cache projects against a real upstream: Debian's `docker-registry`
//! (CNCF Distribution 2.8, htpasswd Basic auth). Its access log says what
//! berth asked of it; the real Docker engine pulls through berth.

mod common;

use berth_test_kit::distribution::{Distribution, Setup};
use berth_test_kit::relay::{Faults, Relay};
use berth_test_kit::server::oci::{self, Image};
use berth_test_kit::Docker;
use common::{Server, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const USER: &str = "up";
const PASSWORD: &str = "upstream-secret-1";

fn upstream() -> Distribution {
    Distribution::start_with(Setup::default().user(USER, PASSWORD))
}

/// berth with `[proxy]` set as given, a replication endpoint for
/// `registry` and the project `hub` bound to it.
async fn proxy_of(registry: &Distribution, proxy_toml: &str) -> Server {
    proxy_project(registry, proxy_toml, false).await
}

/// The same, `hub` public when `public` (mirrors are pulled anonymously).
async fn proxy_project(registry: &Distribution, proxy_toml: &str, public: bool) -> Server {
    let server = Server::start_with_config(&format!("[proxy]\n{proxy_toml}"));
    common::create_project(&server, "hub", public).await;
    let endpoint = json!({"name": "up", "url": registry.url, "kind": "distribution",
        "username": USER, "secret": PASSWORD});
    bind_hub(&server, endpoint).await;
    server
}

/// Adds the replication endpoint `endpoint` (its JSON) and binds the
/// project `hub` to it.
async fn bind_hub(server: &Server, endpoint: Value) {
    let name = endpoint["name"].clone();
    admin(
        server,
        Method::POST,
        "/api/v1/replication/endpoints",
        Some(endpoint),
        201,
    )
    .await;
    let bind = json!({"endpoint": name});
    let b = admin(
        server,
        Method::PUT,
        "/api/v1/projects/hub/proxy",
        Some(bind),
        200,
    )
    .await;
    assert_eq!(b, json!({"project": "hub", "endpoint": name}));
}

/// The management API (or `/v2`) as admin, expecting `status`; the JSON
/// answer.
async fn admin(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let auth = common::basic("admin", ADMIN_PASSWORD);
    let r = server
        .send_json(
            method.clone(),
            path,
            Some(&auth),
            body.map(|b| b.to_string()),
        )
        .await;
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(s, status, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// `host:port` of `server`.
fn host(server: &Server) -> String {
    let url = server.url("");
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A registries.conf in `dir` whose docker.io is a closed port mirrored by
/// berth at `mirror` (`host:port`), over plain HTTP; its path.
fn mirror_conf(dir: &std::path::Path, mirror: &str) -> std::path::PathBuf {
    let conf = dir.join("registries.conf");
    let text = format!(
        "[[registry]]\nprefix = \"docker.io\"\nlocation = \"127.0.0.1:9\"\ninsecure = true\n\n\
         [[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
    );
    std::fs::write(&conf, text).unwrap();
    conf
}

/// Asserts berth lists exactly `tags` for `repo`.
async fn assert_tags(server: &Server, repo: &str, tags: &[&str]) {
    let path = format!("/v2/{repo}/tags/list");
    let listed = admin(server, Method::GET, &path, None, 200).await;
    assert_eq!(listed["tags"], json!(tags), "{repo}");
}

/// How many times the upstream answered `method` `path` (its 401
/// challenges to a first, unauthenticated try are not answers).
fn asked(registry: &Distribution, method: &str, path: &str) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.starts_with(&format!("{method} {path} ")) && !r.ends_with(" 401"))
        .count()
}

/// Pushes `image` to the upstream as `repo:tag` (with berth's outbound
/// client: Distribution has no single-request upload).
async fn push_up(registry: &Distribution, repo: &str, tag: &str, image: &Image) {
    use berth_test_kit::registry_client as rc;
    let endpoint = berth_registry_client::Endpoint::new(registry.url.clone())
        .with_credentials(berth_registry_client::Credentials::new(USER, PASSWORD));
    let c = berth_registry_client::Client::new(&endpoint).unwrap();
    let name = berth_oci::RepoName::parse(repo).unwrap();
    for blob in image.blobs() {
        rc::push_blob(&c, &name, blob).await;
    }
    let reference = berth_oci::Reference::parse(tag).unwrap();
    rc::put_manifest(&c, &name, &reference, oci::MANIFEST, &image.manifest).await;
}

fn berth(server: &Server) -> oci::Client {
    oci::Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
}

#[tokio::test]
async fn a_proxy_project_pulls_through_once_then_serves_its_copy() {
    let registry = upstream();
    let img = Image::new(
        "proxied",
        vec![common::noise(1, 3 << 20), b"small layer".to_vec()],
        None,
    );
    push_up(&registry, "library/alpine", "3", &img).await;
    let server = proxy_of(&registry, "manifest_ttl = \"1h\"").await;
    let c = berth(&server);

    // Twice: the second pull is served from berth's copy.
    for _ in 0..2 {
        c.assert_pulls("hub/library/alpine", "3", &img).await;
    }
    for blob in img.blobs() {
        let path = format!("/v2/library/alpine/blobs/{}", common::sha256(blob));
        assert_eq!(asked(&registry, "GET", &path), 1, "{path}");
    }
    assert_eq!(
        asked(&registry, "GET", "/v2/library/alpine/manifests/3"),
        1,
        "{:?}",
        registry.requests()
    );
    // Within the TTL not even a HEAD.
    assert_eq!(
        asked(&registry, "HEAD", "/v2/library/alpine/manifests/3"),
        0
    );

    // What was pulled is stored: tags and artifacts are the project's.
    assert_tags(&server, "hub/library/alpine", &["3"]).await;

    // A push is refused with DENIED, naming the upstream.
    let s = c.upload("hub/library/alpine", b"pushed").await;
    assert_eq!(s, 403);
    let (s, v) = c
        .put_manifest("hub/library/alpine", "mine", &img.manifest, oci::MANIFEST)
        .await;
    let v = String::from_utf8_lossy(&v);
    assert_eq!(s, 403, "{v}");
    assert!(v.contains("DENIED") && v.contains("proxy cache"), "{v}");

    // What the upstream does not have is MANIFEST_UNKNOWN / BLOB_UNKNOWN.
    let (s, body) = c.get("/v2/hub/library/alpine/manifests/nope").await;
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
    let never = common::sha256(b"never pushed");
    let (s, body) = c
        .get(&format!("/v2/hub/library/alpine/blobs/{never}"))
        .await;
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&body).contains("BLOB_UNKNOWN"));

    // The upstream gone: what is cached still pulls; the rest is 503.
    drop(registry);
    c.assert_pulls("hub/library/alpine", "3", &img).await;
    let (s, body) = c.get("/v2/hub/library/other/manifests/1").await;
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&body));

    // The upstream's endpoint cannot go while a project pulls through it.
    let path = "/api/v1/replication/endpoints/up";
    let refused = admin(&server, Method::DELETE, path, None, 409).await;
    assert!(refused.to_string().contains("proxy project"), "{refused}");

    // The CLI shows the binding and unbinds: the project is ordinary again,
    // its cache kept, and pushes are accepted.
    let out = berth_cli(&server, &["project", "proxy-show", "hub"]);
    assert!(out.contains("hub") && out.contains("up"), "{out}");
    berth_cli(&server, &["project", "proxy-unset", "hub"]);
    admin(
        &server,
        Method::GET,
        "/api/v1/projects/hub/proxy",
        None,
        404,
    )
    .await;
    c.assert_pulls("hub/library/alpine", "3", &img).await;
    assert_eq!(c.upload("hub/library/alpine", b"pushed").await, 201);
}

/// `berth <args>` against `server` as admin, which must succeed; its output.
fn berth_cli(server: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_URL", server.url(""))
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A tag moved upstream is seen after the TTL (a HEAD says it moved), and
/// while the upstream is down the cached manifest is served past its TTL.
#[tokio::test]
async fn a_moved_tag_is_seen_after_the_ttl_and_the_cache_outlives_the_upstream() {
    let registry = upstream();
    let (v1, v2) = (
        Image::new("one", vec![b"layer one".to_vec()], None),
        Image::new("two", vec![b"layer two".to_vec()], None),
    );
    push_up(&registry, "app", "latest", &v1).await;
    let server = proxy_of(&registry, "manifest_ttl = \"1s\"").await;
    let c = berth(&server);
    c.assert_pulls("hub/app", "latest", &v1).await;
    push_up(&registry, "app", "latest", &v2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.assert_pulls("hub/app", "latest", &v2).await;
    assert!(asked(&registry, "HEAD", "/v2/app/manifests/latest") >= 1);

    drop(registry);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, body) = c.get("/v2/hub/app/manifests/latest").await;
    assert_eq!((s, body == v2.manifest), (200, true), "served past its TTL");
}

/// Fifty clients ask for the same cold 64 MiB layer at once: the upstream
/// sends it once, every client gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_pulls_of_a_cold_blob_fetch_it_once() {
    let registry = upstream();
    let layer = common::noise(7, 64 << 20);
    let img = Image::new("herd", vec![layer.clone()], None);
    push_up(&registry, "big/app", "v1", &img).await;
    let server = proxy_of(&registry, "").await;
    let digest = common::sha256(&layer);
    let url = server.url(&format!("/v2/hub/big/app/blobs/{digest}"));
    let pulls = (0..50).map(|_| {
        let (url, http) = (url.clone(), common::admin_client());
        tokio::spawn(async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap();
            (status, common::sha256(&body))
        })
    });
    for pull in futures_util::future::join_all(pulls).await {
        assert_eq!(pull.unwrap(), (200, digest.clone()));
    }
    let path = format!("/v2/big/app/blobs/{digest}");
    assert_eq!(
        asked(&registry, "GET", &path),
        1,
        "{:?}",
        registry.requests()
    );
}

/// The Docker engine pulls an image through the proxy project and gets the
/// image it pushed upstream.
#[tokio::test]
async fn docker_pulls_through_a_proxy_project() {
    let registry = upstream();
    let server = proxy_of(&registry, "").await;
    let tmp = tempfile::tempdir().unwrap();
    let docker = Docker::new(&tmp.path().join("docker"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/data.bin"), common::noise(3, 2 << 20)).unwrap();
    let tar = tmp.path().join("rootfs.tar");
    berth_test_kit::tar(&root, &tar);
    let up_addr = registry.addr.clone();
    let original = format!("{up_addr}/tools/app:1.0");
    docker.login(&up_addr, USER, PASSWORD);
    docker.ok(&["import", tar.to_str().unwrap(), &original]);
    docker.ok(&["push", &original]);
    let id = |image: &str| docker.ok(&["image", "inspect", "--format", "{{.Id}}", image]);
    let want = id(&original);

    let addr = host(&server);
    let through = format!("{addr}/hub/tools/app:1.0");
    docker.login(&addr, "admin", ADMIN_PASSWORD);
    let _ = docker.run(&["rmi", "-f", &original, &through], None);
    docker.ok(&["pull", &through]);
    assert_eq!(id(&through), want);
    let _ = docker.run(&["rmi", "-f", &through], None);
}

/// containerd (`ctr`, its own daemon on a socket of the test's) pulls
/// through berth as a `hosts.toml` mirror of the upstream's host: it asks
/// berth for the upstream's names with `?ns=<host>`, and berth serves them
/// from the proxy project configured for that host.
#[tokio::test]
async fn containerd_pulls_through_a_hosts_toml_mirror_with_ns() {
    let registry = upstream();
    let img = Image::new("ctr", vec![common::noise(11, 1 << 20)], None);
    push_up(&registry, "tools/app", "1.0", &img).await;
    let up = registry.addr.clone();
    let server = proxy_project(
        &registry,
        &format!("mirrors = {{ \"{up}\" = \"hub\" }}"),
        true,
    )
    .await;
    let berth_addr = host(&server);

    let tmp = tempfile::tempdir().unwrap();
    let ctd = Containerd::start(tmp.path());
    // The upstream itself is never reached: its "server" is a closed port.
    let hosts = tmp.path().join("hosts").join(&up);
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://127.0.0.1:9\"\n\n[host.\"http://{berth_addr}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    let hosts_dir = tmp.path().join("hosts");
    ctd.ctr(&[
        "content",
        "fetch",
        "--hosts-dir",
        hosts_dir.to_str().unwrap(),
        &format!("{up}/tools/app:1.0"),
    ]);
    for blob in img.blobs() {
        let got = ctd.ctr_bytes(&["content", "get", &common::sha256(blob)]);
        assert!(got == *blob, "{} through the mirror", common::sha256(blob));
    }
    // Through berth (the upstream's own address was a closed port), and
    // stored in the proxy project.
    let tags = admin(
        &server,
        Method::GET,
        "/v2/hub/tools/app/tags/list",
        None,
        200,
    )
    .await;
    assert_eq!(tags["tags"], json!(["1.0"]));
}

/// Two private mirrors behind one berth: docker.io (`hub`) and
/// `quay.example` (`quay`, reached with containerd's `ns=`). A token is
/// granted for the mirror its client asked through (the challenge's realm
/// carries the `ns`) and holds for that mirror only: a guest of `hub`, or
/// of a project of berth's named `library`, cannot read `quay` by adding
/// `?ns=quay.example` to a request; containerd logged in as a guest of
/// `quay` pulls through it.
#[tokio::test]
async fn a_mirror_token_holds_only_for_the_mirror_it_was_granted_for() {
    let registry = upstream();
    let img = Image::new("quay", vec![common::noise(23, 400_000)], None);
    push_up(&registry, "library/alpine", "3", &img).await;
    let mirrors = "mirrors = { \"docker.io\" = \"hub\", \"quay.example\" = \"quay\" }";
    let server = proxy_project(&registry, mirrors, false).await;
    common::create_project(&server, "quay", false).await;
    admin(
        &server,
        Method::PUT,
        "/api/v1/projects/quay/proxy",
        Some(json!({"endpoint": "up"})),
        200,
    )
    .await;
    common::create_project(&server, "library", false).await;
    common::user_with_roles(&server, "hubber", &[("hub", "guest")]).await;
    common::user_with_roles(&server, "librarian", &[("library", "guest")]).await;
    common::user_with_roles(&server, "quayer", &[("quay", "guest")]).await;

    let token = |user: &'static str, query: &'static str| {
        let server = &server;
        async move {
            let password = format!("{user}-password");
            let path =
                format!("/service/token?service=berth&scope=repository:library/alpine:pull{query}");
            let r = server
                .call(Method::GET, &path, common::Who::Basic(user, &password))
                .await;
            let text = r.text().await.unwrap();
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
            v["token"]
                .as_str()
                .unwrap_or_else(|| panic!("{text}"))
                .to_owned()
        }
    };
    let quay_manifest = "/v2/library/alpine/manifests/3?ns=quay.example";
    let get = |path: &'static str, token: Option<String>| {
        let server = &server;
        async move {
            let who = match &token {
                Some(t) => common::Who::Bearer(t),
                None => common::Who::Anonymous,
            };
            let r = server.call(Method::GET, path, who).await;
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), challenge)
        }
    };
    // The challenge of a request by ns= sends the client to that
    // mirror's token service.
    let (status, challenge) = get(quay_manifest, None).await;
    assert_eq!(status, 401);
    let challenge = challenge.unwrap_or_default();
    assert!(
        challenge.contains("/service/token?ns=quay.example\"")
            && challenge.contains("scope=\"repository:library/alpine:pull\""),
        "{challenge}"
    );
    for (user, query, path, status) in [
        // A docker.io mirror's token does not read the quay mirror...
        ("hubber", "", quay_manifest, 401),
        // ... nor does the quay mirror grant it to a guest of hub only.
        ("hubber", "&ns=quay.example", quay_manifest, 401),
        // berth's own library/alpine is not quay's library/alpine.
        ("librarian", "", quay_manifest, 401),
        // Granted for the quay mirror, it holds there, and only there.
        ("quayer", "&ns=quay.example", quay_manifest, 200),
        (
            "quayer",
            "&ns=quay.example",
            "/v2/library/alpine/manifests/3",
            401,
        ),
        (
            "quayer",
            "&ns=quay.example",
            "/v2/quay/library/alpine/manifests/3",
            401,
        ),
        // Without ns, library/ is berth's own project here, so no mirror
        // was granted; asked with ns=docker.io (as the realm says), it is.
        (
            "hubber",
            "",
            "/v2/library/alpine/manifests/3?ns=docker.io",
            401,
        ),
        (
            "hubber",
            "&ns=docker.io",
            "/v2/library/alpine/manifests/3?ns=docker.io",
            200,
        ),
    ] {
        let (got, _) = get(path, Some(token(user, query).await)).await;
        assert_eq!(got, status, "{user} with a token asked{query} for {path}");
    }

    // containerd, logged in as the guest of quay, pulls through the
    // mirror by ns=; as the guest of hub it cannot.
    let tmp = tempfile::tempdir().unwrap();
    let ctd = Containerd::start(tmp.path());
    let hosts = tmp.path().join("hosts").join("quay.example");
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://127.0.0.1:9\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            host(&server)
        ),
    )
    .unwrap();
    let hosts_dir = tmp.path().join("hosts");
    let fetch = |user: &str| {
        ctd.ctr_output(&[
            "content",
            "fetch",
            "--user",
            &format!("{user}:{user}-password"),
            "--hosts-dir",
            hosts_dir.to_str().unwrap(),
            "quay.example/library/alpine:3",
        ])
    };
    let refused = fetch("hubber");
    assert!(!refused.status.success(), "a guest of hub read quay");
    let pulled = fetch("quayer");
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    for blob in img.blobs() {
        let got = ctd.ctr_bytes(&["content", "get", &common::sha256(blob)]);
        assert!(got == *blob, "{} through the mirror", common::sha256(blob));
    }
}

/// The Docker engine with berth as its `registry-mirrors` (a daemon of
/// the test's own: the shared engine's settings are not the test's to
/// change): `docker pull alpine:3` asks berth for `library/alpine` (no
/// `ns`), which serves it from the docker.io mirror's proxy project; the
/// image is the upstream's, and berth keeps it.
#[tokio::test]
async fn the_docker_engine_pulls_through_berth_as_its_registry_mirror() {
    let registry = upstream();
    let server = proxy_project(&registry, "mirrors = { \"docker.io\" = \"hub\" }", true).await;
    let tmp = tempfile::tempdir().unwrap();
    let mirror = format!("http://{}", host(&server));
    let dockerd = berth_test_kit::Dockerd::start(
        &tmp.path().join("d"),
        &["--registry-mirror", mirror.as_str()],
    );
    let docker = dockerd.client(&tmp.path().join("cfg"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/data.bin"), common::noise(24, 1 << 20)).unwrap();
    let tar = tmp.path().join("rootfs.tar");
    berth_test_kit::tar(&root, &tar);
    let original = format!("{}/library/alpine:3", registry.addr);
    docker.login(&registry.addr, USER, PASSWORD);
    docker.ok(&["import", tar.to_str().unwrap(), &original]);
    docker.ok(&["push", &original]);
    let id = |image: &str| docker.ok(&["image", "inspect", "--format", "{{.Id}}", image]);
    let want = id(&original);
    docker.ok(&["rmi", &original]);

    // docker.io itself is out of reach: only the mirror can answer.
    docker.ok(&["pull", "alpine:3"]);
    assert_eq!(id("alpine:3"), want);
    assert_tags(&server, "hub/library/alpine", &["3"]).await;
}

/// skopeo with a `registries.conf` whose docker.io mirror is berth (no
/// `ns`, as Docker's registry-mirrors): `docker.io/library/alpine` is
/// served from the proxy project mirroring docker.io, while a name of one
/// of berth's own projects stays that project's.
#[tokio::test]
async fn skopeo_pulls_docker_io_names_through_a_mirror_without_ns() {
    let registry = upstream();
    let img = Image::new("alpine", vec![common::noise(12, 300_000)], None);
    push_up(&registry, "library/alpine", "3", &img).await;
    let server = proxy_project(&registry, "mirrors = { \"docker.io\" = \"hub\" }", true).await;
    let berth_addr = host(&server);
    // A project of berth's own keeps its name under the mirror.
    common::create_project(&server, "own", true).await;
    let mine = Image::new("own", vec![b"own layer".to_vec()], None);
    berth(&server).push("own/app", "1", &mine).await.unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let conf = mirror_conf(tmp.path(), &berth_addr);
    let copy = |name: &str, to: &std::path::Path| {
        berth_test_kit::run_ok(
            "skopeo",
            &[
                "--registries-conf",
                conf.to_str().unwrap(),
                "copy",
                "--src-tls-verify=false",
                &format!("docker://docker.io/{name}"),
                &format!("dir:{}", to.display()),
            ],
            &[],
            None,
        )
    };
    let out = tmp.path().join("alpine");
    copy("library/alpine:3", &out);
    assert!(std::fs::read(out.join("manifest.json")).unwrap() == img.manifest);
    let layer = common::sha256(&img.layers[0]);
    let file = out.join(layer.trim_start_matches("sha256:"));
    assert!(std::fs::read(file).unwrap() == img.layers[0]);
    assert_tags(&server, "hub/library/alpine", &["3"]).await;

    let out = tmp.path().join("own");
    copy("own/app:1", &out);
    assert!(std::fs::read(out.join("manifest.json")).unwrap() == mine.manifest);
}

/// A containerd daemon of the test's own (root, state and socket in a
/// temporary directory), killed on drop.
struct Containerd {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Containerd {
    fn start(dir: &std::path::Path) -> Containerd {
        let socket = dir.join("containerd.sock");
        let child = std::process::Command::new("containerd")
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--address")
            .arg(&socket)
            .args(["--config", "/dev/null"])
            .stdout(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("containerd.err")).unwrap())
            .spawn()
            .expect("containerd (Debian's containerd package)");
        let c = Containerd { child, socket };
        for _ in 0..100 {
            let out = std::process::Command::new("ctr")
                .arg("--address")
                .arg(&c.socket)
                .arg("version")
                .output()
                .unwrap();
            if out.status.success() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not start");
    }

    fn ctr_output(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "berth-test"])
            .args(args)
            .output()
            .expect("ctr")
    }

    fn ctr_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.ctr_output(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn ctr(&self, args: &[&str]) {
        self.ctr_bytes(args);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An administrator binds a project to an endpoint from its page, every
/// reader sees the upstream there, and the binding is undone there.
#[tokio::test]
async fn the_project_page_binds_shows_and_unbinds_the_upstream() {
    use berth_test_kit::web;
    let registry = upstream();
    let server = proxy_of(&registry, "").await;
    admin(
        &server,
        Method::DELETE,
        "/api/v1/projects/hub/proxy",
        None,
        204,
    )
    .await;

    let http = web::browser();
    let base = server.url("");
    let r = web::log_in(&http, &base, "admin", ADMIN_PASSWORD, "/").await;
    let session = web::cookie(&r, "berth_session");
    let page = || async {
        let r = http
            .get(format!("{base}/ui/projects/hub"))
            .header("Cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let request = http
            .post(format!("{base}/ui/projects/hub/settings"))
            .header("Cookie", &session)
            .form(&fields);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 303);
        }
    };

    let html = page().await;
    assert!(!html.contains("id=\"proxy-upstream\""), "not a proxy yet");
    assert!(html.contains("Make a proxy cache"), "{html}");
    let csrf = web::hidden(&html, "csrf");
    post(vec![
        ("csrf", csrf.clone()),
        ("action", "proxy".into()),
        ("endpoint", "up".into()),
    ])
    .await;
    let html = page().await;
    assert!(html.contains("id=\"proxy-upstream\""), "{html}");
    let b = admin(
        &server,
        Method::GET,
        "/api/v1/projects/hub/proxy",
        None,
        200,
    )
    .await;
    assert_eq!(b["endpoint"], "up");

    post(vec![("csrf", csrf), ("action", "unproxy".into())]).await;
    assert!(!page().await.contains("id=\"proxy-upstream\""));
    admin(
        &server,
        Method::GET,
        "/api/v1/projects/hub/proxy",
        None,
        404,
    )
    .await;
}

/// Another berth as the upstream, answering with Bearer challenges and its
/// token service (Docker Hub's flow): the proxy project logs in with the
/// endpoint's credentials and pulls through.
#[tokio::test]
async fn a_berth_upstream_with_token_auth_is_pulled_through() {
    let upstream = Server::start();
    common::create_project(&upstream, "team", false).await;
    let img = Image::new("token", vec![common::noise(13, 1 << 20)], None);
    berth(&upstream).push("team/app", "2", &img).await.unwrap();

    let server = Server::start();
    common::create_project(&server, "hub", false).await;
    let endpoint = json!({"name": "peer", "url": upstream.url("").trim_end_matches('/'),
        "kind": "berth", "username": "admin", "secret": ADMIN_PASSWORD});
    bind_hub(&server, endpoint).await;
    berth(&server).assert_pulls("hub/team/app", "2", &img).await;
    // A tag of the upstream's that is not there is its MANIFEST_UNKNOWN.
    let (s, _) = berth(&server).get("/v2/hub/team/app/manifests/9").await;
    assert_eq!(s, 404);
}

/// podman, with a registries.conf whose docker.io mirror is berth, pulls
/// `docker.io/tools/app:1`: an image podman itself pushed to the upstream
/// arrives through the proxy project with the same image ID.
#[tokio::test]
async fn podman_pulls_docker_io_names_through_the_mirror() {
    let registry = upstream();
    let server = proxy_project(&registry, "mirrors = { \"docker.io\" = \"hub\" }", true).await;
    let berth_addr = host(&server);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/data.bin"), common::noise(14, 400_000)).unwrap();
    let tar = tmp.path().join("rootfs.tar");
    berth_test_kit::tar(&root, &tar);
    let conf = mirror_conf(tmp.path(), &berth_addr);
    let authfile = tmp.path().join("auth.json");
    std::fs::write(&authfile, "{}").unwrap();
    let env = [
        ("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap()),
        ("REGISTRY_AUTH_FILE", authfile.to_str().unwrap()),
    ];
    let storage = berth_test_kit::storage_options(tmp.path());
    let podman = |args: &[&str]| {
        let all: Vec<&str> = storage
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        berth_test_kit::run_ok("podman", &all, &env, None)
    };
    let original = format!("{}/tools/app:1", registry.addr);
    let id = podman(&["import", tar.to_str().unwrap(), &original])
        .trim()
        .to_owned();
    let creds = format!("{USER}:{PASSWORD}");
    podman(&["push", "--tls-verify=false", "--creds", &creds, &original]);
    podman(&["rmi", "-a", "-f"]);
    podman(&["pull", "docker.io/tools/app:1"]);
    let pulled = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "docker.io/tools/app:1",
    ]);
    assert_eq!(
        pulled.trim().trim_start_matches("sha256:"),
        id.trim_start_matches("sha256:")
    );
    assert_tags(&server, "hub/tools/app", &["1"]).await;
}

/// An upstream holding an image of one `len`-byte layer (from `seed`) as
/// `repo:v1`, a relay with `faults` in front of it, and berth with `hub`
/// bound to the upstream through the relay.
async fn behind_relay(
    faults: Faults,
    seed: u64,
    len: usize,
    repo: &str,
) -> (Distribution, Relay, Server, Image) {
    let registry = upstream();
    let img = Image::new(repo, vec![common::noise(seed, len)], None);
    push_up(&registry, repo, "v1", &img).await;
    let relay = Relay::start(&registry.addr, faults).await;
    let server = Server::start();
    common::create_project(&server, "hub", false).await;
    let endpoint = json!({"name": "up", "url": format!("http://{}", relay.addr),
        "kind": "distribution", "username": USER, "secret": PASSWORD});
    bind_hub(&server, endpoint).await;
    (registry, relay, server, img)
}

/// The upstream breaks off in the middle of a blob (a relay in front of it
/// cuts the first connection that has carried 2 MiB): the fetch resumes
/// with a `Range` request where it stopped, and the client gets every
/// byte, in one response.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_cut_mid_blob_resumes_with_a_range_request() {
    let faults = Faults {
        cut_after: Some(2 << 20),
        ..Faults::default()
    };
    let (registry, relay, server, img) = behind_relay(faults, 15, 8 << 20, "cut/app").await;
    let layer = img.layers[0].clone();

    berth(&server).assert_pulls("hub/cut/app", "v1", &img).await;
    assert!(relay.cut(), "the relay cut a connection");
    let path = format!("/v2/cut/app/blobs/{}", common::sha256(&layer));
    let answered: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(&format!("GET {path} ")))
        .collect();
    assert!(
        answered.iter().any(|r| r.ends_with(" 206")),
        "resumed with a Range request: {answered:?}"
    );
}

/// A proxy project's quota holds: a layer that would pass it is refused
/// with DENIED before any byte is sent, and nothing is fetched.
#[tokio::test]
async fn a_layer_past_the_quota_is_denied_before_it_is_fetched() {
    let registry = upstream();
    let img = Image::new("quota", vec![common::noise(16, 2 << 20)], None);
    push_up(&registry, "big/app", "v1", &img).await;
    let server = proxy_of(&registry, "").await;
    let quota = json!({"limit_bytes": 1 << 20});
    admin(
        &server,
        Method::PUT,
        "/api/v1/projects/hub/quota",
        Some(quota),
        200,
    )
    .await;
    let layer = common::sha256(&img.layers[0]);
    let (s, body) = berth(&server)
        .get(&format!("/v2/hub/big/app/blobs/{layer}"))
        .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("DENIED") && body.contains("quota"), "{body}");
    assert_eq!(
        asked(&registry, "GET", &format!("/v2/big/app/blobs/{layer}")),
        0
    );
}

/// A client's first bytes of a cold layer come while the upstream is still
/// sending it (the upstream slowed to 2 MiB/s by a relay that counts what
/// it passed on), not after berth has stored the whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_bytes_arrive_before_the_upstream_has_sent_the_layer() {
    use futures_util::StreamExt;
    let faults = Faults {
        bytes_per_sec: Some(2 << 20),
        ..Faults::default()
    };
    let (_registry, relay, server, img) = behind_relay(faults, 17, 6 << 20, "slow/app").await;
    let layer = img.layers[0].clone();

    let digest = common::sha256(&layer);
    let url = server.url(&format!("/v2/hub/slow/app/blobs/{digest}"));
    let r = common::admin_client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut got = body.next().await.unwrap().unwrap().to_vec();
    let carried = relay.carried();
    assert!(
        carried < layer.len() as u64,
        "the first {} bytes came when the relay had passed on {carried} of {}",
        got.len(),
        layer.len()
    );
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == layer, "every byte");
}

/// A private mirror: skopeo, logged in as a guest of the mirror's proxy
/// project only, gets Bearer tokens for `repository:library/alpine:pull`
/// (the name it knows) and pulls through the docker.io mirror; a push into
/// a new project of berth's is still a push there, not the mirror's.
#[tokio::test]
async fn a_private_mirror_is_pulled_with_tokens_for_the_upstream_names() {
    let registry = upstream();
    let img = Image::new("private", vec![common::noise(18, 200_000)], None);
    push_up(&registry, "library/alpine", "3", &img).await;
    let server = proxy_project(&registry, "mirrors = { \"docker.io\" = \"hub\" }", false).await;
    let addr = host(&server);
    let tmp = tempfile::tempdir().unwrap();
    let conf = mirror_conf(tmp.path(), &addr);
    let out = tmp.path().join("alpine");
    // Logged in to the mirror's host, as `podman login` would be.
    let authfile = tmp.path().join("auth.json");
    std::fs::write(&authfile, "{}").unwrap();
    let env = [("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())];
    let skopeo = || {
        let to = format!("dir:{}", out.display());
        let args = [
            "--registries-conf",
            conf.to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            "docker://docker.io/library/alpine:3",
            &to,
        ];
        berth_test_kit::run("skopeo", &args, &env, None)
    };
    // Anonymous: the mirror's project is private.
    assert!(!skopeo().status.success());
    // A guest of the mirror's project, nothing more: its tokens for
    // `library/alpine` are granted through the mirror.
    common::user_with_roles(&server, "reader", &[("hub", "guest")]).await;
    let login = [
        "login",
        "--tls-verify=false",
        "-u",
        "reader",
        "--password-stdin",
        &addr,
    ];
    berth_test_kit::run_ok("skopeo", &login, &env, Some("reader-password"));
    let pulled = skopeo();
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert!(std::fs::read(out.join("manifest.json")).unwrap() == img.manifest);
    // As docker does it: a token for the name the client knows, then the
    // manifest with it; a token for another name is refused.
    let reader = common::Who::Basic("reader", "reader-password");
    for (scope, status) in [
        ("repository:library/alpine:pull", 200),
        ("repository:other/thing:pull", 401),
    ] {
        let r = server
            .call(
                Method::GET,
                &format!("/service/token?service=berth&scope={scope}"),
                reader,
            )
            .await;
        let text = r.text().await.unwrap();
        let token: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        let token = token["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        let r = server
            .call(
                Method::GET,
                "/v2/library/alpine/manifests/3",
                common::Who::Bearer(&token),
            )
            .await;
        assert_eq!(r.status(), status, "{scope}");
    }

    // The administrator pushes into a project that does not exist yet: it
    // is created, as without a mirror.
    let mine = Image::new("mine", vec![b"mine".to_vec()], None);
    berth(&server).push("fresh/app", "1", &mine).await.unwrap();
    berth(&server).assert_pulls("fresh/app", "1", &mine).await;
}

/// A fetch in progress is joined only by the repository it is for, or one
/// the upstream says has the blob too: naming its digest in a repository
/// the upstream does not hold it in answers BLOB_UNKNOWN, not its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_in_progress_is_not_served_to_another_repository() {
    let faults = Faults {
        bytes_per_sec: Some(2 << 20),
        ..Faults::default()
    };
    let (_registry, _relay, server, img) = behind_relay(faults, 19, 6 << 20, "slow/app").await;
    let digest = common::sha256(&img.layers[0]);
    let fetching = {
        let url = server.url(&format!("/v2/hub/slow/app/blobs/{digest}"));
        tokio::spawn(async move { common::admin_client().get(url).send().await.unwrap() })
    };
    let first = fetching.await.unwrap();
    assert_eq!(first.status(), 200, "the fetch is under way");
    let (s, body) = berth(&server)
        .get(&format!("/v2/hub/other/app/blobs/{digest}"))
        .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("BLOB_UNKNOWN"), "{body}");
    let got = first.bytes().await.unwrap();
    assert!(got == img.layers[0], "the first client gets every byte");
}
