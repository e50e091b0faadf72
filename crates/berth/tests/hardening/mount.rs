//! A mount's source is checked and used as one parsed value: a second
//! `from`, spelled plainly or percent-encoded, cannot send the check to one
//! repository and the mount to another, and a mount from a repository the
//! caller may not read is a plain upload whether or not the blob is there.

use crate::common::{self, basic, sha256, Server, Who};
use serde_json::Value;

fn http() -> reqwest::Client {
    berth_net::builder().no_proxy().build().unwrap()
}

/// Uploads `blob` into `repo` as admin (creating its project, private).
async fn admin_blob(server: &Server, repo: &str, blob: &[u8]) {
    common::put_blob(&common::admin_client(), server, repo, blob).await;
}

/// A token for `scopes`, asked for by `user` (password `<user>-password`).
async fn token(server: &Server, user: &str, scopes: &[&str]) -> String {
    let password = format!("{user}-password");
    server.token(Who::Basic(user, &password), scopes).await
}

/// The status of a mount POST into alpha/app with `query`.
async fn mount(server: &Server, auth: &str, query: &str) -> (u16, Value) {
    let r = http()
        .post(server.url(&format!("/v2/alpha/app/blobs/uploads/?{query}")))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn readable_in_alpha(server: &Server, digest: &str) -> bool {
    let r = common::admin_client()
        .head(server.url(&format!("/v2/alpha/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    r.status() == 200
}

#[tokio::test]
async fn a_mount_never_reads_a_repository_the_caller_cannot() {
    let server = Server::start();
    admin_blob(&server, "alpha/app", b"alpha's own layer").await;
    let secret = b"beta's secret layer";
    admin_blob(&server, "beta/secret", secret).await;
    let d = sha256(secret);
    common::user_with_roles(&server, "dev", &[("alpha", "developer")]).await;
    let dev = basic("dev", "dev-password");

    // A repeated source, plain or encoded, is refused outright.
    for query in [
        format!("mount={d}&from=alpha/app&from=beta/secret"),
        format!("mount={d}&from=alpha/app&%66rom=beta/secret"),
        format!("mount={d}&%66rom=alpha/app&from=beta%2Fsecret"),
        format!("mount={d}&from=beta/secret&mount={d}"),
    ] {
        let (status, body) = mount(&server, &dev, &query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["errors"][0]["code"].is_string(), "{query}: {body}");
    }
    // One source the caller cannot read: a plain upload, for a digest
    // that is there and for one that is not alike.
    let absent = sha256(b"nowhere");
    for query in [
        format!("mount={d}&from=beta/secret"),
        format!("mount={d}&%66rom=beta%2Fsecret"),
        format!("%6Dount={d}&from=beta/secret"),
        format!("mount={absent}&from=beta/secret"),
    ] {
        let (status, body) = mount(&server, &dev, &query).await;
        assert_eq!(status, 202, "{query}: {body}");
    }
    // The same with a token: asking for pull on beta/secret grants nothing
    // there, and the token's grants decide.
    let t = token(
        &server,
        "dev",
        &[
            "repository:alpha/app:pull,push",
            "repository:beta/secret:pull",
        ],
    )
    .await;
    let bearer = format!("Bearer {t}");
    for query in [
        format!("mount={d}&from=beta/secret"),
        format!("mount={d}&from=alpha/app&%66rom=beta/secret"),
    ] {
        let (status, body) = mount(&server, &bearer, &query).await;
        assert!(status == 202 || status == 400, "{query}: {status} {body}");
    }
    assert!(!readable_in_alpha(&server, &d).await);
}

#[tokio::test]
async fn a_token_client_is_challenged_for_the_source_and_can_then_mount() {
    let server = Server::start();
    let layer = b"a layer in both projects' reach";
    admin_blob(&server, "beta/base", layer).await;
    admin_blob(&server, "alpha/app", b"alpha exists").await;
    let d = sha256(layer);
    common::user_with_roles(
        &server,
        "builder",
        &[("alpha", "developer"), ("beta", "guest")],
    )
    .await;

    // Anonymous: the challenge names pull on the source too, as
    // Distribution's does.
    let r = http()
        .post(server.url(&format!(
            "/v2/alpha/app/blobs/uploads/?mount={d}&from=beta/base"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("scope=\"repository:alpha/app:pull,push repository:beta/base:pull\""),
        "{challenge}"
    );
    // A token for exactly those scopes mounts.
    let scopes: Vec<&str> = challenge
        .split("scope=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .split(' ')
        .collect();
    let t = token(&server, "builder", &scopes).await;
    let (status, body) = mount(
        &server,
        &format!("Bearer {t}"),
        &format!("mount={d}&from=beta/base"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(readable_in_alpha(&server, &d).await);
}
