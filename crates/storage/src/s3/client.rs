//! The handful of S3 calls berth makes, over `reqwest` with SigV4 header
//! signing, and the mapping of their failures onto `StoreError`: transport
//! trouble, timeouts and 5xx are `Unavailable`, 404 is `NotFound`.

use super::config::S3Config;
use super::sigv4::{self, Credentials, UNSIGNED_PAYLOAD};
use super::xml;
use base64::Engine as _;
use berth_core::{ByteStream, StoreError};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use md5::Digest as _;
use reqwest::{Method, Response, StatusCode, Url};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Bodies up to this size are hashed into the signature; larger ones go
/// `UNSIGNED-PAYLOAD` so their bytes are not read twice.
const SIGNED_BODY_MAX: usize = 64 * 1024;

/// How much of an error response is read for its code and message.
const ERROR_BODY_MAX: usize = 64 * 1024;

/// Keys per DeleteObjects request, the S3 maximum.
const DELETE_BATCH: usize = 1000;

/// A signing S3 client bound to one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    scheme: String,
    /// `host[:port]` of the endpoint, as the `Host` header carries it.
    host: String,
    /// Path of the endpoint URL without its trailing `/`, usually empty.
    base_path: String,
    bucket: String,
    path_style: bool,
    region: String,
    creds: Arc<Credentials>,
    timeout: Duration,
}

/// One request before signing. `key` is the full object key, empty for
/// bucket-level calls.
pub(super) struct Call<'a> {
    op: &'static str,
    method: Method,
    key: &'a str,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
}

impl<'a> Call<'a> {
    pub(super) fn new(op: &'static str, method: Method, key: &'a str) -> Self {
        Call {
            op,
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub(super) fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }

    pub(super) fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub(super) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

fn transport(op: &str, e: reqwest::Error) -> StoreError {
    if e.is_builder() {
        StoreError::Io(format!("S3 {op}: {e}"))
    } else {
        // Connection refused or reset, TLS failure, a body cut short: all
        // conditions a later attempt may not meet.
        StoreError::Unavailable(format!("S3 {op}: {e}"))
    }
}

/// Whether a failed call may be sent again.
enum Again {
    /// The store refused it undone.
    Always,
    /// The store may have done it.
    IfIdempotent,
    /// It failed for good (4xx).
    Never,
}

/// Retries of a call after its first attempt.
const RETRIES: u32 = 3;

/// The wait before retry `attempt` (from 0): 100 ms doubling each time,
/// less a random part of up to half (so that nodes refused together do
/// not come back together).
fn backoff(attempt: u32) -> Duration {
    let full = Duration::from_millis(100) * 2u32.pow(attempt);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    full - full / 2 * jitter / 1000
}

fn timed_out(op: &str) -> StoreError {
    StoreError::Unavailable(format!("S3 {op}: no answer in time"))
}

impl S3Client {
    pub fn new(config: &S3Config) -> io::Result<Self> {
        config.validate()?;
        let creds = config.credentials()?;
        let url = Url::parse(&config.endpoint).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("storage.endpoint {:?}: {e}", config.endpoint),
            )
        })?;
        let scheme = url.scheme().to_owned();
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        if !matches!(scheme.as_str(), "http" | "https") || host.is_empty() || url.query().is_some()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "storage.endpoint {:?}: want http(s)://host[:port]",
                    config.endpoint
                ),
            ));
        }
        let timeout = Duration::from_secs(config.timeout_secs);
        let tls = berth_net::TlsClient::with_ca(config.ca_file.as_deref());
        let http = berth_net::client_builder(&tls, "storage")
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .connect_timeout(timeout)
            .build()
            .map_err(|e| io::Error::other(format!("HTTP client: {e}")))?;
        Ok(S3Client {
            http,
            scheme,
            host,
            base_path: url.path().trim_end_matches('/').to_owned(),
            bucket: config.bucket.clone(),
            path_style: config.path_style,
            region: config.region.clone(),
            creds: Arc::new(creds),
            timeout,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Host header and canonical URI of `key`.
    fn locate(&self, key: &str) -> (String, String) {
        let key = sigv4::uri_encode(key, true);
        if self.path_style {
            let bucket = sigv4::uri_encode(&self.bucket, false);
            let uri = if key.is_empty() {
                format!("{}/{bucket}", self.base_path)
            } else {
                format!("{}/{bucket}/{key}", self.base_path)
            };
            (self.host.clone(), uri)
        } else {
            (
                format!("{}.{}", self.bucket, self.host),
                format!("{}/{key}", self.base_path),
            )
        }
    }

    /// Signs and sends `call`, answering the response of a 2xx status and
    /// the mapped error otherwise. The caller bounds the time. A call the
    /// store refused without doing it (503 SlowDown, a refused connection)
    /// is sent again, up to [`RETRIES`] times with backoff and jitter; one
    /// that may have been done (another 5xx, a connection cut) only when
    /// doing it twice is harmless (every call but the POSTs that create
    /// and complete a multipart upload).
    async fn send(&self, call: Call<'_>) -> Result<Response, StoreError> {
        let idempotent = call.method != Method::POST || call.op == "DeleteObjects";
        let mut attempt = 0;
        loop {
            let (e, again) = match self.send_once(&call).await {
                Ok(resp) => return Ok(resp),
                Err(failure) => failure,
            };
            let retry = match again {
                Again::Always => true,
                Again::IfIdempotent => idempotent,
                Again::Never => false,
            };
            if !retry || attempt >= RETRIES {
                return Err(e);
            }
            let delay = backoff(attempt);
            tracing::debug!(op = call.op, key = call.key, error = %e, ?delay, "S3 call retried");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt of [`S3Client::send`]: the error, and whether to try
    /// again.
    async fn send_once(&self, call: &Call<'_>) -> Result<Response, (StoreError, Again)> {
        let (host, uri) = self.locate(call.key);
        let amz_date = sigv4::amz_date(sigv4::unix_now());
        let payload_hash = match &call.body {
            None => sigv4::sha256_hex(b""),
            Some(b) if b.len() <= SIGNED_BODY_MAX => sigv4::sha256_hex(b),
            Some(_) => UNSIGNED_PAYLOAD.to_owned(),
        };
        let mut headers = call.headers.clone();
        headers.push(("host".into(), host.clone()));
        headers.push(("x-amz-date".into(), amz_date.clone()));
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        let auth = sigv4::authorization(
            &self.creds,
            &self.region,
            &amz_date,
            &sigv4::Request {
                method: call.method.as_str(),
                uri: &uri,
                query: &call.query,
                headers: &headers,
                payload_hash: &payload_hash,
            },
        );
        let mut url = format!("{}://{host}{uri}", self.scheme);
        // The wire query holds the same encoded pairs as the signed one;
        // valueless sub-resources (`?uploads`, `?delete`) go bare, as SDKs
        // send them.
        let pairs: Vec<String> = sigv4::encoded_query(&call.query)
            .into_iter()
            .map(|(k, v)| if v.is_empty() { k } else { format!("{k}={v}") })
            .collect();
        if !pairs.is_empty() {
            url.push('?');
            url.push_str(&pairs.join("&"));
        }
        let mut req = self.http.request(call.method.clone(), &url);
        for (k, v) in &headers {
            // reqwest derives Host from the URL, identical to the signed one.
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        req = req.header("authorization", auth);
        // Content-Length always, even 0: Ceph RGW answers 411 to a PUT of
        // an empty object sent without it, which hyper does not add.
        let req = match &call.body {
            Some(body) => req
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(body.clone()),
            None if matches!(call.method, Method::PUT | Method::POST) => {
                req.header(reqwest::header::CONTENT_LENGTH, 0)
            }
            None => req,
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                // Refused: nothing reached the store.
                let again = if e.is_connect() {
                    Again::Always
                } else {
                    Again::IfIdempotent
                };
                return Err((transport(call.op, e), again));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // 503 (SlowDown, ServiceUnavailable) refuses the call undone.
        let again = if status == StatusCode::SERVICE_UNAVAILABLE {
            Again::Always
        } else if status.is_server_error() {
            Again::IfIdempotent
        } else {
            Again::Never
        };
        Err((self.error(call.op, call.key, resp).await, again))
    }

    /// Maps an error response, reading a bounded part of its XML body.
    async fn error(&self, op: &str, key: &str, mut resp: Response) -> StoreError {
        let status = resp.status();
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_MAX {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        let code = xml::first(&text, "Code").unwrap_or_default();
        let message = xml::first(&text, "Message").unwrap_or_default();
        let detail = format!("S3 {op} {key:?}: {status} {code} {message}");
        if status == StatusCode::NOT_FOUND && code != "NoSuchBucket" {
            StoreError::NotFound
        } else if status.is_server_error() || code == "SlowDown" {
            StoreError::Unavailable(detail)
        } else {
            StoreError::Io(detail.trim_end().to_owned())
        }
    }

    /// Sends `call` and reads its whole (small) answer, all within the
    /// timeout.
    pub(super) async fn text(
        &self,
        call: Call<'_>,
    ) -> Result<(reqwest::header::HeaderMap, String), StoreError> {
        let op = call.op;
        let work = async {
            let resp = self.send(call).await?;
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| transport(op, e))?;
            Ok::<_, StoreError>((headers, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| timed_out(op))?
    }

    /// Some calls (UploadPartCopy, CompleteMultipartUpload) can fail after
    /// their 200 status was sent: the failure is an `<Error>` body.
    pub(super) fn embedded_error(op: &str, key: &str, body: &str) -> Result<(), StoreError> {
        let Some(error) = xml::elements(body, "Error").first().copied() else {
            return Ok(());
        };
        let code = xml::first(error, "Code").unwrap_or_default();
        let message = xml::first(error, "Message").unwrap_or_default();
        let detail = format!("S3 {op} {key:?}: {code} {message}");
        Err(
            if matches!(
                code.as_str(),
                "InternalError" | "SlowDown" | "ServiceUnavailable"
            ) {
                StoreError::Unavailable(detail)
            } else {
                StoreError::Io(detail)
            },
        )
    }

    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.text(Call::new("PutObject", Method::PUT, key).body(body))
            .await
            .map(drop)
    }

    /// Size of the object, `None` when it does not exist.
    pub async fn head_object(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.text(Call::new("HeadObject", Method::HEAD, key)).await {
            Ok((headers, _)) => content_length(&headers)
                .map(Some)
                .ok_or_else(|| StoreError::Io(format!("S3 HeadObject {key:?}: no Content-Length"))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the bucket (setup and tests); one these credentials already
    /// own is not an error.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        match self.text(Call::new("CreateBucket", Method::PUT, "")).await {
            Ok(_) => Ok(()),
            Err(StoreError::Io(m)) if m.contains("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        match self
            .text(Call::new("DeleteObject", Method::DELETE, key))
            .await
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes `keys` in batches; missing keys are not an error.
    pub async fn delete_objects(&self, keys: &[String]) -> Result<(), StoreError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let mut body = String::from("<Delete><Quiet>true</Quiet>");
            for k in batch {
                body.push_str(&format!("<Object><Key>{}</Key></Object>", xml::escape(k)));
            }
            body.push_str("</Delete>");
            // AWS requires Content-MD5 here; the newer checksum headers are
            // refused by Ceph 16.
            let md5 =
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
            let call = Call::new("DeleteObjects", Method::POST, "")
                .query("delete", "")
                .header("content-md5", md5)
                .header("content-type", "application/xml")
                .body(Bytes::from(body));
            let (_, answer) = self.text(call).await?;
            // Quiet mode lists only failures; NoSuchKey counts as deleted.
            for failure in xml::elements(&answer, "Error") {
                let code = xml::first(failure, "Code").unwrap_or_default();
                if code != "NoSuchKey" {
                    let key = xml::first(failure, "Key").unwrap_or_default();
                    let message = xml::first(failure, "Message").unwrap_or_default();
                    return Err(StoreError::Io(format!(
                        "S3 DeleteObjects {key:?}: {code} {message}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Every key under `prefix` with its LastModified (Unix seconds), all
    /// pages.
    pub async fn list_objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Option<u64>)>, StoreError> {
        let mut keys = Vec::new();
        self.list_pages(prefix, None, |body| {
            for contents in xml::elements(body, "Contents") {
                if let Some(k) = xml::first(contents, "Key") {
                    let modified =
                        xml::first(contents, "LastModified").and_then(|t| sigv4::parse_iso8601(&t));
                    keys.push((k, modified));
                }
            }
        })
        .await?;
        Ok(keys)
    }

    /// The "directories" right under `prefix` (which ends in `/`): the
    /// distinct key prefixes up to the next `/`, each ending in `/`, all
    /// pages.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut dirs = Vec::new();
        self.list_pages(prefix, Some("/"), |body| {
            for common in xml::elements(body, "CommonPrefixes") {
                if let Some(p) = xml::first(common, "Prefix") {
                    dirs.push(p);
                }
            }
        })
        .await?;
        Ok(dirs)
    }

    /// ListObjectsV2 of `prefix` (grouped by `delimiter`), every page's
    /// body given to `page`.
    async fn list_pages(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut page: impl FnMut(&str),
    ) -> Result<(), StoreError> {
        let mut token: Option<String> = None;
        loop {
            let mut call = Call::new("ListObjectsV2", Method::GET, "").query("list-type", "2");
            if !prefix.is_empty() {
                call = call.query("prefix", prefix);
            }
            if let Some(d) = delimiter {
                call = call.query("delimiter", d);
            }
            if let Some(t) = &token {
                call = call.query("continuation-token", t.clone());
            }
            let (_, body) = self.text(call).await?;
            page(&body);
            let truncated = xml::first(&body, "IsTruncated").as_deref() == Some("true");
            match xml::first(&body, "NextContinuationToken") {
                Some(t) if truncated && !t.is_empty() => token = Some(t),
                _ if truncated => {
                    return Err(StoreError::Io(
                        "S3 ListObjectsV2: truncated without a continuation token".into(),
                    ))
                }
                _ => return Ok(()),
            }
        }
    }

    /// Streams `len` bytes of `key` from `offset`. The timeout bounds the
    /// wait for the answer and then each wait for more bytes, not the whole
    /// transfer, which a slow reader may stretch.
    pub async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, StoreError> {
        let last = offset
            .checked_add(len)
            .and_then(|end| end.checked_sub(1))
            .ok_or_else(|| {
                StoreError::Io(format!("S3 GetObject {key:?}: empty or invalid range"))
            })?;
        let call = Call::new("GetObject", Method::GET, key)
            .header("range", format!("bytes={offset}-{last}"));
        let resp = match tokio::time::timeout(self.timeout, self.send(call)).await {
            Err(_) => return Err(timed_out("GetObject")),
            Ok(Err(StoreError::Io(e))) if e.contains("InvalidRange") => {
                return Err(StoreError::Io(format!(
                    "range {offset}+{len} outside {key:?}: {e}"
                )))
            }
            Ok(r) => r?,
        };
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        let got = content_length(resp.headers());
        // A server ignoring Range answers 200 with everything: usable only
        // when that is exactly what was asked.
        if got != Some(len) || (!partial && offset != 0) {
            return Err(StoreError::Io(format!(
                "S3 GetObject {key:?}: asked {offset}+{len}, got {} bytes (status {}): range outside the object?",
                got.map_or("unknown".into(), |g| g.to_string()),
                resp.status()
            )));
        }
        let timeout = self.timeout;
        let body = resp.bytes_stream();
        Ok(Box::pin(futures_util::stream::unfold(
            Some(body),
            move |body| async move {
                let mut body = body?;
                match tokio::time::timeout(timeout, body.next()).await {
                    Err(_) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "S3 GetObject: no bytes in time",
                        )),
                        None,
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                    Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
                }
            },
        )))
    }

    /// The whole object `key` when it has at most `max` bytes: `Ok(None)`
    /// when there is none, `Err(size)` inside when it is larger (its body
    /// is not read).
    pub async fn get_small(
        &self,
        key: &str,
        max: u64,
    ) -> Result<Option<Result<Bytes, u64>>, StoreError> {
        let work = async {
            let resp = match self.send(Call::new("GetObject", Method::GET, key)).await {
                Ok(r) => r,
                Err(StoreError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(len) = content_length(resp.headers()).filter(|l| *l > max) {
                return Ok(Some(Err(len)));
            }
            let body = resp.bytes().await.map_err(|e| transport("GetObject", e))?;
            if body.len() as u64 > max {
                return Ok(Some(Err(body.len() as u64)));
            }
            Ok(Some(Ok(body)))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| timed_out("GetObject"))?
    }

    /// Reads `len` bytes of `key` from `offset` into memory; for the small
    /// ranges upload assembly merges.
    pub async fn get_range_bytes(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        out: &mut BytesMut,
    ) -> Result<(), StoreError> {
        let work = async {
            let mut stream = self.get_range(key, offset, len).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk
                    .map_err(|e| StoreError::Unavailable(format!("S3 GetObject {key:?}: {e}")))?;
                out.extend_from_slice(&chunk);
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| timed_out("GetObject"))?
    }
}

fn content_length(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str, path_style: bool) -> S3Client {
        let mut c = S3Config::new(endpoint, "my-bucket");
        c.access_key_id = Some("id".into());
        c.secret_access_key = Some("secret".into());
        c.path_style = path_style;
        S3Client::new(&c).unwrap()
    }

    #[test]
    fn addressing_styles() {
        let c = client("http://127.0.0.1:3900", true);
        assert_eq!(
            c.locate("blobs/a b"),
            ("127.0.0.1:3900".into(), "/my-bucket/blobs/a%20b".into())
        );
        assert_eq!(c.locate(""), ("127.0.0.1:3900".into(), "/my-bucket".into()));
        let c = client("http://s3.eu-west-1.amazonaws.com/", false);
        assert_eq!(
            c.locate("blobs/x"),
            (
                "my-bucket.s3.eu-west-1.amazonaws.com".into(),
                "/blobs/x".into()
            )
        );
        assert_eq!(c.locate("").1, "/");
        let c = client("http://gw.example:8080/s3/", true);
        assert_eq!(c.locate("k").1, "/s3/my-bucket/k");
    }

    #[test]
    fn bad_endpoints() {
        let mut c = S3Config::new("https://s3.amazonaws.com", "b");
        c.access_key_id = Some("id".into());
        c.secret_access_key = Some("secret".into());
        // https is supported (berth-net's rustls client).
        assert!(S3Client::new(&c).is_ok());
        c.endpoint = "ftp://x".into();
        c.access_key_id = Some("id".into());
        c.secret_access_key = Some("secret".into());
        assert!(S3Client::new(&c).is_err());
        c.endpoint = "not a url".into();
        assert!(S3Client::new(&c).is_err());
        c.endpoint = "http://h/?q=1".into();
        assert!(S3Client::new(&c).is_err());
    }
}
