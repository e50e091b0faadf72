//! Blob endpoints: fetch (with `Range`), delete, and the upload protocol:
//! monolithic `POST ?digest=`, `POST` + `PATCH`* + `PUT`, status, cancel,
//! and cross-repository mount.

use super::request::Mount;
use super::{body_stream, content_length, header_value, Params};
use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::registry::UploadStatus;
use berth_core::Registry;
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::{Digest, ErrorCode, RepoName};

pub async fn get(
    reg: &Registry,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let size = reg.blob_size(repo, digest).await?;
    let mut h = blob_headers(digest);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, size) {
            RangeSpec::Whole => None,
            RangeSpec::Part(start, end) => Some((start, end)),
            RangeSpec::Unsatisfiable => {
                let mut resp = ApiError::code(ErrorCode::RangeNotSatisfiable).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{size}")),
                );
                return Ok(resp);
            }
        },
    };
    let (status, offset, len) = match range {
        Some((start, end)) => {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{size}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    h.insert(header::CONTENT_LENGTH, len.into());
    if head {
        return Ok((status, h, Body::empty()).into_response());
    }
    let stream = reg.blob_read(digest, offset, len).await?;
    Ok((status, h, Body::from_stream(stream)).into_response())
}

/// The headers of every blob answer but its length and range.
pub fn blob_headers(digest: &Digest) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Docker-Content-Digest", header_value(digest.as_str()));
    h.insert(header::ACCEPT_RANGES, header_value("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        header_value("application/octet-stream"),
    );
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    h
}

pub async fn delete(
    reg: &Registry,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    reg.blob_delete(repo, digest).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn start(
    state: &AppState,
    repo: &RepoName,
    params: &Params,
    mount: Option<Mount>,
    account: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reg = &state.registry;
    if let Some(d) = params.get("digest") {
        let digest = parse_digest(d)?;
        reg.upload_monolithic(repo, &digest, content_length(headers), body_stream(body))
            .await?;
        return Ok(blob_created(state, repo, &digest));
    }
    // The guard kept only a mount the caller may read from; a mount that
    // is not done (no such blob there) falls back to a plain upload, as the
    // spec allows.
    if let Some(Mount { digest, from }) = mount {
        if reg.blob_mount(repo, &digest, &from).await? {
            return Ok(blob_created(state, repo, &digest));
        }
    }
    let status = reg.upload_start(repo, account).await?;
    Ok(upload_response(state, repo, &status, StatusCode::ACCEPTED))
}

pub async fn status(state: &AppState, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    let status = state.registry.upload_status(repo, id).await?;
    Ok(upload_response(
        state,
        repo,
        &status,
        StatusCode::NO_CONTENT,
    ))
}

pub async fn patch(
    state: &AppState,
    repo: &RepoName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (start, len) = chunk(headers)?;
    let status = state
        .registry
        .upload_append(repo, id, start, len, body_stream(body))
        .await?;
    Ok(upload_response(state, repo, &status, StatusCode::ACCEPTED))
}

pub async fn finish(
    state: &AppState,
    repo: &RepoName,
    id: &str,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = params.get("digest").ok_or_else(|| {
        ApiError::detail(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required",
        )
    })?;
    let digest = parse_digest(digest)?;
    let (start, len) = chunk(headers)?;
    // Whether a last chunk came is the body's to say: over HTTP/2 neither
    // Content-Length nor Transfer-Encoding need announce it.
    let body = (!HttpBody::is_end_stream(&body)).then(|| body_stream(body));
    state
        .registry
        .upload_finish(repo, id, &digest, start, len, body)
        .await?;
    Ok(blob_created(state, repo, &digest))
}

pub async fn cancel(reg: &Registry, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    reg.upload_cancel(repo, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e| ApiError::detail(ErrorCode::DigestInvalid, format!("{e}: {s:?}")))
}

fn blob_created(state: &AppState, repo: &RepoName, digest: &Digest) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        header_value(&format!("{}/v2/{repo}/blobs/{digest}", state.base_url)),
    );
    h.insert("Docker-Content-Digest", header_value(digest.as_str()));
    h.insert(header::CONTENT_LENGTH, 0.into());
    (StatusCode::CREATED, h).into_response()
}

fn upload_response(
    state: &AppState,
    repo: &RepoName,
    status: &UploadStatus,
    code: StatusCode,
) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        header_value(&format!(
            "{}/v2/{repo}/blobs/uploads/{}",
            state.base_url, status.id
        )),
    );
    // Inclusive end of the bytes received; "0-0" for none, as Distribution.
    let end = status.offset.saturating_sub(1);
    h.insert(header::RANGE, header_value(&format!("0-{end}")));
    h.insert("Docker-Upload-UUID", header_value(&status.id));
    // RFC 9110 forbids Content-Length on a 204.
    if code != StatusCode::NO_CONTENT {
        h.insert(header::CONTENT_LENGTH, 0.into());
    }
    (code, h).into_response()
}

/// `Content-Range: <start>-<end>` of a chunk (inclusive end), as the
/// chunk's start and length. A `bytes ` or `bytes=` prefix is tolerated.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || ApiError::detail(ErrorCode::BlobUploadRangeInvalid, "malformed Content-Range");
    let s = v.to_str().map_err(|_| invalid())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(invalid)?;
    let start: u64 = a.trim().parse().map_err(|_| invalid())?;
    let end: u64 = b.trim().parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    // Inclusive on both ends; a range of 2^64 bytes has no length.
    let len = (end - start).checked_add(1).ok_or_else(invalid)?;
    Ok(Some((start, len)))
}

/// Where a chunk starts (from `Content-Range`) and how long it is (from
/// `Content-Range` or `Content-Length`, which must agree when both are
/// given).
fn chunk(headers: &HeaderMap) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let range = content_range(headers)?;
    let cl = content_length(headers);
    let len = match range {
        Some((_, range_len)) => Some(range_len),
        None => cl,
    };
    if let (Some(range_len), Some(cl)) = (len, cl) {
        if range_len != cl {
            return Err(ApiError::detail(
                ErrorCode::SizeInvalid,
                "Content-Range and Content-Length disagree",
            ));
        }
    }
    Ok((range.map(|r| r.0), len))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Whole,
    /// Inclusive byte positions.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a GET. Several ranges are answered with the whole
/// blob, which RFC 9110 allows.
fn parse_range(value: &str, size: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Whole;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Whole;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return RangeSpec::Whole;
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) => e.min(size.saturating_sub(1)),
                Err(_) => return RangeSpec::Whole,
            }
        };
        (start, end)
    };
    if start >= size || end < start {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeSpec::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Whole);
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(content_range(&h).unwrap(), None);
        h.insert(header::CONTENT_RANGE, "0-99".parse().unwrap());
        assert_eq!(content_range(&h).unwrap(), Some((0, 100)));
        h.insert(header::CONTENT_RANGE, "bytes 100-199/*".parse().unwrap());
        assert_eq!(content_range(&h).unwrap(), Some((100, 100)));
        h.insert(header::CONTENT_RANGE, "9-1".parse().unwrap());
        assert!(content_range(&h).is_err());
        h.insert(
            header::CONTENT_RANGE,
            "0-18446744073709551615".parse().unwrap(),
        );
        assert!(content_range(&h).is_err());
        h.insert(
            header::CONTENT_RANGE,
            "1-18446744073709551615".parse().unwrap(),
        );
        assert_eq!(content_range(&h).unwrap(), Some((1, u64::MAX)));
    }
}
