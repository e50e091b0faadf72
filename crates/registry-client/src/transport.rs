//! Sending one request: the Authorization header (and the one retry after
//! a 401), redirects followed by hand, and a failed answer turned into a
//! [`ClientError`] carrying the registry's OCI error.
//!
//! Redirects: GET and HEAD follow 301, 302, 303, 307 and 308; other
//! methods follow 307 and 308 only (which keep method and body), and 303
//! turns into a GET. The `Authorization` header goes only to the
//! registry's own origin (scheme, host and port): S3-backed registries
//! redirect blob GETs to presigned URLs, which must not see the
//! registry's credentials (and refuse requests that carry them).

use crate::auth::{Authorization, Scope};
use crate::error::ClientError;
use crate::Client;
use berth_oci::RepoName;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// Largest error body read (the rest is ignored).
const MAX_ERROR_BODY: usize = 64 << 10;

/// One request to send.
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// Kept whole so that it can be sent again after a 401 or a 307/308.
    pub body: Option<Bytes>,
    /// The token scopes the request needs.
    pub scopes: Vec<Scope>,
}

impl Request {
    pub fn new(method: Method, url: Url, scopes: Vec<Scope>) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            scopes,
        }
    }

    /// A request that needs only pull access to `repo`.
    pub fn pulling(method: Method, url: Url, repo: &RepoName) -> Request {
        Request::new(method, url, vec![Scope::pull(repo)])
    }

    /// With header `name: value`. Values are built from validated
    /// digests, media types and numbers: one that a header cannot carry
    /// is dropped (and the registry then answers the request as invalid).
    pub fn header(mut self, name: HeaderName, value: &str) -> Request {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                self.headers.append(name, v);
            }
            Err(_) => tracing::warn!(%name, value, "header value dropped: not representable"),
        }
        self
    }

    pub fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }

    /// `METHOD host/path`, for messages.
    pub fn context(&self) -> String {
        format!("{} {}", self.method, describe(&self.url))
    }
}

/// `host[:port]/path` of `url`: no scheme noise, no query (which may carry
/// an upload's state or a presigned signature).
pub(crate) fn describe(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}{}", url.path()),
        None => format!("{host}{}", url.path()),
    }
}

/// Whether `a` and `b` have the same scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl Client {
    /// Sends `req` with authentication: the header known to work, or none
    /// until the registry asks; after a 401 from the registry, one retry
    /// with what the challenge asks for. The answer, whatever its status
    /// (a 401 after the retry becomes an error).
    pub(crate) async fn send(&self, req: &Request) -> Result<Response, ClientError> {
        let inner = &self.inner;
        let mut authorization: Option<Authorization> =
            inner.auth.authorize(&inner.http, &req.scopes).await?;
        let mut retried = false;
        loop {
            let resp = self.send_following(req, authorization.as_ref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !same_origin(resp.url(), &inner.base) {
                return Ok(resp);
            }
            // Asked even after the retry: it names what was refused.
            let next = inner
                .auth
                .after_unauthorized(
                    &inner.http,
                    resp.headers(),
                    &req.scopes,
                    authorization.as_ref(),
                )
                .await?;
            if retried {
                return Err(unauthorized(resp, req.context()).await);
            }
            authorization = Some(next);
            retried = true;
        }
    }

    /// Sends `req`, following redirects as the module doc says.
    async fn send_following(
        &self,
        req: &Request,
        authorization: Option<&Authorization>,
    ) -> Result<Response, ClientError> {
        let mut method = req.method.clone();
        let mut url = req.url.clone();
        let mut body = req.body.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut builder = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .headers(req.headers.clone());
            if let Some(a) = authorization.filter(|_| same_origin(&url, &self.inner.base)) {
                builder = builder.header(AUTHORIZATION, a.header.clone());
            }
            // An explicit empty body: `Content-Length: 0` on bodiless
            // POST/PUT/PATCH, which some proxies demand.
            match &body {
                Some(b) => builder = builder.body(b.clone()),
                None if matches!(method, Method::POST | Method::PUT | Method::PATCH) => {
                    builder = builder.body(Bytes::new());
                }
                None => {}
            }
            let context = format!("{method} {}", describe(&url));
            let resp = builder
                .send()
                .await
                .map_err(|e| ClientError::network(context.clone(), e))?;
            let status = resp.status().as_u16();
            let follow = match status {
                301..=303 => matches!(method, Method::GET | Method::HEAD) || status == 303,
                307 | 308 => true,
                _ => false,
            };
            if !follow {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    ClientError::Protocol(format!("{context}: {status} without a Location"))
                })?;
            url = url.join(location).map_err(|e| {
                ClientError::Protocol(format!("{context}: redirect to {location:?}: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ClientError::Protocol(format!(
                    "{context}: redirect to a {} URL",
                    url.scheme()
                )));
            }
            if status == 303 && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            tracing::debug!(from = %context, to = %describe(&url), status, "following redirect");
        }
        Err(ClientError::Protocol(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            req.context()
        )))
    }

    /// Sends `req` and requires one of the statuses `ok`; any other answer
    /// becomes an error.
    pub(crate) async fn expect(&self, req: &Request, ok: &[u16]) -> Result<Response, ClientError> {
        let resp = self.send(req).await?;
        if ok.contains(&resp.status().as_u16()) {
            Ok(resp)
        } else {
            Err(error_from(resp, req.context()).await)
        }
    }
}

/// The error for a failed answer: status, and the first OCI error of the
/// body (`{"errors":[{"code","message","detail"}]}`) when there is one.
pub(crate) async fn error_from(resp: Response, context: String) -> ClientError {
    let status = resp.status();
    let body = read_prefix(resp, MAX_ERROR_BODY).await;
    let (code, message) = parse_error_body(&body);
    ClientError::Registry {
        context,
        status: status.as_u16(),
        code,
        message: message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.is_empty() || text.len() > 200 || text.starts_with('<') {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text.to_owned()
            }
        }),
    }
}

/// A 401 that the one retry did not cure.
async fn unauthorized(resp: Response, context: String) -> ClientError {
    match error_from(resp, context).await {
        ClientError::Registry {
            context,
            status,
            code,
            message,
        } => ClientError::Auth {
            status: Some(status),
            code,
            message: format!("{context}: the registry refused the credentials: {message}"),
        },
        other => other,
    }
}

fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return (None, None);
    };
    let Some(first) = parsed.errors.into_iter().next() else {
        return (None, None);
    };
    let detail = match first.detail {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let message = match (first.message.filter(|m| !m.is_empty()), detail) {
        (Some(m), Some(d)) => Some(format!("{m} ({d})")),
        (m, d) => m.or(d),
    };
    (first.code.filter(|c| !c.is_empty()), message)
}

/// Up to `limit` bytes of the body; a body that fails midway yields what
/// arrived (it only decorates an error).
async fn read_prefix(resp: Response, limit: usize) -> Bytes {
    let mut out = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out.freeze()
}

/// The whole body, which must not exceed `limit` bytes.
pub(crate) async fn read_limited(
    resp: Response,
    limit: usize,
    context: &str,
) -> Result<Bytes, ClientError> {
    let too_large =
        || ClientError::Protocol(format!("{context}: answer larger than {limit} bytes"));
    if content_length(resp.headers()).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ClientError::network(context.to_owned(), e))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The `Content-Length` header. Read from the header, not from the body's
/// size hint, which is 0 for the answer to a HEAD.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, reqwest::header::CONTENT_LENGTH)?
        .trim()
        .parse()
        .ok()
}

/// A header as text, when present and ASCII.
pub(crate) fn header_str(
    headers: &HeaderMap,
    name: impl reqwest::header::AsHeaderName,
) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(&u("https://r/v2/"), &u("https://r:443/")));
        assert!(!same_origin(&u("https://r/"), &u("http://r/")));
        assert!(!same_origin(&u("https://r/"), &u("https://s3.r/")));
        assert!(!same_origin(&u("http://r:5000/"), &u("http://r:5001/")));
        assert_eq!(
            describe(&u("https://r:5000/v2/a/blobs/uploads/x?_state=secret")),
            "r:5000/v2/a/blobs/uploads/x"
        );
    }

    #[test]
    fn error_bodies() {
        let (c, m) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
        );
        assert_eq!(c.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(m.as_deref(), Some(r#"manifest unknown ({"Tag":"x"})"#));
        let (c, m) = parse_error_body(br#"{"errors":[{"code":"DENIED","detail":"no"}]}"#);
        assert_eq!((c.as_deref(), m.as_deref()), (Some("DENIED"), Some("no")));
        assert_eq!(parse_error_body(b"404 page not found"), (None, None));
        assert_eq!(parse_error_body(br#"{"errors":[]}"#), (None, None));
    }
}
