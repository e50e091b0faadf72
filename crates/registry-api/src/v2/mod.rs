//! The OCI distribution API under `/v2`. [`dispatch`] parses the path into
//! an [`route::Endpoint`], then one `match` on endpoint and method calls the
//! handler for it.

pub mod blobs;
pub mod discovery;
pub mod manifests;
pub mod proxy;
pub mod request;
pub mod route;

use axum::body::{Body, BodyDataStream, HttpBody};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use berth_core::ByteStream;
use berth_http::error::ApiError;
use berth_http::AppState;
use berth_oci::ErrorCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use request::V2Request;
use route::{Endpoint, RouteError};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// At most this much of a body left unread by its handler is read and
/// discarded before the response goes out, and for at most
/// [`DRAIN_TIME`]. A client still sending a refused body then reads the
/// error instead of a reset connection; past these bounds the connection
/// is closed instead.
const DRAIN_BYTES: u64 = 32 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

pub use request::Params;

/// Runs behind [`crate::guard::guard`], which leaves the caller and the
/// parsed request, with its access decided, in the extensions.
pub async fn dispatch(
    State(state): State<AppState>,
    caller: Option<axum::Extension<berth_http::auth::Caller>>,
    request: Option<axum::Extension<V2Request>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The handler reads the body through a shared handle, so that whatever
    // it leaves unread (a request refused early) can be drained below.
    let (body, rest) = if HttpBody::is_end_stream(&body) {
        (Body::empty(), None)
    } else {
        let shared = SharedBody(Arc::new(Mutex::new(body.into_data_stream())));
        (Body::from_stream(shared.clone()), Some(shared))
    };
    let caller = caller.map(|c| c.0);
    let result = match request {
        Some(request) => handle(&state, caller.as_ref(), &method, request.0, &headers, body).await,
        None => Err(ApiError(berth_core::CoreError::internal(
            "a /v2 request reached its handler without passing the guard",
        ))),
    };
    let resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(rest) = rest {
        rest.drain().await;
    }
    // The guard around this adds `Docker-Distribution-API-Version`.
    resp
}

async fn handle(
    state: &AppState,
    caller: Option<&berth_http::auth::Caller>,
    method: &Method,
    request: V2Request,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let endpoint = request.endpoint.map_err(|e| match e {
        RouteError::NotFound => ApiError::detail(ErrorCode::NameUnknown, "no such endpoint"),
        RouteError::Invalid(code, detail) => ApiError::detail(code, detail),
        // Nothing is stored under an invalid tag; pushing one is a bad request.
        RouteError::InvalidTag(detail) if method == Method::PUT => {
            ApiError::detail(ErrorCode::ManifestInvalid, detail)
        }
        RouteError::InvalidTag(detail) => ApiError::detail(ErrorCode::ManifestUnknown, detail),
    })?;
    let allowed = endpoint.allowed_methods();
    let params = request
        .params
        .map_err(|e| ApiError::detail(e.code, e.detail))?;
    let mount = request.mount;
    let reg = &state.registry;
    // HEAD is answered as GET; hyper sends the headers without the body.
    let head = method == Method::HEAD;
    let m = if head { Method::GET } else { method.clone() };
    if let Some(repo) = endpoint.repo() {
        if let Some(binding) = state.proxy.binding(repo.project()).await? {
            let answer = proxy::handle(state, &binding, &endpoint, &m, headers, head).await;
            if let Some(answer) = answer {
                return answer;
            }
        }
    }
    match (endpoint, m) {
        (Endpoint::Base, Method::GET) => Ok(json_response("{}".to_owned())),
        (Endpoint::Catalog, Method::GET) => discovery::catalog(state, caller, &params).await,
        (Endpoint::Tags(repo), Method::GET) => discovery::tags(state, &repo, &params).await,
        (Endpoint::Referrers(repo, d), Method::GET) => {
            discovery::referrers(reg, &repo, &d, &params).await
        }
        (Endpoint::Manifest(repo, r), Method::GET) => {
            manifests::get(reg, &repo, &r, headers, head).await
        }
        (Endpoint::Manifest(repo, r), Method::PUT) => {
            manifests::put(state, &repo, &r, headers, body).await
        }
        (Endpoint::Manifest(repo, r), Method::DELETE) => manifests::delete(reg, &repo, &r).await,
        (Endpoint::Blob(repo, d), Method::GET) => blobs::get(reg, &repo, &d, headers, head).await,
        (Endpoint::Blob(repo, d), Method::DELETE) => blobs::delete(reg, &repo, &d).await,
        (Endpoint::UploadStart(repo), Method::POST) => {
            let account = caller.map_or("", |c| c.principal.name());
            blobs::start(state, &repo, &params, mount, account, headers, body).await
        }
        (Endpoint::Upload(repo, id), Method::GET) => blobs::status(state, &repo, &id).await,
        (Endpoint::Upload(repo, id), Method::PATCH) => {
            blobs::patch(state, &repo, &id, headers, body).await
        }
        (Endpoint::Upload(repo, id), Method::PUT) => {
            blobs::finish(state, &repo, &id, &params, headers, body).await
        }
        (Endpoint::Upload(repo, id), Method::DELETE) => blobs::cancel(reg, &repo, &id).await,
        _ => Ok(method_not_allowed(allowed)),
    }
}

/// 405 with the `Allow` header RFC 9110 requires.
fn method_not_allowed(allowed: &[Method]) -> Response {
    let mut resp = ApiError::code(ErrorCode::MethodNotAllowed).into_response();
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    resp.headers_mut()
        .insert(header::ALLOW, header_value(&allow));
    resp
}

/// A request body shared between the handler reading it and [`dispatch`],
/// which drains what the handler left.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<BodyDataStream>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.lock() {
            Ok(mut inner) => inner.poll_next_unpin(cx),
            // Poisoned by a panic mid-read: the body is unusable.
            Err(_) => Poll::Ready(None),
        }
    }
}

impl SharedBody {
    async fn drain(mut self) {
        let drain = async {
            let mut seen = 0u64;
            while seen <= DRAIN_BYTES {
                match self.next().await {
                    Some(Ok(chunk)) => seen += chunk.len() as u64,
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
}

pub(crate) fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
