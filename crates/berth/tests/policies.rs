//! Project policies against the real binary: the storage quota (DENIED
//! before bytes are accepted when the size is known, and at commit when it
//! is not; a layer shared by repositories counted once), tag immutability,
//! and tag retention with its dry run.

mod common;

use common::oci::{Client, Image, MANIFEST};
use common::{noise, sha256, Server, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn admin(server: &Server) -> Client {
    Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
}

async fn api(c: &Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (s, bytes) = c
        .send(
            method,
            path,
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            Some("application/json"),
        )
        .await;
    (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A fresh server, its administrator's client, and the project `name`.
async fn with_project(name: &str) -> (Server, Client) {
    let server = Server::start();
    let c = admin(&server);
    create_project(&c, name).await;
    (server, c)
}

async fn create_project(c: &Client, name: &str) {
    expect(
        c,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": name})),
        201,
    )
    .await;
}

/// `method` on `path` with `body`, which must answer `status`; the JSON
/// answer.
async fn expect(c: &Client, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
    let what = format!("{method} {path}");
    let (s, answer) = api(c, method, path, body).await;
    assert_eq!(s, status, "{what}: {answer}");
    answer
}

/// Creates `user` (password `<user>-password-1`) and makes it a member of
/// `project` with `role`; a client with its credentials.
async fn member(server: &Server, c: &Client, project: &str, user: &str, role: &str) -> Client {
    let password = format!("{user}-password-1");
    let new_user = json!({"name": user, "password": password});
    expect(c, Method::POST, "/api/v1/users", Some(new_user), 201).await;
    let membership = json!({"kind": "user", "name": user, "role": role});
    let members = format!("/api/v1/projects/{project}/members");
    expect(c, Method::POST, &members, Some(membership), 201).await;
    Client::new(&server.url(""), user, &password)
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_denies_pushes_past_the_limit() {
    let (server, c) = with_project("q").await;
    let quota_api = "/api/v1/projects/q/quota";
    let limit = json!({"limit_bytes": 10_000});
    expect(&c, Method::PUT, quota_api, Some(limit), 200).await;

    let first = Image::new("first", vec![noise(1, 6000)], None);
    c.push("q/app", "1", &first).await.unwrap();
    let used = (6000 + first.config.len()) as u64;
    let (_, quota) = api(&c, Method::GET, quota_api, None).await;
    assert_eq!(quota, json!({"limit_bytes": 10_000, "used_bytes": used}));
    // The same layer in a second repository of the project counts once.
    c.push("q/other", "1", &first).await.unwrap();
    let (_, quota) = api(&c, Method::GET, quota_api, None).await;
    assert_eq!(quota["used_bytes"], used);
    let (_, project) = api(&c, Method::GET, "/api/v1/projects/q", None).await;
    assert_eq!(project["used_bytes"], used, "{project}");
    assert_eq!(project["quota_bytes"], 10_000);

    // Monolithic upload with its size known: refused before the body.
    let big = noise(2, 5000);
    let (s, body) = c
        .send(
            Method::POST,
            &format!("/v2/q/app/blobs/uploads/?digest={}", sha256(&big)),
            big.clone(),
            Some("application/octet-stream"),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&body), "DENIED");
    assert!(
        String::from_utf8_lossy(&body).contains("quota"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        c.get(&format!("/v2/q/app/blobs/{}", sha256(&big))).await.0,
        404
    );

    // A chunk with a Content-Length: refused before it is read.
    let url = c.start_upload("q/app").await;
    let patch = c.patch(&url, big.clone()).await;
    assert_eq!(patch.status(), 403);

    // Without a length (a streamed chunk), the bytes count as they arrive:
    // the chunk that passes the quota is refused, and its upload is gone
    // with its bytes.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(big[..2500].to_vec()), Ok(big[2500..].to_vec())];
    let streamed = c
        .patch(
            &url,
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(streamed.status(), 403);
    let text = streamed.text().await.unwrap();
    assert!(text.contains("DENIED") && text.contains("quota"), "{text}");
    let status = c.request(Method::GET, &url).send().await.unwrap();
    assert_eq!(status.status(), 404, "the refused upload is cancelled");
    assert_eq!(
        c.get(&format!("/v2/q/app/blobs/{}", sha256(&big))).await.0,
        404
    );

    // Only a system administrator sets quotas; raising it lets the push in.
    let qa = member(&server, &c, "q", "qa", "project_admin").await;
    expect(
        &qa,
        Method::PUT,
        quota_api,
        Some(json!({"limit_bytes": null})),
        403,
    )
    .await;
    expect(
        &c,
        Method::PUT,
        quota_api,
        Some(json!({"limit_bytes": 20_000})),
        200,
    )
    .await;
    let second = Image::new("second", vec![big], None);
    c.push("q/app", "2", &second).await.unwrap();
    c.assert_pulls("q/app", "2", &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn immutable_tags_cannot_move_or_go() {
    let (server, c) = with_project("im").await;
    let rules_api = "/api/v1/projects/im/immutable-rules";
    let rules = json!([{"tags": "v*"}]);
    expect(&c, Method::PUT, rules_api, Some(rules), 200).await;
    let (_, rules) = api(&c, Method::GET, rules_api, None).await;
    assert_eq!(rules, json!([{"repositories": "**", "tags": "v*"}]));

    let one = Image::new("one", vec![noise(1, 100)], None);
    let two = Image::new("two", vec![noise(2, 100)], None);
    c.push("im/app", "v1", &one).await.unwrap();
    c.push("im/app", "latest", &one).await.unwrap();
    // Pushing the same content again is fine; moving the tag is not.
    c.push("im/app", "v1", &one).await.unwrap();
    for blob in two.blobs() {
        assert_eq!(c.upload("im/app", blob).await, 201);
    }
    let (s, body) = c
        .put_manifest("im/app", "v1", &two.manifest, MANIFEST)
        .await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&body), "DENIED");
    assert!(String::from_utf8_lossy(&body).contains("immutable"));
    // Other tags move freely.
    c.push("im/app", "latest", &two).await.unwrap();
    // Neither the tag, nor its manifest, nor the repository can be deleted.
    assert_eq!(c.delete("/v2/im/app/manifests/v1").await, 403);
    assert_eq!(
        c.delete(&format!("/v2/im/app/manifests/{}", one.digest))
            .await,
        403
    );
    expect(
        &c,
        Method::DELETE,
        "/api/v1/projects/im/repositories/app/tags/v1",
        None,
        403,
    )
    .await;
    expect(
        &c,
        Method::DELETE,
        "/api/v1/projects/im/repositories/app",
        None,
        403,
    )
    .await;
    c.assert_pulls("im/app", "v1", &one).await;
    assert_eq!(c.delete("/v2/im/app/manifests/latest").await, 202);

    // Rules can be scoped to repositories.
    expect(
        &c,
        Method::PUT,
        rules_api,
        Some(json!([{"repositories": "web", "tags": "*"}])),
        200,
    )
    .await;
    assert_eq!(c.delete("/v2/im/app/manifests/v1").await, 202);
    c.push("im/web", "x", &one).await.unwrap();
    assert_eq!(c.delete("/v2/im/web/manifests/x").await, 403);
    // Only project admins change the rules.
    let dev = member(&server, &c, "im", "dev", "developer").await;
    expect(&dev, Method::PUT, rules_api, Some(json!([])), 403).await;
}

async fn tags(c: &Client, repo: &str) -> Vec<String> {
    let (s, body) = c.get(&format!("/v2/{repo}/tags/list")).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keeps_what_a_rule_keeps() {
    let (_server, c) = with_project("rt").await;
    let retention_api = "/api/v1/projects/rt/retention";
    // Pushed a second apart, oldest first, so "most recent" is well defined.
    for (i, tag) in ["a1", "a2", "release-1", "a3", "a4", "v1"]
        .iter()
        .enumerate()
    {
        let image = Image::new(tag, vec![noise(i as u64, 100)], None);
        c.push("rt/app", tag, &image).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let other = Image::new("other", vec![noise(99, 100)], None);
    c.push("rt/other", "old", &other).await.unwrap();
    expect(
        &c,
        Method::PUT,
        "/api/v1/projects/rt/immutable-rules",
        Some(json!([{"tags": "v*"}])),
        200,
    )
    .await;

    // Recent pushes only: nothing is old enough to go.
    expect(
        &c,
        Method::PUT,
        retention_api,
        Some(json!({"rules": [{"pushed_within_days": 7}]})),
        200,
    )
    .await;
    let (_, report) = api(&c, Method::POST, "/api/v1/projects/rt/retention/run", None).await;
    assert_eq!(report["deleted"], json!([]), "{report}");

    // Keep the two latest of app, and release tags anywhere.
    let rules = json!({"rules": [
        {"repositories": "app", "latest_pushed": 2},
        {"tags": "release-*"},
    ]});
    let body = expect(&c, Method::PUT, retention_api, Some(rules.clone()), 200).await;
    assert_eq!(body["rules"].as_array().unwrap().len(), 2);
    let (_, dry) = api(
        &c,
        Method::POST,
        "/api/v1/projects/rt/retention/run?dry_run=true",
        None,
    )
    .await;
    let mut would: Vec<String> = dry["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    would.sort();
    // v1 is among the latest two but immutable anyway; a4 and v1 are the
    // latest; release-1 matches; rt/other has no rule keeping "old".
    assert_eq!(
        would,
        ["rt/app:a1", "rt/app:a2", "rt/app:a3", "rt/other:old"],
        "{dry}"
    );
    assert_eq!(
        tags(&c, "rt/app").await.len(),
        6,
        "a dry run deletes nothing"
    );

    let report = expect(
        &c,
        Method::POST,
        "/api/v1/projects/rt/retention/run",
        None,
        200,
    )
    .await;
    assert_eq!(report["deleted"].as_array().unwrap().len(), 4);
    assert_eq!(tags(&c, "rt/app").await, ["a4", "release-1", "v1"]);
    assert_eq!(tags(&c, "rt/other").await, Vec::<String>::new());

    // Invalid rules are refused with a clear message.
    expect(
        &c,
        Method::PUT,
        retention_api,
        Some(json!({"rules": [{"repositories": "x"}]})),
        400,
    )
    .await;
}
