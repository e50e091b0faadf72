//! Open uploads are bounded: their bytes count toward the project's quota
//! as they arrive (a chunk without a length cannot slip past it), and an
//! account or a repository can hold only so many sessions open.

use crate::common::oci::Client;
use crate::common::{expect_status, noise, Server, ADMIN_PASSWORD};
use serde_json::{json, Value};

fn admin(server: &Server) -> Client {
    Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
}

/// A fresh server whose project `project` may hold `limit` bytes, and
/// its administrator.
async fn with_quota(project: &str, limit: u64) -> (Server, Client) {
    let server = Server::start();
    let c = admin(&server);
    // Pushing as admin creates the project.
    c.start_upload(&format!("{project}/seed")).await;
    let quota = c
        .request(
            reqwest::Method::PUT,
            &format!("{}/api/v1/projects/{project}/quota", c.base),
        )
        .json(&json!({ "limit_bytes": limit }));
    expect_status(quota, 200).await;
    (server, c)
}

fn streamed(data: &[u8], chunk: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// Bytes of uploads in progress under the server's data directory.
fn upload_bytes(server: &Server) -> u64 {
    let dir = server.data.join("blobs").join("uploads");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn a_chunk_without_a_length_cannot_pass_the_quota() {
    let (server, c) = with_quota("small", 100_000).await;
    let url = c.start_upload("small/app").await;
    let r = c.patch(&url, streamed(&noise(1, 2 << 20), 64 * 1024)).await;
    assert_eq!(error_code(r).await, (403, "DENIED".to_owned()));
    // The upload is gone, and so are its bytes.
    let r = c.request(reqwest::Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(upload_bytes(&server), 0);
}

#[tokio::test]
async fn open_uploads_count_toward_the_quota_of_their_project() {
    // The server lives as long as `_server`.
    let (_server, c) = with_quota("shared", 100_000).await;
    let first = c.start_upload("shared/a").await;
    let r = c
        .patch(&first, streamed(&noise(2, 60_000), 16 * 1024))
        .await;
    assert_eq!(r.status(), 202);
    // 60,000 bytes wait in the first upload: 50,000 more do not fit,
    // announced or not.
    let second = c.start_upload("shared/b").await;
    let r = c.patch(&second, noise(3, 50_000)).await;
    assert_eq!(error_code(r).await, (403, "DENIED".to_owned()));
    let r = c
        .patch(&second, streamed(&noise(3, 50_000), 16 * 1024))
        .await;
    assert_eq!(error_code(r).await, (403, "DENIED".to_owned()));
    // Cancelling the first frees its bytes.
    expect_status(c.request(reqwest::Method::DELETE, &first), 204).await;
    let third = c.start_upload("shared/b").await;
    let r = c
        .patch(&third, streamed(&noise(3, 50_000), 16 * 1024))
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn open_sessions_are_bounded_per_repository_and_per_account() {
    let server =
        Server::start_with_config("[uploads]\nmax_per_repository = 3\nmax_per_account = 5\n");
    let c = admin(&server);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(c.start_upload("p/one").await);
    }
    let post = |repo: &str| {
        c.request(
            reqwest::Method::POST,
            &format!("{}/v2/{repo}/blobs/uploads/", c.base),
        )
        .send()
    };
    assert_eq!(
        error_code(post("p/one").await.unwrap()).await,
        (429, "TOOMANYREQUESTS".to_owned())
    );
    // Another repository has room, until the account's bound.
    open.push(c.start_upload("p/two").await);
    open.push(c.start_upload("p/two").await);
    assert_eq!(
        error_code(post("p/three").await.unwrap()).await,
        (429, "TOOMANYREQUESTS".to_owned())
    );
    // A repository whose name extends a full one's is not counted with it.
    expect_status(c.request(reqwest::Method::DELETE, &open[3]), 204).await;
    assert_eq!(post("p/one/sub").await.unwrap().status(), 202);
    // A finished upload frees its slot too.
    expect_status(c.request(reqwest::Method::DELETE, &open[0]), 204).await;
    let url = c.start_upload("p/one").await;
    let data = noise(4, 10);
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = c
        .request(
            reqwest::Method::PUT,
            &format!("{url}{sep}digest={}", crate::common::sha256(&data)),
        )
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(post("p/one").await.unwrap().status(), 202);
}
