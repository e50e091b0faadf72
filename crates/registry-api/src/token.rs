//! `/service/token`: the Docker registry token service. `GET` with Basic
//! credentials or none (anonymous), and the OAuth2 `POST` form
//! (`grant_type=password`) that containerd and podman use. The token grants
//! exactly the permitted subset of the scopes asked for.

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use berth_auth::model::{Actions, Principal};
use berth_auth::scope::Scope;
use berth_auth::token::AccessEntry;
use berth_http::auth::{credentials, Credentials};
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::ErrorCode;
use std::net::SocketAddr;

type Pairs = Vec<(String, String)>;

pub async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<Pairs>,
    headers: HeaderMap,
) -> Response {
    let address = peer.ip().to_string();
    let principal = match credentials(&headers) {
        Credentials::Basic(user, pass) => match login(&state, &user, &pass, &address).await {
            Ok(p) => p,
            Err(resp) => return resp,
        },
        _ => Principal::Anonymous,
    };
    let ns = match ns_of(&params) {
        Ok(ns) => ns,
        Err(e) => return e.into_response(),
    };
    let scopes = Scope::parse_all(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    issue(&state, &principal, &scopes, ns).await
}

/// The `ns` of a token request (a mirror's challenge puts it in the
/// realm); a repeated one is refused.
fn ns_of(params: &Pairs) -> Result<Option<&str>, ApiError> {
    let mut ns = params
        .iter()
        .filter(|(k, _)| k == "ns")
        .map(|(_, v)| v.as_str());
    match (ns.next(), ns.next()) {
        (first, None) => Ok(first),
        _ => Err(ApiError::detail(ErrorCode::Unsupported, "ns is repeated")),
    }
}

pub async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<Pairs>,
    Form(form): Form<Pairs>,
) -> Response {
    let ns = match ns_of(&query) {
        Ok(ns) => ns,
        Err(e) => return e.into_response(),
    };
    let address = peer.ip().to_string();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let principal = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(pass)) = (field("username"), field("password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                );
            };
            match login(&state, user, pass, &address).await {
                Ok(p) => p,
                Err(resp) => return resp,
            }
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other} is not supported; use password"),
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    };
    let scopes = Scope::parse_all(
        form.iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    issue(&state, &principal, &scopes, ns).await
}

async fn login(
    state: &AppState,
    user: &str,
    pass: &str,
    address: &str,
) -> Result<Principal, Response> {
    let result = state.auth.login(user, pass, address).await;
    state
        .audit
        .login(user, address, matches!(result, Ok(Some(_))))
        .await;
    match result {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(unauthorized()),
        Err(e) => Err(e.into_response()),
    }
}

fn unauthorized() -> Response {
    ApiError::detail(ErrorCode::Unauthorized, "invalid username or password").into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn issue(
    state: &AppState,
    principal: &Principal,
    scopes: &[Scope],
    ns: Option<&str>,
) -> Response {
    match grant(state, principal, scopes, ns).await {
        Ok(access) => match state
            .auth
            .tokens
            .issue(principal_subject(principal), access)
            .await
        {
            Ok((token, claims)) => {
                let body = serde_json::json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": claims.exp - claims.iat,
                    "issued_at": berth_http::time::rfc3339(claims.iat),
                });
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
            Err(e) => ApiError(berth_core::CoreError::internal(format!(
                "issuing a token: {e}"
            )))
            .into_response(),
        },
        Err(e) => e.into_response(),
    }
}

fn principal_subject(p: &Principal) -> &str {
    match p {
        Principal::Anonymous => "",
        other => other.name(),
    }
}

/// The permitted subset of each requested scope. Scopes that grant nothing
/// are left out, as the token specification describes. A transparent
/// mirror's client (for the registry `ns`, or docker.io) asks for the
/// upstream's names: pulling one is pulling the mirror's proxy project, and
/// is granted in an entry for that mirror only (`AccessEntry::mirror`), so
/// that it never reads berth's own repository of that name, nor another
/// mirror's.
async fn grant(
    state: &AppState,
    principal: &Principal,
    scopes: &[Scope],
    ns: Option<&str>,
) -> Result<Vec<AccessEntry>, ApiError> {
    let registry = crate::guard::mirror_registry(ns);
    let mut access = Vec::new();
    for scope in scopes {
        match scope {
            Scope::Repository { name, actions } => {
                let allowed = state.auth.permitted(principal, name.project()).await?;
                let granted = Actions {
                    pull: actions.pull && allowed.pull,
                    push: actions.push && allowed.push,
                    delete: actions.delete && allowed.delete,
                };
                if granted != Actions::NONE {
                    access.push(repository_entry(name, granted, None));
                }
                if !actions.pull {
                    continue;
                }
                if let Some(served) = crate::guard::mirror_target(state, ns, name).await? {
                    let pull = state
                        .auth
                        .permitted(principal, served.project())
                        .await?
                        .pull;
                    if pull {
                        let granted = Actions {
                            pull,
                            ..Actions::NONE
                        };
                        access.push(repository_entry(name, granted, Some(registry)));
                    }
                }
            }
            // The catalog is filtered per caller when listed.
            Scope::Catalog => access.push(AccessEntry {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
                mirror: None,
            }),
        }
    }
    Ok(access)
}

fn repository_entry(
    name: &berth_oci::RepoName,
    granted: Actions,
    mirror: Option<&str>,
) -> AccessEntry {
    AccessEntry {
        kind: "repository".into(),
        name: name.to_string(),
        actions: granted
            .list()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        mirror: mirror.map(str::to_owned),
    }
}
