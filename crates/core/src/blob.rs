//! The `BlobStore` port: content-addressed bytes, streamed, plus the
//! temporary space of uploads in progress. Backends (filesystem, S3, and
//! memory for tests) must pass the shared suite in [`crate::blob_suite`].
//!
//! Contract: a blob becomes readable under its digest only through
//! [`BlobStore::commit_upload`] or [`BlobStore::put`], and either is atomic:
//! a reader sees the whole blob or nothing. The store never checks digests;
//! the domain has verified them before it commits.

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::Stream;
use std::io;
use std::pin::Pin;

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The backend cannot be reached right now; the caller may retry.
    #[error("blob storage unavailable: {0}")]
    Unavailable(String),
    #[error("blob storage error: {0}")]
    Io(String),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound {
            StoreError::NotFound
        } else {
            StoreError::Io(e.to_string())
        }
    }
}

/// Longer upload ids are not ones the registry makes (it makes UUIDs); the
/// cap keeps file and object names within every backend's limits.
const MAX_UPLOAD_ID_LEN: usize = 128;

/// Checks that `id` can name an upload inside a store: 1 to 128 ASCII
/// letters, digits and `-`. Anything else could reach outside the store's
/// uploads (`../`, `/`) or past a name length limit.
pub fn check_upload_id(id: &str) -> Result<(), StoreError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Io(format!("invalid upload id {id:?}")))
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of the committed blob, or `None` when it does not exist.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// Streams `len` bytes of the blob starting at `offset`.
    /// `StoreError::NotFound` when the blob does not exist.
    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError>;

    /// Removes a committed blob; removing a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Removes many committed blobs; backends with batch deletes (S3's
    /// DeleteObjects) override this.
    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StoreError> {
        for digest in digests {
            self.delete(digest).await?;
        }
        Ok(())
    }

    /// Stores small content (a manifest) under its digest, atomically.
    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError>;

    /// Opens upload `id` to append at `offset`, creating it when `offset` is
    /// 0. Whatever is stored past `offset` (left by a request that died
    /// midway) is discarded: the caller's recorded offset is the truth.
    /// `StoreError::NotFound` when `offset > 0` and the upload holds fewer
    /// than `offset` bytes.
    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StoreError>;

    /// Turns the first `size` bytes of upload `id` into blob `digest`,
    /// atomically, and removes the upload. If the blob exists already the
    /// upload is simply removed.
    async fn commit_upload(&self, id: &str, digest: &Digest, size: u64) -> Result<(), StoreError>;

    /// Removes an upload's bytes; removing a missing upload is not an error.
    async fn delete_upload(&self, id: &str) -> Result<(), StoreError>;

    /// Ids of the uploads whose bytes were last written more than
    /// `older_than` ago: garbage collection removes those that no session
    /// names (a monolithic upload whose request died). `Duration::ZERO`
    /// lists every upload the store holds, but a store that dates objects
    /// in whole seconds (S3) may miss those written in the last second.
    /// A committed or removed upload is never listed.
    async fn stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<String>, StoreError>;
}

#[async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;

    /// Makes everything written durable. Progress may be recorded only after
    /// this returns.
    async fn finish(self: Box<Self>) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::check_upload_id;

    #[test]
    fn upload_ids_are_the_registrys_own_shape() {
        assert!(check_upload_id("0b9d7c1e-59a4-4c36-9d1f-5e3c1d2a7b80").is_ok());
        assert!(check_upload_id(&"a".repeat(128)).is_ok());
        for bad in ["", "../x", "a/b", "a.b", "ü", &"a".repeat(129)] {
            assert!(check_upload_id(bad).is_err(), "{bad:?}");
        }
    }
}
