//! LDAP login end to end: berth configured with `[ldap]` against a real
//! `slapd`; directory users log in through the token service, Basic on
//! `/v2` and `docker login`, and get project roles from their groups.

mod common;
#[path = "../../auth/tests/slapd/mod.rs"]
mod slapd;

use common::{basic, sha256, Server};
use serde_json::{json, Value};
use slapd::{Slapd, BASE, READER_DN, READER_PW};

fn http() -> reqwest::Client {
    berth_net::builder().no_proxy().build().unwrap()
}

async fn granted(server: &Server, user: &str, pass: &str, scope: &str) -> (u16, Value) {
    let resp = http()
        .get(server.url(&format!("/service/token?service=berth&scope={scope}")))
        .header("Authorization", basic(user, pass))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, Value::Null);
    }
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    (status, claims["access"].clone())
}

#[tokio::test]
async fn directory_users_log_in_and_get_roles_from_their_groups() {
    let ldap = Slapd::start().await;
    let server = Server::start_with_config(&format!(
        r#"
[ldap]
url = "ldap://127.0.0.1:{port}"
bind_dn = "{READER_DN}"
bind_password = "{READER_PW}"
base_dn = "ou=people,{BASE}"
group_base_dn = "ou=groups,{BASE}"
user_filter = "(objectClass=inetOrgPerson)"

[[ldap.group_roles]]
group = "developers"
project = "team"
role = "developer"
"#,
        port = ldap.port
    ));
    // The administrator's first push creates the private project "team".
    let blob = b"a layer".to_vec();
    let r = common::admin_client()
        .post(server.url(&format!(
            "/v2/team/app/blobs/uploads/?digest={}",
            sha256(&blob)
        )))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

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
    let r = http()
        .head(server.url(&format!("/v2/team/app/blobs/{}", sha256(&blob))))
        .header("Authorization", basic("alice", "alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .delete(server.url(&format!("/v2/team/app/blobs/{}", sha256(&blob))))
        .header("Authorization", basic("alice", "alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a developer may not delete");

    // And docker login, the way people use it.
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("docker")
        .args(["login", "-u", "alice", "--password-stdin", &server.addr])
        .env("DOCKER_CONFIG", tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"alice-secret")?;
            c.wait_with_output()
        })
        .expect("docker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = server.log();
    assert!(
        !log.contains("alice-secret") && !log.contains(READER_PW),
        "a password appears in the log"
    );
}
