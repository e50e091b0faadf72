//! In-process [`Kv`] backend: a `BTreeMap` behind a mutex, for tests and
//! single-node throwaway deployments. Nothing survives a restart.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::kv::{Check, KeyRange, Kv, KvError, Op, Txn, Versioned};

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<String, Versioned>,
    /// Last version handed out. Global rather than per key so that a key
    /// deleted and re-created never repeats a version a reader may hold.
    version: u64,
}

#[derive(Debug, Default)]
pub struct MemoryKv {
    state: Mutex<State>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation completes before the guard drops, so a panic while
        // holding it cannot leave a half-applied transaction behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Kv for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        Ok(self.lock().entries.get(key).cloned())
    }

    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError> {
        let state = self.lock();
        Ok(state
            .entries
            .range::<str, _>((range.lower_bound(), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(range.prefix))
            .take(range.limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        let mut state = self.lock();
        let holds = txn.checks.iter().all(|check| match check {
            Check::Version(key, version) => {
                state.entries.get(key).map(|v| v.version) == Some(*version)
            }
            Check::Absent(key) => !state.entries.contains_key(key),
        });
        if !holds {
            return Ok(false);
        }
        // One version per transaction, like an etcd revision: every key a
        // transaction writes changes together.
        if txn.ops.iter().any(|op| matches!(op, Op::Put(..))) {
            state.version += 1;
        }
        let version = state.version;
        for op in txn.ops {
            match op {
                Op::Put(key, value) => {
                    state.entries.insert(key, Versioned { value, version });
                }
                Op::Delete(key) => {
                    state.entries.remove(&key);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryKv;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_shared_suite() {
        crate::kv_suite::run_all(Arc::new(MemoryKv::new())).await;
    }
}
