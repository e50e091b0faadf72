//! What every management handler uses: the request context, the error
//! table and type (the same `{"errors":[{"code","message"}]}` body as
//! everywhere else), a change's [`Input`], JSON in and out, page-based
//! pagination with `X-Total-Count`, and percent-encoding.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::directory::DirectoryError;
use berth_auth::model::Principal;
use berth_auth::Directory;
use berth_core::{CoreError, KvError, Registry};
use berth_http::auth::Caller;
use berth_http::error::ApiError;
use berth_http::AppState;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
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

    /// A `true`/`false` query parameter; `None` when absent, 400 for
    /// anything else.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.query(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(Error::bad_request(format!("{name} must be true or false"))),
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.state.auth.directory
    }

    pub fn registry(&self) -> &Registry {
        &self.state.registry
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

/// The management API's own error codes, each with its status: the one
/// table of them (beside the registry's, `berth_oci::ErrorCode`, which
/// renders the domain's failures here too: [`Error::Api`]). Bodies are
/// `{"errors":[{"code","message"}]}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Precondition,
    PayloadTooLarge,
}

impl Code {
    /// `(code, HTTP status)`.
    pub const fn describe(self) -> (&'static str, StatusCode) {
        match self {
            Code::BadRequest => ("BAD_REQUEST", StatusCode::BAD_REQUEST),
            Code::Unauthorized => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Code::Forbidden => ("FORBIDDEN", StatusCode::FORBIDDEN),
            Code::NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
            Code::MethodNotAllowed => ("METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED),
            Code::Conflict => ("CONFLICT", StatusCode::CONFLICT),
            Code::Precondition => ("PRECONDITION", StatusCode::PRECONDITION_FAILED),
            Code::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    pub const fn code(self) -> &'static str {
        self.describe().0
    }

    pub const fn status(self) -> StatusCode {
        self.describe().1
    }
}

/// A failed management request.
#[derive(Debug)]
pub enum Error {
    /// A management failure: a code of [`Code`]'s table and what to say.
    Mgmt(Code, String),
    /// A failure of the registry domain, of authentication, or a fault:
    /// rendered by the shared [`ApiError`] (the registry's table).
    Api(ApiError),
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error::Mgmt(code, message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(Code::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::new(Code::Unauthorized, message)
    }

    pub fn forbidden() -> Error {
        Error::new(Code::Forbidden, "you do not have permission to do this")
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Code::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(Code::Conflict, message)
    }

    pub fn precondition(message: impl Into<String>) -> Error {
        Error::new(Code::Precondition, message)
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Mgmt(code, _) => code.status(),
            Error::Api(e) => e.status(),
        }
    }

    /// What a person is told (the web UI shows it on a page).
    pub fn message(&self) -> String {
        match self {
            Error::Mgmt(_, message) => message.clone(),
            Error::Api(e) => e.message(),
        }
    }
}

// One mapping of each lower error into this one.

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
        CoreError::from(e).into()
    }
}

/// The directory's failures with a management API's statuses: a duplicate
/// is 409 (where the registry protocol, which has no conflict, answers 403
/// DENIED), a missing record 404, an invalid value 400; the store's faults
/// as the registry's UNAVAILABLE or UNKNOWN.
impl From<DirectoryError> for Error {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Exists(what) => Error::conflict(format!("{what} already exists")),
            DirectoryError::NotFound(what) => Error::not_found(format!("{what} not found")),
            DirectoryError::Invalid(what) => Error::bad_request(format!("invalid {what}")),
            DirectoryError::Store(e) => e.into(),
            DirectoryError::Internal(cause) => CoreError::internal(cause).into(),
        }
    }
}

/// Something already gone (removed concurrently) is what was wanted.
pub fn tolerate_missing(r: Result<(), DirectoryError>) -> Result<(), Error> {
    match r {
        Ok(()) | Err(DirectoryError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Api(e) => e.into_response(),
            Error::Mgmt(code, message) => json(
                code.status(),
                &serde_json::json!({"errors": [{"code": code.code(), "message": message}]}),
            ),
        }
    }
}

/// What a change is given, read only after its permission checks, so that
/// a caller without the right gets its 403 (not a 400) whatever it sends:
/// a value (the typed functions' callers, the web UI), or the request's
/// [`Body`] or [`Flag`] (the endpoints' handlers).
pub trait Input<T> {
    fn read(self) -> Result<T, Error>;
}

impl<T> Input<T> for T {
    fn read(self) -> Result<T, Error> {
        Ok(self)
    }
}

/// The request body, as JSON.
pub struct Body<'a>(pub &'a Ctx);

impl<T: DeserializeOwned> Input<T> for Body<'_> {
    fn read(self) -> Result<T, Error> {
        self.0.json()
    }
}

/// A `true`/`false` query parameter, false when absent.
pub struct Flag<'a>(pub &'a Ctx, pub &'static str);

impl Input<bool> for Flag<'_> {
    fn read(self) -> Result<bool, Error> {
        Ok(self.0.flag(self.1)?.unwrap_or(false))
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

/// The page the request asks for of `items` whose name (`name`) matches
/// its `q` search, each shown as `view` shows it.
pub fn page_of<T>(
    ctx: &Ctx,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    view: impl Fn(&T) -> Value,
) -> Result {
    let paging = ctx.page()?;
    let q = ctx.query("q");
    let found: Vec<T> = items
        .into_iter()
        .filter(|item| matches_query(name(item), q))
        .collect();
    let total = found.len();
    paged(paging.slice(found).iter().map(view).collect(), total)
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

/// What [`encode`] leaves as it is: the unreserved bytes of RFC 3986.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment or query component: every byte but
/// the unreserved ones.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `%XX`-decodes one path segment; `None` for a malformed escape (a `%`
/// not followed by two hex digits) or bytes that are not UTF-8. The API
/// matches routes on the raw path and decodes each segment after (an
/// encoded `/` inside a repository name must stay one segment).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode(bytes)
        .decode_utf8()
        .ok()
        .map(Into::into)
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
        assert_eq!(percent_decode("%+f"), None);
        assert_eq!(percent_decode("%%41"), None);
        assert_eq!(percent_decode("%41%").as_deref(), None);
        assert_eq!(percent_decode("%c3%A9").as_deref(), Some("é"));
        assert_eq!(encode("robot$p+ci"), "robot%24p%2Bci");
        assert_eq!(encode("a/b c~é"), "a%2Fb%20c~%C3%A9");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let p = Paging { page: 3, size: 2 };
        assert_eq!(p.slice((0..10).collect::<Vec<_>>()), [4, 5]);
    }

    #[test]
    fn directory_failures_have_management_statuses() {
        let status = |e: DirectoryError| Error::from(e).status().as_u16();
        assert_eq!(status(DirectoryError::Exists("user a".into())), 409);
        assert_eq!(status(DirectoryError::NotFound("user a".into())), 404);
        assert_eq!(status(DirectoryError::Invalid("name".into())), 400);
        assert_eq!(status(DirectoryError::Internal("disk".into())), 500);
        let store = KvError::Unavailable("etcd".into());
        assert_eq!(status(DirectoryError::Store(store)), 503);
        let e = Error::from(DirectoryError::Exists("user a".into()));
        assert_eq!(e.message(), "user a already exists");
    }
}
