//! A web UI session lasts only while the account it was opened for is
//! unchanged: a password changed by its owner or reset by an administrator,
//! and an account deleted and created again under the same name, end it at
//! once (issue 14, item 5). Before, the old cookie went on working, in the
//! last case with the new account's rights.
//!
//! Also the UI helpers the other modules use: logging in through the form
//! (with its CSRF cookie and field) and reading pages without following
//! redirects.

use crate::common::{admin_client, basic, expect_status, Server, ADMIN_PASSWORD};
use serde_json::{json, Value};

pub(super) use berth_test_kit::web::{browser, cookie, hidden, log_in};

/// Opens the login form at `path` (`/ui/login`, maybe with `?next=`): the
/// form's cookie and the page.
pub(super) async fn login_form(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
) -> (String, String) {
    berth_test_kit::web::login_form(http, &server.url(path)).await
}

/// Logs `user` in; their session cookie.
pub(super) async fn session(
    http: &reqwest::Client,
    server: &Server,
    user: &str,
    password: &str,
) -> String {
    let resp = log_in(http, &server.url(""), user, password, "/").await;
    assert_eq!(resp.status(), 303, "{user} logs in");
    cookie(&resp, "berth_session")
}

/// A page as `session` sees it: status, `Location` and body.
pub(super) async fn page(
    http: &reqwest::Client,
    server: &Server,
    session: &str,
    path: &str,
) -> (u16, String, String) {
    let resp = http
        .get(server.url(path))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

/// Posts a form of the UI as `session`, with the session's CSRF token
/// (read from the home page); status and body.
pub(super) async fn post(
    http: &reqwest::Client,
    server: &Server,
    session: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let (status, _, home) = page(http, server, session, "/").await;
    assert_eq!(status, 200, "the session works");
    let csrf = hidden(&home, "csrf");
    let mut fields = vec![("csrf", csrf.as_str())];
    fields.extend_from_slice(form);
    let resp = http
        .post(server.url(path))
        .header("cookie", session)
        .form(&fields)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A management API call with `auth`: status and JSON body.
pub(super) async fn api(
    server: &Server,
    auth: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let resp = server.send_json(method, path, Some(auth), body).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Whether a page answer sends the browser to the login page.
fn to_login(answer: &(u16, String, String)) -> bool {
    answer.0 == 303 && answer.1.starts_with("/ui/login")
}

/// Logs `user` in and checks the session works: the home page answers
/// 200; the session cookie.
async fn working_session(
    http: &reqwest::Client,
    server: &Server,
    user: &str,
    password: &str,
) -> String {
    let cookie = session(http, server, user, password).await;
    assert_eq!(page(http, server, &cookie, "/").await.0, 200);
    cookie
}

/// Asserts that the session `cookie` is over (its home page sends the
/// browser to the login page) after `what`.
async fn assert_ended(http: &reqwest::Client, server: &Server, cookie: &str, what: &str) {
    let after = page(http, server, cookie, "/").await;
    assert!(
        to_login(&after),
        "the session outlived {what}: {} {}",
        after.0,
        after.1
    );
}

/// Changes the account alice through the management API as `auth`,
/// which must succeed.
async fn set_alice(server: &Server, auth: &str, change: Value) {
    let (status, body) = api(
        server,
        auth,
        reqwest::Method::PUT,
        "/api/v1/users/alice",
        Some(change),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_changed_password_ends_the_sessions_opened_with_the_old_one() {
    let server = Server::start();
    let admin = basic("admin", ADMIN_PASSWORD);
    let new_user = json!({"name": "alice", "password": "alice-password-1"});
    let (status, _) = api(
        &server,
        &admin,
        reqwest::Method::POST,
        "/api/v1/users",
        Some(new_user),
    )
    .await;
    assert_eq!(status, 201);
    let http = browser();
    let admin_session = session(&http, &server, "admin", ADMIN_PASSWORD).await;

    // Alice changes her own password (with the old one, as she must).
    let first = working_session(&http, &server, "alice", "alice-password-1").await;
    let change = json!({"old_password": "alice-password-1", "password": "alice-password-2"});
    let alice = basic("alice", "alice-password-1");
    set_alice(&server, &alice, change).await;
    assert_ended(&http, &server, &first, "her own password change").await;

    // An administrator resets it through the API.
    let second = working_session(&http, &server, "alice", "alice-password-2").await;
    set_alice(&server, &admin, json!({"password": "alice-password-3"})).await;
    assert_ended(&http, &server, &second, "a reset by an administrator").await;

    // And through the users page of the UI.
    let third = working_session(&http, &server, "alice", "alice-password-3").await;
    let (status, body) = post(
        &http,
        &server,
        &admin_session,
        "/ui/users/alice",
        &[("action", "password"), ("password", "alice-password-4")],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_ended(&http, &server, &third, "a reset on the users page").await;

    // The administrator's own session was not touched, and the current
    // password opens a session that works.
    assert_eq!(
        page(&http, &server, &admin_session, "/ui/users").await.0,
        200
    );
    working_session(&http, &server, "alice", "alice-password-4").await;
}

#[tokio::test]
async fn an_account_created_again_under_the_same_name_inherits_no_session() {
    let server = Server::start();
    let admin = admin_client();
    let create = |body: Value| admin.post(server.url("/api/v1/users")).json(&body).send();
    let r = create(json!({"name": "bob", "password": "bob-password-1"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let http = browser();
    let old = working_session(&http, &server, "bob", "bob-password-1").await;
    assert_eq!(
        page(&http, &server, &old, "/ui/users").await.0,
        403,
        "bob is no administrator"
    );

    // An administrator deletes bob, then creates another bob, an
    // administrator, with another password.
    expect_status(admin.delete(server.url("/api/v1/users/bob")), 204).await;
    let r = create(json!({"name": "bob", "password": "bob-password-2", "admin": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let users = page(&http, &server, &old, "/ui/users").await;
    assert!(
        to_login(&users),
        "the old bob's session opened the new bob's users page: {}",
        users.0
    );
    assert_ended(&http, &server, &old, "the account's deletion").await;
    // The new bob logs in with his own password, and has his rights.
    let new = session(&http, &server, "bob", "bob-password-2").await;
    assert_eq!(page(&http, &server, &new, "/ui/users").await.0, 200);
}
