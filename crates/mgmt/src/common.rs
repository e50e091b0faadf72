//! What every management handler uses: the request context, the error type
//! (the same `{"errors":[{"code","message"}]}` body as everywhere else),
//! JSON in and out, and page-based pagination with `X-Total-Count`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::directory::DirectoryError;
use berth_auth::model::Principal;
use berth_core::{CoreError, KvError};
use berth_http::auth::Caller;
use berth_http::error::ApiError;
use berth_http::AppState;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Items per page when `page_size` is absent, and the most allowed
/// (Harbor's defaults).
pub const DEFAULT_PAGE_SIZE: usize = 10;
pub const MAX_PAGE_SIZE: usize = 100;

/// One management request, once routed and authenticated.
pub struct Ctx {
    pub state: AppState,
    pub caller: Caller,
    /// Path parameters, percent-decoded, named as in the route template.
    pub params: Vec<(&'static str, String)>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl Ctx {
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The request body as `T`; 400 when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request(format!("invalid request body: {e}")))
    }

    pub fn page(&self) -> Result<Paging, Error> {
        let number = |name: &str, default: usize| -> Result<usize, Error> {
            match self.query(name) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::bad_request(format!("{name} must be a positive integer"))
                }),
            }
        };
        let page = number("page", 1)?;
        let size = number("page_size", DEFAULT_PAGE_SIZE)?;
        if size > MAX_PAGE_SIZE {
            return Err(Error::bad_request(format!(
                "page_size must be at most {MAX_PAGE_SIZE}"
            )));
        }
        Ok(Paging { page, size })
    }

    pub fn principal(&self) -> &Principal {
        &self.caller.principal
    }

    pub fn is_admin(&self) -> bool {
        self.caller.principal.is_admin()
    }

    pub fn is_anonymous(&self) -> bool {
        self.caller.principal == Principal::Anonymous
    }

    /// Records a management action of the caller in the audit log.
    pub fn audit(&self, operation: &str, resource: &str) {
        self.state.audit.record(
            self.caller.principal.name(),
            operation,
            resource,
            &self.caller.address,
        );
    }

    /// The refusal for a caller lacking a permission: 401 for an anonymous
    /// caller (credentials would help), 403 for everyone else.
    pub fn denied(&self) -> Error {
        if self.is_anonymous() {
            Error::unauthorized("authentication required")
        } else {
            Error::forbidden()
        }
    }

    pub fn require_admin(&self) -> Result<(), Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(self.denied())
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Paging {
    /// From 1.
    pub page: usize,
    pub size: usize,
}

impl Paging {
    pub fn offset(self) -> usize {
        (self.page - 1).saturating_mul(self.size)
    }

    /// This page of `items`, which is the whole list.
    pub fn slice<T>(self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .skip(self.offset())
            .take(self.size)
            .collect()
    }
}

/// A failed management request.
#[derive(Debug)]
pub enum Error {
    /// A failure of the registry domain or of authentication, rendered by
    /// the shared [`ApiError`].
    Api(ApiError),
    /// A management-specific status: 400, 401, 403, 404, 409, 412.
    Status(StatusCode, &'static str, String),
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::Status(StatusCode::BAD_REQUEST, "BAD_REQUEST", message.into())
    }

    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::Status(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message.into())
    }

    pub fn forbidden() -> Error {
        Error::Status(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "you do not have permission to do this".into(),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::Status(StatusCode::NOT_FOUND, "NOT_FOUND", message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Status(StatusCode::CONFLICT, "CONFLICT", message.into())
    }

    pub fn precondition(message: impl Into<String>) -> Error {
        Error::Status(
            StatusCode::PRECONDITION_FAILED,
            "PRECONDITION",
            message.into(),
        )
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(e)
    }
}

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Self {
        Error::Api(ApiError(e))
    }
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        Error::Api(ApiError(e.into()))
    }
}

/// The directory's failures with the statuses a management API uses
/// (409 for a duplicate rather than the registry's 403 DENIED).
impl From<DirectoryError> for Error {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Exists(what) => Error::conflict(format!("{what} already exists")),
            DirectoryError::NotFound(what) => Error::not_found(format!("{what} not found")),
            DirectoryError::Invalid(what) => Error::bad_request(format!("invalid {what}")),
            other => Error::Api(other.into()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Api(e) => e.into_response(),
            Error::Status(status, code, message) => json(
                status,
                &serde_json::json!({"errors": [{"code": code, "message": message}]}),
            ),
        }
    }
}

pub type Result<T = Response, E = Error> = std::result::Result<T, E>;

pub fn json(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

pub fn ok(value: Value) -> Result {
    Ok(json(StatusCode::OK, &value))
}

pub fn created(value: Value) -> Result {
    Ok(json(StatusCode::CREATED, &value))
}

pub fn no_content() -> Result {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One page of a list as a JSON array, with the size of the whole list in
/// `X-Total-Count`.
pub fn paged(items: Vec<Value>, total: usize) -> Result {
    let mut resp = json(StatusCode::OK, &Value::Array(items));
    resp.headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total));
    Ok(resp)
}

/// Whether `name` matches the `q` search (a substring).
pub fn matches_query(name: &str, q: Option<&str>) -> bool {
    q.is_none_or(|q| name.contains(q))
}

/// `%XX`-decodes one path segment; `None` for a malformed escape or bytes
/// that are not UTF-8. Done by hand because the API matches routes on the
/// raw path (an encoded `/` inside a repository name must stay one segment).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) use berth_http::time::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_dates() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("sha256%3Aab").as_deref(), Some("sha256:ab"));
        assert_eq!(percent_decode("robot$p+ci").as_deref(), Some("robot$p+ci"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let p = Paging { page: 3, size: 2 };
        assert_eq!(p.slice((0..10).collect::<Vec<_>>()), [4, 5]);
    }
}
