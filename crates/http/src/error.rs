//! Renders every failure as the distribution spec's JSON error with the
//! status from the one table in `berth_oci::error`. Internal causes are
//! logged here, once, and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::CoreError;
use berth_oci::error::error_body;
use berth_oci::ErrorCode;

#[derive(Debug)]
pub struct ApiError(pub CoreError);

impl ApiError {
    pub fn code(code: ErrorCode) -> Self {
        ApiError(CoreError::new(code))
    }

    pub fn detail(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError(CoreError::with_detail(code, detail))
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if let Some(cause) = &e.cause {
            match e.code {
                ErrorCode::Unavailable => {
                    tracing::warn!(code = e.code.code(), %cause, "request failed")
                }
                _ => tracing::error!(code = e.code.code(), %cause, "request failed"),
            }
        }
        let status =
            StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, error_body(e.code, e.detail.as_deref())).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
