//! Logging in and out. The password is checked by `Auth::login`, the same
//! rate-limited path as Basic credentials on the API, so local and LDAP
//! users log in alike. The login form has no session yet: its CSRF token is
//! a random value in a short-lived cookie that the form must repeat
//! (double submit), so another site cannot log a browser in as someone
//! else.

use super::page::{self, Notice};
use super::session::{self, Submitted, LOGIN_COOKIE};
use super::Result;
use crate::AppState;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use berth_auth::model::Principal;
use maud::html;
use std::net::SocketAddr;

type Pairs = Vec<(String, String)>;

/// Only paths of this site are followed after login.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/")
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
    let principal = match state.auth.login(user, field("password"), &address).await {
        Ok(p) => p,
        Err(e) if e.0.code == berth_oci::ErrorCode::TooManyRequests => {
            return failed(
                "too many failed logins; try again later",
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(e) => return Err(crate::mgmt::common::Error::from(e).into()),
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
    let cookie = session::create(&state, &headers, &name, groups).await?;
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

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/ui/gc")), "/ui/gc");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
