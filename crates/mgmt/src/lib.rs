//! The management API under `/api/v1` (JSON), after Harbor's model:
//! users, projects and their members, robot accounts, repositories,
//! artifacts and tags, the audit log, and its own OpenAPI document.
//!
//! Routing is data, as for `/v2`: [`ROUTES`] is the one table of every
//! endpoint (method, path template and handler). The router serves exactly
//! that table, and a test checks the OpenAPI document against it, so the two
//! cannot drift. Repository names contain slashes, so `{repository}` may
//! span several path segments; templates are matched on the raw path, most
//! specific first (see [`find`]).
//!
//! Each change the web UI makes is also a typed function here
//! ([`create_user`], [`delete_tag`], ...): it does the permission checks,
//! validation, domain calls and audit records, and the endpoint's handler
//! is a JSON wrapper around the same function, so a page meets exactly
//! the API's checks (a forged form gets the API's 403 or 404), and a
//! renamed operation fails to compile instead of answering 500. The caller
//! is a [`Ctx`] (the UI's has no path, query or body; the typed functions
//! read only its state and caller).

pub mod access;
mod audit;
pub mod common;
mod gc;
mod members;
pub mod openapi;
mod policy;
mod projects;
mod proxy;
mod replication;
mod repositories;
mod robots;
mod schemas;
mod users;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use berth_http::auth::Caller;
use berth_http::AppState;
pub use common::Ctx;
use common::{Code, Error};
use std::future::Future;
use std::pin::Pin;

pub use gc::{gc_history, run_gc, GcHistory};
pub use members::{add_member, remove_member, update_member, MemberChange, MemberCreate};
pub use policy::{
    apply_retention, set_immutable_rules, set_project_quota, set_retention_rules, Quota,
    QuotaChange, RetentionChange,
};
pub use projects::{create_project, delete_project, update_project, ProjectChange, ProjectCreate};
pub use proxy::{project_proxy, remove_project_proxy, set_project_proxy, ProxyChange};
pub use replication::{
    create_endpoint, create_policy, delete_endpoint, delete_policy, endpoint_view,
    execution_detail, policy_named, replication_overview, run_policy, stop_execution,
    test_endpoint, update_endpoint, update_policy, ReplicationOverview,
};
pub use repositories::{delete_artifact, delete_repository, delete_tag};
pub use robots::{create_project_robot, revoke_project_robot, CreatedRobot, RobotCreate};
pub use users::{create_user, delete_user, update_user, UserChange, UserCreate};

/// Largest request body accepted; management bodies are small JSON.
const MAX_BODY: usize = 1024 * 1024;

/// The path parameter that may span several segments.
const MULTI_SEGMENT: &str = "{repository}";

/// One endpoint: method, path template, handler.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub(crate) handler: Handler,
}

/// What answers an endpoint.
pub(crate) type Handler = for<'a> fn(&'a Ctx) -> Answer<'a>;
type Answer<'a> = Pin<Box<dyn Future<Output = common::Result> + Send + 'a>>;

/// The route table: one line a path, with its methods and their handlers.
macro_rules! routes {
    ($($path:expr => $($method:ident $handler:path),+;)*) => {
        &[$($(Route {
            method: stringify!($method),
            path: $path,
            handler: |ctx| Box::pin($handler(ctx)),
        }),+),*]
    };
}

/// Every management endpoint. The router serves exactly these; the OpenAPI
/// document must describe exactly these (checked by a test).
pub const ROUTES: &[Route] = routes! {
    "/api/v1/systeminfo" => GET users::system_info;
    "/api/v1/openapi.json" => GET openapi::serve;
    "/api/v1/users" => GET users::list, POST users::create;
    "/api/v1/users/current" => GET users::current;
    "/api/v1/users/{name}" => GET users::get, PUT users::update, DELETE users::delete;
    "/api/v1/projects" => GET projects::list, POST projects::create;
    paths::PROJECT => GET projects::get, PUT projects::update, DELETE projects::delete;
    paths::MEMBERS => GET members::list, POST members::add;
    paths::MEMBER => PUT members::update, DELETE members::remove;
    "/api/v1/robots" => GET robots::list_system, POST robots::create_system;
    "/api/v1/robots/{robot}" => GET robots::get, DELETE robots::delete_any;
    paths::ROBOTS => GET robots::list_project, POST robots::create_project;
    paths::ROBOT => DELETE robots::delete_project;
    paths::REPOS => GET repositories::list;
    paths::REPO => GET repositories::get, DELETE repositories::delete;
    paths::ARTIFACTS => GET repositories::artifacts;
    paths::ARTIFACT => GET repositories::artifact, DELETE repositories::artifact_delete;
    paths::ARTIFACT_TAGS => GET repositories::artifact_tags;
    paths::ARTIFACT_TAG => DELETE repositories::artifact_tag_delete;
    paths::TAGS => GET repositories::tags;
    paths::TAG => DELETE repositories::tag_delete;
    "/api/v1/audit-logs" => GET audit::system;
    paths::AUDIT => GET audit::project;
    paths::QUOTA => GET policy::quota, PUT policy::set_quota;
    paths::IMMUTABLE => GET policy::immutable, PUT policy::set_immutable;
    paths::RETENTION => GET policy::retention, PUT policy::set_retention;
    paths::RETENTION_RUN => POST policy::run_retention;
    paths::PROXY => GET proxy::get, PUT proxy::set, DELETE proxy::remove;
    "/api/v1/gc" => POST gc::run, GET gc::history;
    paths::REPL_ENDPOINTS => GET replication::endpoints, POST replication::endpoint_create;
    paths::REPL_ENDPOINT => GET replication::endpoint, PUT replication::endpoint_update, DELETE replication::endpoint_delete;
    paths::REPL_ENDPOINT_TEST => POST replication::endpoint_test;
    paths::REPL_POLICIES => GET replication::policies, POST replication::policy_create;
    paths::REPL_POLICY => GET replication::policy, PUT replication::policy_update, DELETE replication::policy_delete;
    paths::REPL_POLICY_EXECUTIONS => GET replication::policy_executions, POST replication::policy_run;
    paths::REPL_EXECUTIONS => GET replication::executions;
    paths::REPL_EXECUTION => GET replication::execution;
    paths::REPL_EXECUTION_STOP => POST replication::execution_stop;
};

/// The longer path templates (`concat!` cannot join constants).
mod paths {
    pub const PROJECT: &str = "/api/v1/projects/{project}";
    pub const REPO: &str = "/api/v1/projects/{project}/repositories/{repository}";
    pub const MEMBERS: &str = "/api/v1/projects/{project}/members";
    pub const MEMBER: &str = "/api/v1/projects/{project}/members/{kind}/{member}";
    pub const ROBOTS: &str = "/api/v1/projects/{project}/robots";
    pub const ROBOT: &str = "/api/v1/projects/{project}/robots/{robot}";
    pub const REPOS: &str = "/api/v1/projects/{project}/repositories";
    pub const ARTIFACTS: &str = "/api/v1/projects/{project}/repositories/{repository}/artifacts";
    pub const ARTIFACT: &str =
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}";
    pub const ARTIFACT_TAGS: &str =
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/tags";
    pub const ARTIFACT_TAG: &str =
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/tags/{tag}";
    pub const TAGS: &str = "/api/v1/projects/{project}/repositories/{repository}/tags";
    pub const TAG: &str = "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}";
    pub const AUDIT: &str = "/api/v1/projects/{project}/audit-logs";
    pub const QUOTA: &str = "/api/v1/projects/{project}/quota";
    pub const IMMUTABLE: &str = "/api/v1/projects/{project}/immutable-rules";
    pub const RETENTION: &str = "/api/v1/projects/{project}/retention";
    pub const RETENTION_RUN: &str = "/api/v1/projects/{project}/retention/run";
    pub const PROXY: &str = "/api/v1/projects/{project}/proxy";
    pub const REPL_ENDPOINTS: &str = "/api/v1/replication/endpoints";
    pub const REPL_ENDPOINT: &str = "/api/v1/replication/endpoints/{endpoint}";
    pub const REPL_ENDPOINT_TEST: &str = "/api/v1/replication/endpoints/{endpoint}/test";
    pub const REPL_POLICIES: &str = "/api/v1/replication/policies";
    pub const REPL_POLICY: &str = "/api/v1/replication/policies/{policy}";
    pub const REPL_POLICY_EXECUTIONS: &str = "/api/v1/replication/policies/{policy}/executions";
    pub const REPL_EXECUTIONS: &str = "/api/v1/replication/executions";
    pub const REPL_EXECUTION: &str = "/api/v1/replication/executions/{execution}";
    pub const REPL_EXECUTION_STOP: &str = "/api/v1/replication/executions/{execution}/stop";
}

/// The management routes, behind the authentication middleware. Merge into
/// the main router (which supplies the state).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1", any(dispatch))
        .route("/api/v1/", any(dispatch))
        .route("/api/v1/{*rest}", any(dispatch))
        .layer(axum::middleware::from_fn_with_state(
            state,
            access::authenticate,
        ))
}

/// What a path and method select.
#[derive(Debug)]
pub enum Found {
    Route(&'static Route, Vec<(&'static str, String)>),
    /// The path exists, not with this method.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

/// Finds the route for a raw (still percent-encoded) path. When several
/// templates match, the most specific wins: the most segments after
/// `{repository}` (so `.../app/tags` lists the tags of `app`, not the
/// repository `app/tags`), then the most literal segments (so
/// `/users/current` is not the user "current"). Its method must match, or
/// the answer is 405: a less specific template is never tried instead,
/// so a DELETE can never fall through to a broader resource. A repository
/// whose name ends like a sub-resource can be addressed with its slashes
/// encoded as `%2F`.
pub fn find(method: &str, path: &str) -> Found {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<((usize, usize), &'static str)> = None;
    let mut candidates = Vec::new();
    for r in ROUTES {
        if let Some(params) = match_template(r.path, &segments) {
            let score = specificity(r.path);
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, r.path));
            }
            candidates.push((r, params));
        }
    }
    let Some((_, path)) = best else {
        return Found::NotFound;
    };
    let mut allowed = Vec::new();
    for (r, params) in candidates {
        if r.path != path {
            continue;
        }
        if r.method == method {
            return Found::Route(r, params);
        }
        allowed.push(r.method);
    }
    Found::WrongMethod(allowed)
}

fn specificity(template: &str) -> (usize, usize) {
    let segments: Vec<&str> = template.split('/').collect();
    let after = segments
        .iter()
        .position(|s| *s == MULTI_SEGMENT)
        .map_or(0, |i| segments.len() - i - 1);
    let literals = segments.iter().filter(|s| !s.starts_with('{')).count();
    (after, literals)
}

/// Matches path segments against a template; the parameters, decoded.
fn match_template(template: &'static str, path: &[&str]) -> Option<Vec<(&'static str, String)>> {
    let tpl: Vec<&'static str> = template.split('/').collect();
    let (head, tail, multi) = match tpl.iter().position(|s| *s == MULTI_SEGMENT) {
        Some(i) => {
            // The multi-segment parameter takes what the segments before
            // and after it leave, at least one segment.
            if path.len() < tpl.len() {
                return None;
            }
            let tail_len = tpl.len() - i - 1;
            let middle = &path[i..path.len() - tail_len];
            (
                (&tpl[..i], &path[..i]),
                (&tpl[i + 1..], &path[path.len() - tail_len..]),
                Some(middle),
            )
        }
        None if tpl.len() == path.len() => ((&tpl[..], path), (&[][..], &[][..]), None),
        None => return None,
    };
    let mut params = Vec::new();
    match_segments(head.0, head.1, &mut params)?;
    if let Some(middle) = multi {
        let decoded: Option<Vec<String>> = middle
            .iter()
            .map(|s| common::percent_decode(s).filter(|s| !s.is_empty()))
            .collect();
        params.push(("repository", decoded?.join("/")));
    }
    match_segments(tail.0, tail.1, &mut params)?;
    Some(params)
}

/// Matches single segments: literals exactly, `{name}` capturing one
/// non-empty decoded segment.
fn match_segments(
    template: &[&'static str],
    path: &[&str],
    params: &mut Vec<(&'static str, String)>,
) -> Option<()> {
    for (t, p) in template.iter().zip(path) {
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(name) => {
                let value = common::percent_decode(p).filter(|v| !v.is_empty())?;
                params.push((name, value));
            }
            None if t == p => {}
            None => return None,
        }
    }
    Some(())
}

async fn dispatch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    // HEAD is answered as GET; the server sends no body for it.
    let lookup = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let (route, params) = match find(lookup, uri.path()) {
        Found::Route(r, params) => (r, params),
        Found::WrongMethod(allowed) => {
            let mut resp = Error::new(
                Code::MethodNotAllowed,
                format!("{method} is not allowed here"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        }
        Found::NotFound => {
            return Error::not_found(format!("no such endpoint: {}", uri.path())).into_response()
        }
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Error::new(
                Code::PayloadTooLarge,
                format!("request bodies are limited to {MAX_BODY} bytes"),
            )
            .into_response()
        }
    };
    let query = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let ctx = Ctx {
        state,
        caller,
        params,
        query,
        body,
    };
    match (route.handler)(&ctx).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: &str, path: &str) -> Option<(&'static str, Vec<(&'static str, String)>)> {
        match find(method, path) {
            Found::Route(r, p) => Some((r.path, p)),
            _ => None,
        }
    }

    #[test]
    fn routes_match_most_specific_first() {
        let (path, params) = found("GET", "/api/v1/projects/p/repositories/a/b/tags").unwrap();
        assert_eq!(path, paths::TAGS);
        assert_eq!(
            params,
            [("project", "p".into()), ("repository", "a/b".into())]
        );
        let (_, params) = found("DELETE", "/api/v1/projects/p/repositories/a%2Ftags").unwrap();
        assert_eq!(params[1], ("repository", "a/tags".into()));
        let (path, params) = found(
            "DELETE",
            "/api/v1/projects/p/repositories/x/artifacts/sha256%3Aab/tags/v1",
        )
        .unwrap();
        assert_eq!(path, paths::ARTIFACT_TAG);
        assert_eq!(params[1], ("repository", "x".into()));
        assert_eq!(params[2], ("reference", "sha256:ab".into()));
        assert_eq!(params[3], ("tag", "v1".into()));
        assert_eq!(
            found("GET", "/api/v1/users/current").unwrap().0,
            "/api/v1/users/current"
        );
        assert_eq!(found("GET", "/api/v1/users/alice").unwrap().1[0].1, "alice");
        assert_eq!(
            found("GET", "/api/v1/projects/").unwrap().0,
            "/api/v1/projects"
        );
        // The tags list has no DELETE: never a delete of repository "a/tags".
        assert!(matches!(
            find("DELETE", "/api/v1/projects/p/repositories/a/tags"),
            Found::WrongMethod(m) if m == ["GET"]
        ));
        assert!(matches!(find("GET", "/api/v1/nothing"), Found::NotFound));
        assert!(matches!(
            find("GET", "/api/v1/projects/p/repositories"),
            Found::Route(..)
        ));
        assert!(matches!(
            find("GET", "/api/v1/projects//members"),
            Found::NotFound
        ));
    }

    #[test]
    fn every_route_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{} {}", r.method, r.path);
        }
    }
}
