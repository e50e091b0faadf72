//! The one error type of the client: what went wrong, the registry's own
//! OCI error code and message when it sent one, the HTTP status, and whether
//! trying again later may succeed.

use berth_oci::Digest;
use std::error::Error as StdError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry (or its token service) answered with an error status.
    #[error("{context}: {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Registry {
        /// The request, as `METHOD host/path` (never the query, which may
        /// hold an upload's state).
        context: String,
        /// The HTTP status.
        status: u16,
        /// The first OCI error code of the body (`MANIFEST_UNKNOWN`, ...),
        /// when the body had one.
        code: Option<String>,
        /// The registry's message, or the status's reason.
        message: String,
    },

    /// Authentication failed: credentials refused, none configured where
    /// the registry needs some, a token that does not grant the access, or
    /// a token service that could not be used safely.
    #[error("authentication failed: {message}")]
    Auth {
        /// The status that ended the attempt, when there was a response.
        status: Option<u16>,
        /// The OCI error code of the registry's body, when it had one.
        code: Option<String>,
        /// What failed, for a human.
        message: String,
    },

    /// The registry could not be reached, or the connection failed midway
    /// (refused, reset, timed out, TLS handshake).
    #[error("{context}: {message}")]
    Network {
        /// The request, as `METHOD host/path`.
        context: String,
        /// The whole chain of causes, for a human.
        message: String,
        /// False for failures that repeat identically (a certificate that
        /// does not verify).
        retryable: bool,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },

    /// Content did not match its digest.
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// What was checked ("manifest", "blob", ...).
        what: String,
        /// The digest the content should have had.
        expected: Digest,
        /// The digest the content has.
        actual: Digest,
    },

    /// The registry answered something the protocol does not allow (a
    /// missing or malformed header, a body that is not what it should be).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The caller's input is unusable: an endpoint that is not a URL, a
    /// blob stream whose size or digest is not the one announced.
    #[error("{0}")]
    Invalid(String),

    /// The blob stream given to an upload failed.
    #[error("reading the blob to upload: {0}")]
    Source(#[source] Box<dyn StdError + Send + Sync>),
}

impl ClientError {
    /// The HTTP status that caused the error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Registry { status, .. } => Some(*status),
            ClientError::Auth { status, .. } => *status,
            _ => None,
        }
    }

    /// The registry's OCI error code (`BLOB_UNKNOWN`, `DENIED`, ...), when
    /// its answer carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Registry { code, .. } | ClientError::Auth { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether trying the same operation again later may succeed: network
    /// failures (but not a certificate that does not verify), 408, 429 and
    /// 5xx answers. Other 4xx answers, authentication failures, digest
    /// mismatches and protocol errors repeat identically.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Registry { status, .. } => {
                matches!(status, 408 | 429) || (500..600).contains(status)
            }
            ClientError::Network { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Whether the registry answered 404 (unknown manifest, blob,
    /// repository or upload).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether access was refused: an [`ClientError::Auth`] failure or a
    /// 401/403 answer.
    pub fn is_auth(&self) -> bool {
        matches!(self, ClientError::Auth { .. }) || matches!(self.status(), Some(401 | 403))
    }

    /// A transport failure of the request described by `context`.
    pub(crate) fn network(context: String, source: reqwest::Error) -> ClientError {
        let (message, tls) = describe_chain(&source);
        ClientError::Network {
            context,
            message,
            retryable: !tls && !source.is_builder(),
            source,
        }
    }
}

/// The causes of `err`, joined, and whether one of them is a TLS failure
/// (a rustls error: a certificate that does not verify, a protocol
/// mismatch), which no retry cures.
///
/// `io::Error` hides the error it wraps from `source()` (it returns the
/// wrapped error's own source), so the walk looks inside it with
/// `get_ref()`: that is where hyper puts rustls's error.
fn describe_chain(err: &(dyn StdError + 'static)) -> (String, bool) {
    let mut parts: Vec<String> = Vec::new();
    let mut tls = false;
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    (parts.join(": "), tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(status: u16) -> ClientError {
        ClientError::Registry {
            context: "GET r/v2/".into(),
            status,
            code: None,
            message: "m".into(),
        }
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(registry(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 413, 416] {
            assert!(!registry(s).is_retryable(), "{s}");
        }
        assert!(registry(403).is_auth());
        assert!(registry(404).is_not_found());
        assert!(!ClientError::Protocol("x".into()).is_retryable());
    }

    #[test]
    fn io_wrapped_rustls_error_is_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let (message, tls) = describe_chain(&io);
        assert!(tls);
        assert!(message.contains("UnknownIssuer"), "{message}");
    }

    #[test]
    fn display_names_code_and_status() {
        let e = ClientError::Registry {
            context: "GET h/v2/a/manifests/x".into(),
            status: 404,
            code: Some("MANIFEST_UNKNOWN".into()),
            message: "manifest unknown".into(),
        };
        assert_eq!(
            e.to_string(),
            "GET h/v2/a/manifests/x: 404 MANIFEST_UNKNOWN: manifest unknown"
        );
    }
}
