//! [`Kv`] over an etcd v3 cluster, spoken through etcd's JSON gRPC gateway
//! with reqwest so that building berth needs no protoc. A value's version is
//! its etcd mod revision; every key lives under a configurable prefix.

mod watch;
mod wire;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::kv::{Check, Kv, KvError, Op, Txn, Versioned};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

pub use watch::{EtcdWatch, WatchEvent};
use wire::{b64, prefix_end, unb64};

/// gRPC status codes that etcd's errors carry.
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// Sent as gRPC metadata `hasleader: true`: a member without a leader then
/// refuses at once ("no leader") instead of holding the request until its
/// own timeout, and cancels watches, so the client moves to another member.
const REQUIRE_LEADER: (&str, &str) = ("Grpc-Metadata-Hasleader", "true");

/// Pause between rounds over the members when none could serve a request;
/// with etcd's default timings a leader election takes about a second.
const ROUND_PAUSE: Duration = Duration::from_millis(200);

/// Settings of the etcd metadata backend (`[metadata] backend = "etcd"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members, such as `http://10.0.0.1:2379`.
    /// Requests go to the member that answered last and fail over to the
    /// others, in this order, when it cannot be reached or has no leader.
    /// Plain `http://` only: this client does not speak TLS.
    pub endpoints: Vec<String>,
    /// Seconds one operation may take, failovers included, before it fails
    /// as unavailable (default 5). Without quorum etcd itself would hold a
    /// request for about 7 s.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Prepended to every key, so that several registries can share one
    /// etcd cluster (default `"berth/"`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The etcd user to authenticate as, when etcd has auth enabled.
    /// Requires `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of `username`.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_timeout_secs() -> u64 {
    5
}

fn default_prefix() -> String {
    "berth/".to_owned()
}

impl EtcdConfig {
    /// These endpoints with every other setting at its default.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            timeout_secs: default_timeout_secs(),
            prefix: default_prefix(),
            username: None,
            password: None,
        }
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("timeout_secs", &self.timeout_secs)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An etcd-backed [`Kv`]. Cheap to clone; clones share connections.
///
/// Reads are linearizable and writes are committed by a quorum: when
/// `commit` returns `Ok(true)` the write survives the loss of any minority.
#[derive(Clone)]
pub struct EtcdKv {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without trailing slashes.
    endpoints: Vec<String>,
    /// The member that answered last, tried first next time: a dead member
    /// then costs one refused connection, not one per request.
    preferred: AtomicUsize,
    timeout: Duration,
    prefix: String,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// The gateway's path prefix, which moved between etcd versions; learned
    /// from the first member that answers `/version`.
    api: OnceCell<&'static str>,
}

impl fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdKv")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Why one attempt at one member failed.
enum Failure {
    /// Not applied (no connection, or the member has no leader): another
    /// member, or this one a moment later, may serve it.
    Elsewhere(String),
    /// etcd rejected the auth token; a fresh one may do.
    Token(String),
    Final(KvError),
}

impl Failure {
    fn into_error(self) -> KvError {
        match self {
            Failure::Elsewhere(why) => KvError::Unavailable(why),
            Failure::Token(why) => KvError::Internal(why),
            Failure::Final(e) => e,
        }
    }
}

/// Classifies an error etcd reported. `retry_safe`: the request may be sent
/// again even if it could have been applied (reads, keepalives).
fn classify(code: i32, message: &str, retry_safe: bool) -> Failure {
    let why = format!("etcd: {message}");
    // Refused before being proposed to raft, so repeating cannot apply twice.
    if message.contains("no leader") || message.contains("too many requests") {
        return Failure::Elsewhere(why);
    }
    match code {
        UNAUTHENTICATED => Failure::Token(why),
        UNAVAILABLE | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED if retry_safe => {
            Failure::Elsewhere(why)
        }
        UNAVAILABLE | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED => {
            Failure::Final(KvError::Unavailable(why))
        }
        _ => Failure::Final(KvError::Internal(format!("{why} (gRPC code {code})"))),
    }
}

/// reqwest's own message omits the cause ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// etcd 3.2 served the gateway under /v3alpha, 3.3 under /v3beta, and 3.4
/// and later under /v3.
fn gateway_prefix(server_version: &str) -> &'static str {
    let mut parts = server_version.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(3)), Some(Ok(minor))) if minor <= 2 => "/v3alpha",
        (Some(Ok(3)), Some(Ok(3))) => "/v3beta",
        _ => "/v3",
    }
}

/// etcd rejects a txn that writes one key twice ("duplicate key given in txn
/// request"), while in a [`Txn`] the later op wins: keep each key's last op.
fn last_op_per_key(ops: Vec<Op>) -> Vec<Op> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Op> = ops
        .into_iter()
        .rev()
        .filter(|op| {
            let key = match op {
                Op::Put(key, _) | Op::Delete(key) => key,
            };
            seen.insert(key.clone())
        })
        .collect();
    kept.reverse();
    kept
}

/// One gateway call, as sent to each member in turn.
#[derive(Clone, Copy)]
struct Request<'a> {
    /// Including the gateway prefix, or `/version`.
    path: &'a str,
    /// POSTed as JSON; `None` sends a GET.
    body: Option<&'a Value>,
    token: Option<&'a str>,
    retry_safe: bool,
    /// A streaming endpoint called for one answer: 200 with the result, or
    /// the error, wrapped in one line.
    stream: bool,
}

impl EtcdKv {
    /// Checks `config` and sets up the client. Contacts no member: an etcd
    /// that is down makes operations fail as unavailable, not startup.
    pub fn new(config: EtcdConfig) -> Result<EtcdKv, KvError> {
        let invalid = |why: String| KvError::Internal(format!("etcd configuration: {why}"));
        if config.endpoints.is_empty() {
            return Err(invalid("no endpoints".into()));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            if !endpoint.starts_with("http://") {
                return Err(invalid(format!(
                    "endpoint {endpoint:?} is not an http:// URL (TLS is not supported)"
                )));
            }
            endpoints.push(endpoint.trim_end_matches('/').to_owned());
        }
        if config.timeout_secs == 0 {
            return Err(invalid("timeout_secs must be at least 1".into()));
        }
        let credentials = match (config.username, config.password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => return Err(invalid("username and password go together".into())),
        };
        let timeout = Duration::from_secs(config.timeout_secs);
        let http = reqwest::Client::builder()
            // Short, so that an unreachable member leaves time to try others.
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| KvError::Internal(format!("etcd HTTP client: {}", describe(&e))))?;
        Ok(EtcdKv {
            inner: Arc::new(Inner {
                http,
                endpoints,
                preferred: AtomicUsize::new(0),
                timeout,
                prefix: config.prefix,
                credentials,
                token: Mutex::new(None),
                api: OnceCell::new(),
            }),
        })
    }

    /// Grants a lease of `ttl_secs` seconds and returns its ID. etcd raises
    /// very short TTLs to its minimum (about 1.5 s with default timings).
    pub async fn lease_grant(&self, ttl_secs: u64) -> Result<i64, KvError> {
        let ttl = i64::try_from(ttl_secs)
            .map_err(|_| KvError::Internal(format!("lease TTL {ttl_secs} s is too long")))?;
        let r: wire::LeaseGrantResponse = self
            .call(
                "/lease/grant",
                json!({ "TTL": ttl.to_string() }),
                true,
                false,
            )
            .await?;
        if !r.error.is_empty() || r.id == 0 {
            return Err(KvError::Internal(format!(
                "etcd granted no lease: {}",
                r.error
            )));
        }
        Ok(r.id)
    }

    /// Renews lease `id` once. `Some(ttl)`: the seconds it now has left;
    /// `None`: it has expired (or never existed) and its keys are gone.
    pub async fn keepalive(&self, id: i64) -> Result<Option<u64>, KvError> {
        let r: wire::LeaseKeepAliveResponse = self
            .call(
                "/lease/keepalive",
                json!({ "ID": id.to_string() }),
                true,
                true,
            )
            .await?;
        Ok(u64::try_from(r.ttl).ok().filter(|ttl| *ttl > 0))
    }

    /// Puts `key` attached to lease `lease`: etcd deletes it when the lease
    /// expires.
    pub async fn put_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(), KvError> {
        let body = json!({
            "key": b64(&self.full_key(key)),
            "value": b64(&value),
            "lease": lease.to_string(),
        });
        let _: wire::Empty = self.call("/kv/put", body, false, false).await?;
        Ok(())
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let prefix = self.inner.prefix.as_bytes();
        let mut full = Vec::with_capacity(prefix.len() + key.len());
        full.extend_from_slice(prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// A key as etcd sent it, back to the caller's spelling.
    fn caller_key(&self, encoded: &str) -> Result<String, KvError> {
        let full = unb64("key", encoded)?;
        let key = full
            .strip_prefix(self.inner.prefix.as_bytes())
            .ok_or_else(|| {
                KvError::Internal(format!(
                    "etcd returned a key outside {:?}",
                    self.inner.prefix
                ))
            })?;
        String::from_utf8(key.to_vec())
            .map_err(|_| KvError::Internal("etcd returned a key that is not UTF-8".into()))
    }

    /// One gateway call under the configured timeout, failing over between
    /// members and authenticating as needed.
    async fn call<R: DeserializeOwned>(
        &self,
        path: &str,
        body: Value,
        retry_safe: bool,
        stream: bool,
    ) -> Result<R, KvError> {
        let deadline = Instant::now() + self.inner.timeout;
        let path = format!("{}{path}", self.api(deadline).await?);
        let (path, body) = (path.as_str(), &body);
        self.authed(deadline, |token| async move {
            let request = Request {
                path,
                body: Some(body),
                token: token.as_deref(),
                retry_safe,
                stream,
            };
            self.over_members(deadline, |idx| self.attempt(idx, request, deadline))
                .await
        })
        .await
    }

    async fn api(&self, deadline: Instant) -> Result<&'static str, KvError> {
        let api = self.inner.api.get_or_try_init(|| async {
            let request = Request {
                path: "/version",
                body: None,
                token: None,
                retry_safe: true,
                stream: false,
            };
            let version: wire::VersionResponse = self
                .over_members(deadline, |idx| self.attempt(idx, request, deadline))
                .await
                .map_err(Failure::into_error)?;
            Ok::<_, KvError>(gateway_prefix(&version.etcdserver))
        });
        api.await.copied()
    }

    /// Runs `run` with the current auth token (none without credentials),
    /// and once more with a fresh token if etcd rejects it: etcd forgets
    /// tokens after five idle minutes and when a member restarts.
    async fn authed<R, F, Fut>(&self, deadline: Instant, mut run: F) -> Result<R, KvError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<R, Failure>>,
    {
        let mut renewed = false;
        loop {
            let token = self.token(deadline).await?;
            match run(token).await {
                Err(Failure::Token(_)) if self.inner.credentials.is_some() && !renewed => {
                    renewed = true;
                    *self.lock_token() = None;
                }
                result => return result.map_err(Failure::into_error),
            }
        }
    }

    fn lock_token(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The guarded value is a plain Option; a panic elsewhere cannot leave
        // it half-written.
        self.inner.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn token(&self, deadline: Instant) -> Result<Option<String>, KvError> {
        let Some((user, password)) = &self.inner.credentials else {
            return Ok(None);
        };
        if let Some(token) = self.lock_token().clone() {
            return Ok(Some(token));
        }
        // Concurrent callers may each authenticate; the last token stored
        // wins and the others stay valid, so that race is harmless.
        let path = format!("{}/auth/authenticate", self.api(deadline).await?);
        let body = json!({ "name": user, "password": password });
        let request = Request {
            path: &path,
            body: Some(&body),
            token: None,
            retry_safe: true,
            stream: false,
        };
        let r: wire::AuthenticateResponse = self
            .over_members(deadline, |idx| self.attempt(idx, request, deadline))
            .await
            .map_err(Failure::into_error)?;
        *self.lock_token() = Some(r.token.clone());
        Ok(Some(r.token))
    }

    /// Tries `attempt` on each member, starting with the preferred one, in
    /// rounds until one serves it, one fails for good, or `deadline` passes.
    async fn over_members<R, F, Fut>(&self, deadline: Instant, mut attempt: F) -> Result<R, Failure>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<R, Failure>>,
    {
        let members = self.inner.endpoints.len();
        loop {
            let first = self.inner.preferred.load(Ordering::Relaxed);
            let mut last = String::new();
            for i in 0..members {
                let idx = (first + i) % members;
                match attempt(idx).await {
                    Ok(r) => {
                        self.inner.preferred.store(idx, Ordering::Relaxed);
                        return Ok(r);
                    }
                    Err(Failure::Elsewhere(why)) => {
                        tracing::debug!(endpoint = %self.inner.endpoints[idx], "etcd member could not serve a request: {why}");
                        last = why;
                    }
                    Err(other) => return Err(other),
                }
            }
            if Instant::now() + ROUND_PAUSE >= deadline {
                return Err(Failure::Final(KvError::Unavailable(format!(
                    "no etcd member could serve the request (last: {last})"
                ))));
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    fn remaining(&self, endpoint: &str, deadline: Instant) -> Result<Duration, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out(endpoint));
        }
        Ok(left)
    }

    fn timed_out(&self, endpoint: &str) -> Failure {
        Failure::Final(KvError::Unavailable(format!(
            "etcd at {endpoint} did not answer within {} s",
            self.inner.timeout.as_secs()
        )))
    }

    /// Maps a transport error of a request to `endpoint`.
    fn transport(&self, endpoint: &str, e: reqwest::Error, retry_safe: bool) -> Failure {
        let why = format!("etcd at {endpoint}: {}", describe(&e));
        if e.is_connect() {
            // Never sent, so never applied.
            Failure::Elsewhere(why)
        } else if e.is_timeout() {
            self.timed_out(endpoint)
        } else if retry_safe {
            Failure::Elsewhere(why)
        } else {
            Failure::Final(KvError::Unavailable(format!(
                "{why} (the write may or may not have been applied)"
            )))
        }
    }

    /// Maps a non-2xx answer: etcd's JSON error, or something else speaking
    /// HTTP at that address.
    fn error_answer(
        &self,
        endpoint: &str,
        status: reqwest::StatusCode,
        body: &[u8],
        retry_safe: bool,
    ) -> Failure {
        match serde_json::from_slice::<wire::UnaryError>(body) {
            Ok(e) if e.code != 0 => classify(e.code, &e.message, retry_safe),
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                let why = format!("etcd at {endpoint} answered {status}: {}", text.trim());
                if status.is_server_error() && retry_safe {
                    Failure::Elsewhere(why)
                } else if status.is_server_error() {
                    Failure::Final(KvError::Unavailable(why))
                } else {
                    Failure::Final(KvError::Internal(why))
                }
            }
        }
    }

    async fn attempt<R: DeserializeOwned>(
        &self,
        idx: usize,
        request: Request<'_>,
        deadline: Instant,
    ) -> Result<R, Failure> {
        let endpoint = self.inner.endpoints[idx].as_str();
        let left = self.remaining(endpoint, deadline)?;
        let url = format!("{endpoint}{}", request.path);
        let mut builder = match request.body {
            Some(body) => self.inner.http.post(url).json(body),
            None => self.inner.http.get(url),
        };
        builder = builder
            .timeout(left)
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1);
        if let Some(token) = request.token {
            builder = builder.header(reqwest::header::AUTHORIZATION, token);
        }
        let retry_safe = request.retry_safe;
        let response = builder
            .send()
            .await
            .map_err(|e| self.transport(endpoint, e, retry_safe))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(endpoint, e, retry_safe))?;
        if !status.is_success() {
            return Err(self.error_answer(endpoint, status, &body, retry_safe));
        }
        let unexpected = |e: serde_json::Error| {
            Failure::Final(KvError::Internal(format!(
                "unexpected answer from etcd at {endpoint}{}: {e}",
                request.path
            )))
        };
        if request.stream {
            let line: wire::StreamLine<R> = serde_json::from_slice(&body).map_err(unexpected)?;
            return match (line.result, line.error) {
                (_, Some(e)) => Err(classify(e.grpc_code, &e.message, retry_safe)),
                (Some(result), None) => Ok(result),
                (None, None) => Err(Failure::Final(KvError::Internal(format!(
                    "empty answer from etcd at {endpoint}{}",
                    request.path
                )))),
            };
        }
        serde_json::from_slice(&body).map_err(unexpected)
    }
}

fn versioned(kv: &wire::KeyValue) -> Result<Versioned, KvError> {
    let version = u64::try_from(kv.mod_revision)
        .ok()
        .filter(|v| *v != 0)
        .ok_or_else(|| KvError::Internal(format!("etcd sent mod revision {}", kv.mod_revision)))?;
    Ok(Versioned {
        value: unb64("value", &kv.value)?,
        version,
    })
}

#[async_trait]
impl Kv for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        let body = json!({ "key": b64(&self.full_key(key)) });
        let r: wire::RangeResponse = self.call("/kv/range", body, true, false).await?;
        r.kvs.first().map(versioned).transpose()
    }

    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, KvError> {
        // etcd reads a limit of 0 as "no limit".
        if limit == 0 {
            return Ok(Vec::new());
        }
        let first = self.full_key(prefix);
        let end = prefix_end(&first);
        let start = match start_after {
            Some(after) if after >= prefix => {
                // The smallest key after `after`.
                let mut start = self.full_key(after);
                start.push(0);
                start
            }
            _ => first,
        };
        // An `end` of [0] means "to the last key", so never compare with it.
        if end != [0] && start >= end {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let body = json!({
            "key": b64(&start),
            "range_end": b64(&end),
            "limit": limit.to_string(),
        });
        let r: wire::RangeResponse = self.call("/kv/range", body, true, false).await?;
        r.kvs
            .iter()
            .map(|kv| Ok((self.caller_key(&kv.key)?, versioned(kv)?)))
            .collect()
    }

    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        if txn.checks.is_empty() && txn.ops.is_empty() {
            return Ok(true);
        }
        let mut compare = Vec::with_capacity(txn.checks.len());
        for check in &txn.checks {
            compare.push(match check {
                Check::Version(key, version) => {
                    // etcd compares a missing key as revision 0, and
                    // revisions are int64: such versions never match.
                    let Some(revision) = i64::try_from(*version).ok().filter(|r| *r > 0) else {
                        return Ok(false);
                    };
                    json!({
                        "key": b64(&self.full_key(key)),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": revision.to_string(),
                    })
                }
                // The gateway drops zero values only from answers: the 0 is
                // sent explicitly so the intent is plain on the wire.
                Check::Absent(key) => json!({
                    "key": b64(&self.full_key(key)),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": "0",
                }),
            });
        }
        let success: Vec<Value> = last_op_per_key(txn.ops)
            .into_iter()
            .map(|op| match op {
                Op::Put(key, value) => json!({ "request_put": {
                    "key": b64(&self.full_key(&key)),
                    "value": b64(&value),
                }}),
                Op::Delete(key) => json!({ "request_delete_range": {
                    "key": b64(&self.full_key(&key)),
                }}),
            })
            .collect();
        // A txn that only checks writes nothing, so it may be repeated.
        let retry_safe = success.is_empty();
        let body = json!({ "compare": compare, "success": success });
        let r: wire::TxnResponse = self.call("/kv/txn", body, retry_safe, false).await?;
        Ok(r.succeeded)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let body = json!({ "key": b64(&self.full_key(key)), "value": b64(&value) });
        let _: wire::Empty = self.call("/kv/put", body, false, false).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let body = json!({ "key": b64(&self.full_key(key)) });
        let _: wire::Empty = self.call("/kv/deleterange", body, false, false).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_prefixes() {
        assert_eq!(gateway_prefix("3.2.32"), "/v3alpha");
        assert_eq!(gateway_prefix("3.3.27"), "/v3beta");
        assert_eq!(gateway_prefix("3.4.23"), "/v3");
        assert_eq!(gateway_prefix("3.5.9"), "/v3");
        assert_eq!(gateway_prefix(""), "/v3");
    }

    #[test]
    fn later_ops_on_a_key_win() {
        let ops = vec![
            Op::Put("a".into(), b"1".to_vec()),
            Op::Put("b".into(), b"x".to_vec()),
            Op::Put("a".into(), b"2".to_vec()),
            Op::Delete("b".into()),
        ];
        assert_eq!(
            last_op_per_key(ops),
            vec![Op::Put("a".into(), b"2".to_vec()), Op::Delete("b".into())]
        );
    }

    #[test]
    fn config_defaults_and_checks() {
        let config: EtcdConfig =
            serde_json::from_str(r#"{"endpoints": ["http://127.0.0.1:2379/"]}"#).unwrap();
        assert_eq!(config.timeout_secs, 5);
        assert_eq!(config.prefix, "berth/");
        assert!(EtcdKv::new(config).is_ok());
        assert!(serde_json::from_str::<EtcdConfig>(r#"{"endpoints": [], "nope": 1}"#).is_err());
        assert!(EtcdKv::new(EtcdConfig::new(Vec::<String>::new())).is_err());
        assert!(EtcdKv::new(EtcdConfig::new(["https://etcd:2379"])).is_err());
        let mut half = EtcdConfig::new(["http://etcd:2379"]);
        half.username = Some("root".into());
        assert!(EtcdKv::new(half.clone()).is_err());
        half.password = Some("secret".into());
        assert!(!format!("{half:?}").contains("secret"));
    }
}
