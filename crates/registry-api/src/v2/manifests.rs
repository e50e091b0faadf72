//! Manifest endpoints: fetch with `Accept` negotiation, push, delete.

use super::{content_length, header_value};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::registry::ManifestContent;
use berth_core::Registry;
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::manifest::MAX_MANIFEST_BYTES;
use berth_oci::{media, ErrorCode, Reference, RepoName};
use bytes::Bytes;
use futures_util::StreamExt;

pub async fn get(
    reg: &Registry,
    repo: &RepoName,
    r: &Reference,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let m = reg.manifest_get(repo, r).await?;
    respond(reg, repo, m, headers, head)
}

/// A manifest's answer: `Accept` checked, the pull noted (not for HEAD).
pub fn respond(
    reg: &Registry,
    repo: &RepoName,
    m: ManifestContent,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if !media::accepts(accept, &m.media_type) {
        return Err(ApiError::detail(
            ErrorCode::ManifestUnknown,
            format!(
                "the manifest is {}, which the Accept header does not allow",
                m.media_type
            ),
        ));
    }
    if !head && !reg.pull_noted_recently(repo, &m.digest) {
        // For the UI's "last pulled"; the pull does not wait for it.
        let (reg, repo, digest) = (reg.clone(), repo.clone(), m.digest.clone());
        tokio::spawn(async move {
            if let Err(e) = reg.record_pull(&repo, &digest).await {
                tracing::debug!(%repo, %digest, error = %e, "pull time not recorded");
            }
        });
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type));
    h.insert("Docker-Content-Digest", header_value(m.digest.as_str()));
    h.insert(header::ETAG, header_value(&format!("\"{}\"", m.digest)));
    h.insert(header::CONTENT_LENGTH, m.body.len().into());
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.body)
    };
    Ok((StatusCode::OK, h, body).into_response())
}

pub async fn put(
    state: &AppState,
    repo: &RepoName,
    r: &Reference,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_manifest(headers, body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let put = state
        .registry
        .manifest_put(repo, r, content_type, bytes)
        .await?;
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        header_value(&format!(
            "{}/v2/{repo}/manifests/{}",
            state.base_url, put.digest
        )),
    );
    h.insert("Docker-Content-Digest", header_value(put.digest.as_str()));
    if let Some(subject) = put.subject {
        h.insert("OCI-Subject", header_value(subject.as_str()));
    }
    Ok((StatusCode::CREATED, h).into_response())
}

pub async fn delete(reg: &Registry, repo: &RepoName, r: &Reference) -> Result<Response, ApiError> {
    reg.manifest_delete(repo, r).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The pushed manifest, refused with 413 once it passes the size limit
/// (at once when its Content-Length says so). A body that breaks off is a
/// failed upload, not an oversized one.
async fn read_manifest(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if content_length(headers).is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(ApiError::code(ErrorCode::ManifestTooLarge));
    }
    let mut buf = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::detail(
                ErrorCode::ManifestInvalid,
                format!("reading the manifest failed: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(ApiError::code(ErrorCode::ManifestTooLarge));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
