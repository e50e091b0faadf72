//! The management API under `/api/v1` (JSON), after Harbor's model:
//! users, projects and their members, robot accounts, repositories,
//! artifacts and tags, the audit log, and its own OpenAPI document.
//!
//! Routing is data, as for `/v2`: [`ROUTES`] is the one table of every
//! endpoint (method and path template). The router serves exactly that
//! table, and a test checks the OpenAPI document against it, so the two
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
mod repositories;
mod robots;
mod schemas;
mod users;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use berth_http::auth::Caller;
use berth_http::AppState;
pub use common::Ctx;
use common::Error;

pub use gc::{gc_history, run_gc, GcHistory};
pub use members::{add_member, remove_member, update_member, MemberChange, MemberCreate};
pub use policy::{
    apply_retention, set_immutable_rules, set_project_quota, set_retention_rules, Quota,
    QuotaChange, RetentionChange,
};
pub use projects::{create_project, delete_project, update_project, ProjectChange, ProjectCreate};
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
    pub(crate) op: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    SystemInfo,
    OpenApi,
    UsersList,
    UsersCreate,
    UsersCurrent,
    UserGet,
    UserUpdate,
    UserDelete,
    ProjectsList,
    ProjectsCreate,
    ProjectGet,
    ProjectUpdate,
    ProjectDelete,
    MembersList,
    MembersAdd,
    MemberUpdate,
    MemberRemove,
    RobotsList,
    RobotsCreate,
    RobotGet,
    RobotDelete,
    ProjectRobotsList,
    ProjectRobotsCreate,
    ProjectRobotDelete,
    ReposList,
    RepoGet,
    RepoDelete,
    ArtifactsList,
    ArtifactGet,
    ArtifactDelete,
    ArtifactTags,
    ArtifactTagDelete,
    TagsList,
    TagDelete,
    AuditLogs,
    ProjectAuditLogs,
    GcRun,
    GcHistory,
    QuotaGet,
    QuotaSet,
    ImmutableGet,
    ImmutableSet,
    RetentionGet,
    RetentionSet,
    RetentionRun,
}

const fn route(method: &'static str, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// Every management endpoint. The router serves exactly these; the OpenAPI
/// document must describe exactly these (checked by a test).
pub const ROUTES: &[Route] = &[
    route("GET", "/api/v1/systeminfo", Op::SystemInfo),
    route("GET", "/api/v1/openapi.json", Op::OpenApi),
    route("GET", "/api/v1/users", Op::UsersList),
    route("POST", "/api/v1/users", Op::UsersCreate),
    route("GET", "/api/v1/users/current", Op::UsersCurrent),
    route("GET", "/api/v1/users/{name}", Op::UserGet),
    route("PUT", "/api/v1/users/{name}", Op::UserUpdate),
    route("DELETE", "/api/v1/users/{name}", Op::UserDelete),
    route("GET", "/api/v1/projects", Op::ProjectsList),
    route("POST", "/api/v1/projects", Op::ProjectsCreate),
    route("GET", paths::PROJECT, Op::ProjectGet),
    route("PUT", paths::PROJECT, Op::ProjectUpdate),
    route("DELETE", paths::PROJECT, Op::ProjectDelete),
    route("GET", paths::MEMBERS, Op::MembersList),
    route("POST", paths::MEMBERS, Op::MembersAdd),
    route("PUT", paths::MEMBER, Op::MemberUpdate),
    route("DELETE", paths::MEMBER, Op::MemberRemove),
    route("GET", "/api/v1/robots", Op::RobotsList),
    route("POST", "/api/v1/robots", Op::RobotsCreate),
    route("GET", "/api/v1/robots/{robot}", Op::RobotGet),
    route("DELETE", "/api/v1/robots/{robot}", Op::RobotDelete),
    route("GET", paths::ROBOTS, Op::ProjectRobotsList),
    route("POST", paths::ROBOTS, Op::ProjectRobotsCreate),
    route("DELETE", paths::ROBOT, Op::ProjectRobotDelete),
    route("GET", paths::REPOS, Op::ReposList),
    route("GET", paths::REPO, Op::RepoGet),
    route("DELETE", paths::REPO, Op::RepoDelete),
    route("GET", paths::ARTIFACTS, Op::ArtifactsList),
    route("GET", paths::ARTIFACT, Op::ArtifactGet),
    route("DELETE", paths::ARTIFACT, Op::ArtifactDelete),
    route("GET", paths::ARTIFACT_TAGS, Op::ArtifactTags),
    route("DELETE", paths::ARTIFACT_TAG, Op::ArtifactTagDelete),
    route("GET", paths::TAGS, Op::TagsList),
    route("DELETE", paths::TAG, Op::TagDelete),
    route("GET", "/api/v1/audit-logs", Op::AuditLogs),
    route("GET", paths::AUDIT, Op::ProjectAuditLogs),
    route("GET", paths::QUOTA, Op::QuotaGet),
    route("PUT", paths::QUOTA, Op::QuotaSet),
    route("GET", paths::IMMUTABLE, Op::ImmutableGet),
    route("PUT", paths::IMMUTABLE, Op::ImmutableSet),
    route("GET", paths::RETENTION, Op::RetentionGet),
    route("PUT", paths::RETENTION, Op::RetentionSet),
    route("POST", paths::RETENTION_RUN, Op::RetentionRun),
    route("POST", "/api/v1/gc", Op::GcRun),
    route("GET", "/api/v1/gc", Op::GcHistory),
];

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
            let mut resp = Error::Status(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
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
            return Error::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
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
    match handle(route.op, &ctx).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn handle(op: Op, ctx: &Ctx) -> common::Result {
    match op {
        Op::SystemInfo => users::system_info(ctx),
        Op::OpenApi => common::ok(openapi::document()),
        Op::UsersList => users::list(ctx).await,
        Op::UsersCreate => users::create(ctx).await,
        Op::UsersCurrent => users::current(ctx).await,
        Op::UserGet => users::get(ctx).await,
        Op::UserUpdate => users::update(ctx).await,
        Op::UserDelete => users::delete(ctx).await,
        Op::ProjectsList => projects::list(ctx).await,
        Op::ProjectsCreate => projects::create(ctx).await,
        Op::ProjectGet => projects::get(ctx).await,
        Op::ProjectUpdate => projects::update(ctx).await,
        Op::ProjectDelete => projects::delete(ctx).await,
        Op::MembersList => members::list(ctx).await,
        Op::MembersAdd => members::add(ctx).await,
        Op::MemberUpdate => members::update(ctx).await,
        Op::MemberRemove => members::remove(ctx).await,
        Op::RobotsList => robots::list_system(ctx).await,
        Op::RobotsCreate => robots::create_system(ctx).await,
        Op::RobotGet => robots::get(ctx).await,
        Op::RobotDelete => robots::delete_any(ctx).await,
        Op::ProjectRobotsList => robots::list_project(ctx).await,
        Op::ProjectRobotsCreate => robots::create_project(ctx).await,
        Op::ProjectRobotDelete => robots::delete_project(ctx).await,
        Op::ReposList => repositories::list(ctx).await,
        Op::RepoGet => repositories::get(ctx).await,
        Op::RepoDelete => repositories::delete(ctx).await,
        Op::ArtifactsList => repositories::artifacts(ctx).await,
        Op::ArtifactGet => repositories::artifact(ctx).await,
        Op::ArtifactDelete => repositories::artifact_delete(ctx).await,
        Op::ArtifactTags => repositories::artifact_tags(ctx).await,
        Op::ArtifactTagDelete => repositories::artifact_tag_delete(ctx).await,
        Op::TagsList => repositories::tags(ctx).await,
        Op::TagDelete => repositories::tag_delete(ctx).await,
        Op::AuditLogs => audit::system(ctx).await,
        Op::ProjectAuditLogs => audit::project(ctx).await,
        Op::GcRun => gc::run(ctx).await,
        Op::QuotaGet => policy::quota(ctx).await,
        Op::QuotaSet => policy::set_quota(ctx).await,
        Op::ImmutableGet => policy::immutable(ctx).await,
        Op::ImmutableSet => policy::set_immutable(ctx).await,
        Op::RetentionGet => policy::retention(ctx).await,
        Op::RetentionSet => policy::set_retention(ctx).await,
        Op::RetentionRun => policy::run_retention(ctx).await,
        Op::GcHistory => gc::history(ctx).await,
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
