//! In-process [`BlobStore`]: committed blobs and uploads in maps behind a
//! mutex, beside [`crate::MemoryKv`], for the domain's tests. Nothing
//! survives a restart.
//!
//! It behaves as the filesystem store does wherever the domain could tell:
//! an upload writer writes at its own position, as a file handle does, so
//! two writers of one upload mix their bytes just as they would on disk
//! (which is what the registry's upload claims must prevent); a writer
//! dropped without `finish` lands nothing more. Bytes a writer sends after
//! its upload was removed or committed go nowhere, as into an unlinked file.
//! Upload ages come from a [`Clock`], so tests can age them without waiting.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;

use crate::blob::{check_upload_id, BlobStore, ByteStream, StoreError, UploadWriter};
use crate::clock::{Clock, SystemClock};

/// Reads are streamed in pieces of this size, as a real store streams them,
/// so callers that assume one piece are caught.
const READ_PIECE: usize = 64 * 1024;

struct Upload {
    data: Vec<u8>,
    /// When a byte was last written, Unix milliseconds.
    written_ms: u64,
    /// Which creation of upload `id` this is: a writer of an earlier one
    /// (since removed or committed) must not write into this one.
    incarnation: u64,
}

#[derive(Default)]
struct State {
    blobs: HashMap<Digest, Bytes>,
    uploads: HashMap<String, Upload>,
    incarnations: u64,
}

pub struct MemoryBlobStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBlobStore {
    fn default() -> Self {
        MemoryBlobStore::with_clock(Arc::new(SystemClock))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every mutation completes before the guard drops, so a panic while
    // holding it cannot leave a half-applied change behind.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose upload ages follow `clock` (the registry's, in tests
    /// of upload expiry).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryBlobStore {
            state: Arc::default(),
            clock,
        }
    }

    /// How many bytes upload `id` holds, if it exists.
    pub fn upload_len(&self, id: &str) -> Option<u64> {
        lock(&self.state)
            .uploads
            .get(id)
            .map(|u| u.data.len() as u64)
    }

    /// Replaces a committed blob's bytes behind the registry's back, as
    /// disk corruption would: for tests of `fsck`.
    pub fn tamper(&self, digest: &Digest, data: Bytes) {
        lock(&self.state).blobs.insert(digest.clone(), data);
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.state).blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        let blob = lock(&self.state)
            .blobs
            .get(digest)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= blob.len() as u64)
            .ok_or_else(|| {
                StoreError::Io(format!(
                    "range {offset}+{len} outside blob of {} bytes",
                    blob.len()
                ))
            })?;
        let part = blob.slice(offset as usize..end as usize);
        let pieces: Vec<io::Result<Bytes>> = (0..part.len())
            .step_by(READ_PIECE)
            .map(|i| Ok(part.slice(i..(i + READ_PIECE).min(part.len()))))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(pieces)))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        lock(&self.state).blobs.remove(digest);
        Ok(())
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        // Content-addressed: bytes already there are these bytes.
        lock(&self.state)
            .blobs
            .entry(digest.clone())
            .or_insert(data);
        Ok(())
    }

    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StoreError> {
        check_upload_id(id)?;
        let now = self.clock.now_ms();
        let mut state = lock(&self.state);
        let incarnation = match state.uploads.get_mut(id) {
            Some(upload) if upload.data.len() as u64 >= offset => {
                upload.data.truncate(offset as usize);
                upload.written_ms = now;
                upload.incarnation
            }
            Some(_) => return Err(StoreError::NotFound),
            None if offset > 0 => return Err(StoreError::NotFound),
            None => {
                state.incarnations += 1;
                let incarnation = state.incarnations;
                state.uploads.insert(
                    id.to_owned(),
                    Upload {
                        data: Vec::new(),
                        written_ms: now,
                        incarnation,
                    },
                );
                incarnation
            }
        };
        Ok(Box::new(MemoryUploadWriter {
            state: self.state.clone(),
            clock: self.clock.clone(),
            id: id.to_owned(),
            incarnation,
            pos: offset as usize,
        }))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest, size: u64) -> Result<(), StoreError> {
        check_upload_id(id)?;
        let mut state = lock(&self.state);
        if state.blobs.contains_key(digest) {
            state.uploads.remove(id);
            return Ok(());
        }
        match state.uploads.get(id) {
            Some(upload) if upload.data.len() as u64 >= size => {}
            // The bytes the caller recorded are gone: as lost as a missing
            // upload.
            _ => return Err(StoreError::NotFound),
        }
        if let Some(upload) = state.uploads.remove(id) {
            let mut data = upload.data;
            data.truncate(size as usize);
            state.blobs.insert(digest.clone(), Bytes::from(data));
        }
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        check_upload_id(id)?;
        lock(&self.state).uploads.remove(id);
        Ok(())
    }

    /// An upload is stale at exactly `older_than` of age, so
    /// `Duration::ZERO` lists every upload, even one written this very
    /// millisecond.
    async fn stale_uploads(&self, older_than: Duration) -> Result<Vec<String>, StoreError> {
        let older_than = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
        let now = self.clock.now_ms();
        Ok(lock(&self.state)
            .uploads
            .iter()
            .filter(|(_, u)| now.saturating_sub(u.written_ms) >= older_than)
            .map(|(id, _)| id.clone())
            .collect())
    }
}

struct MemoryUploadWriter {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    id: String,
    incarnation: u64,
    /// Where the next byte goes, as a file handle's position.
    pos: usize,
}

#[async_trait]
impl UploadWriter for MemoryUploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut state = lock(&self.state);
        let end = self.pos + chunk.len();
        match state.uploads.get_mut(&self.id) {
            Some(upload) if upload.incarnation == self.incarnation => {
                // Past the end of what is there (another writer cut the
                // upload shorter), the gap reads as zeros, as in a file.
                if upload.data.len() < end {
                    upload.data.resize(end, 0);
                }
                upload.data[self.pos..end].copy_from_slice(&chunk);
                upload.written_ms = now;
            }
            _ => {}
        }
        self.pos = end;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob_suite;
    use crate::clock::ManualClock;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_shared_suite() {
        blob_suite::run_all(&MemoryBlobStore::new()).await;
    }

    /// Two writers at one offset overwrite each other position by position,
    /// as two file handles would: the mix the registry's claims prevent.
    #[tokio::test]
    async fn two_writers_of_one_upload_mix_their_bytes() {
        let store = MemoryBlobStore::new();
        store
            .upload_writer("u", 0)
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        let mut a = store.upload_writer("u", 0).await.unwrap();
        let mut b = store.upload_writer("u", 0).await.unwrap();
        a.write(Bytes::from_static(b"aaaa")).await.unwrap();
        b.write(Bytes::from_static(b"bb")).await.unwrap();
        a.write(Bytes::from_static(b"aa")).await.unwrap();
        let digest = Digest::sha256_of(b"bbaaaa");
        store.commit_upload("u", &digest, 6).await.unwrap();
        assert_eq!(blob_suite::read_all(&store, &digest, 0, 6).await, b"bbaaaa");
    }

    #[tokio::test]
    async fn a_writer_of_a_removed_upload_writes_nowhere() {
        let store = MemoryBlobStore::new();
        let mut old = store.upload_writer("u", 0).await.unwrap();
        store.delete_upload("u").await.unwrap();
        let mut new = store.upload_writer("u", 0).await.unwrap();
        old.write(Bytes::from_static(b"stale")).await.unwrap();
        new.write(Bytes::from_static(b"ok")).await.unwrap();
        assert_eq!(store.upload_len("u"), Some(2));
    }

    #[tokio::test]
    async fn upload_ages_follow_the_clock() {
        let clock = Arc::new(ManualClock::default());
        let store = MemoryBlobStore::with_clock(clock.clone());
        let mut w = store.upload_writer("u", 0).await.unwrap();
        w.write(Bytes::from_static(b"x")).await.unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(store.stale_uploads(Duration::ZERO).await.unwrap(), ["u"]);
        assert!(store.stale_uploads(hour).await.unwrap().is_empty());
        clock.advance(hour);
        assert_eq!(store.stale_uploads(hour).await.unwrap(), ["u"]);
        // A write makes it young again.
        w.write(Bytes::from_static(b"y")).await.unwrap();
        assert!(store.stale_uploads(hour).await.unwrap().is_empty());
    }
}
