//! The web UI: HTML pages rendered on the server (maud), served by the same
//! binary at `/` and under `/ui/`, with one compiled-in stylesheet and a few
//! lines of script (copy buttons, delete confirmations).
//!
//! Calls go one way: pages read through the management API's permission
//! checks (`mgmt::access`) and the registry's queries; every change a page
//! makes calls the management layer's typed function for it
//! (`berth_mgmt::create_user`, `berth_mgmt::delete_tag`, ...), the very
//! function the `/api/v1` endpoint wraps, so it meets the same checks,
//! domain calls and audit records (a forged form gets the API's 403 or
//! 404), and a renamed operation fails to compile. Layout:
//! [`session`] (login sessions in the metadata store, CSRF tokens, the [`Viewer`]
//! and [`Submitted`] extractors), [`page`] (the layout and shared pieces),
//! then one module per page group; `artifact_parts` holds what the
//! repository and artifact pages share, so that neither imports the other.

mod admin;
mod artifact;
mod artifact_parts;
mod login;
mod members;
mod page;
mod policy;
mod projects;
mod replication;
mod repository;
mod robots;
mod session;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_http::AppState;
use berth_mgmt::common::Error as MgmtError;
pub use session::{Submitted, Viewer};

const STYLESHEET: &str = include_str!("assets/berth.css");
const SCRIPT: &str = include_str!("assets/berth.js");

/// Where the UI's pages live; `/` shows the projects.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(projects::list))
        .route("/ui", get(|| async { Redirect::to("/") }))
        .route("/ui/", get(|| async { Redirect::to("/") }))
        .route("/ui/static/berth.css", get(stylesheet))
        .route("/ui/static/berth.js", get(script))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/projects", post(projects::create))
        .route("/ui/projects/{project}", get(projects::repositories))
        .route("/ui/projects/{project}/settings", post(projects::settings))
        .route(
            "/ui/projects/{project}/members",
            get(members::list).post(members::add),
        )
        .route(
            "/ui/projects/{project}/members/{kind}/{name}",
            post(members::change),
        )
        .route(
            "/ui/projects/{project}/robots",
            get(robots::list).post(robots::create),
        )
        .route(
            "/ui/projects/{project}/robots/{name}/revoke",
            post(robots::revoke),
        )
        .route("/ui/projects/{project}/policy", get(policy::show))
        .route("/ui/projects/{project}/policy/{what}", post(policy::change))
        .route("/ui/projects/{project}/audit", get(admin::project_audit))
        .route(
            "/ui/repo/{*path}",
            get(repository::page).post(repository::action),
        )
        .route("/ui/users", get(admin::users).post(admin::create_user))
        .route("/ui/users/{name}", post(admin::change_user))
        .route("/ui/gc", get(admin::gc).post(admin::run_gc))
        .route("/ui/nodes", get(admin::nodes))
        .route("/ui/replication", get(replication::overview))
        .route(
            "/ui/replication/new/endpoint",
            get(replication::new_endpoint),
        )
        .route("/ui/replication/new/policy", get(replication::new_policy))
        .route(
            "/ui/replication/endpoints",
            post(replication::create_endpoint),
        )
        .route(
            "/ui/replication/endpoints/{name}",
            get(replication::show_endpoint).post(replication::update_endpoint),
        )
        .route(
            "/ui/replication/endpoints/{name}/test",
            post(replication::test_endpoint),
        )
        .route(
            "/ui/replication/endpoints/{name}/delete",
            post(replication::delete_endpoint),
        )
        .route("/ui/replication/policies", post(replication::create_policy))
        .route(
            "/ui/replication/policies/{name}",
            get(replication::show_policy).post(replication::update_policy),
        )
        .route(
            "/ui/replication/policies/{name}/run",
            post(replication::run),
        )
        .route(
            "/ui/replication/policies/{name}/delete",
            post(replication::delete_policy),
        )
        .route(
            "/ui/replication/executions/{id}",
            get(replication::execution),
        )
        .route(
            "/ui/replication/executions/{id}/stop",
            post(replication::stop),
        )
        .route("/ui/audit", get(admin::audit))
        .layer(axum::middleware::map_response(security_headers))
}

async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Pages hold CSRF tokens and, once, robot secrets: never cached, never
/// framed; scripts and styles only from this origin (so no inline script
/// can run, whatever a page shows).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cache-control", "no-store");
    resp
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum UiError {
    /// Not logged in (or the session ended): to the login page, then back
    /// to `next`.
    Login(Option<String>),
    /// Shown as an error page with this status.
    Status(StatusCode, String),
}

impl UiError {
    pub fn not_found(what: impl Into<String>) -> UiError {
        UiError::Status(StatusCode::NOT_FOUND, what.into())
    }

    pub fn bad_request(what: impl Into<String>) -> UiError {
        UiError::Status(StatusCode::BAD_REQUEST, what.into())
    }

    pub fn forbidden() -> UiError {
        UiError::Status(
            StatusCode::FORBIDDEN,
            "you do not have permission to do this".into(),
        )
    }
}

/// A failure a page meets is shown as the management API answers it:
/// its status and message (the one mapping of each error type is the
/// management layer's, `berth_mgmt::common`).
impl From<MgmtError> for UiError {
    fn from(e: MgmtError) -> Self {
        if let MgmtError::Api(api) = &e {
            api.log();
        }
        UiError::Status(e.status(), e.message())
    }
}

/// The failures of the layers below, through the management layer's
/// mapping of each.
macro_rules! through_mgmt {
    ($($error:ty),*) => {
        $(impl From<$error> for UiError {
            fn from(e: $error) -> Self {
                MgmtError::from(e).into()
            }
        })*
    };
}

through_mgmt!(
    berth_core::CoreError,
    berth_core::KvError,
    berth_auth::directory::DirectoryError
);

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login(next) => {
                let target = match next {
                    Some(n) => format!("/ui/login?next={}", encode(&n)),
                    None => "/ui/login".to_owned(),
                };
                Redirect::to(&target).into_response()
            }
            UiError::Status(status, message) => page::error(status, &message),
        }
    }
}

pub type Result<T = Response> = std::result::Result<T, UiError>;

/// Percent-encodes one path segment or query value (everything but
/// unreserved bytes), as the management API does.
pub use berth_mgmt::common::encode;

/// The UI path of a repository (its name's segments kept as segments).
pub fn repo_path(repo: &str) -> String {
    let segments: Vec<String> = repo.split('/').map(encode).collect();
    format!("/ui/repo/{}", segments.join("/"))
}

/// The UI path of a project page.
pub fn project_path(project: &str, tab: &str) -> String {
    match tab {
        "" => format!("/ui/projects/{}", encode(project)),
        tab => format!("/ui/projects/{}/{tab}", encode(project)),
    }
}

/// A redirect after a change, with a notice for the next page.
pub fn done(path: &str, notice: page::Notice) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}done={}", notice.code())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode("robot$p+ci"), "robot%24p%2Bci");
        assert_eq!(repo_path("p/a/b"), "/ui/repo/p/a/b");
        assert_eq!(project_path("p", "robots"), "/ui/projects/p/robots");
    }
}
