//! A [`Tree`] in memory, with helpers that write Distribution's layout: for
//! the import's domain tests, as `MemoryBlobStore` is for the registry's.

use super::tree::{blob_data, FileRead, Tree};
use crate::blob::{ByteStream, StoreError};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Files by path, relative to `docker/registry/v2/`.
#[derive(Default)]
pub struct MemoryTree {
    files: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn put(&self, path: &str, data: impl Into<Bytes>) {
        self.lock().insert(path.to_owned(), data.into());
    }

    pub fn remove(&self, path: &str) {
        self.lock().remove(path);
    }

    /// Stores `data` as a blob (or manifest) in the blob store; its digest.
    pub fn blob(&self, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        self.put(&blob_data(&digest), Bytes::copy_from_slice(data));
        digest
    }

    /// Links the blob `digest` into `repo` (`_layers`).
    pub fn link_layer(&self, repo: &str, digest: &Digest) {
        self.put(&link(repo, "_layers", digest), digest.to_string());
    }

    /// Makes the manifest `digest` a revision of `repo`.
    pub fn link_revision(&self, repo: &str, digest: &Digest) {
        let path = link(repo, "_manifests/revisions", digest);
        self.put(&path, digest.to_string());
    }

    /// Points `tag` of `repo` at `digest`, with its index entry, as
    /// Distribution writes a tag.
    pub fn tag(&self, repo: &str, tag: &str, digest: &Digest) {
        let base = format!("repositories/{repo}/_manifests/tags/{tag}");
        self.put(&format!("{base}/current/link"), digest.to_string());
        let index = link(repo, &format!("_manifests/tags/{tag}/index"), digest);
        self.put(&index, digest.to_string());
    }
}

fn link(repo: &str, kind: &str, digest: &Digest) -> String {
    format!(
        "repositories/{repo}/{kind}/{}/{}/link",
        digest.algorithm(),
        digest.encoded()
    )
}

#[async_trait]
impl Tree for MemoryTree {
    async fn dirs(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let files = self.lock();
        let mut found = BTreeSet::new();
        for path in files.keys() {
            if let Some((first, _)) = path.strip_prefix(dir).and_then(|r| r.split_once('/')) {
                found.insert(first.to_owned());
            }
        }
        Ok(found.into_iter().collect())
    }

    async fn files(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let files = self.lock();
        Ok(files
            .keys()
            .filter_map(|p| p.strip_prefix(dir).map(str::to_owned))
            .collect())
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().get(path).map(|b| b.len() as u64))
    }

    async fn read(&self, path: &str, max: u64) -> Result<FileRead, StoreError> {
        Ok(match self.lock().get(path) {
            None => FileRead::Absent,
            Some(b) if b.len() as u64 > max => FileRead::TooLarge(b.len() as u64),
            Some(b) => FileRead::Bytes(b.clone()),
        })
    }

    async fn stream(&self, path: &str, len: u64) -> Result<ByteStream, StoreError> {
        let data = self.lock().get(path).cloned().ok_or(StoreError::NotFound)?;
        let end = (len as usize).min(data.len());
        let chunks: Vec<std::io::Result<Bytes>> = data
            .slice(..end)
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }
}
