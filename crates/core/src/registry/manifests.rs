//! Manifests and tags: validated push (every referenced blob and child must
//! be in the repository, checked inside the same transaction that makes the
//! manifest visible), fetch by tag or digest, delete.

use super::lifecycle::Source;
use super::outbox::with_event;
use super::{contention, encode, Registry, TXN_RETRIES};
use crate::error::CoreError;
use crate::events::EventKind;
use crate::keys;
use crate::kv::Txn;
use crate::registry::records::{ManifestRecord, RepoRecord, TagRecord};
use berth_oci::manifest::{self, Descriptor, MAX_MANIFEST_BYTES};
use berth_oci::{Digest, ErrorCode, Reference, RepoName};
use bytes::Bytes;
use futures_util::TryStreamExt;

/// Manifests up to this size are kept inside their metadata record, so a
/// fetch is one `Kv` read; larger ones go to the blob store.
const INLINE_MANIFEST_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

/// Where a stored manifest came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client pushed it: everything it references is here.
    Push,
    /// A proxy cache fetched it from its upstream.
    Upstream,
}

#[derive(Clone, Debug)]
pub struct ManifestPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Registry {
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestContent, CoreError> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                match self.read::<TagRecord>(&keys::tag(repo, t.as_str())).await? {
                    Some((tag, _)) => tag.digest,
                    None => return Err(CoreError::new(ErrorCode::ManifestUnknown)),
                }
            }
        };
        let Some((record, _)) = self
            .read::<ManifestRecord>(&keys::manifest(repo, &digest))
            .await?
        else {
            return Err(CoreError::new(ErrorCode::ManifestUnknown));
        };
        let body = match record.body {
            Some(b) => Bytes::from(b),
            None => {
                let stream = self.blobs.read(&digest, 0, record.size).await?;
                let parts: Vec<Bytes> = stream
                    .try_collect()
                    .await
                    .map_err(|e| CoreError::internal(format!("reading manifest {digest}: {e}")))?;
                Bytes::from(parts.concat())
            }
        };
        Ok(ManifestContent {
            digest,
            media_type: record.media_type,
            body,
        })
    }

    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<ManifestPut, CoreError> {
        self.manifest_store(repo, reference, content_type, body, Origin::Push)
            .await
    }

    /// Keeps a manifest a proxy cache fetched from its upstream: checked
    /// and stored as a push is, except that the blobs and child manifests
    /// it references need not be here yet (they are fetched when they are
    /// asked for), and no event goes out (nothing was pushed).
    pub async fn manifest_cache(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<ManifestPut, CoreError> {
        self.manifest_store(repo, reference, content_type, body, Origin::Upstream)
            .await
    }

    async fn manifest_store(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        origin: Origin,
    ) -> Result<ManifestPut, CoreError> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(CoreError::new(ErrorCode::ManifestTooLarge));
        }
        let parsed = manifest::parse(content_type, &body)
            .map_err(|e| CoreError::with_detail(ErrorCode::ManifestInvalid, e.0))?;
        let digest = match reference {
            Reference::Digest(d) => {
                if !d.matches(&body) {
                    return Err(CoreError::with_detail(
                        ErrorCode::DigestInvalid,
                        format!("manifest body does not match {d}"),
                    ));
                }
                d.clone()
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let inline = body.len() <= INLINE_MANIFEST_BYTES;
        let text = std::str::from_utf8(&body).map_err(|_| {
            CoreError::with_detail(ErrorCode::ManifestInvalid, "manifest is not UTF-8")
        })?;
        let record = ManifestRecord {
            media_type: parsed.media_type.clone(),
            size: body.len() as u64,
            artifact_type: parsed.artifact_type.clone(),
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            annotations: parsed.annotations.clone(),
            blobs: parsed.required_blobs().map(|d| d.digest.clone()).collect(),
            children: parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
            created: self.now(),
            body: inline.then(|| text.to_owned()),
        };
        let referrer = parsed.subject.as_ref().map(|subject| {
            let descriptor = Descriptor {
                media_type: parsed.media_type.clone(),
                digest: digest.clone(),
                size: body.len() as u64,
                artifact_type: parsed.artifact_type.clone(),
                annotations: parsed.annotations.clone(),
                urls: Vec::new(),
            };
            (
                keys::referrer(repo, &subject.digest, &digest),
                encode(&descriptor),
            )
        });

        let immutable = match reference {
            Reference::Tag(tag) => self.tag_is_immutable(repo, tag.as_str()).await?,
            Reference::Digest(_) => false,
        };
        // What must be in the repository already: everything, for a push.
        let (required_blobs, required_children): (&[Digest], &[Digest]) = match origin {
            Origin::Push => (&record.blobs, &record.children),
            Origin::Upstream => (&[], &[]),
        };
        for _ in 0..TXN_RETRIES {
            let mut txn = Txn::new();
            // Every referenced blob and child manifest must be present now
            // and still be present when the transaction commits.
            for blob in required_blobs {
                txn = self
                    .require_present(txn, keys::repo_blob(repo, blob), || {
                        format!("blob {blob} is not in {repo}")
                    })
                    .await?;
            }
            for child in required_children {
                txn = self
                    .require_present(txn, keys::manifest(repo, child), || {
                        format!("manifest {child} is not in {repo}")
                    })
                    .await?;
            }
            // The repository record is rewritten by every manifest push, so
            // its version tells garbage collection whether new references
            // appeared in the repository while it was looking.
            let repo_key = keys::repo(repo);
            match self.read::<RepoRecord>(&repo_key).await? {
                None => {
                    txn = txn.if_unchanged(&repo_key, None).put(
                        &repo_key,
                        encode(&RepoRecord {
                            created: self.now(),
                        }),
                    );
                }
                Some((record, _)) => txn = txn.put(&repo_key, encode(&record)),
            }
            txn = txn.put(keys::manifest(repo, &digest), encode(&record));
            if let Reference::Tag(tag) = reference {
                let tag_key = keys::tag(repo, tag.as_str());
                let seen = self.read::<TagRecord>(&tag_key).await?;
                if immutable && seen.as_ref().is_some_and(|(t, _)| t.digest != digest) {
                    return Err(CoreError::with_detail(
                        ErrorCode::Denied,
                        format!("tag {repo}:{tag} is immutable"),
                    ));
                }
                let seen = seen.map(|(_, v)| v);
                txn = txn.if_unchanged(&tag_key, seen.as_ref()).put(
                    &tag_key,
                    encode(&TagRecord {
                        digest: digest.clone(),
                        updated: self.now(),
                    }),
                );
            }
            if let Some((key, value)) = &referrer {
                txn = txn.put(key, value.clone());
            }
            let mut event = self.event(EventKind::ManifestPushed, repo);
            event.digest = Some(digest.clone());
            event.tag = match reference {
                Reference::Tag(tag) => Some(tag.as_str().to_owned()),
                Reference::Digest(_) => None,
            };
            event.media_type = Some(record.media_type.clone());
            event.subject = record.subject.clone();
            event.size = Some(record.size);
            let txn = match origin {
                Origin::Push => with_event(txn, &event),
                Origin::Upstream => txn,
            };
            let committed = if inline {
                self.kv.commit(txn).await?
            } else {
                // Large bodies live in the blob store, as a blob with a
                // record like any other.
                self.store_blob(&digest, record.size, Source::Bytes(&body), &txn)
                    .await?
            };
            if committed {
                return Ok(ManifestPut {
                    digest,
                    subject: record.subject.clone(),
                });
            }
        }
        Err(contention())
    }

    /// Deleting by digest removes the manifest and every tag pointing to
    /// it; deleting by tag removes only the tag.
    pub async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), CoreError> {
        match reference {
            Reference::Tag(tag) => {
                self.check_tag_change(repo, tag.as_str(), None).await?;
                let key = keys::tag(repo, tag.as_str());
                for _ in 0..TXN_RETRIES {
                    let Some(seen) = self.kv.get(&key).await? else {
                        return Err(CoreError::new(ErrorCode::ManifestUnknown));
                    };
                    let mut event = self.event(EventKind::TagDeleted, repo);
                    event.tag = Some(tag.as_str().to_owned());
                    event.digest = serde_json::from_slice::<TagRecord>(&seen.value)
                        .ok()
                        .map(|t| t.digest);
                    let txn = Txn::new().if_unchanged(&key, Some(&seen)).delete(&key);
                    if self
                        .commit_tag_change(repo, with_event(txn, &event))
                        .await?
                    {
                        return Ok(());
                    }
                }
                Err(contention())
            }
            Reference::Digest(digest) => {
                self.check_no_immutable_tags(repo, Some(digest)).await?;
                let key = keys::manifest(repo, digest);
                for _ in 0..TXN_RETRIES {
                    let Some((record, seen)) = self.read::<ManifestRecord>(&key).await? else {
                        return Err(CoreError::new(ErrorCode::ManifestUnknown));
                    };
                    let mut txn = Txn::new()
                        .if_unchanged(&key, Some(&seen))
                        .delete(&key)
                        .delete(keys::pulled(repo, digest));
                    let mut event = self.event(EventKind::ManifestDeleted, repo);
                    event.digest = Some(digest.clone());
                    event.media_type = Some(record.media_type.clone());
                    event.subject = record.subject.clone();
                    let tag_prefix = keys::tag_prefix(repo);
                    for (tag_key, tag) in self.tags_pointing_to(repo, digest).await? {
                        if let Some(name) = tag_key.strip_prefix(&tag_prefix) {
                            event.tags.push(name.to_owned());
                        }
                        txn = txn.if_unchanged(&tag_key, Some(&tag)).delete(tag_key);
                    }
                    if let Some(subject) = &record.subject {
                        txn = txn.delete(keys::referrer(repo, subject, digest));
                    }
                    if self
                        .commit_tag_change(repo, with_event(txn, &event))
                        .await?
                    {
                        return Ok(());
                    }
                }
                Err(contention())
            }
        }
    }

    /// `txn`, also requiring `key` to still be as it is now; fails with
    /// `MANIFEST_BLOB_UNKNOWN` (saying `missing()`) when `key` is absent.
    async fn require_present(
        &self,
        txn: Txn,
        key: String,
        missing: impl FnOnce() -> String,
    ) -> Result<Txn, CoreError> {
        let seen = self.kv.get(&key).await?;
        if seen.is_none() {
            return Err(CoreError::with_detail(
                ErrorCode::ManifestBlobUnknown,
                missing(),
            ));
        }
        Ok(txn.if_unchanged(key, seen.as_ref()))
    }

    /// Commits `txn`, which deletes tags of `repo`, with the rewrite of the
    /// repository record that ends cached tag lists; MANIFEST_UNKNOWN when
    /// the repository is gone. `Ok(false)` when a check failed.
    async fn commit_tag_change(&self, repo: &RepoName, txn: Txn) -> Result<bool, CoreError> {
        let (txn, exists) = self.bump_repo(repo, txn).await?;
        if !exists {
            return Err(CoreError::new(ErrorCode::ManifestUnknown));
        }
        Ok(self.kv.commit(txn).await?)
    }

    async fn tags_pointing_to(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<(String, crate::kv::Versioned)>, CoreError> {
        let prefix = keys::tag_prefix(repo);
        let mut found = Vec::new();
        self.for_each_under(&prefix, |key, v| {
            let tag: TagRecord = serde_json::from_slice(&v.value)?;
            if tag.digest == *digest {
                found.push((key, v));
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }
}
