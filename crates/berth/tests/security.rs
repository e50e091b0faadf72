//! Every deny path of authentication and authorization, against the real
//! binary: each answers the right status and challenge, and leaks nothing.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::Who::{self, Anonymous, Basic, Bearer};
use common::{basic, claims as claims_of, sha256, Server, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADMIN: Who = Basic("admin", ADMIN_PASSWORD);
const GET: Method = Method::GET;
const POST: Method = Method::POST;

fn http() -> reqwest::Client {
    berth_net::builder().no_proxy().build().unwrap()
}

async fn token(server: &Server, who: Who<'_>, scopes: &[&str]) -> String {
    let mut path = "/service/token?service=berth".to_owned();
    for s in scopes {
        path.push_str(&format!("&scope={s}"));
    }
    let resp = server.call(GET, &path, who).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["token"].as_str().unwrap().to_owned()
}

/// A `GET` of `path` as `who` answers `status`.
async fn assert_get(server: &Server, path: &str, who: Who<'_>, status: u16) {
    let got = server.call(GET, path, who).await.status();
    assert_eq!(got, status, "GET {path} as {who:?}");
}

/// A form POST of `fields` to the token service (the OAuth2 password
/// grant).
async fn password_grant(server: &Server, fields: &[(&str, &str)]) -> reqwest::Response {
    http()
        .post(server.url("/service/token"))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Pushes a one-layer image as admin (which creates the project, private).
async fn push_image(server: &Server, repo: &str, tag: &str) -> String {
    let layer = format!("layer of {repo}").into_bytes();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    common::push_image(
        &common::admin_client(),
        server,
        repo,
        tag,
        config,
        &[&layer],
    )
    .await
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .expect("a Bearer challenge")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn assert_unauthorized(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    c
}

#[tokio::test]
async fn no_credentials_get_a_bearer_challenge_naming_the_scope() {
    let server = Server::start();
    push_image(&server, "private/app", "v1").await;
    let c = assert_unauthorized(server.call(GET, "/v2/", Anonymous).await).await;
    assert_eq!(
        c,
        format!(
            "Bearer realm=\"http://{}/service/token\",service=\"berth\"",
            server.addr
        )
    );
    let c = assert_unauthorized(
        server
            .call(GET, "/v2/private/app/manifests/v1", Anonymous)
            .await,
    )
    .await;
    assert!(c.contains("scope=\"repository:private/app:pull\""), "{c}");
    let c = assert_unauthorized(
        server
            .call(POST, "/v2/private/app/blobs/uploads/", Anonymous)
            .await,
    )
    .await;
    assert!(
        c.contains("scope=\"repository:private/app:pull,push\""),
        "{c}"
    );
    let c = assert_unauthorized(server.call(GET, "/v2/_catalog", Anonymous).await).await;
    assert!(c.contains("scope=\"registry:catalog:*\""), "{c}");
}

#[tokio::test]
async fn anonymous_token_grants_nothing_on_a_private_project() {
    let server = Server::start();
    push_image(&server, "private/app", "v1").await;
    let t = token(&server, Anonymous, &["repository:private/app:pull"]).await;
    assert_eq!(
        claims_of(&t)["access"],
        json!([]),
        "anonymous got access to a private project"
    );
    let resp = server
        .call(GET, "/v2/private/app/manifests/v1", Bearer(&t))
        .await;
    let c = assert_unauthorized(resp).await;
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
}

#[tokio::test]
async fn wrong_passwords_are_refused_alike_for_known_and_unknown_users() {
    let server = Server::start();
    let v2 = |user, pass| server.call(GET, "/v2/", Basic(user, pass));
    let known = v2("admin", "not-the-password").await;
    assert_eq!(known.status(), 401);
    let known_body = known.text().await.unwrap();
    let unknown = v2("nobody", "not-the-password").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        unknown.text().await.unwrap(),
        known_body,
        "the answer reveals whether a user exists"
    );
    let garbage = http()
        .get(server.url("/v2/"))
        .header("Authorization", "Basic !!!notbase64")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 401);
    assert_get(
        &server,
        "/service/token?service=berth",
        Basic("admin", "not-the-password"),
        401,
    )
    .await;
    let form = password_grant(
        &server,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "nope"),
            ("service", "berth"),
        ],
    )
    .await;
    assert_eq!(form.status(), 401);
    // And the right password works both ways.
    assert_eq!(v2("admin", ADMIN_PASSWORD).await.status(), 200);
    let form = password_grant(
        &server,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("service", "berth"),
            ("scope", "repository:x/y:pull,push"),
        ],
    )
    .await;
    assert_eq!(form.status(), 200);
    let body: Value = form.json().await.unwrap();
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["access"][0]["name"], "x/y");
    assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));
}

#[tokio::test]
async fn a_token_works_only_for_its_repository_and_actions() {
    let server = Server::start();
    push_image(&server, "team/a", "v1").await;
    push_image(&server, "team/b", "v1").await;
    let t = token(&server, ADMIN, &["repository:team/a:pull"]).await;
    assert_get(&server, "/v2/team/a/manifests/v1", Bearer(&t), 200).await;
    let other = server
        .call(GET, "/v2/team/b/manifests/v1", Bearer(&t))
        .await;
    let c = assert_unauthorized(other).await;
    assert!(
        c.contains("insufficient_scope") && c.contains("repository:team/b:pull"),
        "{c}"
    );
    let push = server
        .call(POST, "/v2/team/a/blobs/uploads/", Bearer(&t))
        .await;
    assert!(assert_unauthorized(push)
        .await
        .contains("insufficient_scope"));
    let delete = server
        .call(Method::DELETE, "/v2/team/a/manifests/v1", Bearer(&t))
        .await;
    assert!(assert_unauthorized(delete)
        .await
        .contains("repository:team/a:delete"));
    // Unknown and malformed scopes grant nothing; the token still issues.
    let t = token(&server, ADMIN, &["repository:BAD:pull", "foo:bar:baz"]).await;
    assert_eq!(claims_of(&t)["access"], json!([]));
}

#[tokio::test]
async fn tampered_unsigned_and_foreign_tokens_are_refused() {
    let server = Server::start();
    push_image(&server, "team/a", "v1").await;
    let t = token(&server, ADMIN, &["repository:team/a:pull"]).await;
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims = claims_of(&t);
    claims["access"][0]["name"] = json!("team/b");
    claims["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    let body = B64.encode(claims.to_string());
    let forged = [
        format!("{}.{body}.{}", parts[0], parts[2]),
        format!("{}.{body}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#)),
        format!("{}.{body}", B64.encode(r#"{"alg":"none"}"#)),
        format!(
            "{}.{body}.{}",
            B64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 4]
        ),
        "not.a.token".to_owned(),
        String::new(),
    ];
    for f in forged {
        let resp = server
            .call(GET, "/v2/team/a/manifests/v1", Bearer(&f))
            .await;
        assert_eq!(resp.status(), 401, "accepted forged token {f:?}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("signature") && !body.contains("alg"),
            "the error explains too much: {body}"
        );
    }
    // A token from another berth (another signing key) is refused too.
    let other = Server::start();
    let foreign = token(&other, ADMIN, &["repository:team/a:pull"]).await;
    assert_get(&server, "/v2/team/a/manifests/v1", Bearer(&foreign), 401).await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let server = Server::start_with_config("[auth]\ntoken_ttl_secs = 1\nclock_skew_secs = 0\n");
    push_image(&server, "team/a", "v1").await;
    let t = token(&server, ADMIN, &["repository:team/a:pull"]).await;
    assert_get(&server, "/v2/team/a/manifests/v1", Bearer(&t), 200).await;
    // Waiting is the point here: the token must outlive its one second.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_get(&server, "/v2/team/a/manifests/v1", Bearer(&t), 401).await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited_and_secrets_stay_out_of_logs() {
    let server = Server::start_with_config("");
    let secret_guess = "Guessed-Secret-Passw0rd";
    for _ in 0..10 {
        let r = server.call(GET, "/v2/", Basic("admin", secret_guess)).await;
        assert_eq!(r.status(), 401);
    }
    // Now even the right password is refused for a while.
    let r = server
        .call(
            GET,
            "/service/token?service=berth",
            Basic("admin", ADMIN_PASSWORD),
        )
        .await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    // Another user is not affected by admin's lockout (from a fresh cache).
    assert_get(&server, "/v2/", Basic("someone", "whatever-pass"), 401).await;

    let log = server.log();
    assert!(log.contains("failed login"), "failed logins are not logged");
    for secret in [secret_guess, ADMIN_PASSWORD] {
        assert!(!log.contains(secret), "a password appears in the log");
    }
}

#[tokio::test]
async fn anonymous_and_unprivileged_catalogs_show_nothing_private() {
    let server = Server::start();
    push_image(&server, "private/app", "v1").await;
    let anon = token(&server, Anonymous, &["registry:catalog:*"]).await;
    let r = server.call(GET, "/v2/_catalog", Bearer(&anon)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["repositories"],
        json!([]),
        "anonymous sees a private repository"
    );
    let admin = token(&server, ADMIN, &["registry:catalog:*"]).await;
    let r = server.call(GET, "/v2/_catalog", Bearer(&admin)).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["private/app"]));
}

#[tokio::test]
async fn password_changes_and_deletions_take_effect_at_once() {
    let server = Server::start();
    let admin = common::admin_client();
    common::create_user(&server, "carol", "carol-first-pw").await;
    let v2 = |pass| server.call(GET, "/v2/", Basic("carol", pass));
    // Verified once, so now cached.
    assert_eq!(v2("carol-first-pw").await.status(), 200);
    let r = admin
        .put(server.url("/api/v1/users/carol"))
        .json(&json!({"password": "carol-second-pw"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        v2("carol-first-pw").await.status(),
        401,
        "the old password still works"
    );
    assert_eq!(v2("carol-second-pw").await.status(), 200);
    let r = admin
        .delete(server.url("/api/v1/users/carol"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        v2("carol-second-pw").await.status(),
        401,
        "a deleted user still logs in"
    );
}

/// Creates `user` with `role` in `project` through the management API.
async fn member(server: &Server, project: &str, user: &str, role: &str) {
    common::user_with_roles(server, user, &[(project, role)]).await;
}

#[tokio::test]
async fn each_role_gets_exactly_its_registry_actions() {
    let server = Server::start();
    push_image(&server, "team/app", "v1").await;
    for (user, role) in [
        ("pa", "project_admin"),
        ("ma", "maintainer"),
        ("de", "developer"),
        ("gu", "guest"),
        ("lg", "limited_guest"),
    ] {
        member(&server, "team", user, role).await;
    }
    // "outsider" exists but has no role in "team".
    common::create_user(&server, "outsider", "outsider-password").await;
    let expected = [
        ("pa", vec!["pull", "push", "delete"]),
        ("ma", vec!["pull", "push", "delete"]),
        ("de", vec!["pull", "push"]),
        ("gu", vec!["pull"]),
        ("lg", vec!["pull"]),
    ];
    for (user, actions) in &expected {
        let pass = format!("{user}-password");
        let t = token(
            &server,
            Basic(user, &pass),
            &["repository:team/app:pull,push,delete"],
        )
        .await;
        let granted = &claims_of(&t)["access"][0]["actions"];
        assert_eq!(granted, &json!(actions), "{user}");
        // Basic straight to /v2 follows the same decision.
        let push = server
            .call(POST, "/v2/team/app/blobs/uploads/", Basic(user, &pass))
            .await;
        let want = if actions.contains(&"push") { 202 } else { 403 };
        assert_eq!(push.status().as_u16(), want, "{user} push");
        let pull = server
            .call(GET, "/v2/team/app/manifests/v1", Basic(user, &pass))
            .await;
        assert_eq!(pull.status(), 200, "{user} pull");
    }
    // A user with no role in the project gets nothing, not even existence.
    assert_get(
        &server,
        "/v2/team/app/manifests/v1",
        Basic("outsider", "outsider-password"),
        403,
    )
    .await;
    let t = token(
        &server,
        Basic("outsider", "outsider-password"),
        &["repository:team/app:pull"],
    )
    .await;
    assert_eq!(claims_of(&t)["access"], json!([]));
}

#[tokio::test]
async fn a_public_project_is_pulled_anonymously_by_docker_but_not_pushed() {
    let server = Server::start();
    common::create_project(&server, "pub", true).await;
    // Pushed by docker as admin, pulled by docker with no login at all.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), common::noise(3, 10_000)).unwrap();
    let tar = tmp.path().join("r.tar");
    berth_test_kit::tar(&root, &tar);
    let image = format!("{}/pub/app:v1", server.addr);
    let admin_cfg = tmp.path().join("admin");
    let anon_cfg = tmp.path().join("anon");
    std::fs::create_dir_all(&admin_cfg).unwrap();
    std::fs::create_dir_all(&anon_cfg).unwrap();
    let docker = |cfg: &std::path::Path, args: &[&str], stdin| {
        let env = [("DOCKER_CONFIG", cfg.to_str().unwrap())];
        berth_test_kit::run("docker", args, &env, stdin)
    };
    assert!(
        docker(&admin_cfg, &["import", tar.to_str().unwrap(), &image], None)
            .status
            .success()
    );
    assert!(docker(
        &admin_cfg,
        &["login", "-u", "admin", "--password-stdin", &server.addr],
        Some(ADMIN_PASSWORD)
    )
    .status
    .success());
    assert!(docker(&admin_cfg, &["push", &image], None).status.success());
    assert!(docker(&admin_cfg, &["rmi", &image], None).status.success());
    let pulled = docker(&anon_cfg, &["pull", &image], None);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let pushed = docker(&anon_cfg, &["push", &image], None);
    assert!(
        !pushed.status.success(),
        "an anonymous push into a public project"
    );
    let _ = docker(&anon_cfg, &["rmi", &image], None);
}

/// Sends one raw HTTP/1.1 request, so that the path reaches berth exactly
/// as written (HTTP clients normalise `..` away), and returns the status
/// and body.
fn raw_get(server: &Server, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        basic("admin", ADMIN_PASSWORD)
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn path_traversal_in_names_digests_and_upload_ids_is_refused() {
    let server = Server::start();
    push_image(&server, "team/app", "v1").await;
    let d = sha256(b"x");
    let cases = [
        "/v2/../../../etc/passwd/tags/list".to_owned(),
        "/v2/team/../../etc/tags/list".to_owned(),
        "/v2/team/%2e%2e/%2e%2e/etc/tags/list".to_owned(),
        "/v2/team%2F..%2F..%2Fetc/tags/list".to_owned(),
        "/v2//etc/passwd/manifests/latest".to_owned(),
        "/v2/%2Fetc%2Fpasswd/manifests/latest".to_owned(),
        "/v2/team/app/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/v2/team/app/blobs/sha256:../../../etc/passwd".to_owned(),
        "/v2/team/app/blobs/uploads/..%2F..%2Fmeta.redb".to_owned(),
        format!("/v2/team/app/blobs/uploads/../../{d}"),
        "/v2/team/app/manifests/..%2F..%2Fmeta.redb".to_owned(),
    ];
    for path in &cases {
        let (status, body) = raw_get(&server, path);
        assert!(status == 400 || status == 404, "{path}: status {status}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        let code = v["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            [
                "NAME_INVALID",
                "NAME_UNKNOWN",
                "DIGEST_INVALID",
                "BLOB_UPLOAD_UNKNOWN",
                "MANIFEST_UNKNOWN",
                "BLOB_UNKNOWN"
            ]
            .contains(&code.as_str()),
            "{path}: {body}"
        );
        assert!(
            !body.contains("root:") && !body.contains(server.data.to_str().unwrap()),
            "{path} leaked: {body}"
        );
    }
}

#[tokio::test]
async fn behind_a_tls_proxy_external_url_drives_the_realm_and_locations() {
    let server = Server::start_with_config("external_url = \"https://registry.example.com/\"\n");
    let r = server.call(GET, "/v2/", Anonymous).await;
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"https://registry.example.com/service/token\",service=\"berth\""
    );
    let r = common::admin_client()
        .post(server.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://registry.example.com/v2/team/app/blobs/uploads/"),
        "{location}"
    );
}
