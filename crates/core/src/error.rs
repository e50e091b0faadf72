//! The domain's error: an OCI error code, an optional detail safe to show a
//! client, and for faults an internal cause that is logged once, never sent.

use crate::blob::StoreError;
use crate::kv::KvError;
use berth_oci::ErrorCode;
use std::fmt;

#[derive(Debug)]
pub struct CoreError {
    pub code: ErrorCode,
    /// Shown to the client in the error's `detail`.
    pub detail: Option<String>,
    /// Logged by the api layer; never shown to the client.
    pub cause: Option<String>,
}

impl CoreError {
    pub fn new(code: ErrorCode) -> Self {
        CoreError {
            code,
            detail: None,
            cause: None,
        }
    }

    pub fn with_detail(code: ErrorCode, detail: impl Into<String>) -> Self {
        CoreError {
            code,
            detail: Some(detail.into()),
            cause: None,
        }
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        CoreError {
            code: ErrorCode::Internal,
            detail: None,
            cause: Some(cause.into()),
        }
    }

    pub fn unavailable(cause: impl Into<String>) -> Self {
        CoreError {
            code: ErrorCode::Unavailable,
            detail: None,
            cause: Some(cause.into()),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code.code())?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(c) = &self.cause {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CoreError {}

impl From<KvError> for CoreError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Unavailable(m) => CoreError::unavailable(m),
            KvError::Internal(m) => CoreError::internal(m),
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => CoreError::new(ErrorCode::BlobUnknown),
            StoreError::Unavailable(m) => CoreError::unavailable(m),
            StoreError::Io(m) => CoreError::internal(m),
        }
    }
}

impl From<serde_json::Error> for CoreError {
    fn from(e: serde_json::Error) -> Self {
        CoreError::internal(format!("corrupt metadata record: {e}"))
    }
}
