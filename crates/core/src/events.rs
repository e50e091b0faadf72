//! The outbox: a record of every committed change that others react to
//! (replication on push and delete, webhooks), written in the same `Kv`
//! transaction as the change itself. A change that committed has its event,
//! even when the node dies right after the commit; an event never names a
//! change that did not commit.
//!
//! Consumers read the outbox in order ([`crate::Registry::outbox`]), act,
//! then remove what they handled ([`crate::Registry::outbox_done`]):
//! delivery is at least once, so consumers are idempotent (an event's `id`
//! is unique and stable).

use crate::error::CoreError;
use crate::lock::Locks;
use crate::Registry;
use async_trait::async_trait;
use berth_oci::Digest;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A manifest was pushed (by tag, when `tag` is set, or by digest).
    ManifestPushed,
    /// A manifest was deleted by digest, with every tag pointing to it.
    ManifestDeleted,
    /// A tag was deleted; the manifest stays.
    TagDeleted,
    /// A whole repository was deleted.
    RepositoryDeleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique and stable: the outbox key's suffix.
    pub id: String,
    pub kind: EventKind,
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Tags removed with a manifest deleted by digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The subject of a pushed referrer (a signature, an SBOM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Unix milliseconds when the change was made.
    pub at_ms: u64,
}

impl Event {
    /// A new event of `kind` in `repo` at `at_ms`, with a fresh id that
    /// sorts by time.
    pub fn new(kind: EventKind, repo: &str, at_ms: u64) -> Event {
        Event {
            id: format!("{at_ms:015}-{}", uuid::Uuid::new_v4().simple()),
            kind,
            repo: repo.to_owned(),
            digest: None,
            tag: None,
            tags: Vec::new(),
            media_type: None,
            subject: None,
            size: None,
            at_ms,
        }
    }
}

/// Something that reacts to committed changes (replication, webhooks).
/// Called at least once per event, in outbox order; must be idempotent.
/// An error leaves the event in the outbox, to be handed over again.
#[async_trait]
pub trait Subscriber: Send + Sync + 'static {
    async fn handle(&self, event: &Event) -> Result<(), CoreError>;
}

/// Hands the outbox's events to every subscriber, on one node of the
/// cluster at a time (lock `outbox`), then removes them. It runs on every
/// node even with no subscriber, so that the outbox never grows.
pub struct Dispatcher {
    registry: Registry,
    locks: Arc<dyn Locks>,
    node: String,
    subscribers: Vec<Arc<dyn Subscriber>>,
}

/// Events read at a time.
const BATCH: usize = 100;

impl Dispatcher {
    pub fn new(registry: Registry, locks: Arc<dyn Locks>, node: impl Into<String>) -> Dispatcher {
        Dispatcher {
            registry,
            locks,
            node: node.into(),
            subscribers: Vec::new(),
        }
    }

    pub fn subscribe(mut self, subscriber: Arc<dyn Subscriber>) -> Dispatcher {
        self.subscribers.push(subscriber);
        self
    }

    /// Hands over what the outbox holds now; how many events were consumed.
    /// A subscriber's failure stops the round at that event (later events
    /// wait, so order holds) and is returned.
    pub async fn drain(&self) -> Result<usize, CoreError> {
        let mut consumed = 0;
        loop {
            let events = self.registry.outbox(BATCH).await?;
            if events.is_empty() {
                return Ok(consumed);
            }
            let mut done = Vec::with_capacity(events.len());
            let mut failed = None;
            'events: for event in &events {
                for s in &self.subscribers {
                    if let Err(e) = s.handle(event).await {
                        failed = Some(e);
                        break 'events;
                    }
                }
                done.push(event.id.clone());
            }
            self.registry.outbox_done(&done).await?;
            consumed += done.len();
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }

    /// Every `interval`, takes the lock if free and drains the outbox,
    /// keeping the lock between rounds while it holds.
    pub fn run(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut guard = None;
            loop {
                tokio::time::sleep(interval).await;
                if !guard.as_ref().is_some_and(crate::LockGuard::is_held) {
                    guard = match self.locks.try_lock("outbox", &self.node).await {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox: taking the lock");
                            None
                        }
                    };
                }
                if guard.is_none() {
                    continue;
                }
                if let Err(e) = self.drain().await {
                    tracing::warn!(error = %e, "outbox: handing events over");
                }
            }
        })
    }
}
