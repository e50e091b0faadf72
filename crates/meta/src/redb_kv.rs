//! [`Kv`] over one redb file. redb allows a single writer at a time, so each
//! [`Txn`] is one write transaction: its checks and ops are serialized with
//! every other commit, which is all the `Kv` contract needs.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::kv::{Check, KeyRange, Kv, KvError, Op, Txn, Versioned};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

/// Key -> 8-byte big-endian version, then the value's bytes. Keeping the
/// version inline means a get or a check costs one lookup.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// One row, [`COUNTER_KEY`], holding the last version handed out. It is
/// stored rather than derived from the entries so that deleting the newest
/// key cannot let a later write reuse its version across a restart.
const COUNTER: TableDefinition<&str, u64> = TableDefinition::new("version_counter");
const COUNTER_KEY: &str = "last";

const VERSION_LEN: usize = 8;

/// A redb-backed [`Kv`]. Cheap to clone; clones share the database.
///
/// Commits use redb's default `Durability::Immediate`: when `commit` returns
/// `Ok(true)` the write has been fsynced and survives a crash or `kill -9`.
#[derive(Clone)]
pub struct RedbKv {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbKv").finish_non_exhaustive()
    }
}

/// redb's page cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

impl RedbKv {
    /// Opens the database at `path`, creating the file if it is missing (its
    /// directory must exist). Blocks: it may repair a file left by a crash,
    /// so call it at startup or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<RedbKv, KvError> {
        // redb's default page cache is 1 GiB, which a busy registry fills
        // with pages it rarely reads again (the audit log): keep it small;
        // the operating system caches the file too.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| KvError::Internal(format!("opening {}: {e}", path.display())))?;
        // Creating the tables up front lets reads assume they exist; a read
        // transaction cannot create them.
        let init = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(ENTRIES)?;
            txn.open_table(COUNTER)?;
            txn.commit()?;
            Ok(())
        };
        init().map_err(internal)?;
        Ok(RedbKv { db: Arc::new(db) })
    }

    /// Runs `f` on the blocking pool: redb does file I/O and fsyncs, and
    /// `begin_write` waits for the current writer.
    async fn blocking<T, F>(&self, f: F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| KvError::Internal(format!("redb task failed: {e}")))?
            .map_err(internal)
    }
}

impl RedbKv {
    /// Runs a read on the calling thread. Reads never wait for the writer
    /// (redb's MVCC) and small ones take microseconds from redb's cache;
    /// a trip through the blocking pool cost more than the read itself
    /// (measured: thread wake-ups were most of a manifest GET's CPU).
    fn read<T>(&self, f: impl FnOnce(&Database) -> Result<T, redb::Error>) -> Result<T, KvError> {
        f(&self.db).map_err(internal)
    }
}

fn internal(e: redb::Error) -> KvError {
    KvError::Internal(format!("redb: {e}"))
}

fn encode(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERSION_LEN + value.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, stored: &[u8]) -> Result<Versioned, redb::Error> {
    match stored.split_first_chunk::<VERSION_LEN>() {
        Some((version, value)) => Ok(Versioned {
            value: value.to_vec(),
            version: u64::from_be_bytes(*version),
        }),
        None => Err(redb::Error::Corrupted(format!(
            "entry {key:?} is {} bytes, shorter than its version",
            stored.len()
        ))),
    }
}

/// Evaluates `txn`'s checks and, if they all hold, stages its ops in `wtx`.
/// Returns whether the checks held; the caller commits or aborts.
fn apply(wtx: &WriteTransaction, txn: Txn) -> Result<bool, redb::Error> {
    let mut entries = wtx.open_table(ENTRIES)?;
    for check in &txn.checks {
        let holds = match check {
            Check::Version(key, version) => match entries.get(key.as_str())? {
                Some(stored) => decode(key, stored.value())?.version == *version,
                None => false,
            },
            Check::Absent(key) => entries.get(key.as_str())?.is_none(),
        };
        if !holds {
            return Ok(false);
        }
    }

    // One version per transaction, like an etcd revision.
    let mut version = 0;
    if txn.ops.iter().any(|op| matches!(op, Op::Put(..))) {
        let mut counter = wtx.open_table(COUNTER)?;
        let last = counter.get(COUNTER_KEY)?.map_or(0, |v| v.value());
        version = last
            .checked_add(1)
            .ok_or_else(|| redb::Error::Corrupted("version counter overflowed".into()))?;
        counter.insert(COUNTER_KEY, version)?;
    }
    for op in &txn.ops {
        match op {
            Op::Put(key, value) => {
                entries.insert(key.as_str(), encode(version, value).as_slice())?;
            }
            Op::Delete(key) => {
                entries.remove(key.as_str())?;
            }
        }
    }
    Ok(true)
}

/// Maps the entries in `range` through `f`, in one read transaction.
fn scan_with<T>(
    db: &Database,
    range: KeyRange<'_>,
    mut f: impl FnMut(&str, &[u8]) -> Result<T, redb::Error>,
) -> Result<Vec<T>, redb::Error> {
    let mut out = Vec::new();
    if range.limit == 0 {
        return Ok(out);
    }
    let rtx = db.begin_read()?;
    let entries = rtx.open_table(ENTRIES)?;
    for item in entries.range::<&str>((range.lower_bound(), Bound::Unbounded))? {
        let (key, stored) = item?;
        let key = key.value();
        if !key.starts_with(range.prefix) {
            break;
        }
        out.push(f(key, stored.value())?);
        if out.len() == range.limit {
            break;
        }
    }
    Ok(out)
}

#[async_trait]
impl Kv for RedbKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        self.read(|db| {
            let rtx = db.begin_read()?;
            let entries = rtx.open_table(ENTRIES)?;
            let stored = entries.get(key)?;
            stored.map(|s| decode(key, s.value())).transpose()
        })
    }

    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError> {
        self.read(|db| {
            scan_with(db, range, |key, stored| {
                Ok((key.to_owned(), decode(key, stored)?))
            })
        })
    }

    async fn scan_range_keys(&self, range: KeyRange<'_>) -> Result<Vec<String>, KvError> {
        self.read(|db| scan_with(db, range, |key, _| Ok(key.to_owned())))
    }

    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        self.blocking(move |db| {
            let wtx = db.begin_write()?;
            let writes = !txn.ops.is_empty();
            // On error, dropping `wtx` aborts it.
            let held = apply(&wtx, txn)?;
            if held && writes {
                wtx.commit()?;
            } else {
                // A failed check returns before staging anything, and a
                // check-only txn has nothing to write: skip the fsync.
                wtx.abort()?;
            }
            Ok(held)
        })
        .await
    }
}
