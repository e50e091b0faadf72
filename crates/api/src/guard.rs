//! The access guard in front of `/v2`: authenticates the caller, computes
//! the access the endpoint needs (in one place, like Distribution's
//! `appendAccessRecords`), answers 401 with a Bearer challenge or 403 when
//! it is missing, and records pushes, pulls and deletes in the audit log.
//! Handlers behind it find the [`Caller`] in the request's extensions.

use crate::auth::{AuthFailure, Caller};
use crate::error::ApiError;
use crate::v2::route::{self, Endpoint};
use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_auth::model::{Action, Principal};
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

/// The scope a client should ask for to satisfy `need`.
fn scope_of(need: &Need) -> Option<String> {
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
    let mut resp = match check(&state, peer, &mut req).await {
        Ok(caller) => {
            let audit = audit_entry(&req, &caller);
            req.extensions_mut().insert(caller);
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

async fn check(state: &AppState, peer: SocketAddr, req: &mut Request) -> Result<Caller, Response> {
    let auth = &state.auth;
    let address = peer.ip().to_string();
    let path = req.uri().path().strip_prefix("/v2").unwrap_or_default();
    let need = match route::parse(path) {
        Ok(endpoint) => need(&endpoint, req.method()),
        Err(_) => Need::Nothing,
    };
    let headers = req.headers().clone();
    let caller = match auth.caller(&headers, &address).await {
        Ok(c) => c,
        Err(AuthFailure::Unauthenticated(why)) => {
            if let crate::auth::Credentials::Basic(user, _) = crate::auth::credentials(&headers) {
                state.audit.record(&user, "login_failed", &user, &address);
            }
            return Err(auth.challenge(&headers, scope_of(&need).as_deref(), false, why));
        }
        Err(AuthFailure::Error(e)) => return Err(e.into_response()),
    };
    let anonymous = caller.principal == Principal::Anonymous;
    let denied = |insufficient: bool| -> Response {
        if anonymous || caller.claims.is_some() {
            auth.challenge(
                &headers,
                scope_of(&need).as_deref(),
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
            let allowed = auth
                .allows(&caller, repo, *action)
                .await
                .map_err(IntoResponse::into_response)?;
            if !allowed {
                return Err(denied(true));
            }
            if *action == Action::Push {
                auth.ensure_project(&caller, repo)
                    .await
                    .map_err(IntoResponse::into_response)?;
                strip_unauthorized_mount(state, &caller, req).await?;
            }
        }
    }
    Ok(caller)
}

/// A mount needs pull access to its source. Without it, the mount
/// parameters are dropped and the request becomes a plain upload, as the
/// spec allows, so nothing about the source leaks.
async fn strip_unauthorized_mount(
    state: &AppState,
    caller: &Caller,
    req: &mut Request,
) -> Result<(), Response> {
    let Some(query) = req.uri().query() else {
        return Ok(());
    };
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query);
    let Some(from) = pairs
        .iter()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| v.clone())
    else {
        return Ok(());
    };
    let allowed = match RepoName::parse(&from) {
        Some(repo) => state
            .auth
            .allows(caller, &repo, Action::Pull)
            .await
            .map_err(IntoResponse::into_response)?,
        None => false,
    };
    if allowed {
        return Ok(());
    }
    let kept: Vec<String> = query
        .split('&')
        .filter(|p| !p.starts_with("mount=") && !p.starts_with("from="))
        .map(str::to_owned)
        .collect();
    let path = req.uri().path().to_owned();
    let new = if kept.is_empty() {
        path
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    if let Ok(uri) = new.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    Ok(())
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

/// The audit record a successful request will produce: manifest pushes,
/// pulls (GET, not HEAD) and deletes of manifests, tags and blobs.
fn audit_entry(req: &Request, caller: &Caller) -> Option<(String, &'static str, String, String)> {
    let path = req.uri().path().strip_prefix("/v2")?;
    let endpoint = route::parse(path).ok()?;
    let user = caller.principal.name().to_owned();
    let (op, resource) = match (&endpoint, req.method()) {
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
        assert_eq!(scope_of(&pull).as_deref(), Some("repository:p/app:pull"));
        assert_eq!(
            scope_of(&push).as_deref(),
            Some("repository:p/app:pull,push")
        );
        assert_eq!(
            scope_of(&delete).as_deref(),
            Some("repository:p/app:delete")
        );
    }
}
