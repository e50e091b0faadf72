//! Content discovery endpoints: tags list, catalog, referrers.

use super::{header_value, json_response, Params};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::registry::Page;
use berth_core::{CoreError, Registry};
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::{media, Digest, ErrorCode, RepoName};
use std::collections::HashMap;

pub async fn tags(
    state: &AppState,
    repo: &RepoName,
    params: &Params,
) -> Result<Response, ApiError> {
    let n = page_size(params)?;
    let last = params.get("last").map(String::as_str);
    let page = state.registry.tags(repo, n, last).await?;
    #[derive(serde::Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: &'a [String],
    }
    // Serialized straight from the page: no intermediate `Value` copy of
    // every name.
    let body = serde_json::to_string(&TagList {
        name: repo.as_str(),
        tags: page.items(),
    })
    .map_err(|e| ApiError::from(CoreError::internal(e.to_string())))?;
    Ok(paged(
        state,
        &format!("/v2/{repo}/tags/list"),
        n,
        &page,
        body,
    ))
}

/// The catalog lists only repositories the caller may pull.
pub async fn catalog(
    state: &AppState,
    caller: Option<&berth_http::auth::Caller>,
    params: &Params,
) -> Result<Response, ApiError> {
    let n = page_size(params)?;
    let last = params.get("last").map(String::as_str);
    let page = match caller {
        Some(c) if !c.principal.is_admin() => visible_catalog(state, c, n, last).await?,
        _ => state.registry.catalog(n, last).await?,
    };
    #[derive(serde::Serialize)]
    struct Catalog<'a> {
        repositories: &'a [String],
    }
    let body = serde_json::to_string(&Catalog {
        repositories: page.items(),
    })
    .map_err(|e| ApiError::from(CoreError::internal(e.to_string())))?;
    Ok(paged(state, "/v2/_catalog", n, &page, body))
}

/// Pages through the catalog keeping the repositories whose project the
/// caller may pull, deciding once per project.
async fn visible_catalog(
    state: &AppState,
    caller: &berth_http::auth::Caller,
    n: Option<usize>,
    last: Option<&str>,
) -> Result<Page, ApiError> {
    const CHUNK: usize = 500;
    let want = n.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut cursor = last.map(str::to_owned);
    let mut decided: HashMap<String, bool> = HashMap::new();
    if want == 0 {
        return Ok(Page::new(items, false));
    }
    loop {
        let page = state
            .registry
            .catalog(Some(CHUNK), cursor.as_deref())
            .await?;
        for name in page.items() {
            cursor = Some(name.clone());
            let project = name.split('/').next().unwrap_or(name).to_owned();
            let visible = match decided.get(&project) {
                Some(v) => *v,
                None => {
                    let v = state
                        .auth
                        .permitted(&caller.principal, &project)
                        .await?
                        .pull;
                    decided.insert(project, v);
                    v
                }
            };
            if visible {
                if items.len() == want {
                    return Ok(Page::new(items, true));
                }
                items.push(name.clone());
            }
        }
        if !page.more {
            return Ok(Page::new(items, false));
        }
    }
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
fn paged(state: &AppState, path: &str, n: Option<usize>, page: &Page, body: String) -> Response {
    let mut resp = json_response(body);
    if let (true, Some(last)) = (page.more, page.items().last()) {
        let n = n.unwrap_or(page.items().len());
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
