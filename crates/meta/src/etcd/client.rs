//! Talking to etcd's gateway: the member to ask, failover between members,
//! one deadline per operation, auth tokens, and which errors mean
//! "unavailable". The rest of the backend sees one `call`.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use berth_core::kv::KvError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{wire, EtcdKv};

/// gRPC status codes that etcd's errors carry.
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// Sent as gRPC metadata `hasleader: true`: a member without a leader then
/// refuses at once ("no leader") instead of holding the request until its
/// own timeout, and cancels watches, so the client moves to another member.
pub(super) const REQUIRE_LEADER: (&str, &str) = ("Grpc-Metadata-Hasleader", "true");

/// Pause between rounds over the members when none could serve a request;
/// with etcd's default timings a leader election takes about a second.
const ROUND_PAUSE: Duration = Duration::from_millis(200);

/// Why one attempt at one member failed.
pub(super) enum Failure {
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
pub(super) fn classify(code: i32, message: &str, retry_safe: bool) -> Failure {
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
pub(super) fn describe(e: &reqwest::Error) -> String {
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
    /// One gateway call under the configured timeout, failing over between
    /// members and authenticating as needed.
    pub(super) async fn call<R: DeserializeOwned>(
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

    pub(super) async fn api(&self, deadline: Instant) -> Result<&'static str, KvError> {
        let api = self.inner.api.get_or_try_init(|| async {
            let version: wire::VersionResponse =
                self.without_token("/version", None, deadline).await?;
            Ok::<_, KvError>(gateway_prefix(&version.etcdserver))
        });
        api.await.copied()
    }

    /// One retry-safe request that carries no auth token (finding the
    /// gateway, authenticating), failing over between members.
    async fn without_token<R: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
    ) -> Result<R, KvError> {
        let request = Request {
            path,
            body,
            token: None,
            retry_safe: true,
            stream: false,
        };
        self.over_members(deadline, |idx| self.attempt(idx, request, deadline))
            .await
            .map_err(Failure::into_error)
    }

    /// Runs `run` with the current auth token (none without credentials),
    /// and once more with a fresh token if etcd rejects it: etcd forgets
    /// simple tokens after five idle minutes and keeps them only in memory.
    pub(super) async fn authed<R, F, Fut>(
        &self,
        deadline: Instant,
        mut run: F,
    ) -> Result<R, KvError>
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
        let r: wire::AuthenticateResponse =
            self.without_token(&path, Some(&body), deadline).await?;
        *self.lock_token() = Some(r.token.clone());
        Ok(Some(r.token))
    }

    /// Tries `attempt` on each member, starting with the preferred one, in
    /// rounds until one serves it, one fails for good, or `deadline` passes.
    pub(super) async fn over_members<R, F, Fut>(
        &self,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<R, Failure>
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

    pub(super) fn remaining(&self, endpoint: &str, deadline: Instant) -> Result<Duration, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out(endpoint));
        }
        Ok(left)
    }

    pub(super) fn timed_out(&self, endpoint: &str) -> Failure {
        Failure::Final(KvError::Unavailable(format!(
            "etcd at {endpoint} did not answer within {} s",
            self.inner.timeout.as_secs()
        )))
    }

    /// Maps a transport error of a request to `endpoint`.
    pub(super) fn transport(&self, endpoint: &str, e: reqwest::Error, retry_safe: bool) -> Failure {
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
    pub(super) fn error_answer(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_prefixes() {
        let cases = [
            ("3.2.32", "/v3alpha"),
            ("3.3.27", "/v3beta"),
            ("3.4.23", "/v3"),
            ("3.5.9", "/v3"),
            ("", "/v3"),
        ];
        for (version, prefix) in cases {
            assert_eq!(gateway_prefix(version), prefix, "etcd {version:?}");
        }
    }
}
