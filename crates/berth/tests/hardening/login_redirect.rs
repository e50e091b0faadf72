//! After logging in, the UI follows `next` only to a path of this site
//! (issue 14, item 2). Browsers drop tabs and newlines from a `Location`
//! before parsing it, so `/\t/evil.example`, which the old check let
//! through, took them to evil.example; `/\r\nX:y` made the login answer 500
//! after the session was created. Anything that is not plainly a local
//! path, encoded or not, now goes to `/`.

use super::ui_sessions::{browser, cookie, hidden, log_in, login_form};
use crate::common::{Server, ADMIN_PASSWORD};
use berth_test_kit::web::submit_login;

/// `next` values as the login form submits them (decoded), and where the
/// login must lead.
const CASES: &[(&str, &str)] = &[
    ("/\t/evil.example", "/"),
    ("/\n/evil.example", "/"),
    ("/\r\nX:y", "/"),
    ("\t//evil.example", "/"),
    (" //evil.example", "/"),
    ("//evil.example", "/"),
    ("/\\evil.example", "/"),
    ("https://evil.example/", "/"),
    ("javascript:alert(1)", "/"),
    ("/%09/evil.example", "/"),
    ("/%2F/evil.example", "/"),
    ("/%5Cevil.example", "/"),
    ("/%252F/evil.example", "/"),
    ("/ui/gc", "/ui/gc"),
    ("/ui/repo/team/app?q=a%20b", "/ui/repo/team/app?q=a%20b"),
];

#[tokio::test]
async fn a_login_follows_only_local_paths() {
    let server = Server::start();
    let http = browser();
    for (next, expected) in CASES {
        let resp = log_in(&http, &server.url(""), "admin", ADMIN_PASSWORD, next).await;
        assert_eq!(resp.status(), 303, "next={next:?}");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(location, *expected, "next={next:?}");
        // A successful login: the session is there and works.
        let session = cookie(&resp, "berth_session");
        let home = http
            .get(server.url("/"))
            .header("cookie", session)
            .send()
            .await
            .unwrap();
        assert_eq!(home.status(), 200, "next={next:?}");
    }
}

#[tokio::test]
async fn the_login_form_keeps_only_a_local_next() {
    let server = Server::start();
    let http = browser();
    // Raw query strings, as a link would carry them.
    for (query, expected) in [
        ("next=/%09/evil.example", "/"),
        ("next=/%0d%0aX:y", "/"),
        ("next=%2F%2Fevil.example", "/"),
        ("next=/%5Cevil.example", "/"),
        ("next=/%252F/evil.example", "/"),
        ("next=%2Fui%2Fgc", "/ui/gc"),
    ] {
        let (_, html) = login_form(&http, &server, &format!("/ui/login?{query}")).await;
        assert_eq!(hidden(&html, "next"), expected, "{query}");
    }

    // The way a real `next` comes about: a page asked for without a
    // session leads to the login form, and the login back to the page.
    let resp = http.get(server.url("/ui/gc")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let to_form = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to_form, "/ui/login?next=%2Fui%2Fgc");
    let form = login_form(&http, &server, &to_form).await;
    let next = hidden(&form.1, "next");
    let base = server.url("");
    let resp = submit_login(&http, &base, &form, "admin", ADMIN_PASSWORD, &next).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/ui/gc");
}
