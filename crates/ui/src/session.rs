//! Login sessions of the web UI. A session is a random id in the
//! `berth_session` cookie (HttpOnly, SameSite=Lax, Secure over TLS); its
//! record lives in the metadata store under `uisession:<sha256 of the id>`
//! (`berth_auth::sessions`, reached through the directory) with an expiry, never in node memory, so any node of a cluster serves it and a
//! leaked metadata dump holds no usable id. Each record carries a CSRF
//! token that every form sends back and every POST must match
//! ([`Submitted`]), and the version of the user's account record when the
//! password was checked: a session lasts only while the account is
//! unchanged, as a verified Basic login does (`Auth::login`), so that a
//! changed password, a deleted account, or a new account under the same
//! name ends every session of the old one.

use super::{Result, UiError};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::Form;
use berth_auth::model::Principal;
use berth_auth::sessions::Sessions;
use berth_http::auth::Caller;
use berth_http::AppState;
use berth_mgmt::common::Ctx;
use bytes::Bytes;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "berth_session";
/// Holds the token of the login form, before there is a session.
pub const LOGIN_COOKIE: &str = "berth_login";
/// A session ends this long after login, used or not.
pub use berth_auth::sessions::LIFETIME_SECS;
/// Largest form accepted.
const MAX_FORM: usize = 64 * 1024;

/// The session records (in the auth crate: HTTP code keeps no records).
fn sessions(state: &AppState) -> &Sessions {
    state.auth.directory.sessions()
}

/// Starts a session for a user who just proved who they are, with their
/// account's version as it was when the proof was checked; returns the
/// cookie to set.
pub async fn create(
    state: &AppState,
    headers: &HeaderMap,
    user: &str,
    groups: Vec<String>,
    account_version: u64,
) -> Result<HeaderValue> {
    let id = sessions(state)
        .create(user, groups, account_version)
        .await?;
    cookie(state, headers, COOKIE, &id, LIFETIME_SECS)
}

/// Ends the session of `headers`, if any; returns the cookie that clears it.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue> {
    if let Some(id) = read_cookie(headers, COOKIE) {
        sessions(state).end(&id).await?;
    }
    cookie(state, headers, COOKIE, "", 0)
}

/// Whether cookies must be `Secure`: berth terminates TLS, its external
/// URL is https, or the proxy in front says the request came over https.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.auth.scheme == "https"
        || state.base_url.starts_with("https://")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: u64,
) -> Result<HeaderValue> {
    let path = if name == LOGIN_COOKIE {
        "/ui/login"
    } else {
        "/"
    };
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    if secure(state, headers) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).map_err(|_| UiError::bad_request("invalid cookie value"))
}

pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// Constant-time comparison of a submitted token with the expected one.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// The logged-in person viewing a page, as the management API would see
/// them: a [`Caller`] whose account is read afresh on every request. Any
/// change to the account since login (a password set, rights given or
/// taken, the account deleted or deleted and created again) ends the
/// session at once.
#[derive(Clone)]
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
    pub state: AppState,
    pub headers: HeaderMap,
}

impl Viewer {
    pub fn name(&self) -> &str {
        self.caller.principal.name()
    }

    pub fn is_admin(&self) -> bool {
        self.caller.principal.is_admin()
    }

    /// `Ok` for a system administrator, else the 403 page.
    pub fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(UiError::forbidden())
        }
    }

    /// A management request context for this viewer.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            state: self.state.clone(),
            caller: self.caller.clone(),
            params: Vec::new(),
            query: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// The `host[:port]` images are pulled from: the external URL's, else
    /// the one the browser used.
    pub fn registry_host(&self) -> String {
        let base = self.state.base_url.as_ref();
        if let Some(rest) = base.split_once("://").map(|(_, r)| r) {
            return rest.split('/').next().unwrap_or(rest).to_owned();
        }
        self.headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost:5000")
            .to_owned()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        // After logging in, a GET comes back here; a form posted with an
        // ended session starts over from the login page.
        let next = (parts.method == Method::GET)
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten();
        let login = || UiError::Login(next.clone());
        let Some(id) = read_cookie(&parts.headers, COOKIE) else {
            return Err(login());
        };
        let Some(record) = sessions(state).load(&id).await? else {
            return Err(login());
        };
        let user = match state.auth.directory.user_versioned(&record.user).await? {
            Some((user, version)) if version == record.account_version => user,
            _ => {
                sessions(state).end(&id).await?;
                return Err(login());
            }
        };
        Ok(Viewer {
            caller: Caller {
                principal: Principal::User {
                    name: user.name,
                    admin: user.admin,
                    groups: record.groups,
                },
                claims: None,
                address: address(parts),
            },
            csrf: record.csrf,
            state: state.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// The fields of a submitted form.
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A value as typed, spaces kept (passwords); required.
    pub fn secret(&self, name: &str, label: &str) -> Result<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| UiError::bad_request(format!("{label} is required")))
    }

    pub fn required(&self, name: &str, label: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| UiError::bad_request(format!("{label} is required")))
    }
}

/// A form posted by a logged-in viewer whose CSRF token matched.
pub struct Submitted {
    pub viewer: Viewer,
    pub fields: Fields,
}

impl FromRequest<AppState> for Submitted {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            UiError::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is too large".into(),
            )
        })?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|e| UiError::Status(e.status(), e.body_text()))?;
        let fields = Fields(fields);
        if !tokens_match(fields.get("csrf").unwrap_or_default(), &viewer.csrf) {
            return Err(UiError::Status(
                StatusCode::FORBIDDEN,
                "this form has expired or did not come from this site: reload the page and try again"
                    .into(),
            ));
        }
        Ok(Submitted { viewer, fields })
    }
}
