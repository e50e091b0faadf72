//! `S3BlobStore`: the `BlobStore` port over an S3 bucket. Uploads are chunk
//! objects plus session markers (see `layout`); a commit assembles them into
//! the blob's key with one multipart upload, copying inside the store.

use super::client::S3Client;
use super::config::{S3Config, MIN_PART};
use super::layout::{self, Part, Piece};
use crate::layout::BlobLayout;
use async_trait::async_trait;
use berth_core::blob::check_upload_id;
use berth_core::{BlobStore, ByteStream, StoreError, UploadWriter};
use berth_oci::Digest;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: usize = 10_000;

/// The largest object CopyObject copies (S3's limit).
const COPY_OBJECT_MAX: u64 = 5 << 30;

/// Parts of a commit in flight at once: copies cost berth nothing, and
/// uploaded parts stay within two in memory.
const COMMIT_CONCURRENCY: usize = 2;

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Arc<S3Client>,
    /// Key prefix: empty or ending in `/`.
    prefix: String,
    part_size: u64,
    layout: BlobLayout,
}

impl S3BlobStore {
    /// Builds the client; nothing is sent until the first call, so a
    /// briefly unreachable store does not stop a node from starting.
    pub fn new(config: &S3Config) -> io::Result<Self> {
        let client = S3Client::new(config)?;
        Ok(S3BlobStore {
            client: Arc::new(client),
            prefix: config.key_prefix(),
            part_size: config.part_size_mib * 1024 * 1024,
            layout: config.layout,
        })
    }

    /// The underlying client, for maintenance and tests.
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// Where committed blobs live under the prefix.
    pub fn layout(&self) -> BlobLayout {
        self.layout
    }

    /// The key prefix (the bucket's root when empty), ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn blob_key(&self, digest: &Digest) -> String {
        format!("{}{}", self.prefix, self.layout.blob_path(digest))
    }

    /// `<prefix>uploads/<id>/`, the directory of an upload's objects.
    fn upload_dir(&self, id: &str) -> Result<String, StoreError> {
        check_upload_id(id)?;
        Ok(format!("{}uploads/{id}/", self.prefix))
    }

    /// Names of the upload's objects, relative to `dir`.
    async fn list_upload(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.client.list_keys(dir).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(dir).map(str::to_owned))
            .collect())
    }

    async fn delete_names(&self, dir: &str, names: &[String]) -> Result<(), StoreError> {
        if names.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = names.iter().map(|n| format!("{dir}{n}")).collect();
        self.client.delete_objects(&keys).await
    }

    /// Removes committed blobs in batches (for garbage collection); missing
    /// ones are not an error.
    pub async fn delete_blobs(&self, digests: &[Digest]) -> Result<(), StoreError> {
        let keys: Vec<String> = digests.iter().map(|d| self.blob_key(d)).collect();
        self.client.delete_objects(&keys).await
    }

    /// Aborts the multipart uploads under this store's blobs started more
    /// than `older_than` ago: commits that died midway. Their parts are
    /// invisible but take space until aborted. Answers how many went.
    pub async fn abort_stale_multipart(&self, older_than: Duration) -> Result<usize, StoreError> {
        let now = super::sigv4::unix_now();
        let uploads = self
            .client
            .list_multipart(&format!("{}{}", self.prefix, self.layout.blobs_dir()))
            .await?;
        let mut aborted = 0;
        for u in uploads {
            match u.initiated {
                Some(t) if t.saturating_add(older_than.as_secs()) <= now => {
                    self.client.abort_multipart(&u.key, &u.upload_id).await?;
                    aborted += 1;
                }
                Some(_) => {}
                None => tracing::warn!(
                    "S3: multipart upload {} of {:?} has no start time; left alone",
                    u.upload_id,
                    u.key
                ),
            }
        }
        Ok(aborted)
    }

    /// Reads the pieces, in order, into one buffer.
    async fn gather(&self, dir: &str, pieces: &[Piece]) -> Result<Bytes, StoreError> {
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        let mut buf = BytesMut::with_capacity(total as usize);
        for p in pieces {
            let key = format!("{dir}{}", p.name);
            self.client
                .get_range_bytes(&key, p.offset, p.len, &mut buf)
                .await?;
        }
        Ok(buf.freeze())
    }

    /// Writes `pieces` as the object `key` through one multipart upload,
    /// aborting it on failure.
    async fn assemble(&self, key: &str, dir: &str, pieces: &[Piece]) -> Result<(), StoreError> {
        let parts = layout::plan(pieces, MIN_PART, self.part_size);
        if parts.len() > MAX_PARTS {
            return Err(StoreError::Io(format!(
                "upload needs {} parts, over S3's {MAX_PARTS}: too many small chunks",
                parts.len()
            )));
        }
        let upload_id = self.client.create_multipart(key).await?;
        let work = async {
            let etags: Vec<(u32, String)> =
                futures_util::stream::iter(parts.into_iter().zip(1u32..))
                    .map(|(part, number)| {
                        let upload_id = &upload_id;
                        async move {
                            let etag = match part {
                                Part::Copy(p) => {
                                    let source = format!("{dir}{}", p.name);
                                    self.client
                                        .upload_part_copy(
                                            key, upload_id, number, &source, p.offset, p.len,
                                        )
                                        .await?
                                }
                                Part::Upload(ps) => {
                                    let body = self.gather(dir, &ps).await?;
                                    self.client
                                        .upload_part(key, upload_id, number, body)
                                        .await?
                                }
                            };
                            Ok::<_, StoreError>((number, etag))
                        }
                    })
                    .buffered(COMMIT_CONCURRENCY)
                    .try_collect()
                    .await?;
            self.client
                .complete_multipart(key, &upload_id, &etags)
                .await
        };
        let done = work.await;
        if done.is_err() {
            // Best effort: abort_stale_multipart sweeps what this leaves.
            if let Err(e) = self.client.abort_multipart(key, &upload_id).await {
                tracing::warn!("S3: aborting multipart upload {upload_id} of {key:?}: {e}");
            }
        }
        done
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.client.head_object(&self.blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        let key = self.blob_key(digest);
        if len == 0 {
            // No Range header can ask for nothing; check existence instead.
            let size = self
                .client
                .head_object(&key)
                .await?
                .ok_or(StoreError::NotFound)?;
            if offset > size {
                return Err(StoreError::Io(format!(
                    "range {offset}+0 outside blob of {size} bytes"
                )));
            }
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        self.client.get_range(&key, offset, len).await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        self.client.delete_object(&self.blob_key(digest)).await
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StoreError> {
        self.delete_blobs(digests).await
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        // A PutObject appears whole or not at all.
        self.client.put_object(&self.blob_key(digest), data).await
    }

    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StoreError> {
        let dir = self.upload_dir(id)?;
        let mut names = self.list_upload(&dir).await?;
        let before = layout::layout(&names);
        if offset > 0 && (!before.exists || before.covered < offset) {
            return Err(StoreError::NotFound);
        }
        // The marker goes first: from the moment it exists, everything past
        // `offset` is discarded, whatever the deletes below manage.
        let gen = before.next_gen;
        let marker = layout::session_name(gen, offset);
        self.client
            .put_object(&format!("{dir}{marker}"), Bytes::new())
            .await?;
        names.push(marker);
        let after = layout::layout(&names);
        self.delete_names(&dir, &after.garbage).await?;
        Ok(Box::new(S3UploadWriter {
            client: self.client.clone(),
            dir,
            gen,
            pos: offset,
            buf: BytesMut::new(),
            part_size: self.part_size as usize,
            inflight: None,
            failed: None,
        }))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let dir = self.upload_dir(id)?;
        let key = self.blob_key(digest);
        if self.client.head_object(&key).await?.is_some() {
            // Content-addressed: the bytes there are the bytes of this upload.
            return self.delete_upload(id).await;
        }
        let names = self.list_upload(&dir).await?;
        let lay = layout::layout(&names);
        if !lay.exists || lay.covered < size {
            // The bytes the caller recorded are gone: as lost as a missing
            // upload.
            return Err(StoreError::NotFound);
        }
        let pieces = lay.prefix(size);
        let whole = match pieces.as_slice() {
            [only] if only.offset == 0 && only.start == 0 && size <= COPY_OBJECT_MAX => {
                let source = format!("{dir}{}", only.name);
                // The chunk object holds the blob and nothing more.
                (self.client.head_object(&source).await? == Some(size)).then_some(source)
            }
            _ => None,
        };
        if let Some(source) = whole {
            // One chunk that is the blob: copied inside the store, the
            // bytes never coming back through berth (as Distribution's
            // move).
            self.client.copy_object(&key, &source).await?;
        } else if size < MIN_PART {
            // One PutObject beats a multipart upload of one small part.
            let body = self.gather(&dir, &pieces).await?;
            self.client.put_object(&key, body).await?;
        } else {
            self.assemble(&key, &dir, &pieces).await?;
        }
        self.delete_names(&dir, &names).await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.upload_dir(id)?;
        let names = self.list_upload(&dir).await?;
        self.delete_names(&dir, &names).await
    }

    async fn stale_uploads(&self, older_than: Duration) -> Result<Vec<String>, StoreError> {
        let root = format!("{}uploads/", self.prefix);
        let cutoff = super::sigv4::unix_now().saturating_sub(older_than.as_secs());
        // An upload's age is that of its newest object.
        let mut newest: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (key, modified) in self.client.list_objects(&root).await? {
            let Some(id) = key.strip_prefix(&root).and_then(|k| k.split('/').next()) else {
                continue;
            };
            let t = modified.unwrap_or(u64::MAX);
            let e = newest.entry(id.to_owned()).or_insert(0);
            *e = (*e).max(t);
        }
        Ok(newest
            .into_iter()
            .filter(|(_, t)| *t < cutoff)
            .map(|(id, _)| id)
            .collect())
    }
}

/// Writes one session's bytes as chunk objects of `part_size`, one PUT in
/// flight while the next chunk fills: two chunks in memory at most.
struct S3UploadWriter {
    client: Arc<S3Client>,
    dir: String,
    gen: u32,
    /// Upload offset of the first byte of `buf`.
    pos: u64,
    buf: BytesMut,
    part_size: usize,
    inflight: Option<JoinHandle<Result<(), StoreError>>>,
    /// The first failure, answered to every later call.
    failed: Option<(bool, String)>,
}

impl S3UploadWriter {
    fn failure(&self) -> Option<StoreError> {
        self.failed.as_ref().map(|(unavailable, msg)| {
            if *unavailable {
                StoreError::Unavailable(msg.clone())
            } else {
                StoreError::Io(msg.clone())
            }
        })
    }

    fn fail(&mut self, e: StoreError) -> StoreError {
        let record = match &e {
            StoreError::Unavailable(m) => (true, m.clone()),
            other => (false, other.to_string()),
        };
        self.failed = Some(record);
        e
    }

    /// Waits for the PUT in flight.
    async fn settle(&mut self) -> Result<(), StoreError> {
        let Some(handle) = self.inflight.take() else {
            return Ok(());
        };
        let outcome = match handle.await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Io(format!("chunk upload task failed: {e}"))),
        };
        outcome.map_err(|e| self.fail(e))
    }

    /// Sends `chunk` as the next chunk object once the previous one is in.
    async fn flush(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.settle().await?;
        let end = self.pos + chunk.len() as u64;
        let key = format!(
            "{}{}",
            self.dir,
            layout::chunk_name(self.gen, self.pos, end)
        );
        self.pos = end;
        let client = self.client.clone();
        self.inflight = Some(tokio::spawn(
            async move { client.put_object(&key, chunk).await },
        ));
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for S3UploadWriter {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        while !chunk.is_empty() {
            if self.buf.is_empty() && chunk.len() >= self.part_size {
                let part = chunk.split_to(self.part_size);
                self.flush(part).await?;
                continue;
            }
            let take = (self.part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            if self.buf.len() == self.part_size {
                let part = self.buf.split().freeze();
                self.flush(part).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if !self.buf.is_empty() {
            let part = self.buf.split().freeze();
            self.flush(part).await?;
        }
        self.settle().await
    }
}

impl Drop for S3UploadWriter {
    fn drop(&mut self) {
        // Dropped without `finish`: the request died and its progress will
        // not be recorded. Stop the PUT; if it lands anyway, the next
        // session's marker masks it.
        if let Some(handle) = self.inflight.take() {
            handle.abort();
        }
    }
}
