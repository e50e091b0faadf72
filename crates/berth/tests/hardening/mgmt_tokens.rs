//! Registry tokens do not open the management API (issue 14, item 6). A
//! token from `/service/token`, asked for with the scope of one pull, used
//! to authenticate its subject on `/api/v1` with all of the account's
//! rights: an administrator's pull token created administrators. The
//! management API now takes Basic credentials only, as Harbor's does, and
//! answers a Bearer token with 401; on `/v2` the token works as before.

use super::ui_sessions::{api, browser, post, session};
use crate::common::oci::{self, Image};
use crate::common::{basic, Server, Who, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

/// A token for `scope`, asked for with the administrator's password.
async fn admin_token(server: &Server, scope: &str) -> String {
    server
        .token(Who::Basic("admin", ADMIN_PASSWORD), &[scope])
        .await
}

#[tokio::test]
async fn a_registry_token_is_refused_by_the_management_api() {
    let server = Server::start();
    let admin = basic("admin", ADMIN_PASSWORD);
    let image = Image::new("tokens", vec![b"a layer".to_vec()], None);
    oci::Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
        .push("team/app", "v1", &image)
        .await
        .unwrap();

    let token = admin_token(&server, "repository:team/app:pull").await;
    let bearer = format!("Bearer {token}");
    let mallory = json!({"name": "mallory", "password": "mallory-password", "admin": true});
    let http = berth_net::builder().no_proxy().build().unwrap();
    let resp = http
        .post(server.url("/api/v1/users"))
        .header("authorization", &bearer)
        .json(&mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a pull token created an administrator");
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    for (method, path) in [
        (Method::GET, "/api/v1/users/current"),
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/projects/team"),
        (Method::GET, "/api/v1/projects/team/repositories"),
        (Method::DELETE, "/api/v1/projects/team/repositories/app"),
        (Method::POST, "/api/v1/gc"),
    ] {
        let (status, body) = api(&server, &bearer, method.clone(), path, None).await;
        assert_eq!(status, 401, "{method} {path} with a token: {body}");
    }

    // Nothing was created or deleted; mallory cannot log in.
    let (status, _) = api(&server, &admin, Method::GET, "/api/v1/users/mallory", None).await;
    assert_eq!(status, 404);
    let (status, _) = api(
        &server,
        &basic("mallory", "mallory-password"),
        Method::GET,
        "/api/v1/users/current",
        None,
    )
    .await;
    assert_eq!(status, 401);

    // The token still does what it is for, on /v2; Basic still works on
    // the management API.
    let pulled = http
        .get(server.url("/v2/team/app/manifests/v1"))
        .header("authorization", &bearer)
        .header("accept", oci::MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap().to_vec(), image.manifest);
    let (status, me) = api(&server, &admin, Method::GET, "/api/v1/users/current", None).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("admin")));
}

/// The web UI runs the management handlers in-process, with its session's
/// caller and no token: it is not affected.
#[tokio::test]
async fn the_web_ui_still_manages_through_the_same_handlers() {
    let server = Server::start();
    let http = browser();
    let admin_session = session(&http, &server, "admin", ADMIN_PASSWORD).await;
    let forms: [(&str, &[(&str, &str)]); 2] = [
        ("/ui/projects", &[("name", "made-in-ui")]),
        (
            "/ui/users",
            &[("name", "carol"), ("password", "carol-password")],
        ),
    ];
    for (path, form) in forms {
        let (status, body) = post(&http, &server, &admin_session, path, form).await;
        assert_eq!(status, 303, "{path}: {body}");
    }
    let admin = basic("admin", ADMIN_PASSWORD);
    let (status, project) = api(
        &server,
        &admin,
        Method::GET,
        "/api/v1/projects/made-in-ui",
        None,
    )
    .await;
    assert_eq!((status, project["public"].as_bool()), (200, Some(false)));
    let (status, _) = api(&server, &admin, Method::GET, "/api/v1/users/carol", None).await;
    assert_eq!(status, 200);
}
