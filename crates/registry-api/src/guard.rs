//! The access guard in front of `/v2`: authenticates the caller, computes
//! the access the endpoint needs (in one place, like Distribution's
//! `appendAccessRecords`), answers 401 with a Bearer challenge or 403 when
//! it is missing, and records pushes, pulls and deletes in the audit log.
//! Handlers behind it find the [`Caller`] and the parsed [`V2Request`],
//! with its decision applied, in the request's extensions.

use crate::v2::request::{Mirrored, V2Request};
use crate::v2::route::{Endpoint, RouteError};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_auth::model::{Action, Principal};
use berth_http::auth::{AuthFailure, Caller};
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::{ErrorCode, RepoName};
use std::net::SocketAddr;

/// What an endpoint needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated caller (the `/v2/` version check).
    Authenticated,
    /// `registry:catalog:*`; the listing itself is filtered per caller.
    Catalog,
    Repo(RepoName, Action),
    /// Nothing to check: the route is invalid and the handler answers so.
    Nothing,
}

pub fn need(endpoint: &Endpoint, method: &Method) -> Need {
    use Endpoint::*;
    let read = matches!(*method, Method::GET | Method::HEAD);
    match endpoint {
        Base => Need::Authenticated,
        Catalog => Need::Catalog,
        Tags(r) | Referrers(r, _) => Need::Repo(r.clone(), Action::Pull),
        Manifest(r, _) | Blob(r, _) if read => Need::Repo(r.clone(), Action::Pull),
        Manifest(r, _) | Blob(r, _) if *method == Method::DELETE => {
            Need::Repo(r.clone(), Action::Delete)
        }
        Manifest(r, _) | Blob(r, _) | UploadStart(r) | Upload(r, _) => {
            Need::Repo(r.clone(), Action::Push)
        }
    }
}

/// The scope a client should ask for to satisfy `need`, and to read the
/// source of a mount, as Distribution asks: a token client can then mount.
fn scope_of(need: &Need, mount_source: Option<&RepoName>) -> Option<String> {
    let scope = need_scope(need)?;
    Some(match mount_source {
        Some(from) => format!("{scope} repository:{from}:pull"),
        None => scope,
    })
}

fn need_scope(need: &Need) -> Option<String> {
    match need {
        Need::Catalog => Some("registry:catalog:*".into()),
        Need::Repo(r, Action::Pull) => Some(format!("repository:{r}:pull")),
        Need::Repo(r, Action::Push) => Some(format!("repository:{r}:pull,push")),
        Need::Repo(r, Action::Delete) => Some(format!("repository:{r}:delete")),
        Need::Authenticated | Need::Nothing => None,
    }
}

pub async fn guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut request = V2Request::parse(req.uri().path(), req.uri().query());
    let checked = match mirror(&state, req.method(), &mut request).await {
        Ok(()) => check(&state, peer, req.headers(), req.method(), &mut request).await,
        Err(e) => Err(e.into_response()),
    };
    let mut resp = match checked {
        Ok(caller) => {
            let audit = audit_entry(&request, req.method(), &caller);
            req.extensions_mut().insert(caller);
            req.extensions_mut().insert(request);
            let resp = next.run(req).await;
            if let Some((user, op, resource, address)) = audit {
                if resp.status().is_success() {
                    state.audit.record(&user, op, &resource, &address);
                }
            }
            resp
        }
        Err(resp) => resp,
    };
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// The repository a transparent mirror serves for `repo`, as a client of
/// the registry `ns` names it (containerd's `?ns=<registry>`; none means
/// docker.io, as from Docker's registry-mirrors): `<project>/<repo>` in
/// the proxy project configured for that registry. Without `ns`, a name
/// whose first segment is a project of berth's stays that project's.
pub async fn mirror_target(
    state: &AppState,
    ns: Option<&str>,
    repo: &RepoName,
) -> Result<Option<RepoName>, ApiError> {
    let Some(project) = state.proxy.mirror_project(mirror_registry(ns)) else {
        return Ok(None);
    };
    if ns.is_none()
        && state
            .auth
            .directory
            .project(repo.project())
            .await
            .map_err(|e| ApiError(berth_core::CoreError::unavailable(e.to_string())))?
            .is_some()
    {
        return Ok(None);
    }
    let mapped = format!("{project}/{repo}");
    RepoName::parse(&mapped).map(Some).ok_or_else(|| {
        ApiError::detail(
            ErrorCode::NameInvalid,
            format!("{mapped} is not a valid repository name"),
        )
    })
}

/// The registry a mirror's client mirrors: `ns`, else docker.io (Docker's
/// registry-mirrors send none).
pub fn mirror_registry(ns: Option<&str>) -> &str {
    ns.map_or("docker.io", |ns| ns.trim_end_matches('/'))
}

/// A mirror's request is served as [`mirror_target`] names it: access,
/// audit and the handler all see that name; a token's claims are checked
/// against the name the client asked for (`mirrored_from`), which is the
/// one its token names. Without `ns`, only reads are a mirror's (Docker's
/// mirrors only pull): a push into a new project stays a push.
async fn mirror(
    state: &AppState,
    method: &Method,
    request: &mut V2Request,
) -> Result<(), ApiError> {
    let Ok(params) = &request.params else {
        return Ok(());
    };
    let ns = params.get("ns").map(String::as_str);
    if ns.is_none() && !matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let Some(repo) = request.endpoint.as_ref().ok().and_then(Endpoint::repo) else {
        return Ok(());
    };
    let Some(mapped) = mirror_target(state, ns, repo).await? else {
        return Ok(());
    };
    request.mirrored_from = Some(Mirrored {
        name: repo.clone(),
        registry: mirror_registry(ns).to_owned(),
        by_ns: ns.is_some(),
    });
    if let Ok(endpoint) = std::mem::replace(&mut request.endpoint, Err(RouteError::NotFound)) {
        request.endpoint = Ok(endpoint.with_repo(mapped));
    }
    Ok(())
}

/// Authenticates the caller and decides `request`: `Err` is the response
/// that refuses it. A mount the caller may not read from is taken out of
/// `request` here, and the handler sees only what is left.
async fn check(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    method: &Method,
    request: &mut V2Request,
) -> Result<Caller, Response> {
    let auth = &state.auth;
    let address = peer.ip().to_string();
    let need = match &request.endpoint {
        Ok(endpoint) => need(endpoint, method),
        Err(_) => Need::Nothing,
    };
    // A mirror's client is challenged for the name it asked for.
    let scope = match (&need, &request.mirrored_from) {
        (Need::Repo(_, action), Some(asked)) => scope_of(
            &Need::Repo(asked.name.clone(), *action),
            request.mount_source(),
        ),
        _ => scope_of(&need, request.mount_source()),
    };
    // ... at the token service of that mirror (`?ns=` in the realm), so
    // that its token is granted, and holds, for that mirror only.
    let mirror = request
        .mirrored_from
        .as_ref()
        .filter(|m| m.by_ns)
        .map(|m| m.registry.as_str());
    let caller = match state.caller(headers, &address).await {
        Ok(c) => c,
        Err(AuthFailure::Unauthenticated(why)) => {
            return Err(auth.challenge(headers, scope.as_deref(), mirror, false, why));
        }
        Err(AuthFailure::Error(e)) => return Err(e.into_response()),
    };
    let anonymous = caller.principal == Principal::Anonymous;
    let denied = |insufficient: bool| -> Response {
        if anonymous || caller.claims.is_some() {
            auth.challenge(
                headers,
                scope.as_deref(),
                mirror,
                insufficient && caller.claims.is_some(),
                "authentication required",
            )
        } else {
            ApiError::code(ErrorCode::Denied).into_response()
        }
    };
    match &need {
        Need::Nothing => {}
        Need::Authenticated => {
            if anonymous && caller.claims.is_none() {
                return Err(denied(false));
            }
        }
        Need::Catalog => {
            let granted = caller
                .claims
                .as_ref()
                .is_none_or(|c| c.allows("registry", "catalog", "*"));
            if !granted || (anonymous && caller.claims.is_none()) {
                return Err(denied(true));
            }
        }
        Need::Repo(repo, action) => {
            let mut allowed = auth
                .allows(&caller, repo, *action)
                .await
                .map_err(IntoResponse::into_response)?;
            // A mirror's client holds a token for the name it asked for,
            // granted for that mirror.
            if let (false, Some(claims), Some(asked)) =
                (allowed, &caller.claims, &request.mirrored_from)
            {
                allowed =
                    claims.allows_mirrored(&asked.registry, asked.name.as_str(), action.as_str());
            }
            if !allowed {
                return Err(denied(true));
            }
            if *action == Action::Push {
                auth.ensure_project(&caller, repo)
                    .await
                    .map_err(IntoResponse::into_response)?;
            }
        }
    }
    if let Some(from) = request.mount_source() {
        // A mount reads its source: without pull there, the request is a
        // plain upload, and whether the blob exists there stays unknown.
        let readable = auth
            .allows(&caller, from, Action::Pull)
            .await
            .map_err(IntoResponse::into_response)?;
        if !readable {
            request.mount = None;
        }
    }
    Ok(caller)
}

/// The audit record a successful request will produce: manifest pushes,
/// pulls (GET, not HEAD) and deletes of manifests, tags and blobs.
fn audit_entry(
    request: &V2Request,
    method: &Method,
    caller: &Caller,
) -> Option<(String, &'static str, String, String)> {
    let endpoint = request.endpoint.as_ref().ok()?;
    let user = caller.principal.name().to_owned();
    let (op, resource) = match (endpoint, method) {
        (Endpoint::Manifest(r, reference), &Method::GET) => ("pull", format!("{r}:{reference}")),
        (Endpoint::Manifest(r, reference), &Method::PUT) => ("push", format!("{r}:{reference}")),
        (Endpoint::Manifest(r, reference), &Method::DELETE) => {
            ("delete", format!("{r}:{reference}"))
        }
        (Endpoint::Blob(r, d), &Method::DELETE) => ("delete", format!("{r}@{d}")),
        _ => return None,
    };
    Some((user, op, resource, caller.address.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_needs_the_right_access() {
        let r = RepoName::parse("p/app").unwrap();
        let d = berth_oci::Digest::sha256_of(b"x");
        let m = Endpoint::Manifest(r.clone(), berth_oci::Reference::parse("v1").unwrap());
        let pull = Need::Repo(r.clone(), Action::Pull);
        let push = Need::Repo(r.clone(), Action::Push);
        let delete = Need::Repo(r.clone(), Action::Delete);
        let cases = [
            (Endpoint::Base, Method::GET, Need::Authenticated),
            (Endpoint::Catalog, Method::GET, Need::Catalog),
            (
                Endpoint::Tags(r.clone()),
                Method::GET,
                Need::Repo(r.clone(), Action::Pull),
            ),
            (
                Endpoint::Referrers(r.clone(), d.clone()),
                Method::GET,
                Need::Repo(r.clone(), Action::Pull),
            ),
            (m.clone(), Method::GET, Need::Repo(r.clone(), Action::Pull)),
            (m.clone(), Method::HEAD, Need::Repo(r.clone(), Action::Pull)),
            (m.clone(), Method::PUT, Need::Repo(r.clone(), Action::Push)),
            (m, Method::DELETE, Need::Repo(r.clone(), Action::Delete)),
            (
                Endpoint::Blob(r.clone(), d.clone()),
                Method::GET,
                Need::Repo(r.clone(), Action::Pull),
            ),
            (
                Endpoint::Blob(r.clone(), d),
                Method::DELETE,
                Need::Repo(r.clone(), Action::Delete),
            ),
            (
                Endpoint::UploadStart(r.clone()),
                Method::POST,
                Need::Repo(r.clone(), Action::Push),
            ),
            (
                Endpoint::Upload(r.clone(), "id".into()),
                Method::PATCH,
                Need::Repo(r.clone(), Action::Push),
            ),
            (
                Endpoint::Upload(r.clone(), "id".into()),
                Method::GET,
                Need::Repo(r.clone(), Action::Push),
            ),
            (
                Endpoint::Upload(r.clone(), "id".into()),
                Method::DELETE,
                Need::Repo(r.clone(), Action::Push),
            ),
        ];
        for (endpoint, method, expected) in cases {
            assert_eq!(need(&endpoint, &method), expected, "{endpoint:?} {method}");
        }
        assert_eq!(
            scope_of(&pull, None).as_deref(),
            Some("repository:p/app:pull")
        );
        assert_eq!(
            scope_of(&push, None).as_deref(),
            Some("repository:p/app:pull,push")
        );
        assert_eq!(
            scope_of(&delete, None).as_deref(),
            Some("repository:p/app:delete")
        );
        let source = RepoName::parse("q/base").unwrap();
        assert_eq!(
            scope_of(&push, Some(&source)).as_deref(),
            Some("repository:p/app:pull,push repository:q/base:pull")
        );
    }
}
