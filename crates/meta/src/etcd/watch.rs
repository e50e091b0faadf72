//! Watching a key prefix, for invalidating node-local caches: one streaming
//! `/watch` call that, when it breaks, reconnects (to another member if need
//! be) from the revision after the last event delivered, so nothing is lost.

use std::time::{Duration, Instant};

use berth_core::kv::KvError;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::client::{classify, describe, Failure, REQUIRE_LEADER};
use super::wire::{self, b64, prefix_end};
use super::EtcdKv;

/// Events buffered for a slow consumer before the watch stops reading.
const BUFFER: usize = 1024;

/// Pause before reconnecting a broken watch, so a member that keeps
/// cancelling it is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// A change under a watched prefix; keys are spelled as for [`EtcdKv`]'s
/// `Kv` methods (without the configured prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was written.
    Put(String),
    /// The key was deleted, or its lease expired.
    Delete(String),
    /// etcd compacted away history the watch had not seen, so changes may
    /// have been missed: drop everything cached under the prefix.
    Resync,
}

/// A running watch; see [`EtcdKv::watch_prefix`]. Dropping it stops it.
#[derive(Debug)]
pub struct EtcdWatch {
    events: mpsc::Receiver<WatchEvent>,
    task: AbortHandle,
}

impl EtcdWatch {
    /// The next change, waiting for one. `None` only if the watch stopped.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().await
    }
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdKv {
    /// Watches every key starting with `prefix`. Returns once etcd has
    /// created the watch: every change committed after that is reported.
    pub async fn watch_prefix(&self, prefix: &str) -> Result<EtcdWatch, KvError> {
        let key = self.full_key(prefix);
        let end = prefix_end(&key);
        let (lines, created_at) = self.open_watch(&key, &end, None).await?;
        let (tx, events) = mpsc::channel(BUFFER);
        let watcher = Watcher {
            kv: self.clone(),
            key,
            end,
            next_revision: created_at + 1,
            tx,
        };
        let task = tokio::spawn(watcher.run(lines)).abort_handle();
        Ok(EtcdWatch { events, task })
    }

    /// Opens a watch on `[key, end)` at some member, from `start` or from
    /// now, and reads up to etcd's "created" answer. Returns the stream and
    /// the store revision at creation.
    pub(super) async fn open_watch(
        &self,
        key: &[u8],
        end: &[u8],
        start: Option<i64>,
    ) -> Result<(Lines, i64), KvError> {
        let deadline = Instant::now() + self.inner.timeout;
        let path = format!("{}/watch", self.api(deadline).await?);
        let mut create = json!({ "key": b64(key), "range_end": b64(end) });
        if let Some(revision) = start {
            create["start_revision"] = json!(revision.to_string());
        }
        let body = json!({ "create_request": create });
        let (path, body) = (path.as_str(), &body);
        self.authed(deadline, |token| async move {
            self.over_members(deadline, |idx| {
                self.connect_watch(idx, path, body, token.as_deref(), deadline)
            })
            .await
        })
        .await
    }

    async fn connect_watch(
        &self,
        idx: usize,
        path: &str,
        body: &Value,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<(Lines, i64), Failure> {
        let endpoint = self.inner.endpoints[idx].as_str();
        let left = self.remaining(endpoint, deadline)?;
        // No request timeout: the response body is the watch and stays open.
        // Only getting it created is bounded.
        let mut builder = self
            .inner
            .http
            .post(format!("{endpoint}{path}"))
            .json(body)
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1);
        if let Some(token) = token {
            builder = builder.header(reqwest::header::AUTHORIZATION, token);
        }
        let open = async {
            let response = builder
                .send()
                .await
                .map_err(|e| self.transport(endpoint, e, true))?;
            let status = response.status();
            if !status.is_success() {
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| self.transport(endpoint, e, true))?;
                return Err(self.error_answer(endpoint, status, &body, true));
            }
            let mut lines = Lines::new(response);
            loop {
                let line = match lines.next().await {
                    Ok(Some(line)) => line,
                    Ok(None) => {
                        return Err(Failure::Elsewhere(format!(
                            "etcd at {endpoint} ended the watch before creating it"
                        )))
                    }
                    Err(e) => return Err(self.transport(endpoint, e, true)),
                };
                match parse(&line) {
                    Answer::Response(r) if r.created => return Ok((lines, r.header.revision)),
                    Answer::Response(_) => continue,
                    Answer::Broken(why) => {
                        return Err(Failure::Elsewhere(format!("etcd at {endpoint}: {why}")))
                    }
                    Answer::Error(code, message) => return Err(classify(code, &message, true)),
                }
            }
        };
        match tokio::time::timeout(left, open).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(endpoint)),
        }
    }
}

pub(super) enum Answer {
    Response(wire::WatchResponse),
    Error(i32, String),
    Broken(String),
}

pub(super) fn parse(line: &[u8]) -> Answer {
    match serde_json::from_slice::<wire::StreamLine<wire::WatchResponse>>(line) {
        Ok(wire::StreamLine { error: Some(e), .. }) => Answer::Error(e.grpc_code, e.message),
        Ok(wire::StreamLine {
            result: Some(r), ..
        }) => Answer::Response(r),
        Ok(_) => Answer::Broken("empty watch answer".into()),
        Err(e) => Answer::Broken(format!("unreadable watch answer: {e}")),
    }
}

/// The newline-delimited JSON objects of a streaming gateway answer.
pub(super) struct Lines {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Lines {
    fn new(response: reqwest::Response) -> Lines {
        Lines {
            body: response.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next non-blank line; `None` when the stream ends.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<u8>>, reqwest::Error> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            match self.body.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                // The gateway ends a stream with its error object and no
                // newline after it.
                None if self.buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.buf))),
            }
        }
    }
}

/// Why a watch stream stopped delivering.
enum Stop {
    ReceiverGone,
    Compacted,
    Broken(String),
}

struct Watcher {
    kv: EtcdKv,
    key: Vec<u8>,
    end: Vec<u8>,
    /// Where a new stream resumes: one past the last event delivered.
    next_revision: i64,
    tx: mpsc::Sender<WatchEvent>,
}

impl Watcher {
    async fn run(mut self, mut lines: Lines) {
        loop {
            let mut resume = true;
            match self.pump(&mut lines).await {
                Stop::ReceiverGone => return,
                Stop::Compacted => {
                    if self.tx.send(WatchEvent::Resync).await.is_err() {
                        return;
                    }
                    resume = false;
                }
                Stop::Broken(why) => {
                    tracing::info!(prefix = %String::from_utf8_lossy(&self.key), "etcd watch interrupted, reconnecting: {why}");
                }
            }
            lines = loop {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                let start = resume.then_some(self.next_revision);
                match self.kv.open_watch(&self.key, &self.end, start).await {
                    Ok((lines, created_at)) => {
                        if !resume {
                            self.next_revision = created_at + 1;
                        }
                        break lines;
                    }
                    Err(e) => {
                        if self.tx.is_closed() {
                            return;
                        }
                        tracing::warn!(prefix = %String::from_utf8_lossy(&self.key), "etcd watch cannot reconnect: {e}");
                    }
                }
            };
        }
    }

    /// Forwards events from `lines` until the stream stops.
    async fn pump(&mut self, lines: &mut Lines) -> Stop {
        loop {
            let line = match lines.next().await {
                Ok(Some(line)) => line,
                Ok(None) => return Stop::Broken("the stream ended".into()),
                Err(e) => return Stop::Broken(describe(&e)),
            };
            let response = match parse(&line) {
                Answer::Response(r) => r,
                Answer::Error(_, message) => return Stop::Broken(message),
                Answer::Broken(why) => return Stop::Broken(why),
            };
            if response.compact_revision > 0 {
                return Stop::Compacted;
            }
            if response.canceled {
                return Stop::Broken(format!("canceled: {}", response.cancel_reason));
            }
            for event in response.events {
                // Keys outside our spelling cannot come from this prefix's
                // writers; skipping beats stopping the watch.
                let Ok(key) = self.kv.caller_key(&event.kv.key) else {
                    continue;
                };
                let change = match event.kind.as_str() {
                    "DELETE" => WatchEvent::Delete(key),
                    _ => WatchEvent::Put(key),
                };
                if self.tx.send(change).await.is_err() {
                    return Stop::ReceiverGone;
                }
                self.next_revision = self.next_revision.max(event.kv.mod_revision + 1);
            }
        }
    }
}
