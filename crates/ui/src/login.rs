//! Logging in and out. The password is checked by `Auth::login`, the same
//! rate-limited path as Basic credentials on the API, so local and LDAP
//! users log in alike. The login form has no session yet: its CSRF token is
//! a random value in a short-lived cookie that the form must repeat
//! (double submit), so another site cannot log a browser in as someone
//! else.

use super::page::{self, Notice};
use super::session::{self, Submitted, LOGIN_COOKIE};
use super::Result;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use berth_auth::model::Principal;
use berth_http::AppState;
use maud::html;
use std::net::SocketAddr;

type Pairs = Vec<(String, String)>;

/// Where to go after logging in: `next` when it is a path of this site,
/// else `/`. Browsers parse a `Location` by the URL standard, which first
/// drops leading and trailing C0 controls and spaces and every tab and
/// newline, and reads `\` as `/`: `/\t/evil.example` becomes
/// `//evil.example`, another host. Rather than predict that parse, only
/// printable ASCII is followed (every path this site links to is), with no
/// backslash, starting with one `/` and not two; the same must hold for
/// each percent-decoding of it, so that nothing which decodes to such a
/// value (here, in a proxy or in a browser) passes either. What passes is
/// always a valid header value.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| local_path(n)).unwrap_or("/")
}

fn local_path(next: &str) -> bool {
    let plain = |s: &[u8]| {
        s.first() == Some(&b'/')
            && !matches!(s.get(1), Some(b'/' | b'\\'))
            && !s.iter().any(|b| b.is_ascii_control() || *b == b'\\')
    };
    if !next.bytes().all(|b| b.is_ascii_graphic()) || !plain(next.as_bytes()) {
        return false;
    }
    // A few rounds cover double encoding (`%252F`); a value that still
    // decodes further after them is refused.
    let mut layer = next.as_bytes().to_vec();
    for _ in 0..4 {
        // One round; a malformed escape is kept as it is.
        let decoded: Vec<u8> = percent_encoding::percent_decode(&layer).collect();
        if decoded == layer {
            return true;
        }
        if !plain(&decoded) {
            return false;
        }
        layer = decoded;
    }
    false
}

fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    notice: maud::Markup,
    failure: Option<&str>,
    status: StatusCode,
) -> Result<Response> {
    let token = berth_auth::secret::generate();
    let cookie = session::cookie(state, headers, LOGIN_COOKIE, &token, 600)?;
    let markup = page::document(
        "Log in",
        html! {
            header.site { a.brand href="/" { "berth" } }
            main id="main" .narrow {
                h1 { "Log in to berth" }
                (notice)
                @if let Some(f) = failure {
                    p.error role="alert" id="login-error" { strong { "Not logged in: " } (f) }
                }
                form.stack method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="username" { "User name" }
                    input #username type="text" name="username" autocomplete="username"
                        autocapitalize="none" spellcheck="false" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password"
                        autocomplete="current-password" required;
                    button type="submit" { "Log in" }
                }
                p.hint {
                    "Local and directory (LDAP) accounts log in here. Robot accounts "
                    "are for registry clients and cannot log in to the UI."
                }
            }
        },
    );
    let mut resp = (status, Html(markup.into_string())).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<Pairs>,
) -> Result {
    let next = safe_next(page::param(&query, "next")).to_owned();
    form_page(
        &state,
        &headers,
        &next,
        Notice::shown(&query),
        None,
        StatusCode::OK,
    )
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<Pairs>,
) -> Result {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let next = safe_next(Some(field("next"))).to_owned();
    let expected = session::read_cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !session::tokens_match(field("csrf"), &expected) {
        return form_page(
            &state,
            &headers,
            &next,
            html! {},
            Some("the form expired; please log in again"),
            StatusCode::FORBIDDEN,
        );
    }
    let address = peer.ip().to_string();
    let user = field("username").trim();
    let failed =
        |why: &str, status| form_page(&state, &headers, &next, html! {}, Some(why), status);
    if user.is_empty() || field("password").is_empty() {
        return failed("enter a user name and a password", StatusCode::BAD_REQUEST);
    }
    // The session is tied to the account as it was before the password was
    // checked: if it changes meanwhile (the password is reset), the new
    // session ends at its first use rather than outliving the change.
    let directory = &state.auth.directory;
    let before = directory.account_version(user).await?;
    let principal = match state.auth.login(user, field("password"), &address).await {
        Ok(p) => p,
        Err(e) if e.0.code == berth_oci::ErrorCode::TooManyRequests => {
            return failed(
                "too many failed logins; try again later",
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(e) => return Err(berth_mgmt::common::Error::from(e).into()),
    };
    let (name, groups) = match principal {
        Some(Principal::User { name, groups, .. }) => (name, groups),
        Some(Principal::Robot { .. }) => {
            return failed(
                "robot accounts cannot log in to the UI",
                StatusCode::FORBIDDEN,
            )
        }
        Some(Principal::Anonymous) | None => {
            state.audit.record(user, "login_failed", "ui", &address);
            return failed("wrong user name or password", StatusCode::UNAUTHORIZED);
        }
    };
    // A directory user's first login creates their record, and the
    // directory may spell the name differently: then it is read now.
    let version = match before {
        Some(v) if name == user => Some(v),
        _ => directory.account_version(&name).await?,
    };
    let Some(version) = version else {
        // Deleted while logging in.
        return failed("wrong user name or password", StatusCode::UNAUTHORIZED);
    };
    let cookie = session::create(&state, &headers, &name, groups, version).await?;
    state.audit.record(&name, "login", "ui", &address);
    let mut resp = Redirect::to(&next).into_response();
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, cookie);
    h.append(
        header::SET_COOKIE,
        session::cookie(&state, &headers, LOGIN_COOKIE, "", 0)?,
    );
    Ok(resp)
}

pub async fn logout(submitted: Submitted) -> Result {
    let viewer = &submitted.viewer;
    let cookie = session::end(&viewer.state, &viewer.headers).await?;
    viewer
        .state
        .audit
        .record(viewer.name(), "logout", "ui", &viewer.caller.address);
    let mut resp =
        Redirect::to(&format!("/ui/login?done={}", Notice::LoggedOut.code())).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    fn all_go_home(nexts: &[&str]) {
        for next in nexts {
            assert_eq!(safe_next(Some(next)), "/", "{next:?}");
        }
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/ui/gc")), "/ui/gc");
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(
            safe_next(Some("/ui/repo/p/app?q=a%20b&page=2")),
            "/ui/repo/p/app?q=a%20b&page=2"
        );
        assert_eq!(
            safe_next(Some("/ui/projects/robot%24p%2Bci")),
            "/ui/projects/robot%24p%2Bci"
        );
        assert_eq!(
            safe_next(Some("/ui/repo/p/app?q=100%")),
            "/ui/repo/p/app?q=100%"
        );
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some("")), "/");
    }

    #[test]
    fn other_origins_go_home() {
        all_go_home(&[
            "//evil.example/",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/ui\\..\\..",
        ]);
    }

    /// The URL standard strips tabs and newlines anywhere and C0 controls
    /// and spaces at the ends before parsing; none of them is followed.
    #[test]
    fn control_characters_and_spaces_go_home() {
        all_go_home(&[
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\r\nX:y",
            "\t//evil.example",
            " //evil.example",
            "/\u{0}/evil.example",
            "/ui/gc\u{7f}",
            "/ui/gc ",
            "/ui/\u{2028}gc",
            "/ui/é",
        ]);
    }

    /// Encoded forms of the above: refused too, however deep.
    #[test]
    fn encoded_forms_go_home() {
        all_go_home(&[
            "/%09/evil.example",
            "/%0d%0aX:y",
            "/%2F/evil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%252F/evil.example",
            "/%25252F/evil.example",
            "/%2525252525252F/evil.example",
            "/ui/gc%00",
            "/ui/gc%7F",
        ]);
    }

    /// Whatever is followed is a valid `Location` value.
    #[test]
    fn what_is_followed_is_a_header_value() {
        for b in 0u8..=255 {
            let raw = [b'/', b'a', b];
            let next = String::from_utf8_lossy(&raw).into_owned();
            let kept = safe_next(Some(&next));
            assert!(axum::http::HeaderValue::from_str(kept).is_ok(), "{next:?}");
        }
    }
}
