//! `/v2` in a proxy-cache project: manifests and blobs pulled through the
//! project's upstream ([`berth_proxy`]), and pushes refused. Everything
//! else (tag lists, referrers, deletes by those allowed) is the project's
//! own, as in any project.

use super::route::Endpoint;
use super::{blobs, manifests};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::{Digest, ErrorCode, RepoName};
use berth_proxy::{Binding, BlobAnswer};

/// The answer to a request of a proxy project, or `None` when it is
/// handled as in any project.
pub async fn handle(
    state: &AppState,
    binding: &Binding,
    endpoint: &Endpoint,
    method: &Method,
    headers: &HeaderMap,
    head: bool,
) -> Option<Result<Response, ApiError>> {
    match (endpoint, method) {
        (Endpoint::Manifest(repo, r), &Method::GET) => Some(
            async {
                let m = state.proxy.manifest(binding, repo, r).await?;
                manifests::respond(&state.registry, repo, m, headers, head)
            }
            .await,
        ),
        (Endpoint::Blob(repo, d), &Method::GET) => {
            Some(blob(state, binding, repo, d, headers, head).await)
        }
        (Endpoint::Manifest(..), &Method::PUT)
        | (Endpoint::UploadStart(_), &Method::POST)
        | (Endpoint::Upload(..), _) => Some(Err(ApiError::detail(
            ErrorCode::Denied,
            format!(
                "project {} is a proxy cache of endpoint {}: it cannot be pushed to",
                binding.project, binding.endpoint
            ),
        ))),
        _ => None,
    }
}

async fn blob(
    state: &AppState,
    binding: &Binding,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let reg = &state.registry;
    // Stored: served as in any project (one lookup, the handler's own).
    match blobs::get(reg, repo, digest, headers, head).await {
        Err(ApiError(e)) if e.code == ErrorCode::BlobUnknown => {}
        answer => return answer,
    }
    if head {
        let size = state.proxy.blob_size(binding, repo, digest).await?;
        let mut h = blobs::blob_headers(digest);
        h.insert(header::CONTENT_LENGTH, size.into());
        return Ok((StatusCode::OK, h, Body::empty()).into_response());
    }
    match state.proxy.blob(binding, repo, digest).await? {
        BlobAnswer::Stored => blobs::get(reg, repo, digest, headers, head).await,
        // Arriving from the upstream: the whole blob as it comes (a
        // `Range` is answered once it is stored).
        BlobAnswer::Streaming { size, body } => {
            let mut h = blobs::blob_headers(digest);
            h.remove(header::ACCEPT_RANGES);
            h.insert(header::CONTENT_LENGTH, size.into());
            Ok((StatusCode::OK, h, Body::from_stream(body)).into_response())
        }
    }
}
