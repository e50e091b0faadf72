//! Every web UI page, served in-process over the in-memory `Kv`: who may
//! open which page, which buttons each role is shown, and that a POST a
//! role may not make is refused whatever the page showed. The application
//! is built as the binary builds it (`berth::App`, on a temporary data
//! directory). (The browser test in `crates/berth/tests/ui.rs` drives the
//! real binary in Chromium.)

use berth::{App, Config};
use berth_auth::model::Role;
use berth_oci::Digest;

const PASSWORD: &str = "ui-pages-password";

fn sha(data: &[u8]) -> String {
    Digest::sha256_of(data).to_string()
}

struct Site {
    base: String,
    http: reqwest::Client,
}

impl Site {
    /// Logs `user` in through the login form; the session cookie.
    async fn login(&self, user: &str) -> String {
        let page = self
            .http
            .get(format!("{}/ui/login", self.base))
            .send()
            .await
            .unwrap();
        let cookie = set_cookie(&page);
        let html = page.text().await.unwrap();
        let token = hidden(&html, "csrf");
        let resp = self
            .http
            .post(format!("{}/ui/login", self.base))
            .header("cookie", cookie)
            .form(&[
                ("csrf", token.as_str()),
                ("username", user),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{user} logs in");
        set_cookie(&resp)
    }

    async fn get(&self, cookie: &str, path: &str) -> (u16, String) {
        send(cookie, self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let (_, home) = self.get(cookie, "/").await;
        let token = hidden(&home, "csrf");
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(form);
        let request = self.http.post(format!("{}{path}", self.base));
        send(cookie, request.form(&fields)).await
    }
}

/// Sends `request` with the session `cookie`; the answer's status and body.
async fn send(cookie: &str, request: reqwest::RequestBuilder) -> (u16, String) {
    let resp = request.header("cookie", cookie).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The `name=value` of the cookie `resp` sets.
fn set_cookie(resp: &reqwest::Response) -> String {
    let header = resp.headers()["set-cookie"].to_str().unwrap();
    header.split(';').next().unwrap().to_owned()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no {name}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_buttons_follow_the_roles() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().into(),
        ..Config::default()
    };
    let app = App::build(&config, Some(PASSWORD)).await.unwrap();
    let directory = &app.state.auth.directory;
    directory.create_project("p", false).await.unwrap();
    for (user, role) in [
        ("maint", Role::Maintainer),
        ("dev", Role::Developer),
        ("guest", Role::Guest),
        ("limited", Role::LimitedGuest),
    ] {
        directory
            .create_user(user, PASSWORD, false, "")
            .await
            .unwrap();
        directory.set_member("p", "user", user, role).await.unwrap();
    }
    directory
        .create_user("outsider", PASSWORD, false, "")
        .await
        .unwrap();
    // A cluster node's record, as `berth serve` keeps it under its lease.
    let node = serde_json::json!({"id": "node-a1", "listen": "10.0.0.1:5000",
        "external_url": "https://registry.example", "version": "0.1.0", "started": 1});
    app.kv()
        .put("node:node-a1", node.to_string().into_bytes())
        .await
        .unwrap();
    // The registry for pushes, the management API and the UI, as the
    // binary serves them.
    let server = app.spawn().await.unwrap();
    let base = format!("http://{}", server.addr);
    let http = berth_net::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // An image p/app:v1, and a manifest GET that the UI shows as a pull.
    let admin_v2 = |m: reqwest::Method, path: &str| {
        http.request(m, format!("{base}{path}"))
            .basic_auth("admin", Some(PASSWORD))
    };
    let config =
        br#"{"os":"linux","architecture":"arm64","config":{"Env":["A=b"],"Labels":{"team":"x"}}}"#;
    let layer = b"layer bytes".to_vec();
    for blob in [&config[..], &layer[..]] {
        let r = admin_v2(
            reqwest::Method::POST,
            &format!("/v2/p/app/blobs/uploads/?digest={}", sha(blob)),
        )
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}],
    })
    .to_string();
    let digest = sha(manifest.as_bytes());
    let r = admin_v2(reqwest::Method::PUT, "/v2/p/app/manifests/v1")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let site = Site {
        base: base.clone(),
        http: http.clone(),
    };
    let artifact = format!("/ui/repo/p/app/-/artifact/{digest}");
    let pages = [
        "/",
        "/ui/projects/p",
        "/ui/projects/p/members",
        "/ui/projects/p/robots",
        "/ui/projects/p/policy",
        "/ui/projects/p/audit",
        "/ui/repo/p/app",
        artifact.as_str(),
        "/ui/users",
        "/ui/gc",
        "/ui/nodes",
        "/ui/audit",
    ];
    // Nobody logged in: every page leads to the login page.
    for page in pages {
        let r = http.get(format!("{base}{page}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        assert!(r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/login?next="));
    }
    for (asset, kind) in [("berth.css", "text/css"), ("berth.js", "text/javascript")] {
        let r = http
            .get(format!("{base}/ui/static/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }

    // Who may open what: 200 or 403, page by page; 404 for the pages of
    // a project the viewer cannot see, as for a missing project.
    let ok = 200;
    let no = 403;
    let nf = 404;
    let table: [(&str, [u16; 12]); 6] = [
        ("admin", [ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok]),
        ("maint", [ok, ok, ok, no, ok, ok, ok, ok, no, no, no, no]),
        ("dev", [ok, ok, ok, no, ok, no, ok, ok, no, no, no, no]),
        ("guest", [ok, ok, ok, no, ok, no, ok, ok, no, no, no, no]),
        ("limited", [ok, ok, no, no, ok, no, ok, ok, no, no, no, no]),
        ("outsider", [ok, nf, nf, nf, nf, nf, nf, nf, no, no, no, no]),
    ];
    let mut cookies = std::collections::HashMap::new();
    for (user, expected) in table {
        let cookie = site.login(user).await;
        for (page, want) in pages.iter().zip(expected) {
            let (status, body) = site.get(&cookie, page).await;
            assert_eq!(status, want, "{user} opens {page}: {body}");
        }
        cookies.insert(user, cookie);
    }

    // The artifact pages show what was pushed and pulled.
    let admin = &cookies["admin"];
    let (_, detail) = site.get(admin, &artifact).await;
    for expected in ["linux/arm64", "A=b", "team", "11 B", "Last pulled"] {
        assert!(detail.contains(expected), "{expected} in {detail}");
    }
    let (_, listing) = site.get(admin, "/ui/repo/p/app").await;
    assert!(
        listing.contains("Last pulled</dt><dd>never"),
        "not pulled yet"
    );
    let r = admin_v2(reqwest::Method::GET, "/v2/p/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut pulled = false;
    for _ in 0..50 {
        let (_, listing) = site.get(admin, "/ui/repo/p/app").await;
        if !listing.contains("Last pulled</dt><dd>never") {
            pulled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(pulled, "a pull shows as the last pull time");

    let (_, nodes) = site.get(admin, "/ui/nodes").await;
    for expected in [
        "node-a1",
        "10.0.0.1:5000",
        "alive",
        "ready: metadata and storage answer",
    ] {
        assert!(nodes.contains(expected), "{expected} in {nodes}");
    }

    // Delete buttons only for those who may delete; the copy button for all.
    for (user, deletes) in [
        ("admin", true),
        ("maint", true),
        ("dev", false),
        ("guest", false),
    ] {
        let (_, page) = site.get(&cookies[user], "/ui/repo/p/app").await;
        assert_eq!(page.contains("Delete tag"), deletes, "{user}");
        assert!(page.contains("data-copy=\"docker pull "), "{user}");
    }

    // Forged posts are refused by the same checks as the API.
    let forged = [
        ("dev", "/ui/repo/p/app/-/tags/v1/delete", vec![]),
        ("guest", "/ui/repo/p/app/-/delete", vec![]),
        ("maint", "/ui/projects/p/robots", vec![("name", "x")]),
        (
            "dev",
            "/ui/projects/p/members",
            vec![("name", "dev"), ("role", "project_admin")],
        ),
        (
            "maint",
            "/ui/projects/p/policy/quota",
            vec![("limit_mib", "1")],
        ),
        (
            "guest",
            "/ui/projects/p/policy/immutable",
            vec![("action", "add"), ("tags", "*")],
        ),
        (
            "dev",
            "/ui/users",
            vec![("name", "mallory"), ("password", "long-enough-pw")],
        ),
        ("maint", "/ui/gc", vec![("dry_run", "false")]),
        (
            "outsider",
            "/ui/projects/p/settings",
            vec![("action", "visibility"), ("public", "true")],
        ),
    ];
    for (user, path, form) in forged {
        let (status, body) = site.post(&cookies[user], path, &form).await;
        // The outsider cannot see the project: answered as a missing one.
        let refused = if user == "outsider" { 404 } else { 403 };
        assert_eq!(status, refused, "{user} POST {path}: {body}");
    }
    // Without the session's token, even an administrator's POST is refused.
    let r = http
        .post(format!("{base}/ui/repo/p/app/-/tags/v1/delete"))
        .header("cookie", admin)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // What roles may do, they can: a retention dry run, then a tag delete.
    let (status, _) = site
        .post(
            &cookies["admin"],
            "/ui/projects/p/policy/retention",
            &[("action", "add"), ("tags", "v*"), ("latest_pushed", "5")],
        )
        .await;
    assert_eq!(status, 303);
    let (status, report) = site
        .post(
            &cookies["admin"],
            "/ui/projects/p/policy/run",
            &[("dry_run", "true")],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        report.contains("Dry run: tags that would be deleted"),
        "{report}"
    );
    let (status, _) = site
        .post(&cookies["maint"], "/ui/repo/p/app/-/tags/v1/delete", &[])
        .await;
    assert_eq!(status, 303);
    let (_, listing) = site.get(admin, "/ui/repo/p/app").await;
    assert!(listing.contains("untagged"), "{listing}");
    let (status, _) = site.get(admin, "/ui/repo/p/nothing").await;
    assert_eq!(status, 404);
    let (status, _) = site.get(admin, "/ui/repo/p/app/-/artifact/sha256:00").await;
    assert_eq!(status, 404);

    server.stop().await.unwrap();
}
