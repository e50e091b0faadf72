//! The audit log: who did what, when, from where. Events are written to
//! `Kv` in batches by a background task, so a pull never waits for a
//! metadata write; at most one batch interval of events is lost in a crash.
//!
//! Keys are `audit:<inverted nanoseconds>-<random>`, so an ascending scan
//! returns the newest events first.

use berth_core::kv::{Kv, KvError, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const BATCH_INTERVAL: Duration = Duration::from_millis(500);
/// Events written per batch at most.
const MAX_BATCH: usize = 1000;
const PREFIX: &str = "audit:";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix seconds.
    pub time: u64,
    /// User or robot name; "anonymous" for none.
    pub user: String,
    /// push, pull, delete, login, login_failed, create, update, revoke.
    pub operation: String,
    /// What was acted on: `project/repo:tag`, `project/repo@digest`, a user...
    pub resource: String,
    pub address: String,
}

#[derive(Clone)]
pub struct AuditLog {
    kv: Arc<dyn Kv>,
    tx: mpsc::UnboundedSender<(String, AuditEvent)>,
}

impl AuditLog {
    /// Starts the background writer on the current tokio runtime.
    pub fn start(kv: Arc<dyn Kv>) -> AuditLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, AuditEvent)>();
        let writer_kv = kv.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                // Up to BATCH_INTERVAL or MAX_BATCH events, whichever comes
                // first, so a burst of pulls never piles up in memory.
                let deadline = tokio::time::Instant::now() + BATCH_INTERVAL;
                while batch.len() < MAX_BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(e)) => batch.push(e),
                        Ok(None) | Err(_) => break,
                    }
                }
                // In transactions of at most 100 puts: etcd refuses more
                // than 128 operations in one.
                for chunk in batch.chunks(100) {
                    let txn = chunk.iter().fold(Txn::new(), |txn, (key, event)| {
                        txn.put(key.clone(), serde_json::to_vec(event).unwrap_or_default())
                    });
                    if let Err(e) = writer_kv.commit(txn).await {
                        tracing::warn!(error = %e, "audit events could not be written");
                    }
                }
                batch.clear();
            }
        });
        AuditLog { kv, tx }
    }

    pub fn record(&self, user: &str, operation: &str, resource: &str, address: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let inverted = u64::MAX - now.as_nanos() as u64;
        let key = format!("{PREFIX}{inverted:020}-{}", &crate::secret::generate()[..8]);
        let event = AuditEvent {
            time: now.as_secs(),
            user: user.to_owned(),
            operation: operation.to_owned(),
            resource: resource.to_owned(),
            address: address.to_owned(),
        };
        // The receiver lives as long as the runtime.
        let _ = self.tx.send((key, event));
    }

    pub async fn login(&self, user: &str, address: &str, ok: bool) {
        self.record(
            user,
            if ok { "login" } else { "login_failed" },
            user,
            address,
        );
    }

    /// Newest first. `after` is the opaque cursor of the previous page.
    pub async fn query(
        &self,
        filter: &AuditFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, Option<String>), KvError> {
        let mut out = Vec::new();
        let mut cursor = after.map(|a| format!("{PREFIX}{a}"));
        loop {
            let page = self.kv.scan(PREFIX, cursor.as_deref(), 500).await?;
            let full = page.len() == 500;
            for (key, v) in page {
                cursor = Some(key.clone());
                let Ok(e) = serde_json::from_slice::<AuditEvent>(&v.value) else {
                    continue;
                };
                if filter.matches(&e) {
                    out.push(e);
                    if out.len() == limit {
                        return Ok((out, cursor.map(|c| c[PREFIX.len()..].to_owned())));
                    }
                }
            }
            if !full {
                return Ok((out, None));
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub operation: Option<String>,
    /// Events whose resource starts with this (a project, a repository).
    pub resource_prefix: Option<String>,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEvent) -> bool {
        self.user.as_ref().is_none_or(|u| &e.user == u)
            && self.operation.as_ref().is_none_or(|o| &e.operation == o)
            && self
                .resource_prefix
                .as_ref()
                .is_none_or(|p| e.resource.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::MemoryKv;

    #[tokio::test]
    async fn events_are_written_and_listed_newest_first() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let log = AuditLog::start(kv);
        log.record("alice", "push", "p/app:v1", "10.0.0.1");
        tokio::time::sleep(Duration::from_millis(5)).await;
        log.record("bob", "pull", "p/app:v1", "10.0.0.2");
        log.login("eve", "10.0.0.3", false).await;
        let mut events = Vec::new();
        for _ in 0..100 {
            events = log
                .query(&AuditFilter::default(), None, 10)
                .await
                .unwrap()
                .0;
            if events.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].user, "alice", "oldest last");
        let filter = AuditFilter {
            operation: Some("login_failed".into()),
            ..Default::default()
        };
        let (failed, _) = log.query(&filter, None, 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].address, "10.0.0.3");
        let (first, cursor) = log.query(&AuditFilter::default(), None, 1).await.unwrap();
        let (second, _) = log
            .query(&AuditFilter::default(), cursor.as_deref(), 1)
            .await
            .unwrap();
        assert_ne!(first, second);
    }
}
