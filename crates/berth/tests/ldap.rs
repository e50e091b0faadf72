//! LDAP login end to end: berth configured with `[ldap]` against a real
//! `slapd`; directory users log in through the token service, Basic on
//! `/v2` and `docker login`, and get project roles from their groups.

mod common;

use berth_test_kit::slapd::{Slapd, READER_PW};
use common::{claims, sha256, Server, Who};
use reqwest::Method;
use serde_json::{json, Value};

async fn granted(server: &Server, user: &str, pass: &str, scope: &str) -> (u16, Value) {
    let path = format!("/service/token?service=berth&scope={scope}");
    let resp = server
        .call(Method::GET, &path, Who::Basic(user, pass))
        .await;
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, Value::Null);
    }
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    (status, claims(token)["access"].clone())
}

#[tokio::test]
async fn directory_users_log_in_and_get_roles_from_their_groups() {
    let ldap = Slapd::start().await;
    let server =
        Server::start_with_config(&ldap.berth_toml(&[("developers", "team", "developer")]));
    // The administrator's first push creates the private project "team".
    let blob = b"a layer".to_vec();
    common::put_blob(&common::admin_client(), &server, "team/app", &blob).await;

    // alice is in "developers": pull and push on team, nothing more.
    let (status, access) = granted(
        &server,
        "alice",
        "alice-secret",
        "repository:team/app:pull,push,delete",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        access,
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
    );
    // bob is in no group: the private project is invisible to him.
    let (status, access) = granted(&server, "bob", "bob-secret", "repository:team/app:pull").await;
    assert_eq!(status, 200);
    assert_eq!(access, json!([]));
    // Wrong directory password, unknown directory user.
    assert_eq!(
        granted(&server, "alice", "wrong", "repository:team/app:pull")
            .await
            .0,
        401
    );
    assert_eq!(
        granted(
            &server,
            "mallory",
            "alice-secret",
            "repository:team/app:pull"
        )
        .await
        .0,
        401
    );

    // Basic straight to /v2 works for a directory user too.
    let path = format!("/v2/team/app/blobs/{}", sha256(&blob));
    let alice = Who::Basic("alice", "alice-secret");
    let r = server.call(Method::HEAD, &path, alice).await;
    assert_eq!(r.status(), 200);
    let r = server.call(Method::DELETE, &path, alice).await;
    assert_eq!(r.status(), 403, "a developer may not delete");

    // And docker login, the way people use it.
    let tmp = tempfile::tempdir().unwrap();
    berth_test_kit::run_ok(
        "docker",
        &["login", "-u", "alice", "--password-stdin", &server.addr],
        &[("DOCKER_CONFIG", tmp.path().to_str().unwrap())],
        Some("alice-secret"),
    );
    let log = server.log();
    assert!(
        !log.contains("alice-secret") && !log.contains(READER_PW),
        "a password appears in the log"
    );
}
