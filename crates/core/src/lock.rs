//! The `Locks` port: named, cluster-wide mutual exclusion for background
//! jobs (one garbage collection at a time, one retention run). On etcd a lock
//! is a key under a lease that its holder keeps alive, so a holder that dies
//! frees it within the lease's TTL; on one node it is a set in memory.
//!
//! A lock makes jobs take turns; it never makes them correct. Every job
//! that deletes checks its facts inside its `Kv` transactions, so two holders
//! after a lease lost in a partition would waste work, not lose data.

use crate::kv::KvError;
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Held while alive: dropping it releases the lock.
pub struct LockGuard {
    held: Arc<AtomicBool>,
    _release: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// `held` turns false if the lock is lost (its lease expired);
    /// `release` runs its `Drop` when the guard goes.
    pub fn new(held: Arc<AtomicBool>, release: Box<dyn Send + Sync>) -> LockGuard {
        LockGuard {
            held,
            _release: release,
        }
    }

    /// Whether the lock is still this holder's. A job checks it between
    /// steps and stops when it turns false.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("held", &self.is_held())
            .finish()
    }
}

#[async_trait]
pub trait Locks: Send + Sync + 'static {
    /// Takes lock `name` for `holder` (a node and job, for humans), or
    /// `None` when another holder has it.
    async fn try_lock(&self, name: &str, holder: &str) -> Result<Option<LockGuard>, KvError>;

    /// Who holds `name` now, if anyone.
    async fn holder(&self, name: &str) -> Result<Option<String>, KvError>;
}

/// Locks for one process (the embedded backend: one node by construction).
#[derive(Clone, Default)]
pub struct LocalLocks {
    taken: Arc<Mutex<HashSet<(String, String)>>>,
}

struct LocalRelease {
    taken: Arc<Mutex<HashSet<(String, String)>>>,
    name: String,
}

impl Drop for LocalRelease {
    fn drop(&mut self) {
        if let Ok(mut taken) = self.taken.lock() {
            taken.retain(|(n, _)| *n != self.name);
        }
    }
}

#[async_trait]
impl Locks for LocalLocks {
    async fn try_lock(&self, name: &str, holder: &str) -> Result<Option<LockGuard>, KvError> {
        let mut taken = self
            .taken
            .lock()
            .map_err(|_| KvError::Internal("lock table poisoned".into()))?;
        if taken.iter().any(|(n, _)| n == name) {
            return Ok(None);
        }
        taken.insert((name.to_owned(), holder.to_owned()));
        let release = LocalRelease {
            taken: self.taken.clone(),
            name: name.to_owned(),
        };
        Ok(Some(LockGuard::new(
            Arc::new(AtomicBool::new(true)),
            Box::new(release),
        )))
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, KvError> {
        let taken = self
            .taken
            .lock()
            .map_err(|_| KvError::Internal("lock table poisoned".into()))?;
        Ok(taken
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.clone()))
    }
}

/// The behaviour every `Locks` backend must have.
pub async fn suite(locks: &dyn Locks) {
    let first = locks.try_lock("gc", "node-a").await.unwrap().expect("free");
    assert!(first.is_held());
    assert!(locks.try_lock("gc", "node-b").await.unwrap().is_none());
    assert_eq!(locks.holder("gc").await.unwrap().as_deref(), Some("node-a"));
    // Other names are independent.
    let other = locks.try_lock("retention", "node-b").await.unwrap();
    assert!(other.is_some());
    drop(first);
    // Release may be asynchronous (a lease revoked in the background).
    let mut again = None;
    for _ in 0..100 {
        again = locks.try_lock("gc", "node-b").await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let again = again.expect("a dropped guard releases the lock");
    assert_eq!(locks.holder("gc").await.unwrap().as_deref(), Some("node-b"));
    drop(again);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_locks_pass_the_suite() {
        suite(&LocalLocks::default()).await;
    }
}
