//! The one table of errors a client can see: the distribution spec's code,
//! the HTTP status and the default message. Every layer maps its failures to
//! one of these; nothing else reaches a client.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    /// A chunk that does not start where the upload ends.
    BlobUploadRangeInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    /// A `Range` on a blob GET that the blob cannot satisfy.
    RangeNotSatisfiable,
    Unauthorized,
    Denied,
    Unsupported,
    MethodNotAllowed,
    TooManyRequests,
    /// Metadata or storage is unreachable right now; retrying may work.
    Unavailable,
    /// An internal fault. Details are logged, never sent.
    Internal,
}

impl ErrorCode {
    /// `(code, HTTP status, message)`.
    pub const fn describe(self) -> (&'static str, u16, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            BlobUploadRangeInvalid => (
                "BLOB_UPLOAD_INVALID",
                416,
                "chunk out of order or overlapping",
            ),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ManifestTooLarge => ("MANIFEST_INVALID", 413, "manifest exceeds the 4 MiB limit"),
            ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            NameUnknown => ("NAME_UNKNOWN", 404, "repository name not known to registry"),
            SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            RangeNotSatisfiable => ("SIZE_INVALID", 416, "requested range not satisfiable"),
            Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            Denied => ("DENIED", 403, "requested access to the resource is denied"),
            Unsupported => ("UNSUPPORTED", 400, "the operation is unsupported"),
            MethodNotAllowed => ("UNSUPPORTED", 405, "the operation is unsupported"),
            TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            Unavailable => ("UNAVAILABLE", 503, "service unavailable, try again"),
            Internal => ("UNKNOWN", 500, "internal error"),
        }
    }

    pub const fn code(self) -> &'static str {
        self.describe().0
    }

    pub const fn status(self) -> u16 {
        self.describe().1
    }

    pub const fn message(self) -> &'static str {
        self.describe().2
    }
}

/// The JSON body of an error response:
/// `{"errors":[{"code":..,"message":..,"detail":..}]}`.
pub fn error_body(code: ErrorCode, detail: Option<&str>) -> String {
    let mut err = serde_json::json!({"code": code.code(), "message": code.message()});
    if let Some(d) = detail {
        err["detail"] = serde_json::Value::String(d.to_owned());
    }
    serde_json::json!({ "errors": [err] }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&error_body(ErrorCode::BlobUnknown, Some("x"))).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"], "x");
        assert_eq!(ErrorCode::BlobUploadRangeInvalid.status(), 416);
    }
}
