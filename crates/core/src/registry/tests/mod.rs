//! The domain's own tests: the registry over the in-memory ports
//! ([`MemoryKv`], [`MemoryBlobStore`]) and a [`ManualClock`], so claims,
//! grace periods and expiry are decided by moving the clock, never by
//! sleeping, and races are staged exactly (an [`Interposer`] runs another
//! request between two steps of the one under test). Each test names the
//! invariant it guards; breaking that invariant makes it fail.
//!
//! This module holds what the tests share: the fixture, request bodies fed
//! by the test, the interposer and a few pushes.

mod claims;
mod gc;
mod gc_races;
mod import;
mod manifests;
mod outbox;
mod quota;
mod quota_races;
mod referrers;
mod uploads;

use super::{Registry, UploadStatus};
use crate::blob::{BlobStore, ByteStream};
use crate::clock::ManualClock;
use crate::error::CoreError;
use crate::keys;
use crate::kv::{KeyRange, Kv, KvError, Op, Txn, Versioned};
use crate::registry::records::{RepoBlobRecord, UploadSession};
use crate::{MemoryBlobStore, MemoryKv};
use async_trait::async_trait;
use berth_oci::{Digest, ErrorCode, Reference, RepoName};
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One registry over in-memory stores, with the clock both read.
pub(crate) struct Fixture {
    pub reg: Registry,
    pub kv: Arc<dyn Kv>,
    pub blobs: Arc<MemoryBlobStore>,
    pub clock: Arc<ManualClock>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::on(Arc::new(MemoryKv::new()))
    }

    /// A fixture whose metadata goes through a fresh [`Interposer`], and
    /// that interposer.
    pub fn interposed() -> (Arc<Interposer>, Self) {
        let ix = Arc::new(Interposer::default());
        let fx = Self::on(ix.clone());
        (ix, fx)
    }

    /// A fixture whose metadata goes through `kv` (an [`Interposer`]).
    pub fn on(kv: Arc<dyn Kv>) -> Self {
        let clock = Arc::new(ManualClock::default());
        let blobs = Arc::new(MemoryBlobStore::with_clock(clock.clone()));
        let reg = Registry::new(kv.clone(), blobs.clone()).with_clock(clock.clone());
        Fixture {
            reg,
            kv,
            blobs,
            clock,
        }
    }

    /// Another node: its own registry (and caches) on the same stores.
    pub fn node(&self) -> Registry {
        Registry::new(self.kv.clone(), self.blobs.clone()).with_clock(self.clock.clone())
    }

    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
    }

    pub async fn session(&self, id: &str) -> Option<UploadSession> {
        let v = self.kv.get(&keys::upload(id)).await.unwrap()?;
        Some(serde_json::from_slice(&v.value).unwrap())
    }

    /// Every upload the store holds, whatever its age.
    pub async fn uploads_stored(&self) -> Vec<String> {
        let ids = self.blobs.stale_uploads(std::time::Duration::ZERO);
        ids.await.unwrap()
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.kv.scan_keys(prefix, None, 10_000).await.unwrap()
    }

    pub async fn read_blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        let size = self.blobs.stat(digest).await.unwrap()?;
        Some(crate::blob_suite::read_all(self.blobs.as_ref(), digest, 0, size).await)
    }
}

pub(crate) fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

pub(crate) fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// A request body of the given chunks.
pub(crate) fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// A request body the test sends chunk by chunk, as a slow client would:
/// the request waits for each. Dropping the feed ends the body.
pub(crate) struct Feed(mpsc::UnboundedSender<io::Result<Bytes>>);

pub(crate) fn feed() -> (Feed, ByteStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (Feed(tx), Box::pin(stream))
}

impl Feed {
    pub fn send(&self, chunk: &[u8]) {
        // The request may be gone already; that is what some tests do.
        let _ = self.0.send(Ok(Bytes::copy_from_slice(chunk)));
    }

    /// The connection breaks: the body ends in an error.
    pub fn fail(self) {
        let _ = self.0.send(Err(io::Error::other("connection reset")));
    }
}

/// An append to the upload `id` of `repo` running in a spawned task, its
/// body fed by the test chunk by chunk: the feed, and the task.
pub(crate) fn fed_append(
    reg: &Registry,
    repo: &RepoName,
    id: &str,
) -> (Feed, JoinHandle<Result<UploadStatus, CoreError>>) {
    let (feed, stream) = feed();
    let (reg, repo, id) = (reg.clone(), repo.clone(), id.to_owned());
    let task = tokio::spawn(async move { reg.upload_append(&repo, &id, None, None, stream).await });
    (feed, task)
}

/// Lets spawned tasks run until `done` holds. The tests run on a
/// current-thread runtime, where a spawned task runs only when the test
/// yields, and every in-memory call completes at once, so a few turns
/// always suffice; the bound turns a hang into a failure.
pub(crate) async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1000 {
        if done().await {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

/// Asserts that `result` is an error with `code`.
#[track_caller]
pub(crate) fn assert_code<T: std::fmt::Debug>(result: Result<T, CoreError>, code: ErrorCode) {
    assert_eq!(result.unwrap_err().code, code);
}

/// Pushes `data` to `repo` and unlinks it again: a blob no repository
/// holds, garbage once the grace period has passed; its digest.
pub(crate) async fn push_garbage(reg: &Registry, repo: &RepoName, data: &[u8]) -> Digest {
    let digest = push_blob(reg, repo, data).await;
    reg.blob_delete(repo, &digest).await.unwrap();
    digest
}

/// Uploads `data` into `repo` in one request; its digest.
pub(crate) async fn push_blob(reg: &Registry, repo: &RepoName, data: &[u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    reg.upload_monolithic(repo, &digest, Some(data.len() as u64), body(&[data]))
        .await
        .unwrap();
    digest
}

pub(crate) const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image manifest naming `config` and `layers`, with extra fields.
pub(crate) fn image(config: &Digest, layers: &[&Digest], extra: serde_json::Value) -> Bytes {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": IMAGE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": 2},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": l, "size": 1})).collect::<Vec<_>>(),
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    Bytes::from(m.to_string())
}

/// Pushes an image of a config and one layer (both uploaded) as `tag` (a
/// tag or a digest); the manifest's digest.
pub(crate) async fn push_image(reg: &Registry, repo: &RepoName, tag: &str, layer: &[u8]) -> Digest {
    push_image_of(reg, repo, tag, b"{}", layer).await.unwrap()
}

/// [`push_image`] with a config of its own, answering what the push does.
pub(crate) async fn push_image_of(
    reg: &Registry,
    repo: &RepoName,
    tag: &str,
    config: &[u8],
    layer: &[u8],
) -> Result<Digest, crate::CoreError> {
    let (body, _) = push_image_blobs(reg, repo, config, layer).await;
    let tag = reference(tag);
    let put = reg.manifest_put(repo, &tag, Some(IMAGE), body);
    Ok(put.await?.digest)
}

/// Uploads `config` and `layer` to `repo`, as a client does before it
/// pushes their manifest; that manifest, and the layer's digest.
pub(crate) async fn push_image_blobs(
    reg: &Registry,
    repo: &RepoName,
    config: &[u8],
    layer: &[u8],
) -> (Bytes, Digest) {
    let config = push_blob(reg, repo, config).await;
    let layer = push_blob(reg, repo, layer).await;
    (image(&config, &[&layer], serde_json::json!({})), layer)
}

/// Pushes a manifest naming `layer` with its blobs linked directly, no
/// byte stored: for tests of listings, where only metadata matters.
pub(crate) async fn push(reg: &Registry, repo: &RepoName, tag: &str, layer: &[u8]) -> Digest {
    let layer_digest = Digest::sha256_of(layer);
    let config = b"{}";
    let config_digest = Digest::sha256_of(config);
    for (d, size) in [(&layer_digest, layer.len()), (&config_digest, config.len())] {
        let record = RepoBlobRecord {
            size: size as u64,
            linked: reg.now(),
        };
        reg.kv
            .put(
                &keys::repo_blob(repo, d),
                serde_json::to_vec(&record).unwrap(),
            )
            .await
            .unwrap();
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": IMAGE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    reg.manifest_put(repo, &reference(tag), Some(IMAGE), Bytes::from(manifest))
        .await
        .unwrap()
        .digest
}

/// A `Kv` call, as an [`Interposer`] sees it.
pub(crate) enum Call<'a> {
    Scan(&'a str),
    Commit(&'a Txn),
}

impl Call<'_> {
    /// A commit that puts a key starting with `prefix` whose value
    /// contains `text`.
    pub fn puts(&self, prefix: &str, text: &str) -> bool {
        let Call::Commit(txn) = self else {
            return false;
        };
        txn.ops.iter().any(|op| match op {
            Op::Put(key, value) => {
                key.starts_with(prefix) && String::from_utf8_lossy(value).contains(text)
            }
            Op::Delete(_) => false,
        })
    }
}

impl Call<'_> {
    /// A commit that deletes a key starting with `prefix`.
    pub fn deletes(&self, prefix: &str) -> bool {
        let Call::Commit(txn) = self else {
            return false;
        };
        txn.ops
            .iter()
            .any(|op| matches!(op, Op::Delete(key) if key.starts_with(prefix)))
    }
}

type Pick = Box<dyn Fn(&Call<'_>) -> bool + Send + Sync>;
type Action = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A [`MemoryKv`] that runs a test's action once, just before the first
/// scan or commit a predicate picks: how a test puts another request exactly
/// between two steps of the one under test.
#[derive(Default)]
pub(crate) struct Interposer {
    inner: MemoryKv,
    pending: Mutex<Vec<(Pick, Action)>>,
}

impl Interposer {
    pub fn before(
        &self,
        pick: impl Fn(&Call<'_>) -> bool + Send + Sync + 'static,
        action: impl Future<Output = ()> + Send + 'static,
    ) {
        self.lock().push((Box::new(pick), Box::pin(action)));
    }

    /// Whether every action has run.
    pub fn done(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Pick, Action)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn interpose(&self, call: Call<'_>) {
        let action = {
            let mut pending = self.lock();
            let found = pending.iter().position(|(pick, _)| pick(&call));
            found.map(|i| pending.remove(i).1)
        };
        if let Some(action) = action {
            action.await;
        }
    }
}

#[async_trait]
impl Kv for Interposer {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        self.inner.get(key).await
    }

    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError> {
        self.interpose(Call::Scan(range.prefix)).await;
        self.inner.scan_range(range).await
    }

    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        self.interpose(Call::Commit(&txn)).await;
        self.inner.commit(txn).await
    }
}
