//! `/internal/v1/proxy/fetches/{digest}?from=N`: a node of the cluster
//! reads a proxy-cache fetch running on this one, as it arrives, for its
//! own clients ([`berth_proxy::Proxy::peer_read`]). Only the cluster's
//! nodes may: they prove it with the cluster's peer secret
//! (`Authorization: Berth-Peer <secret>`); anyone else gets 401.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::{Digest, ErrorCode};

pub async fn fetch(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Berth-Peer "))
        .ok_or_else(|| ApiError::detail(ErrorCode::Unauthorized, "for the cluster's nodes"))?;
    let digest = digest
        .parse::<Digest>()
        .map_err(|_| ApiError::detail(ErrorCode::DigestInvalid, "not a digest"))?;
    let from = from_of(query.as_deref().unwrap_or(""))?;
    match state.proxy.peer_read(&digest, from, secret).await? {
        Some((size, body)) => {
            let headers = [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_LENGTH, (size - from).to_string()),
            ];
            Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
        }
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// The one `from` of the query (0 without one); a repeated or malformed
/// one is refused.
fn from_of(query: &str) -> Result<u64, ApiError> {
    let mut from = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "from" {
            continue;
        }
        let n = v.parse::<u64>().ok().filter(|_| from.is_none());
        from = Some(n.ok_or_else(|| {
            ApiError::detail(ErrorCode::Unsupported, "one numeric from, at most")
        })?);
    }
    Ok(from.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_one_number_or_none() {
        assert_eq!(from_of("").ok(), Some(0));
        assert_eq!(from_of("from=42").ok(), Some(42));
        assert_eq!(from_of("x=1&from=7").ok(), Some(7));
        for bad in ["from=1&from=2", "from=-1", "from=x", "%66rom=1&from=2"] {
            assert!(from_of(bad).is_err(), "{bad}");
        }
    }
}
