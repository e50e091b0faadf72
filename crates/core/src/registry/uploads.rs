//! Blob uploads: sessions in `Kv` with the running SHA-256, bytes in the
//! `BlobStore`. Any node can continue any upload; an upload survives a
//! restart; the final PUT never re-reads what it already hashed.

use super::{contention, encode, now, Registry, TXN_RETRIES};
use crate::blob::{ByteStream, StoreError};
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Txn, Versioned};
use crate::registry::records::{BlobRecord, RepoBlobRecord, UploadSession};
use berth_oci::{Digest, ErrorCode, RepoName, Sha256State};
use futures_util::StreamExt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

impl Registry {
    /// `POST /blobs/uploads/`: opens a session.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus, CoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let t = now();
        let session = UploadSession {
            repo: repo.to_string(),
            offset: 0,
            hash: Sha256State::new().to_hex(),
            created: t,
            updated: t,
        };
        // Create the (empty) bytes first so that a session never names
        // storage that does not exist.
        self.blobs.upload_writer(&id, 0).await?.finish().await?;
        let key = keys::upload(&id);
        if !self
            .kv
            .commit(Txn::new().expect(&key, None).put(&key, encode(&session)))
            .await?
        {
            return Err(CoreError::internal("upload id collision"));
        }
        Ok(UploadStatus { id, offset: 0 })
    }

    pub async fn upload_status(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<UploadStatus, CoreError> {
        let (session, _) = self.session(repo, id).await?;
        Ok(UploadStatus {
            id: id.to_owned(),
            offset: session.offset,
        })
    }

    /// `PATCH`: appends `body`. With `start` (from `Content-Range`), the chunk
    /// must begin exactly where the upload ends, else 416. With `len` (the
    /// range's length or `Content-Length`), the body must be that long.
    pub async fn upload_append(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, CoreError> {
        let (mut session, version) = self.session(repo, id).await?;
        if let Some(start) = start {
            if start != session.offset {
                return Err(CoreError::with_detail(
                    ErrorCode::BlobUploadRangeInvalid,
                    format!(
                        "chunk starts at {start}, upload has {} bytes",
                        session.offset
                    ),
                ));
            }
        }
        let mut hash = session_hash(&session)?;
        let written = self
            .write_chunk(id, session.offset, &mut hash, body)
            .await?;
        check_chunk_len(len, written)?;
        session.offset += written;
        session.hash = hash.to_hex();
        session.updated = now();
        let key = keys::upload(id);
        let txn = Txn::new()
            .expect(&key, Some(&version))
            .put(&key, encode(&session));
        if !self.kv.commit(txn).await? {
            return Err(CoreError::with_detail(
                ErrorCode::BlobUploadInvalid,
                "the upload was changed by a concurrent request",
            ));
        }
        Ok(UploadStatus {
            id: id.to_owned(),
            offset: session.offset,
        })
    }

    /// `PUT ?digest=`: appends an optional last chunk (checked like a
    /// `PATCH`: `start` must be where the upload ends, and the chunk must be
    /// `len` bytes when given), verifies the digest, and commits the blob. A
    /// digest mismatch cancels the upload; a misplaced or mis-sized last
    /// chunk leaves it as it was.
    pub async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        start: Option<u64>,
        len: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<(), CoreError> {
        let (session, version) = self.session(repo, id).await?;
        if let Some(start) = start {
            if start != session.offset {
                return Err(CoreError::with_detail(
                    ErrorCode::BlobUploadRangeInvalid,
                    format!(
                        "chunk starts at {start}, upload has {} bytes",
                        session.offset
                    ),
                ));
            }
        }
        let mut hash = session_hash(&session)?;
        let written = match body {
            Some(body) => {
                self.write_chunk(id, session.offset, &mut hash, body)
                    .await?
            }
            None => 0,
        };
        check_chunk_len(len, written)?;
        let size = session.offset + written;
        let key = keys::upload(id);
        if !digest.is_sha256() || hash.finalize() != *digest {
            self.discard_upload(id, &key).await;
            return Err(CoreError::with_detail(
                ErrorCode::DigestInvalid,
                format!("content does not match {digest}"),
            ));
        }
        match self.blobs.commit_upload(id, digest, size).await {
            Ok(()) => {}
            // A retry after a commit whose metadata write was lost.
            Err(StoreError::NotFound) if self.blobs.stat(digest).await? == Some(size) => {}
            Err(e) => return Err(e.into()),
        }
        self.link_blob(
            repo,
            digest,
            size,
            Txn::new().expect(&key, Some(&version)).delete(&key),
        )
        .await
    }

    /// `DELETE` on an upload.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<(), CoreError> {
        self.session(repo, id).await?;
        self.discard_upload(id, &keys::upload(id)).await;
        Ok(())
    }

    /// `POST ?digest=`: the whole blob in one request. No session is
    /// recorded: if the request dies, the bytes stay invisible and are
    /// collected as an abandoned upload.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<(), CoreError> {
        if !digest.is_sha256() {
            return Err(CoreError::with_detail(
                ErrorCode::DigestInvalid,
                "only sha256 is supported for blobs",
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut hash = Sha256State::new();
        let result = self.write_chunk(&id, 0, &mut hash, body).await;
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = self.blobs.delete_upload(&id).await;
                return Err(e);
            }
        };
        let mismatch = if len.is_some_and(|l| l != size) {
            Some(CoreError::with_detail(
                ErrorCode::SizeInvalid,
                format!("Content-Length does not match the {size} bytes received"),
            ))
        } else if hash.finalize() != *digest {
            Some(CoreError::with_detail(
                ErrorCode::DigestInvalid,
                format!("content does not match {digest}"),
            ))
        } else {
            None
        };
        if let Some(err) = mismatch {
            let _ = self.blobs.delete_upload(&id).await;
            return Err(err);
        }
        self.blobs.commit_upload(&id, digest, size).await?;
        self.link_blob(repo, digest, size, Txn::new()).await
    }

    /// Makes a committed blob visible in `repo`, together with `extra`
    /// operations, in one transaction.
    pub(super) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        extra: Txn,
    ) -> Result<(), CoreError> {
        let t = now();
        let link = RepoBlobRecord { size, linked: t };
        let blob_key = keys::blob(digest);
        for _ in 0..TXN_RETRIES {
            let existing = self.kv.get(&blob_key).await?;
            let mut txn = extra.clone();
            if existing.is_none() {
                txn = txn
                    .expect(&blob_key, None)
                    .put(&blob_key, encode(&BlobRecord { size, created: t }));
            }
            txn = txn.put(keys::repo_blob(repo, digest), encode(&link));
            if self.kv.commit(txn).await? {
                return Ok(());
            }
            if !extra.checks.is_empty() {
                // The session itself changed: a concurrent PUT won.
                if let Some(crate::kv::Check::Version(k, v)) = extra.checks.first() {
                    if self.kv.get(k).await?.map(|x| x.version) != Some(*v) {
                        return Err(CoreError::new(ErrorCode::BlobUploadUnknown));
                    }
                }
            }
        }
        Err(contention())
    }

    async fn session(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<(UploadSession, Versioned), CoreError> {
        match self.read::<UploadSession>(&keys::upload(id)).await? {
            Some((s, v)) if s.repo == repo.as_str() => Ok((s, v)),
            _ => Err(CoreError::new(ErrorCode::BlobUploadUnknown)),
        }
    }

    /// Streams `body` into upload `id` from `offset`, hashing as it goes.
    /// Returns the bytes written, durable when this returns.
    async fn write_chunk(
        &self,
        id: &str,
        offset: u64,
        hash: &mut Sha256State,
        mut body: ByteStream,
    ) -> Result<u64, CoreError> {
        let mut writer = self
            .blobs
            .upload_writer(id, offset)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    CoreError::with_detail(ErrorCode::BlobUploadUnknown, "upload data is missing")
                }
                e => e.into(),
            })?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                CoreError::with_detail(
                    ErrorCode::BlobUploadInvalid,
                    format!("reading the request body failed: {e}"),
                )
            })?;
            hash.update(&chunk);
            written += chunk.len() as u64;
            writer.write(chunk).await?;
        }
        writer.finish().await?;
        Ok(written)
    }

    async fn discard_upload(&self, id: &str, key: &str) {
        if let Err(e) = self.kv.delete(key).await {
            tracing::warn!(upload = id, error = %e, "could not delete upload session");
        }
        if let Err(e) = self.blobs.delete_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not delete upload data");
        }
    }
}

/// A chunk announced as `len` bytes must be exactly that long. The bytes
/// already written past the session's offset are cut by the next write.
fn check_chunk_len(len: Option<u64>, written: u64) -> Result<(), CoreError> {
    match len {
        Some(len) if len != written => Err(CoreError::with_detail(
            ErrorCode::SizeInvalid,
            format!("expected {len} bytes, received {written}"),
        )),
        _ => Ok(()),
    }
}

fn session_hash(session: &UploadSession) -> Result<Sha256State, CoreError> {
    Sha256State::from_hex(&session.hash)
        .ok_or_else(|| CoreError::internal("corrupt upload hash state"))
}
