//! How bytes become a blob, and how a blob stops being one, safely while
//! garbage collection runs on any node.
//!
//! A blob's record `blob:<digest>` is live, or deleting (collection has
//! claimed it and is removing its bytes). The rules that make online GC
//! safe:
//!
//! - Every new reference to a blob (a repository link, a large manifest
//!   body) is written in a transaction that also rewrites the live record,
//!   so its version changes, unless the record was touched less than the
//!   touch interval ago (below the grace period: such a blob is too young
//!   to collect). Collection claims a blob with a transaction that checks
//!   the version it read *before* it looked for references; a reference
//!   made after that look therefore makes the claim fail, or finds the
//!   blob too young to claim.
//! - Bytes are written to a digest's place only while it has no record;
//!   a deleting record makes writers wait until collection has removed the
//!   bytes and then the record. So a collector never deletes bytes that a
//!   writer is counting on.
//! - A deleting record left by a collector that died is finished (bytes,
//!   then record) by the next writer that finds it stale, or by the next
//!   collection.

use super::{contention, encode, Registry, TXN_RETRIES};
use crate::blob::StoreError;
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Txn, Versioned};
use crate::registry::records::{BlobRecord, RepoBlobRecord};
use berth_oci::{Digest, ErrorCode, RepoName};
use bytes::Bytes;
use std::time::Duration;

/// A deleting record older than this belongs to a collector that died: its
/// lease-backed lock expired long before.
pub(super) const STALE_DELETING_SECS: u64 = 120;

/// How long a writer waits for a collection to finish deleting a blob it
/// wants to write again before answering "busy".
const WAIT_FOR_DELETE: Duration = Duration::from_secs(30);

/// Rounds of a link that lost its quota fence to another link; each one
/// lets a link through, so this many means a storm of them.
const QUOTA_RETRIES: usize = 32;

/// Where the bytes of a blob come from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// An upload whose first `size` bytes hash to the digest.
    Upload(&'a str),
    /// Small content in memory (a manifest body).
    Bytes(&'a Bytes),
    /// No bytes: only a live blob will do (a cross-repository mount).
    Existing,
    /// The bytes are in the store already, of the given size, though no
    /// record names them (a Distribution registry's blobs, adopted where
    /// they lie by an import). Nothing is written; a failed link leaves
    /// them unrecorded, as it found them.
    InPlace,
}

enum State {
    Live(BlobRecord, Versioned),
    Deleting(BlobRecord, Versioned),
    Absent,
}

impl Registry {
    async fn blob_state(&self, digest: &Digest) -> Result<State, CoreError> {
        Ok(match self.read::<BlobRecord>(&keys::blob(digest)).await? {
            None => State::Absent,
            Some((r, v)) if r.deleting.is_some() => State::Deleting(r, v),
            Some((r, v)) => State::Live(r, v),
        })
    }

    /// Makes `digest` a live blob with the bytes of `source` and commits
    /// `then` in the same transaction as the blob's (touched or new) record.
    /// The caller's `then` may carry checks; `Ok(false)` when those failed.
    pub(super) async fn store_blob(
        &self,
        digest: &Digest,
        size: u64,
        source: Source<'_>,
        then: &Txn,
    ) -> Result<bool, CoreError> {
        self.store_blob_placing(digest, size, source, then, false, &mut false)
            .await
    }

    /// [`Registry::store_blob`], telling through `bytes_in_place` whether
    /// it put the bytes where the blob lives, even if it then failed. With
    /// `precheck`, `then`'s checks are tried before the bytes move (one
    /// more metadata round trip, worth it where they often fail).
    async fn store_blob_placing(
        &self,
        digest: &Digest,
        size: u64,
        source: Source<'_>,
        then: &Txn,
        precheck: bool,
        bytes_in_place: &mut bool,
    ) -> Result<bool, CoreError> {
        let key = keys::blob(digest);
        *bytes_in_place = false;
        let waited = tokio::time::Instant::now();
        let mut attempts = 0;
        while attempts < TXN_RETRIES {
            match self.blob_state(digest).await? {
                State::Deleting(..) | State::Absent if matches!(source, Source::Existing) => {
                    return Ok(false);
                }
                State::Deleting(record, seen) => {
                    if self.now().saturating_sub(record.deleting.unwrap_or(0)) > STALE_DELETING_SECS
                    {
                        self.finish_delete(digest, &seen).await?;
                    } else if waited.elapsed() > WAIT_FOR_DELETE {
                        return Err(CoreError::unavailable(format!(
                            "blob {digest} is being garbage-collected; try again"
                        )));
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // Whatever is in place now is being or was deleted.
                    *bytes_in_place = false;
                    continue;
                }
                State::Live(mut record, seen) => {
                    // Recently touched: too young for any collection to
                    // claim, so the record need not change; the check still
                    // fails this link if a claim lands first.
                    let mut txn = then.clone().if_unchanged(&key, Some(&seen));
                    let t = self.now();
                    if t.saturating_sub(record.touched) >= self.touch_secs {
                        record.touched = t;
                        txn = txn.put(&key, encode(&record));
                    }
                    if self.kv.commit(txn).await? {
                        if let Source::Upload(id) = source {
                            if !*bytes_in_place {
                                if let Err(e) = self.blobs.delete_upload(id).await {
                                    tracing::warn!(upload = id, error = %e, "removing a duplicate upload's bytes");
                                }
                            }
                        }
                        return Ok(true);
                    }
                }
                State::Absent => {
                    if !*bytes_in_place {
                        // Checked before the bytes move, so that a link the
                        // caller's checks already refuse leaves nothing.
                        if precheck && !self.checks_hold(then).await? {
                            return Ok(false);
                        }
                        self.put_bytes(digest, size, source).await?;
                        // Bytes found in place were not put there by this
                        // link: a refused link must not claim them.
                        *bytes_in_place = !matches!(source, Source::InPlace);
                    }
                    let record = BlobRecord::new(size, self.now());
                    let txn = then
                        .clone()
                        .if_unchanged(&key, None)
                        .put(&key, encode(&record));
                    if self.kv.commit(txn).await? {
                        return Ok(true);
                    }
                }
            }
            attempts += 1;
            if !self.checks_hold(then).await? {
                return Ok(false);
            }
        }
        Err(contention())
    }

    /// Whether the caller's own checks still hold.
    async fn checks_hold(&self, then: &Txn) -> Result<bool, CoreError> {
        if then.checks.is_empty() {
            return Ok(true);
        }
        Ok(self
            .kv
            .commit(Txn {
                checks: then.checks.clone(),
                ops: Vec::new(),
            })
            .await?)
    }

    async fn put_bytes(
        &self,
        digest: &Digest,
        size: u64,
        source: Source<'_>,
    ) -> Result<(), CoreError> {
        match source {
            Source::Bytes(body) => Ok(self.blobs.put(digest, body.clone()).await?),
            Source::Existing => Err(CoreError::internal("no bytes to store")),
            Source::InPlace => match self.blobs.stat(digest).await? {
                Some(stored) if stored == size => Ok(()),
                Some(stored) => Err(CoreError::with_detail(
                    ErrorCode::SizeInvalid,
                    format!("blob {digest} is {stored} bytes in the store, not {size}"),
                )),
                None => Err(CoreError::with_detail(
                    ErrorCode::BlobUnknown,
                    format!("blob {digest} is not in the store"),
                )),
            },
            Source::Upload(id) => match self.blobs.commit_upload(id, digest, size).await {
                Ok(()) => Ok(()),
                // A retry after a commit whose metadata write was lost: the
                // bytes are in place already.
                Err(StoreError::NotFound) if self.blobs.stat(digest).await? == Some(size) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Deletes the bytes of a blob claimed for deletion (`seen` is its
    /// deleting record), then the record.
    pub(super) async fn finish_delete(
        &self,
        digest: &Digest,
        seen: &Versioned,
    ) -> Result<(), CoreError> {
        self.blobs.delete(digest).await?;
        let key = keys::blob(digest);
        self.kv
            .commit(Txn::new().if_unchanged(&key, Some(seen)).delete(&key))
            .await?;
        Ok(())
    }

    /// Makes a blob visible in `repo`: stores it if needed and writes the
    /// link, together with `extra`, in one transaction.
    pub(super) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        source: Source<'_>,
        extra: Txn,
    ) -> Result<bool, CoreError> {
        let upload = match source {
            Source::Upload(id) => Some(id),
            _ => None,
        };
        let project = super::policy::project_of(repo.as_str());
        let limit = self.project_policy(project).await?.quota_bytes;
        for _ in 0..QUOTA_RETRIES {
            // With a quota, every link into the project rewrites its fence
            // key and checks it in its transaction, which makes
            // check-then-link one step: concurrent links that each fit alone
            // cannot together pass the quota. The fence is read before the
            // usage it guards, so a link committed after this read fails
            // this link's transaction.
            let fence = match limit {
                Some(limit) => {
                    let key = keys::quota_fence(project);
                    let seen = self.kv.get(&key).await?;
                    self.check_quota_of(project, limit, Some(digest), size, upload)
                        .await?;
                    Some((key, seen))
                }
                None => None,
            };
            let link = RepoBlobRecord {
                size,
                linked: self.now(),
            };
            let mut then = extra
                .clone()
                .put(keys::repo_blob(repo, digest), encode(&link));
            if let Some((key, seen)) = &fence {
                then = then
                    .if_unchanged(key, seen.as_ref())
                    .put(key, encode(&self.now_ms()));
            }
            let mut placed = false;
            let stored = self
                .store_blob_placing(digest, size, source, &then, fence.is_some(), &mut placed)
                .await?;
            if stored {
                return Ok(true);
            }
            if placed {
                // The bytes moved into place just before the fence changed:
                // a record without links lets GC reclaim them if this link
                // is refused now.
                self.adopt_unlinked(digest, size).await?;
            }
            match &fence {
                // Another link in the project came first: count again.
                Some((key, seen)) if self.kv.get(key).await?.as_ref() != seen.as_ref() => {}
                _ => return Ok(false),
            }
        }
        Err(contention())
    }

    /// Records a blob whose bytes are in place but that no link names yet,
    /// unless it has a record already.
    async fn adopt_unlinked(&self, digest: &Digest, size: u64) -> Result<(), CoreError> {
        let record = BlobRecord::new(size, self.now());
        let key = keys::blob(digest);
        self.kv
            .commit(
                Txn::new()
                    .if_unchanged(&key, None)
                    .put(&key, encode(&record)),
            )
            .await?;
        Ok(())
    }
}
