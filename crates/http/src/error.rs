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

    /// The status of its code, from the table.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// What a person is told: the detail, else the code's message.
    pub fn message(&self) -> String {
        let e = &self.0;
        e.detail
            .clone()
            .unwrap_or_else(|| e.code.message().to_owned())
    }

    /// Logs the internal cause, if any: once, by whoever shows the error
    /// (this response, or a web page).
    pub fn log(&self) {
        let e = &self.0;
        if let Some(cause) = &e.cause {
            match e.code {
                ErrorCode::Unavailable => {
                    tracing::warn!(code = e.code.code(), %cause, "request failed")
                }
                _ => tracing::error!(code = e.code.code(), %cause, "request failed"),
            }
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let e = &self.0;
        let mut resp = (self.status(), error_body(e.code, e.detail.as_deref())).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
