//! Blob uploads: sessions in `Kv` with the running SHA-256, bytes in the
//! `BlobStore`. Any node can continue any upload; an upload survives a
//! restart; the final PUT never re-reads what it already hashed.
//!
//! Because the PUT trusts the running hash, the bytes stored past a
//! session's offset must be exactly the ones its writer hashes: every
//! request that writes them holds the session's claim (see `claims`).

use super::claims::{Claim, WriterSlot};
use super::lifecycle::Source;
use super::upload_limits::{delete_marks, over_quota, put_marks};
use super::{encode, Registry};
use crate::blob::{ByteStream, StoreError};
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Txn, Versioned};
use crate::registry::records::UploadSession;
use berth_oci::{Digest, ErrorCode, RepoName, Sha256State};
use futures_util::StreamExt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

impl Registry {
    /// `POST /blobs/uploads/`: opens a session for `account`, within the
    /// bounds on open sessions (429 beyond).
    pub async fn upload_start(
        &self,
        repo: &RepoName,
        account: &str,
    ) -> Result<UploadStatus, CoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let t = self.now();
        let session = UploadSession {
            repo: repo.to_string(),
            offset: 0,
            hash: Sha256State::new().to_hex(),
            created: t,
            updated: t,
            writer: None,
            account: Some(account.to_owned()),
        };
        // Create the (empty) bytes first so that a session never names
        // storage that does not exist.
        self.blobs.upload_writer(&id, 0).await?.finish().await?;
        let key = keys::upload(&id);
        let txn = Txn::new()
            .if_unchanged(&key, None)
            .put(&key, encode(&session));
        if !self.kv.commit(put_marks(txn, &id, &session, 0)).await? {
            return Err(CoreError::internal("upload id collision"));
        }
        // Counted once, after the session is written: concurrent opens
        // cannot together pass the bound, whichever counts last sees them
        // all. (A refused open costs a written and discarded session; an
        // accepted one, which is the common case, two key scans.)
        if let Err(e) = self.check_upload_slots(repo, account).await {
            self.discard_upload(&id, &key, Some(&session)).await;
            return Err(e);
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
        let mut claim = self.claim_for_bytes(repo, id, start).await?;
        let mut hash = session_hash(&claim.session)?;
        let written = match self.check_announced(&claim, len).await {
            Ok(()) => self.write_claimed(&mut claim, &mut hash, body).await,
            Err(e) => Err(e),
        };
        let written = match written.and_then(|w| check_chunk_len(len, w).map(|()| w)) {
            Ok(w) => w,
            Err(e) => return Err(self.abandon(claim, e).await),
        };
        let mut session = claim.session.clone();
        session.offset += written;
        session.hash = hash.to_hex();
        session.updated = self.now();
        session.writer = None;
        let txn = Txn::new()
            .if_unchanged(&claim.key, Some(&claim.version))
            .put(&claim.key, encode(&session));
        let txn = put_marks(txn, id, &session, session.offset);
        let recorded = self.kv.commit(txn).await?;
        // Recorded, or (the check failed) taken over or cancelled: either
        // way the claim is not this request's to give up any more.
        claim.guard.disarm();
        if !recorded {
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
        // Refused before anything is claimed or read: the upload stays as
        // it was, for a retry with a digest berth can verify.
        check_blob_algorithm(digest)?;
        // Claimed even without a body: committing moves the bytes, which
        // must not happen under a writer.
        let mut claim = match body {
            Some(_) => self.claim_for_bytes(repo, id, start).await?,
            None => self.claim(repo, id, start).await?,
        };
        let mut hash = session_hash(&claim.session)?;
        let written = match (self.check_announced(&claim, len).await, body) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(body)) => self.write_claimed(&mut claim, &mut hash, body).await,
            (Ok(()), None) => Ok(0),
        };
        let written = match written.and_then(|w| check_chunk_len(len, w).map(|()| w)) {
            Ok(w) => w,
            Err(e) => return Err(self.abandon(claim, e).await),
        };
        let size = claim.session.offset + written;
        if hash.finalize() != *digest {
            self.discard_upload(id, &claim.key, Some(&claim.session))
                .await;
            claim.guard.disarm();
            return Err(CoreError::with_detail(
                ErrorCode::DigestInvalid,
                format!("content does not match {digest}"),
            ));
        }
        let done = Txn::new()
            .if_unchanged(&claim.key, Some(&claim.version))
            .delete(&claim.key);
        let done = delete_marks(done, id, &claim.session);
        let linked = self
            .link_blob(repo, digest, size, Source::Upload(id), done)
            .await;
        if linked.is_ok() {
            // The session is gone with the claim in it, or changed.
            claim.guard.disarm();
        }
        match linked {
            Ok(true) => Ok(()),
            // The session itself changed: a concurrent PUT won.
            Ok(false) => Err(CoreError::new(ErrorCode::BlobUploadUnknown)),
            Err(e) => Err(self.abandon(claim, e).await),
        }
    }

    /// `DELETE` on an upload.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<(), CoreError> {
        let (session, _) = self.session(repo, id).await?;
        self.discard_upload(id, &keys::upload(id), Some(&session))
            .await;
        Ok(())
    }

    /// A chunk announced as `len` bytes that would pass the quota is
    /// refused before a byte of it is read.
    async fn check_announced(&self, claim: &Claim, len: Option<u64>) -> Result<(), CoreError> {
        match (len, claim.allowance) {
            (Some(len), Some(allowance)) if len > allowance => Err(super::policy::quota_exceeded(
                super::policy::project_of(&claim.session.repo),
                format!("{len} bytes announced, {allowance} left"),
            )),
            _ => Ok(()),
        }
    }

    /// Ends a write that failed: a write that passed the quota cancels the
    /// upload (its bytes would only wait for expiry, and the quota will
    /// not grow under it); any other failure leaves the upload as it was.
    async fn abandon(&self, mut claim: Claim, e: CoreError) -> CoreError {
        if claim.received > 0 && e.code == ErrorCode::Denied && !claim.lost {
            let (id, key) = (claim.id.clone(), claim.key.clone());
            self.discard_upload(&id, &key, Some(&claim.session)).await;
            claim.guard.disarm();
        } else {
            self.release(claim).await;
        }
        e
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
        check_blob_algorithm(digest)?;
        let id = uuid::Uuid::new_v4().to_string();
        let allowance = match len {
            Some(len) => {
                self.check_quota(repo, Some(digest), len, None).await?;
                None
            }
            // A body of unknown length may only bring what the quota has
            // room for.
            None => self.upload_allowance(repo, &id, 0).await?,
        };
        let mut hash = Sha256State::new();
        let result = self
            .write_chunk(&id, 0, &mut hash, body, None, allowance, repo)
            .await;
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
        let linked = self
            .link_blob(repo, digest, size, Source::Upload(&id), Txn::new())
            .await;
        if linked.is_err() {
            // Refused (the quota) or failed: no session names these bytes,
            // so nothing but this would remove them before they expire.
            let _ = self.blobs.delete_upload(&id).await;
        }
        linked.map(|_| ())
    }

    pub(super) async fn session(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<(UploadSession, Versioned), CoreError> {
        match self.read::<UploadSession>(&keys::upload(id)).await? {
            Some((s, v)) if s.repo == repo.as_str() => Ok((s, v)),
            _ => Err(CoreError::new(ErrorCode::BlobUploadUnknown)),
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
        let repo = RepoName::parse(&claim.session.repo)
            .ok_or_else(|| CoreError::internal("upload session of an invalid name"))?;
        let allowance = claim.allowance;
        self.write_chunk(&id, offset, hash, body, Some(claim), allowance, &repo)
            .await
    }

    /// Streams `body` into upload `id` from `offset`, hashing as it goes.
    /// Returns the bytes written, durable when this returns. With a claim,
    /// the claim is renewed before each write, and the writer is kept in
    /// the claim; on any failure the writes already queued are finished
    /// before the claim is given up (here, by `release`, or by the claim's
    /// guard if the request is dropped), so nothing lands after it, unless
    /// the claim was lost, when they are dropped. A body passing
    /// `allowance` (the claim's, when claimed) is refused with the quota
    /// error as soon as it does.
    #[allow(clippy::too_many_arguments)]
    async fn write_chunk(
        &self,
        id: &str,
        offset: u64,
        hash: &mut Sha256State,
        mut body: ByteStream,
        mut claim: Option<&mut Claim>,
        allowance: Option<u64>,
        repo: &RepoName,
    ) -> Result<u64, CoreError> {
        let writer = self
            .blobs
            .upload_writer(id, offset)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    CoreError::with_detail(ErrorCode::BlobUploadUnknown, "upload data is missing")
                }
                e => e.into(),
            })?;
        let mut own = WriterSlot::default();
        slot(&mut claim, &mut own).open(writer);
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
            let allowance = match claim.as_deref_mut() {
                Some(claim) => {
                    claim.received = written;
                    self.renew(claim).await?;
                    claim.allowance
                }
                None => allowance,
            };
            if allowance.is_some_and(|a| written + chunk.len() as u64 > a) {
                failure = Some(over_quota(repo));
                break;
            }
            hash.update(&chunk);
            written += chunk.len() as u64;
            if let Some(claim) = claim.as_deref_mut() {
                // Counted before the write: if the request is dropped while
                // it is queued, it may still land.
                claim.guard.received = written;
            }
            if let Err(e) = slot(&mut claim, &mut own).write(chunk).await {
                failure = Some(e.into());
                break;
            }
        }
        if let Some(claim) = claim.as_deref_mut() {
            claim.received = written;
            if failure.is_none() {
                self.renew(claim).await?;
            }
        }
        let finished = slot(&mut claim, &mut own).finish().await;
        match failure {
            Some(e) => Err(e),
            None => finished.map(|()| written).map_err(CoreError::from),
        }
    }

    /// Removes an upload, with the index entries of its `session`.
    async fn discard_upload(&self, id: &str, key: &str, session: Option<&UploadSession>) {
        let txn = Txn::new().delete(key);
        let txn = match session {
            Some(session) => delete_marks(txn, id, session),
            None => txn,
        };
        if let Err(e) = self.kv.commit(txn).await {
            tracing::warn!(upload = id, error = %e, "could not delete upload session");
        }
        if let Err(e) = self.blobs.delete_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not delete upload data");
        }
    }
}

/// Where a write keeps its store writer: in its claim when it has one.
fn slot<'a>(claim: &'a mut Option<&mut Claim>, own: &'a mut WriterSlot) -> &'a mut WriterSlot {
    match claim {
        Some(claim) => &mut claim.guard.slot,
        None => own,
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

/// Blobs are verified with the SHA-256 state kept with each session, so a
/// digest of any other algorithm could never match: say so up front.
fn check_blob_algorithm(digest: &Digest) -> Result<(), CoreError> {
    if digest.is_sha256() {
        return Ok(());
    }
    Err(CoreError::with_detail(
        ErrorCode::DigestInvalid,
        format!(
            "blobs are stored by sha256 digest only, {} is not supported",
            digest.algorithm()
        ),
    ))
}

fn session_hash(session: &UploadSession) -> Result<Sha256State, CoreError> {
    Sha256State::from_hex(&session.hash)
        .ok_or_else(|| CoreError::internal("corrupt upload hash state"))
}
