//! The service's error: a kind the management API maps to a status, and
//! a message safe to show.

use berth_core::{CoreError, KvError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    NotFound,
    Conflict,
    /// The metadata store or a remote cannot be reached now.
    Unavailable,
    Internal,
}

#[derive(Debug)]
pub struct ReplError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ReplError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ReplError {
        ReplError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ReplError {
        ReplError::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> ReplError {
        ReplError::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> ReplError {
        ReplError::new(ErrorKind::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> ReplError {
        ReplError::new(ErrorKind::Internal, message)
    }
}

impl std::fmt::Display for ReplError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReplError {}

impl From<KvError> for ReplError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Unavailable(m) => ReplError::new(ErrorKind::Unavailable, m),
            KvError::Internal(m) => ReplError::internal(m),
        }
    }
}

impl From<serde_json::Error> for ReplError {
    fn from(e: serde_json::Error) -> Self {
        ReplError::internal(format!("replication record: {e}"))
    }
}

impl From<ReplError> for CoreError {
    fn from(e: ReplError) -> Self {
        match e.kind {
            ErrorKind::Unavailable => CoreError::unavailable(e.message),
            _ => CoreError::internal(e.message),
        }
    }
}
