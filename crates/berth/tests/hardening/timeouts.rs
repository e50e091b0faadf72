//! Slow, idle and stalled clients are let go: a request head must arrive
//! within `header_read_timeout`, an idle connection closes after
//! `idle_timeout`, a body that stops arriving fails after `body_timeout`
//! (and the upload it was writing can be continued), open connections are
//! capped, and a SIGTERM waits for stalled clients no longer than
//! `shutdown_grace`.

use crate::common::{self, basic, expect_status, Server, ADMIN_PASSWORD};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A server whose limits are short enough to watch.
fn server(extra: &str) -> Server {
    Server::start_with_config(&format!(
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\nbody_timeout = \"2s\"\n{extra}"
    ))
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(&server.addr).unwrap();
    // A bound on the test, far above any limit it sets: a connection still
    // open after it fails the test.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads until the server closes the connection; what it sent first.
fn read_until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&got).into_owned()
            }
            Err(e) => panic!(
                "the connection is still open ({e}); received so far: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test]
async fn half_a_head_silence_and_idleness_all_end_the_connection() {
    let server = server("");
    // Half a request head.
    let mut half = connect(&server);
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Nothing at all.
    let mut silent = connect(&server);
    // A whole request, then idle on a keep-alive connection.
    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answered = read_until_closed(&mut idle);
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert_eq!(read_until_closed(&mut half), "");
    assert_eq!(read_until_closed(&mut silent), "");
    // The server still serves.
    let mut next = connect(&server);
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_until_closed(&mut next).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_stalled_upload_body_fails_and_the_upload_can_go_on() {
    let server = server("");
    let admin = basic("admin", ADMIN_PASSWORD);
    // No pooled connections: the server's 2 s idle timeout would close
    // them under the client during the stall.
    let client = berth_net::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let start = client
        .post(server.url("/v2/p/app/blobs/uploads/"))
        .header("Authorization", &admin);
    let r = expect_status(start, 202).await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let path = location
        .strip_prefix(&format!("http://{}", server.addr))
        .unwrap_or(&location)
        .to_owned();

    // 10 GiB announced, 1 MiB sent, then silence with the socket open.
    let mut stalled = connect(&server);
    write!(
        stalled,
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 10737418240\r\n\r\n"
    )
    .unwrap();
    stalled.write_all(&vec![7u8; 1 << 20]).unwrap();
    let answer = read_until_closed(&mut stalled);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );

    // The stalled request gave its claim up: the upload takes its bytes
    // from where it was, and completes.
    let data = common::noise(3, 1000);
    let patch = client
        .patch(server.url(&path))
        .header("Authorization", &admin)
        .header("Content-Range", "0-999")
        .body(data.clone());
    expect_status(patch, 202).await;
    let close = client
        .put(format!(
            "{}?digest={}",
            server.url(&path),
            common::sha256(&data)
        ))
        .header("Authorization", &admin);
    expect_status(close, 201).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let server = Server::start_with_config(
        "[server]\nmax_connections = 3\nheader_read_timeout = \"5m\"\nidle_timeout = \"5m\"\n",
    );
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&server)).collect();
    let client = berth_net::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let refused = client.get(server.url("/healthz")).send().await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_timeout()),
        "a fourth connection was served: {refused:?}"
    );
    drop(held);
    let client = berth_net::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sigterm_does_not_wait_for_stalled_clients_past_the_grace_period() {
    let mut server = Server::start_with_config(
        "[server]\nheader_read_timeout = \"10m\"\nidle_timeout = \"10m\"\nbody_timeout = \"10m\"\nshutdown_grace = \"1s\"\n",
    );
    let admin = basic("admin", ADMIN_PASSWORD);
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut s = connect(&server);
        if i % 2 == 0 {
            write!(
                s,
                "POST /v2/p/app/blobs/uploads/?digest=sha256:{} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: {admin}\r\nContent-Length: 1000000\r\n\r\npartial",
                "0".repeat(64)
            )
            .unwrap();
        } else {
            s.write_all(b"GET /v2/ HTTP/1.1\r\n").unwrap();
        }
        stalled.push(s);
    }
    // Let the server read what was sent before it is told to stop.
    let probe = berth_net::builder().no_proxy().build().unwrap();
    assert_eq!(
        probe
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.terminate();
    let exited = server.wait_exit(Duration::from_secs(60));
    assert!(
        exited.is_some(),
        "berth still runs a minute after SIGTERM with stalled clients"
    );
    for mut s in stalled {
        read_until_closed(&mut s);
    }
}

/// A half-sent head is closed after `header_read_timeout`, not after that
/// and the idle timeout on top (a graceful close waited for the head).
#[tokio::test]
async fn a_half_sent_head_ends_at_the_header_timeout_alone() {
    let server = Server::start_with_config(
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"10m\"\n",
    );
    let mut half = connect(&server);
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    // `connect` reads for at most 60 s: far below 1 s + 10 min.
    assert_eq!(read_until_closed(&mut half), "");
}

/// A client that sends one byte just inside `body_timeout`, again and
/// again, fails the minimum rate instead of holding the connection.
#[tokio::test]
async fn a_body_trickled_inside_the_timeout_is_cut_off() {
    let server = Server::start_with_config(
        "[server]\nbody_timeout = \"2s\"\nbody_min_rate = 1000\nidle_timeout = \"10m\"\n",
    );
    let mut s = connect(&server);
    s.write_all(
        b"POST /service/token HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut ended_after = None;
    for i in 0..40 {
        if s.write_all(b"a").is_err() {
            ended_after = Some(i);
            break;
        }
        match s.read(&mut buf) {
            Ok(_) => {
                ended_after = Some(i);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                ended_after = Some(i);
                break;
            }
        }
    }
    let i = ended_after.expect("40 bytes trickled over a minute, and the request still went on");
    assert!(i < 10, "cut off only after {i} trickled bytes");
}

/// A response the client never reads (a large public blob) does not hold
/// the connection past `idle_timeout` once the writes stall.
#[tokio::test]
async fn a_response_nobody_reads_does_not_hold_the_connection() {
    let server = Server::start_with_config("[server]\nidle_timeout = \"2s\"\n");
    let admin = common::admin_client();
    let blob = common::noise(9, 64 << 20);
    common::put_blob(&admin, &server, "pub/big", &blob).await;
    let r = admin
        .put(server.url("/api/v1/projects/pub"))
        .json(&serde_json::json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let mut s = connect(&server);
    write!(
        s,
        "GET /v2/pub/big/blobs/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        common::sha256(&blob)
    )
    .unwrap();
    // Read nothing while the server's writes stall, well past the timeout.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let got = read_until_closed(&mut s);
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(100)]
    );
    assert!(
        got.len() < blob.len(),
        "the whole blob was sent: the connection was not cut"
    );
}
