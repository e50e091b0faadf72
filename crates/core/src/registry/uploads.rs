//! Blob uploads: sessions in `Kv` with the running SHA-256, bytes in the
//! `BlobStore`. Any node can continue any upload; an upload survives a
//! restart; the final PUT never re-reads what it already hashed.
//!
//! Because the PUT trusts the running hash, the bytes stored past a
//! session's offset must be exactly the ones its writer hashes. So a request
//! that writes (a `PATCH`, or a `PUT` that closes the upload) first claims
//! the session with a compare-and-swap in `Kv`, writes only while its claim
//! holds, and gives the claim up in the transaction that records its
//! progress. A second writer arriving meanwhile is refused before it touches
//! a byte. A claim expires, so a writer that crashed blocks the upload for
//! [`CLAIM_MS`] at most; a live writer renews its claim as its body arrives.

use super::lifecycle::Source;
use super::{encode, now, now_ms, Registry};
use crate::blob::{ByteStream, StoreError};
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Txn, Versioned};
use crate::registry::records::{UploadClaim, UploadSession};
use berth_oci::{Digest, ErrorCode, RepoName, Sha256State};
use futures_util::StreamExt;

/// How long a claim to write an upload lasts unless renewed.
const CLAIM_MS: u64 = 15_000;

/// A writer renews its claim once this much of it has passed, which leaves
/// it `CLAIM_MS - RENEW_AFTER_MS` for the bytes it has queued to reach
/// storage before anyone else may write.
const RENEW_AFTER_MS: u64 = 5_000;

/// An upload claimed by this request: the session as this request last
/// wrote it, and that write's version.
struct Claim {
    id: String,
    key: String,
    session: UploadSession,
    version: Versioned,
    /// Set when a renewal found the claim taken over: nothing more may be
    /// written, and the claim is no longer this request's to give up.
    lost: bool,
}

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
            writer: None,
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
        if let Some(len) = len {
            // Refused before a byte is read when the size is announced.
            let offset = start.unwrap_or(0);
            self.check_quota(repo, None, offset.saturating_add(len))
                .await?;
        }
        let mut claim = self.claim(repo, id, start).await?;
        let mut hash = session_hash(&claim.session)?;
        let written = self.write_claimed(&mut claim, &mut hash, body).await;
        let written = match written.and_then(|w| check_chunk_len(len, w).map(|()| w)) {
            Ok(w) => w,
            Err(e) => {
                self.release(claim).await;
                return Err(e);
            }
        };
        let mut session = claim.session.clone();
        session.offset += written;
        session.hash = hash.to_hex();
        session.updated = now();
        session.writer = None;
        let txn = Txn::new()
            .expect(&claim.key, Some(&claim.version))
            .put(&claim.key, encode(&session));
        if !self.kv.commit(txn).await? {
            return Err(self.claim_lost(&claim.key).await);
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
        // Claimed even without a body: committing moves the bytes, which
        // must not happen under a writer.
        let mut claim = self.claim(repo, id, start).await?;
        let mut hash = session_hash(&claim.session)?;
        let written = match body {
            Some(body) => self.write_claimed(&mut claim, &mut hash, body).await,
            None => Ok(0),
        };
        let written = match written.and_then(|w| check_chunk_len(len, w).map(|()| w)) {
            Ok(w) => w,
            Err(e) => {
                self.release(claim).await;
                return Err(e);
            }
        };
        let size = claim.session.offset + written;
        if !digest.is_sha256() || hash.finalize() != *digest {
            self.discard_upload(id, &claim.key).await;
            return Err(CoreError::with_detail(
                ErrorCode::DigestInvalid,
                format!("content does not match {digest}"),
            ));
        }
        let done = Txn::new()
            .expect(&claim.key, Some(&claim.version))
            .delete(&claim.key);
        match self
            .link_blob(repo, digest, size, Source::Upload(id), done)
            .await
        {
            Ok(true) => Ok(()),
            // The session itself changed: a concurrent PUT won.
            Ok(false) => Err(CoreError::new(ErrorCode::BlobUploadUnknown)),
            Err(e) => {
                self.release(claim).await;
                Err(e)
            }
        }
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
        if let Some(len) = len {
            self.check_quota(repo, Some(digest), len).await?;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut hash = Sha256State::new();
        let result = self.write_chunk(&id, 0, &mut hash, body, None).await;
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
        self.link_blob(repo, digest, size, Source::Upload(&id), Txn::new())
            .await?;
        Ok(())
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

    /// Claims upload `id` for writing, checking that a chunk at `start`
    /// (when given) begins where the upload ends. Refused with 416 while
    /// another request holds an unexpired claim.
    async fn claim(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
    ) -> Result<Claim, CoreError> {
        let (mut session, seen) = self.session(repo, id).await?;
        let now = now_ms();
        if session.writer.as_ref().is_some_and(|w| w.expires_ms > now) {
            return Err(busy());
        }
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
        session.writer = Some(UploadClaim {
            token: uuid::Uuid::new_v4().to_string(),
            expires_ms: now + CLAIM_MS,
        });
        let key = keys::upload(id);
        let version = self
            .put_session(&key, &seen, &session)
            .await?
            .ok_or_else(busy)?;
        Ok(Claim {
            id: id.to_owned(),
            key,
            session,
            version,
            lost: false,
        })
    }

    /// Writes `session` at `key` if the key is still at `seen`; returns the
    /// version written, or `None` when the key changed first.
    async fn put_session(
        &self,
        key: &str,
        seen: &Versioned,
        session: &UploadSession,
    ) -> Result<Option<Versioned>, CoreError> {
        let value = encode(session);
        let txn = Txn::new().expect(key, Some(seen)).put(key, value.clone());
        if !self.kv.commit(txn).await? {
            return Ok(None);
        }
        // The version of this very write, for the next compare-and-swap; a
        // different value means the session changed again (a cancel).
        Ok(self.kv.get(key).await?.filter(|v| v.value == value))
    }

    /// Extends the claim once [`RENEW_AFTER_MS`] of it have passed. Fails,
    /// marking the claim lost, if another request took the session over.
    async fn renew(&self, claim: &mut Claim) -> Result<(), CoreError> {
        let now = now_ms();
        let expires = claim.session.writer.as_ref().map_or(0, |w| w.expires_ms);
        if now + CLAIM_MS < expires + RENEW_AFTER_MS {
            return Ok(());
        }
        let mut next = claim.session.clone();
        if let Some(w) = next.writer.as_mut() {
            w.expires_ms = now + CLAIM_MS;
        }
        match self.put_session(&claim.key, &claim.version, &next).await? {
            Some(version) => {
                claim.session = next;
                claim.version = version;
                Ok(())
            }
            None => {
                claim.lost = true;
                Err(self.claim_lost(&claim.key).await)
            }
        }
    }

    /// Gives a claim up, leaving the session as it was before. Best effort:
    /// a claim that cannot be released expires.
    async fn release(&self, claim: Claim) {
        if claim.lost {
            return;
        }
        let mut session = claim.session;
        session.writer = None;
        let txn = Txn::new()
            .expect(&claim.key, Some(&claim.version))
            .put(&claim.key, encode(&session));
        if let Err(e) = self.kv.commit(txn).await {
            tracing::warn!(upload = claim.id, error = %e, "could not release an upload claim");
        }
    }

    /// The error for a claimed session that changed under its writer.
    async fn claim_lost(&self, key: &str) -> CoreError {
        match self.kv.get(key).await {
            Ok(None) => CoreError::with_detail(
                ErrorCode::BlobUploadUnknown,
                "the upload was cancelled while this request wrote to it",
            ),
            _ => CoreError::with_detail(
                ErrorCode::BlobUploadRangeInvalid,
                "the upload was taken over by another request",
            ),
        }
    }

    /// Streams `body` into a claimed upload from its offset, hashing as it
    /// goes and renewing the claim as it goes.
    async fn write_claimed(
        &self,
        claim: &mut Claim,
        hash: &mut Sha256State,
        body: ByteStream,
    ) -> Result<u64, CoreError> {
        let id = claim.id.clone();
        let offset = claim.session.offset;
        self.write_chunk(&id, offset, hash, body, Some(claim)).await
    }

    /// Streams `body` into upload `id` from `offset`, hashing as it goes.
    /// Returns the bytes written, durable when this returns. With a claim,
    /// the claim is renewed before each write; on any failure the writes
    /// already queued are finished before returning, so nothing lands after
    /// the claim is given up, unless the claim was lost, when they are
    /// dropped.
    async fn write_chunk(
        &self,
        id: &str,
        offset: u64,
        hash: &mut Sha256State,
        mut body: ByteStream,
        mut claim: Option<&mut Claim>,
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
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(CoreError::with_detail(
                        ErrorCode::BlobUploadInvalid,
                        format!("reading the request body failed: {e}"),
                    ));
                    break;
                }
            };
            if let Some(claim) = claim.as_deref_mut() {
                // On failure, dropping the writer discards what it queued.
                self.renew(claim).await?;
            }
            hash.update(&chunk);
            written += chunk.len() as u64;
            if let Err(e) = writer.write(chunk).await {
                failure = Some(e.into());
                break;
            }
        }
        if failure.is_none() {
            if let Some(claim) = claim {
                self.renew(claim).await?;
            }
        }
        let finished = writer.finish().await;
        match failure {
            Some(e) => Err(e),
            None => finished.map(|()| written).map_err(CoreError::from),
        }
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

fn busy() -> CoreError {
    CoreError::with_detail(
        ErrorCode::BlobUploadRangeInvalid,
        "another request is writing to this upload",
    )
}

fn session_hash(session: &UploadSession) -> Result<Sha256State, CoreError> {
    Sha256State::from_hex(&session.hash)
        .ok_or_else(|| CoreError::internal("corrupt upload hash state"))
}
