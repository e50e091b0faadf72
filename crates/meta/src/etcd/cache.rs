//! A node-local copy of berth's metadata, kept current by an etcd watch,
//! that serves linearizable reads from memory: Kubernetes' consistent reads
//! from its watch cache (KEP-2340).
//!
//! - **Loading**: a watch of etcd's whole key space is opened first (its
//!   creation tells the store revision `C`), then berth's prefix is read
//!   page by page *at revision `C`* (one consistent snapshot), then the
//!   watch's events after `C` are applied as they come.
//! - **A read** asks etcd for its current revision `R` with one small
//!   linearizable request, shared by every read that arrives while one is
//!   under way (they take the next one: a request that started before a
//!   read arrived cannot vouch for it); waits until the watch has delivered
//!   `R`; answers from memory. A write that finished before the read began
//!   has a revision at most `R`, so the read sees it, on any node.
//! - **Why the whole key space**: a watch response's revision says every
//!   event up to it was delivered, but only changes to watched keys produce
//!   responses. Were only berth's prefix watched, a write elsewhere in etcd
//!   would raise `R` with no event to tell the copy it had caught up
//!   (etcd's progress requests need the gRPC stream, which the JSON gateway
//!   does not offer). Events outside the prefix are dropped unread.
//! - **One question per request**: inside a `berth_core::kv::read_scope`
//!   (each HTTP request is one), the revision learnt at the first read
//!   serves the reads after it (they all see every write finished before
//!   the request began); a write in the scope makes the next read ask again.
//! - **Falling back**: while the copy is loading, after its watch broke or
//!   history was compacted away under it (it is then rebuilt), when the
//!   watch lags more than [`LAG_LIMIT`] behind a read, or when the copy
//!   would pass its memory bound, reads go to etcd as without a cache.
//!   Writes always go to etcd.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::kv::{KeyRange, Kv, KvError, Txn, Versioned};
use serde_json::json;
use tokio::sync::watch;

use super::watch::{parse, Answer, Lines};
use super::wire::{self, b64, prefix_end};
use super::{versioned, EtcdKv};

/// Keys read per page while loading.
const PAGE: i64 = 1000;

/// How long a read waits for the watch to deliver the revision it must see
/// before it reads etcd instead.
const LAG_LIMIT: Duration = Duration::from_secs(1);

/// Pause before rebuilding a copy whose watch broke, or that could not load.
const REBUILD_PAUSE: Duration = Duration::from_secs(1);

/// Pause before trying again to load a copy that passed its memory bound.
const TOO_BIG_PAUSE: Duration = Duration::from_secs(600);

/// Bytes counted per entry beside its key and value (map node, version).
const ENTRY_OVERHEAD: usize = 64;

/// What the copy holds now; see [`WatchCache::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Whether reads are served from memory now.
    pub serving: bool,
    pub entries: usize,
    /// Keys, values and bookkeeping, estimated.
    pub bytes: usize,
    /// The etcd revision the copy has applied.
    pub revision: i64,
    /// Times the copy was (re)built.
    pub loads: u64,
    /// Reads served from memory, and reads that went to etcd.
    pub hits: u64,
    pub misses: u64,
    /// Requests for etcd's current revision made for reads.
    pub revision_requests: u64,
}

struct Data {
    map: BTreeMap<String, Versioned>,
    bytes: usize,
    serving: bool,
    loads: u64,
}

/// Requests for etcd's current revision under way at once. With one, a
/// read that just missed a request waits for it and then for the next
/// (1.5 round trips on average); with more, the next would start sooner,
/// but each costs etcd a ReadIndex round: measured with bench/ (three etcd
/// members and berth on two cores, 64 connections), manifest GETs went
/// from 17,700 req/s with one to 14,900 with two.
const REVISION_REQUESTS: usize = 1;

type Batch = watch::Sender<Option<Result<i64, String>>>;

/// The shared requests for etcd's current revision.
#[derive(Default)]
struct Barrier {
    in_flight: usize,
    /// Reads waiting for the next request, which starts after they joined.
    next: Option<Batch>,
}

struct Shared {
    etcd: EtcdKv,
    data: RwLock<Data>,
    /// The revision whose events the copy has applied (0 while not serving).
    applied: watch::Sender<i64>,
    barrier: Mutex<Barrier>,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    revision_requests: AtomicU64,
}

/// An [`EtcdKv`] whose reads are served from a watched copy; see the module.
/// Cheap to clone. The copy is kept by a task that ends when the last clone
/// is dropped.
#[derive(Clone)]
pub struct WatchCache {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a copy stopped being current.
enum Stop {
    Broken(String),
    TooBig(usize),
}

impl WatchCache {
    /// Starts keeping a copy of `etcd`'s prefix of at most `max_bytes`;
    /// reads go to etcd until it is loaded. Must be called in a runtime.
    pub fn start(etcd: EtcdKv, max_bytes: usize) -> WatchCache {
        let shared = Arc::new(Shared {
            etcd,
            data: RwLock::new(Data {
                map: BTreeMap::new(),
                bytes: 0,
                serving: false,
                loads: 0,
            }),
            applied: watch::channel(0).0,
            barrier: Mutex::new(Barrier::default()),
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            revision_requests: AtomicU64::new(0),
        });
        let task = tokio::spawn(keep(shared.clone())).abort_handle();
        WatchCache {
            shared,
            _task: Arc::new(TaskGuard(task)),
        }
    }

    /// The etcd client underneath (locks, leases, watches).
    pub fn etcd(&self) -> &EtcdKv {
        &self.shared.etcd
    }

    /// The bound given to [`WatchCache::start`].
    pub fn max_bytes(&self) -> usize {
        self.shared.max_bytes
    }

    pub fn stats(&self) -> CacheStats {
        let data = self.shared.read_data();
        CacheStats {
            serving: data.serving,
            entries: data.map.len(),
            bytes: data.bytes,
            revision: *self.shared.applied.borrow(),
            loads: data.loads,
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            revision_requests: self.shared.revision_requests.load(Ordering::Relaxed),
        }
    }

    /// Waits until the copy serves reads, at most `limit`; whether it does.
    pub async fn wait_serving(&self, limit: Duration) -> bool {
        let mut rx = self.shared.applied.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// `read` of the copy once it holds every write that finished before
    /// this call; `None` when etcd must be read instead.
    async fn read<T>(&self, read: impl FnOnce(&Data) -> T) -> Result<Option<T>, KvError> {
        let found = self.read_copy(read).await?;
        let counter = match found {
            Some(_) => &self.shared.hits,
            None => &self.shared.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    async fn read_copy<T>(&self, read: impl FnOnce(&Data) -> T) -> Result<Option<T>, KvError> {
        if *self.shared.applied.borrow() == 0 {
            return Ok(None);
        }
        // Learnt once per request (a read scope), after it began.
        let revision = match berth_core::kv::scope_freshness() {
            Some(r) => i64::try_from(r).unwrap_or(i64::MAX),
            None => {
                let r = self.shared.current_revision().await?;
                berth_core::kv::set_scope_freshness(u64::try_from(r).ok());
                r
            }
        };
        let mut rx = self.shared.applied.subscribe();
        // The guard `wait_for` answers holds the watch's lock: dropped here,
        // before anything else takes it (a writer waiting for that lock
        // would block a second reader, this one, forever).
        let caught_up = tokio::time::timeout(LAG_LIMIT, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok());
        if !caught_up {
            tracing::debug!(revision, "the watch cache lags; reading etcd");
            return Ok(None);
        }
        let data = self.shared.read_data();
        // Rebuilt meanwhile: its revision may be older than `revision`.
        if !data.serving || *self.shared.applied.borrow() < revision {
            return Ok(None);
        }
        Ok(Some(read(&data)))
    }
}

impl Shared {
    fn read_data(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_data(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }

    /// etcd's current revision, from a request that started after this
    /// call did, shared with every call meanwhile.
    async fn current_revision(self: &Arc<Self>) -> Result<i64, KvError> {
        let mut rx = {
            let mut barrier = self.barrier.lock().unwrap_or_else(|e| e.into_inner());
            let rx = barrier
                .next
                .get_or_insert_with(|| watch::channel(None).0)
                .subscribe();
            if barrier.in_flight < REVISION_REQUESTS {
                barrier.in_flight += 1;
                if let Some(batch) = barrier.next.take() {
                    tokio::spawn(self.clone().drive_barrier(batch));
                }
            }
            rx
        };
        let answer = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| KvError::Internal("the revision request went away".into()))?
            .clone();
        match answer {
            Some(Ok(revision)) => Ok(revision),
            Some(Err(why)) => Err(KvError::Unavailable(why)),
            None => Err(KvError::Internal("no revision".into())),
        }
    }

    /// Answers `batch` with one revision request, then serves the reads
    /// that gathered meanwhile, batch after batch, until none waits.
    async fn drive_barrier(self: Arc<Self>, mut batch: Batch) {
        loop {
            self.revision_requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.etcd.store_revision().await.map_err(|e| e.to_string());
            batch.send_replace(Some(answer));
            let mut barrier = self.barrier.lock().unwrap_or_else(|e| e.into_inner());
            match barrier.next.take() {
                Some(next) => batch = next,
                None => {
                    barrier.in_flight -= 1;
                    return;
                }
            }
        }
    }

    /// Replaces the copy (or empties it, not serving) and its revision.
    fn reset(&self, map: Option<(BTreeMap<String, Versioned>, usize)>, revision: i64) {
        let mut data = self.write_data();
        match map {
            Some((map, bytes)) => {
                data.map = map;
                data.bytes = bytes;
                data.serving = true;
                data.loads += 1;
                self.applied.send_replace(revision);
            }
            None => {
                data.map = BTreeMap::new();
                data.bytes = 0;
                data.serving = false;
                self.applied.send_replace(0);
            }
        }
    }
}

fn entry_bytes(key: &str, value: &Versioned) -> usize {
    key.len() + value.value.len() + ENTRY_OVERHEAD
}

/// Keeps the copy: loads it, applies the watch, and starts over when the
/// watch breaks.
async fn keep(shared: Arc<Shared>) {
    loop {
        let stop = match load(&shared).await {
            Ok((lines, map, bytes, revision)) => {
                tracing::info!(
                    entries = map.len(),
                    bytes,
                    revision,
                    "metadata watch cache loaded"
                );
                shared.reset(Some((map, bytes)), revision);
                follow(&shared, lines).await
            }
            Err(stop) => stop,
        };
        shared.reset(None, 0);
        let pause = match stop {
            Stop::Broken(why) => {
                tracing::warn!(
                    "metadata watch cache stopped, reading etcd until it is rebuilt: {why}"
                );
                REBUILD_PAUSE
            }
            Stop::TooBig(bytes) => {
                tracing::warn!(
                    bytes,
                    max_bytes = shared.max_bytes,
                    "the metadata would pass the watch cache's bound; reading etcd instead"
                );
                TOO_BIG_PAUSE
            }
        };
        tokio::time::sleep(pause).await;
    }
}

type Loaded = (Lines, BTreeMap<String, Versioned>, usize, i64);

/// Opens the watch, then reads the prefix at the watch's revision.
async fn load(shared: &Shared) -> Result<Loaded, Stop> {
    let etcd = &shared.etcd;
    // The whole key space: "\0" to "\0".
    let (lines, created) = etcd
        .open_watch(&[0], &[0], None)
        .await
        .map_err(|e| Stop::Broken(e.to_string()))?;
    let first = etcd.full_key("");
    let end = prefix_end(&first);
    let mut start = first;
    let mut map = BTreeMap::new();
    let mut bytes = 0;
    loop {
        let body = json!({
            "key": b64(&start),
            "range_end": b64(&end),
            "limit": PAGE.to_string(),
            "revision": created.to_string(),
        });
        let page: wire::RangeResponse = etcd
            .call("/kv/range", body, true, false)
            .await
            .map_err(|e| Stop::Broken(format!("loading: {e}")))?;
        for kv in &page.kvs {
            let key = etcd
                .caller_key(&kv.key)
                .map_err(|e| Stop::Broken(e.to_string()))?;
            let value = versioned(kv).map_err(|e| Stop::Broken(e.to_string()))?;
            bytes += entry_bytes(&key, &value);
            if bytes > shared.max_bytes {
                return Err(Stop::TooBig(bytes));
            }
            map.insert(key, value);
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                start = wire::unb64("key", &last.key).map_err(|e| Stop::Broken(e.to_string()))?;
                start.push(0);
            }
            _ => break,
        }
    }
    Ok((lines, map, bytes, created))
}

/// Applies the watch's events to the copy until the watch breaks.
async fn follow(shared: &Shared, mut lines: Lines) -> Stop {
    let etcd = &shared.etcd;
    loop {
        let line = match lines.next().await {
            Ok(Some(line)) => line,
            Ok(None) => return Stop::Broken("the watch ended".into()),
            Err(e) => return Stop::Broken(super::client::describe(&e)),
        };
        let response = match parse(&line) {
            Answer::Response(r) => r,
            Answer::Error(_, message) => return Stop::Broken(message),
            Answer::Broken(why) => return Stop::Broken(why),
        };
        if response.compact_revision > 0 {
            return Stop::Broken("etcd compacted history the watch had not seen".into());
        }
        if response.canceled {
            return Stop::Broken(format!("canceled: {}", response.cancel_reason));
        }
        {
            let mut data = shared.write_data();
            for event in &response.events {
                // Another prefix's, or another program's: not berth's.
                let Ok(key) = etcd.caller_key(&event.kv.key) else {
                    continue;
                };
                if let Some(old) = data.map.remove(&key) {
                    data.bytes -= entry_bytes(&key, &old);
                }
                if event.kind != "DELETE" {
                    let value = match versioned(&event.kv) {
                        Ok(v) => v,
                        Err(e) => return Stop::Broken(e.to_string()),
                    };
                    data.bytes += entry_bytes(&key, &value);
                    data.map.insert(key, value);
                }
            }
            if data.bytes > shared.max_bytes {
                return Stop::TooBig(data.bytes);
            }
        }
        // Every event up to the response's revision has been delivered.
        let revision = response.header.revision;
        shared.applied.send_if_modified(|applied| {
            let newer = revision > *applied;
            if newer {
                *applied = revision;
            }
            newer
        });
    }
}

/// The entries of `range` in the copy, borrowed.
fn entries<'a>(
    data: &'a Data,
    range: &'a KeyRange<'_>,
) -> impl Iterator<Item = (&'a String, &'a Versioned)> {
    data.map
        .range::<str, _>((range.lower_bound(), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(range.prefix))
        .take(range.limit)
}

#[async_trait]
impl Kv for WatchCache {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        match self.read(|d| d.map.get(key).cloned()).await? {
            Some(found) => Ok(found),
            None => self.shared.etcd.get(key).await,
        }
    }

    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError> {
        let found = |d: &Data| {
            entries(d, &range)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        match self.read(found).await? {
            Some(found) => Ok(found),
            None => self.shared.etcd.scan_range(range).await,
        }
    }

    async fn scan_range_keys(&self, range: KeyRange<'_>) -> Result<Vec<String>, KvError> {
        // Listings read keys only: no value is copied.
        let keys = |d: &Data| entries(d, &range).map(|(k, _)| k.clone()).collect();
        match self.read(keys).await? {
            Some(found) => Ok(found),
            None => self.shared.etcd.scan_range_keys(range).await,
        }
    }

    // A write ends the request's shared freshness: its next read learns
    // etcd's revision again, which covers the write.
    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        let done = self.shared.etcd.commit(txn).await;
        berth_core::kv::set_scope_freshness(None);
        done
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let done = self.shared.etcd.put(key, value).await;
        berth_core::kv::set_scope_freshness(None);
        done
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let done = self.shared.etcd.delete(key).await;
        berth_core::kv::set_scope_freshness(None);
        done
    }
}

impl EtcdKv {
    /// etcd's current revision, by a linearizable read of one key.
    pub(super) async fn store_revision(&self) -> Result<i64, KvError> {
        let body = json!({ "key": b64(&self.full_key("")), "count_only": true });
        let r: wire::RangeResponse = self.call("/kv/range", body, true, false).await?;
        Ok(r.header.revision)
    }
}
