//! Logging in over plain HTTP, without a browser: the login form's token,
//! the session cookie's flags (over http, behind an https external URL and
//! over berth's own TLS), sessions kept in the metadata store (they outlive
//! a restart), logging out, and LDAP users with their groups' roles.

use super::common::{self, Server, ADMIN_PASSWORD};

use berth_test_kit::web::{hidden, set_cookie};

/// Sends `request` with the session cookie `session`; the response.
async fn with_cookie(session: &str, request: reqwest::RequestBuilder) -> reqwest::Response {
    request.header("Cookie", session).send().await.unwrap()
}

/// Logs in over plain HTTP (no browser); the answer to the login form.
async fn form_login(http: &reqwest::Client, base: &str, password: &str) -> reqwest::Response {
    form_login_as(http, base, "admin", password).await
}

async fn form_login_as(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    berth_test_kit::web::log_in(http, base, user, password, "/").await
}

#[tokio::test]
async fn sessions_live_in_the_metadata_store_behind_strict_cookies() {
    let http = berth_net::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let server = Server::start();
    let base = server.url("");

    // The login form's own token must come back with it.
    let forged = http
        .post(format!("{base}/ui/login"))
        .form(&[
            ("csrf", "guess"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(
        form_login(&http, &base, "wrong-password").await.status(),
        401
    );
    let ok = form_login(&http, &base, ADMIN_PASSWORD).await;
    assert_eq!(ok.status(), 303);
    let (session, header) = set_cookie(&ok, "berth_session");
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Lax"),
        "{header}"
    );
    assert!(!header.contains("Secure"), "plain http: {header}");
    assert!(session.len() > "berth_session=".len() + 40, "{session}");

    // The session is kept in the metadata store, not the process: it
    // outlives a restart of the node (and so any node serves it).
    let data = server.data.clone();
    let tmp = server.kill();
    let server = Server::start_in(&data, &[]);
    let base = server.url("");
    let home = with_cookie(&session, http.get(format!("{base}/"))).await;
    assert_eq!(home.status(), 200);
    let html = home.text().await.unwrap();
    assert!(html.contains("Signed in as <strong>admin</strong>"));
    let csrf = hidden(&html, "csrf");

    // Every POST needs the session's token; logging out ends the session.
    let without = with_cookie(
        &session,
        http.post(format!("{base}/ui/logout"))
            .form(&[("csrf", "not-the-token")]),
    )
    .await;
    assert_eq!(without.status(), 403);
    let out = with_cookie(
        &session,
        http.post(format!("{base}/ui/logout"))
            .form(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(out.status(), 303);
    let after = with_cookie(&session, http.get(format!("{base}/"))).await;
    assert_eq!(after.status(), 303, "the old cookie no longer works");
    assert!(after.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ui/login"));
    drop(server);
    drop(tmp);

    // Behind an https external URL, and over berth's own TLS, cookies are
    // Secure.
    let behind_proxy = Server::start_with_config("external_url = \"https://registry.example\"\n");
    let ok = form_login(&http, &behind_proxy.url(""), ADMIN_PASSWORD).await;
    assert!(set_cookie(&ok, "berth_session").1.contains("; Secure"));
    let tls_dir = tempfile::tempdir().unwrap();
    let (tls, _) = Server::start_self_signed(tls_dir.path());
    assert_eq!(tls.scheme, "https");
    let https = berth_net::client_builder(
        &berth_net::TlsClient::with_ca(Some(&tls_dir.path().join("ca.crt"))),
        "test",
    )
    .unwrap()
    .no_proxy()
    .redirect(reqwest::redirect::Policy::none())
    .build()
    .unwrap();
    let ok = form_login(&https, &tls.url(""), ADMIN_PASSWORD).await;
    assert_eq!(ok.status(), 303);
    let (_, header) = set_cookie(&ok, "berth_session");
    assert!(
        header.contains("; Secure") && header.contains("HttpOnly"),
        "{header}"
    );
}

#[tokio::test]
async fn directory_users_log_in_and_see_the_projects_of_their_groups() {
    use berth_test_kit::slapd::Slapd;
    let ldap = Slapd::start().await;
    let server =
        Server::start_with_config(&ldap.berth_toml(&[("developers", "team", "developer")]));
    common::create_project(&server, "team", false).await;
    common::create_project(&server, "hidden", false).await;
    let http = berth_net::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = server.url("");
    let wrong = form_login_as(&http, &base, "alice", "not-her-password").await;
    assert_eq!(wrong.status(), 401);
    let ok = form_login_as(&http, &base, "alice", "alice-secret").await;
    assert_eq!(ok.status(), 303);
    let (session, _) = set_cookie(&ok, "berth_session");
    // Her role in "team" comes from her directory group, kept with the
    // session; the private project she has no role in is not listed.
    let home = with_cookie(&session, http.get(format!("{base}/")))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("Signed in as <strong>alice</strong>"),
        "{home}"
    );
    assert!(home.contains("href=\"/ui/projects/team\""), "{home}");
    assert!(home.contains("<td>developer</td>"), "{home}");
    assert!(!home.contains("/ui/projects/hidden"), "{home}");
    let team = with_cookie(&session, http.get(format!("{base}/ui/projects/team"))).await;
    assert_eq!(team.status(), 200);
    let hidden = with_cookie(&session, http.get(format!("{base}/ui/projects/hidden"))).await;
    // A private project she cannot see answers as a missing one.
    assert_eq!(hidden.status(), 404);
}
