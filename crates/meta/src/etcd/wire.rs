//! The JSON shapes of etcd's gRPC gateway (proto3's JSON mapping): bytes are
//! base64, int64s are strings, and fields holding a zero value (0, false, "",
//! the PUT event type) are left out, hence `#[serde(default)]` everywhere.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_core::kv::KvError;
use serde::{Deserialize, Deserializer};

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(super) fn unb64(field: &str, text: &str) -> Result<Vec<u8>, KvError> {
    STANDARD
        .decode(text)
        .map_err(|e| KvError::Internal(format!("etcd sent a {field} that is not base64: {e}")))
}

/// The end of the range of keys starting with `prefix`: the prefix with its
/// last byte incremented (after dropping trailing 0xff bytes). `[0]`, etcd's
/// "no upper bound", when no such key exists.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An int64 field: a string per the JSON mapping, though a number is
/// accepted too.
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Header {
    #[serde(deserialize_with = "int")]
    pub revision: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct KeyValue {
    pub key: String,
    pub value: String,
    #[serde(deserialize_with = "int")]
    pub mod_revision: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RangeResponse {
    pub header: Header,
    pub kvs: Vec<KeyValue>,
    /// More keys are in the range than the limit let through.
    pub more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TxnResponse {
    pub succeeded: bool,
}

/// Put and delete-range answers; only their arrival matters.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Empty {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseGrantResponse {
    #[serde(rename = "ID", deserialize_with = "int")]
    pub id: i64,
    pub error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseKeepAliveResponse {
    /// Zero (so absent) when the lease has expired or never existed.
    #[serde(rename = "TTL", deserialize_with = "int")]
    pub ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AuthenticateResponse {
    pub token: String,
}

/// `GET /version`, outside the gateway: picks the gateway's path prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct VersionResponse {
    pub etcdserver: String,
}

/// The error body of a unary call answered with a non-2xx status.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct UnaryError {
    pub code: i32,
    pub message: String,
}

/// One line of a streaming call: a result, or an error ending the stream
/// (streams answer 200 before anything can fail, so errors come in-band).
#[derive(Debug, Deserialize)]
pub(super) struct StreamLine<T> {
    pub result: Option<T>,
    pub error: Option<StreamError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct StreamError {
    pub grpc_code: i32,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WatchResponse {
    pub header: Header,
    pub created: bool,
    pub canceled: bool,
    #[serde(deserialize_with = "int")]
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<Event>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Event {
    /// `"DELETE"`, or absent for a put (the enum's zero value).
    #[serde(rename = "type")]
    pub kind: String,
    pub kv: KeyValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }

    #[test]
    fn omitted_zero_fields_and_string_ints() {
        let r: RangeResponse = serde_json::from_str(
            r#"{"header":{"revision":"3"},"kvs":[{"key":"ZQ==","mod_revision":"3"}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(r.kvs[0].value, "");
        assert_eq!(r.kvs[0].mod_revision, 3);
        let t: TxnResponse = serde_json::from_str(r#"{"header":{}}"#).unwrap();
        assert!(!t.succeeded);
        let w: StreamLine<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{"revision":"5"},"events":[{"kv":{"key":"YQ==","mod_revision":"5"}},{"type":"DELETE","kv":{"key":"YQ==","mod_revision":6}}]}}"#,
        )
        .unwrap();
        let w = w.result.unwrap();
        assert_eq!(w.events[0].kind, "");
        assert_eq!(w.events[1].kind, "DELETE");
        assert_eq!(w.events[1].kv.mod_revision, 6);
    }
}
