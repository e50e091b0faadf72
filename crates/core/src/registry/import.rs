//! The operations an import of another registry's storage needs beyond a
//! push's (see [`crate::import`]): linking a blob whose bytes are in the
//! store already, and tagging a manifest that is in the repository without
//! sending it again. Each is one transaction, like a push's, so an import
//! that dies leaves nothing half-visible and a rerun finds what it did.

use super::lifecycle::Source;
use super::{contention, encode, Registry, TXN_RETRIES};
use crate::error::CoreError;
use crate::keys;
use crate::kv::Txn;
use crate::registry::records::{BlobRecord, TagRecord};
use berth_oci::{Digest, ErrorCode, RepoName};

impl Registry {
    /// Links into `repo` a blob whose `size` bytes are in the blob store
    /// already: where a Distribution registry left them (the store in its
    /// layout), or committed by an import that died before recording them.
    /// A blob without a record gets one in the same transaction as the
    /// link; a recorded one is linked as a mount is. `BLOB_UNKNOWN` when
    /// the store lacks the bytes, `SIZE_INVALID` when they are not `size`
    /// long, `DENIED` past the project's quota. The caller has verified
    /// the digest, if it wanted to: the store never does.
    pub async fn blob_link_in_place(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), CoreError> {
        if self
            .link_blob(repo, digest, size, Source::InPlace, Txn::new())
            .await?
        {
            Ok(())
        } else {
            // No checks of the caller's could fail: only the quota fence,
            // changed by other links every round.
            Err(contention())
        }
    }

    /// The size of `digest` when it is a live blob (recorded, and not
    /// being collected).
    pub async fn blob_recorded_size(&self, digest: &Digest) -> Result<Option<u64>, CoreError> {
        Ok(self
            .read::<BlobRecord>(&keys::blob(digest))
            .await?
            .filter(|(r, _)| r.deleting.is_none())
            .map(|(r, _)| r.size))
    }

    /// Whether the manifest `digest` is in `repo`.
    pub async fn manifest_exists(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, CoreError> {
        Ok(self.kv.get(&keys::manifest(repo, digest)).await?.is_some())
    }

    /// Creates the tag `tag` of `repo` pointing at the manifest `digest`,
    /// which is in `repo`, without the manifest being sent again (an
    /// import has put it by digest). `Ok(false)` when the tag exists: it is
    /// left as it is, whatever it points to. `MANIFEST_UNKNOWN` when the
    /// manifest is not in `repo`. One transaction with the checks a push
    /// makes: the manifest is still there, the tag still absent, and the
    /// repository record is rewritten (cached tag lists end, and a garbage
    /// collection looking at the repository leaves it for its next run).
    pub async fn tag_create(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &Digest,
    ) -> Result<bool, CoreError> {
        let manifest_key = keys::manifest(repo, digest);
        let tag_key = keys::tag(repo, tag);
        for _ in 0..TXN_RETRIES {
            let Some(manifest) = self.kv.get(&manifest_key).await? else {
                return Err(CoreError::with_detail(
                    ErrorCode::ManifestUnknown,
                    format!("manifest {digest} is not in {repo}"),
                ));
            };
            if self.kv.get(&tag_key).await?.is_some() {
                return Ok(false);
            }
            let record = TagRecord {
                digest: digest.clone(),
                updated: self.now(),
            };
            let txn = Txn::new()
                .if_unchanged(&manifest_key, Some(&manifest))
                .if_unchanged(&tag_key, None)
                .put(&tag_key, encode(&record));
            let (txn, exists) = self.bump_repo(repo, txn).await?;
            if !exists {
                return Err(CoreError::with_detail(
                    ErrorCode::ManifestUnknown,
                    format!("repository {repo} does not exist"),
                ));
            }
            if self.kv.commit(txn).await? {
                return Ok(true);
            }
        }
        Err(contention())
    }
}
