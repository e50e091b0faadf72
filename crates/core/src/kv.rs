//! The `Kv` port: a small transactional key-value store holding all metadata.
//! Backends (memory here; redb and etcd elsewhere) implement `get`,
//! `scan_range` and `commit` (and may override the other provided methods),
//! and must pass the shared suite in [`crate::kv_suite`].
//!
//! Every stored value carries a `version` that changes on every write of that
//! key (etcd's mod revision; a counter in redb). A [`Txn`] commits only if
//! every [`Check`] still holds, which is how tag moves, upload progress and
//! quota updates stay correct with many nodes writing at once.

use std::cell::Cell;
use std::future::Future;
use std::ops::Bound;

use async_trait::async_trait;

tokio::task_local! {
    static READ_SCOPE: Cell<Option<u64>>;
}

/// Runs `f` as one reader of the metadata (one request): a backend whose
/// reads must first learn how fresh they have to be (the etcd watch cache
/// asks etcd's current revision) may learn it once, at the scope's first
/// read, for every read after it in the scope. Every read still sees
/// every write finished before the scope began; a write made in the scope
/// ends the sharing (the next read learns afresh, so it sees that write).
/// Tasks spawned inside are outside it.
pub async fn read_scope<F: Future>(f: F) -> F::Output {
    READ_SCOPE.scope(Cell::new(None), f).await
}

/// The freshness a read of this scope must reach, if learnt already.
pub fn scope_freshness() -> Option<u64> {
    READ_SCOPE.try_with(Cell::get).ok().flatten()
}

/// Records (or with `None`, forgets) the freshness reads of this scope
/// must reach; nothing outside a scope.
pub fn set_scope_freshness(freshness: Option<u64>) {
    let _ = READ_SCOPE.try_with(|c| c.set(freshness));
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Non-zero; changes whenever the key is written.
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The key holds exactly this version.
    Version(String, u64),
    /// The key does not exist.
    Absent(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// An atomic compare-then-write: all `ops` apply if all `checks` hold, else
/// nothing changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub checks: Vec<Check>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to be as it was read: at `seen`'s version, or absent.
    pub fn if_unchanged(mut self, key: impl Into<String>, seen: Option<&Versioned>) -> Self {
        let key = key.into();
        self.checks.push(match seen {
            Some(v) => Check::Version(key, v.version),
            None => Check::Absent(key),
        });
        self
    }

    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put(key.into(), value));
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }
}

/// Which keys a scan reads: those starting with `prefix`, in byte order,
/// strictly after `start_after` when given, at most `limit` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRange<'a> {
    pub prefix: &'a str,
    pub start_after: Option<&'a str>,
    pub limit: usize,
}

impl<'a> KeyRange<'a> {
    pub fn new(prefix: &'a str, start_after: Option<&'a str>, limit: usize) -> Self {
        Self {
            prefix,
            start_after,
            limit,
        }
    }

    /// Where the range starts in byte order: just after `start_after` when
    /// that is not before `prefix`, else at `prefix` itself. (A range has no
    /// upper bound: it ends at the first key not starting with `prefix`.)
    pub fn lower_bound(&self) -> Bound<&'a str> {
        match self.start_after {
            Some(after) if after >= self.prefix => Bound::Excluded(after),
            _ => Bound::Included(self.prefix),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached or has no quorum; the caller may retry.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata store error: {0}")]
    Internal(String),
}

#[async_trait]
pub trait Kv: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError>;

    /// The entries whose keys are in `range`, in byte order of key.
    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError>;

    /// The keys `scan_range` would return, without their values: for
    /// listings (tags, catalog) that never read them.
    async fn scan_range_keys(&self, range: KeyRange<'_>) -> Result<Vec<String>, KvError> {
        let entries = self.scan_range(range).await?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    /// Keys starting with `prefix`, in byte order, strictly after
    /// `start_after` when given, at most `limit` of them.
    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, KvError> {
        self.scan_range(KeyRange::new(prefix, start_after, limit))
            .await
    }

    /// The keys `scan` would return, without their values.
    async fn scan_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        self.scan_range_keys(KeyRange::new(prefix, start_after, limit))
            .await
    }

    /// Applies `txn` atomically. `Ok(false)` when a check failed and nothing
    /// was written.
    async fn commit(&self, txn: Txn) -> Result<bool, KvError>;

    /// Unconditional single put.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.commit(Txn::new().put(key, value)).await.map(|_| ())
    }

    /// Unconditional single delete; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.commit(Txn::new().delete(key)).await.map(|_| ())
    }
}
