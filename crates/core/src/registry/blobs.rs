//! Reading, deleting and mounting blobs of a repository. A blob is visible
//! in a repository only through its link record (`rblob:`).

use super::lifecycle::Source;
use super::Registry;
use crate::blob::ByteStream;
use crate::error::CoreError;
use crate::keys;
use crate::kv::Txn;
use crate::registry::records::RepoBlobRecord;
use berth_oci::{Digest, ErrorCode, RepoName};

impl Registry {
    /// Size of a blob linked into `repo`.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, CoreError> {
        match self
            .read::<RepoBlobRecord>(&keys::repo_blob(repo, digest))
            .await?
        {
            Some((link, _)) => Ok(link.size),
            None => Err(CoreError::new(ErrorCode::BlobUnknown)),
        }
    }

    /// Streams `len` bytes from `offset` of a blob; the caller has checked
    /// the range against [`Registry::blob_size`].
    pub async fn blob_read(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, CoreError> {
        Ok(self.blobs.read(digest, offset, len).await?)
    }

    /// Unlinks a blob from `repo`. The bytes stay until garbage collection
    /// finds no repository using them.
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<(), CoreError> {
        let key = keys::repo_blob(repo, digest);
        let Some(seen) = self.kv.get(&key).await? else {
            return Err(CoreError::new(ErrorCode::BlobUnknown));
        };
        self.kv
            .commit(Txn::new().if_unchanged(&key, Some(&seen)).delete(&key))
            .await?;
        Ok(())
    }

    /// Cross-repository mount: links a blob of `from` into `repo` without
    /// moving bytes. `false` when `from` does not have it.
    pub async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, CoreError> {
        let from_key = keys::repo_blob(from, digest);
        let Some((link, seen)) = self.read::<RepoBlobRecord>(&from_key).await? else {
            return Ok(false);
        };
        let then = Txn::new().if_unchanged(&from_key, Some(&seen));
        self.link_blob(repo, digest, link.size, Source::Existing, then)
            .await
    }
}

impl Registry {
    /// Whether both backends answer: one metadata read and one storage
    /// lookup. Used by the readiness probe.
    pub async fn check_ready(&self) -> Result<(), CoreError> {
        self.kv.get(crate::keys::REPO_PREFIX).await?;
        self.blobs
            .stat(&Digest::sha256_of(b"berth readiness probe"))
            .await?;
        Ok(())
    }
}
