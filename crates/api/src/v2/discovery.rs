//! Content discovery endpoints: tags list, catalog, referrers.

use super::{header_value, json_response, Params};
use crate::error::ApiError;
use crate::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::registry::Page;
use berth_core::Registry;
use berth_oci::{media, Digest, ErrorCode, RepoName};

pub async fn tags(
    state: &AppState,
    repo: &RepoName,
    params: &Params,
) -> Result<Response, ApiError> {
    let n = page_size(params)?;
    let last = params.get("last").map(String::as_str);
    let page = state.registry.tags(repo, n, last).await?;
    let body = serde_json::json!({"name": repo.as_str(), "tags": page.items});
    Ok(paged(
        state,
        &format!("/v2/{repo}/tags/list"),
        n,
        &page,
        body,
    ))
}

pub async fn catalog(state: &AppState, params: &Params) -> Result<Response, ApiError> {
    let n = page_size(params)?;
    let last = params.get("last").map(String::as_str);
    let page = state.registry.catalog(n, last).await?;
    let body = serde_json::json!({"repositories": page.items});
    Ok(paged(state, "/v2/_catalog", n, &page, body))
}

pub async fn referrers(
    reg: &Registry,
    repo: &RepoName,
    digest: &Digest,
    params: &Params,
) -> Result<Response, ApiError> {
    let filter = params
        .get("artifactType")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let manifests = reg.referrers(repo, digest, filter).await?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, header_value(media::OCI_INDEX));
    if filter.is_some() {
        h.insert("OCI-Filters-Applied", header_value("artifactType"));
    }
    Ok((StatusCode::OK, h, body.to_string()).into_response())
}

fn page_size(params: &Params) -> Result<Option<usize>, ApiError> {
    params
        .get("n")
        .map(|n| {
            n.parse::<usize>().map_err(|_| {
                ApiError::detail(ErrorCode::Unsupported, "n must be a non-negative integer")
            })
        })
        .transpose()
}

/// Adds `Link: <...?n=N&last=X>; rel="next"` when another page follows.
fn paged(
    state: &AppState,
    path: &str,
    n: Option<usize>,
    page: &Page,
    body: serde_json::Value,
) -> Response {
    let mut resp = json_response(body.to_string());
    if let (true, Some(last)) = (page.more, page.items.last()) {
        let n = n.unwrap_or(page.items.len());
        let link = format!(
            "<{}{path}?n={n}&last={}>; rel=\"next\"",
            state.base_url,
            encode_query(last)
        );
        resp.headers_mut().insert(header::LINK, header_value(&link));
    }
    resp
}

/// Names and tags hold only `[A-Za-z0-9._/-]`; only `/` needs escaping.
fn encode_query(s: &str) -> String {
    s.replace('/', "%2F")
}
