//! Wrong passwords from one address do not lock the user out from others
//! (issue 14, item 7). See ../hardening.rs.
//!
//! The server sees the TCP peer's address. It listens on 127.0.0.1, and
//! Linux lets a client bind any address of 127.0.0.0/8 as its source, so a
//! client bound to 127.0.0.2 is a second address; the audit log shows which
//! address the server saw.

use crate::common::{basic, Server, ADMIN_PASSWORD};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// A client whose connections come from `source`.
fn from(source: Ipv4Addr) -> reqwest::Client {
    berth_net::builder()
        .no_proxy()
        .local_address(IpAddr::V4(source))
        .build()
        .expect("http client")
}

/// `/service/token` with Basic credentials: what the docker CLI sends.
async fn token_status(client: &reqwest::Client, server: &Server, pass: &str) -> u16 {
    token_request(client, server, pass, None).await
}

/// `/service/token` as `client` with the administrator's name and `pass`,
/// and `X-Forwarded-For: forwarded` if given; the status.
async fn token_request(
    client: &reqwest::Client,
    server: &Server,
    pass: &str,
    forwarded: Option<&str>,
) -> u16 {
    let mut req = client
        .get(server.url("/service/token?service=berth"))
        .header("Authorization", basic("admin", pass));
    if let Some(forwarded) = forwarded {
        req = req.header("X-Forwarded-For", forwarded);
    }
    let resp = req.send().await.expect("token request");
    resp.status().as_u16()
}

/// GET `path` as `client` with the administrator's Basic credentials.
async fn admin_get(client: &reqwest::Client, server: &Server, path: &str) -> reqwest::Response {
    client
        .get(server.url(path))
        .header("Authorization", basic("admin", ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_out_another() {
    let server = Server::start();
    let attacker = from(Ipv4Addr::new(127, 0, 0, 1));
    let admin = from(Ipv4Addr::new(127, 0, 0, 2));

    // Twelve wrong passwords for admin from one address: ten are checked,
    // then that address is refused admin.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(token_status(&attacker, &server, "wrong-password").await);
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 2], "{statuses:?}");
    // From there even the right password is refused for a while: the
    // attacker learns nothing more from that address.
    assert_eq!(token_status(&attacker, &server, ADMIN_PASSWORD).await, 429);
    let r = admin_get(&attacker, &server, "/v2/").await;
    assert_eq!(r.status(), 429);

    // From another address admin's right password works, for a token and
    // for Basic on /v2 and on the management API.
    assert_eq!(token_status(&admin, &server, ADMIN_PASSWORD).await, 200);
    for path in ["/v2/", "/api/v1/users"] {
        let r = admin_get(&admin, &server, path).await;
        assert_eq!(r.status(), 200, "{path}");
    }

    // The server did see two addresses: the failures came from 127.0.0.1,
    // the login from 127.0.0.2 (the audit log is written asynchronously).
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let r = admin_get(
            &admin,
            &server,
            "/api/v1/audit-logs?user=admin&page_size=100",
        )
        .await;
        assert_eq!(r.status(), 200);
        let events: Value = r.json().await.unwrap();
        let seen: Vec<(String, String)> = events
            .as_array()
            .expect("a list of events")
            .iter()
            .map(|e| {
                (
                    e["operation"].as_str().unwrap_or_default().to_owned(),
                    e["address"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let has = |op: &str, addr: &str| seen.iter().any(|(o, a)| o == op && a == addr);
        if has("login_failed", "127.0.0.1") && has("login", "127.0.0.2") {
            break seen;
        }
        assert!(Instant::now() < deadline, "audit log: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !seen
            .iter()
            .any(|(op, addr)| op == "login" && addr == "127.0.0.1"),
        "{seen:?}"
    );
}

/// `/service/token` as `client`, with `X-Forwarded-For: forwarded`.
async fn forwarded_status(
    client: &reqwest::Client,
    server: &Server,
    forwarded: &str,
    pass: &str,
) -> u16 {
    token_request(client, server, pass, Some(forwarded)).await
}

/// Behind a load balancer every client has the balancer's address: with
/// the balancer in `trusted_proxies`, the client it names is what counts.
/// Anyone else's `X-Forwarded-For` is ignored, so it cannot dodge the
/// throttle by naming a new address on each try.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy() {
    let server = Server::start_with_config("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
    let proxy = from(Ipv4Addr::new(127, 0, 0, 1));
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(forwarded_status(&proxy, &server, "203.0.113.7", "wrong").await);
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    // A client's own entry left of the proxy's does not help it.
    assert_eq!(
        forwarded_status(&proxy, &server, "198.51.100.9, 203.0.113.7", ADMIN_PASSWORD).await,
        429
    );
    assert_eq!(
        forwarded_status(&proxy, &server, "198.51.100.9", ADMIN_PASSWORD).await,
        200,
        "another client behind the same proxy logs in"
    );

    // 127.0.0.2 is no trusted proxy: its header is ignored.
    let outsider = from(Ipv4Addr::new(127, 0, 0, 2));
    let mut statuses = Vec::new();
    for i in 0..11 {
        let spoofed = format!("192.0.2.{i}");
        statuses.push(forwarded_status(&outsider, &server, &spoofed, "wrong").await);
    }
    assert_eq!(statuses[10], 429, "{statuses:?}");
}
