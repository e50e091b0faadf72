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
use super::upload_limits::{delete_marks, over_quota, put_marks};
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
    /// Bytes this request has written past the session's offset so far.
    received: u64,
    /// How many bytes this request may write before the project passes its
    /// quota (`None`: no quota). Refreshed on each renewal, so concurrent
    /// uploads into one project see each other's bytes within seconds.
    allowance: Option<u64>,
}

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
        self.check_upload_slots(repo, account).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let t = now();
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
        let txn = Txn::new().expect(&key, None).put(&key, encode(&session));
        if !self.kv.commit(put_marks(txn, &id, &session, 0)).await? {
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
        let mut claim = self.claim(repo, id, start).await?;
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
        session.updated = now();
        session.writer = None;
        let txn = Txn::new()
            .expect(&claim.key, Some(&claim.version))
            .put(&claim.key, encode(&session));
        let txn = put_marks(txn, id, &session, session.offset);
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
        // Refused before anything is claimed or read: the upload stays as
        // it was, for a retry with a digest berth can verify.
        check_blob_algorithm(digest)?;
        // Claimed even without a body: committing moves the bytes, which
        // must not happen under a writer.
        let mut claim = self.claim(repo, id, start).await?;
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
            return Err(CoreError::with_detail(
                ErrorCode::DigestInvalid,
                format!("content does not match {digest}"),
            ));
        }
        let done = Txn::new()
            .expect(&claim.key, Some(&claim.version))
            .delete(&claim.key);
        let done = delete_marks(done, id, &claim.session);
        match self
            .link_blob(repo, digest, size, Source::Upload(id), done)
            .await
        {
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
            (Some(len), Some(allowance)) if len > allowance => Err(CoreError::with_detail(
                ErrorCode::Denied,
                format!(
                    "storage quota of project {} exceeded: {len} bytes announced, \
                     {allowance} left",
                    super::policy::project_of(&claim.session.repo)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Ends a write that failed: a write that passed the quota cancels the
    /// upload (its bytes would only wait for expiry, and the quota will
    /// not grow under it); any other failure leaves the upload as it was.
    async fn abandon(&self, claim: Claim, e: CoreError) -> CoreError {
        if claim.received > 0 && e.code == ErrorCode::Denied && !claim.lost {
            let (id, key) = (claim.id.clone(), claim.key.clone());
            self.discard_upload(&id, &key, Some(&claim.session)).await;
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
        let mut claim = Claim {
            id: id.to_owned(),
            key,
            session,
            version,
            lost: false,
            received: 0,
            allowance: None,
        };
        match self.upload_allowance(repo, id, claim.session.offset).await {
            Ok(allowance) => claim.allowance = allowance,
            Err(e) => {
                self.release(claim).await;
                return Err(e);
            }
        }
        Ok(claim)
    }

    /// Writes `session` at `key` if the key is still at `seen`; returns the
    /// version written, or `None` when the key changed first.
    async fn put_session(
        &self,
        key: &str,
        seen: &Versioned,
        session: &UploadSession,
    ) -> Result<Option<Versioned>, CoreError> {
        self.put_session_txn(key, seen, session, Txn::new()).await
    }

    /// [`Registry::put_session`], recording that the upload has received
    /// `bytes` for its project's quota.
    async fn put_session_marked(
        &self,
        key: &str,
        seen: &Versioned,
        session: &UploadSession,
        bytes: u64,
    ) -> Result<Option<Versioned>, CoreError> {
        let id = &key[keys::upload("").len()..];
        let marks = put_marks(Txn::new(), id, session, bytes);
        self.put_session_txn(key, seen, session, marks).await
    }

    async fn put_session_txn(
        &self,
        key: &str,
        seen: &Versioned,
        session: &UploadSession,
        txn: Txn,
    ) -> Result<Option<Versioned>, CoreError> {
        let value = encode(session);
        let txn = txn.expect(key, Some(seen)).put(key, value.clone());
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
        let bytes = next.offset.saturating_add(claim.received);
        match self
            .put_session_marked(&claim.key, &claim.version, &next, bytes)
            .await?
        {
            Some(version) => {
                claim.session = next;
                claim.version = version;
                if let Some(repo) = RepoName::parse(&claim.session.repo) {
                    claim.allowance = self
                        .upload_allowance(&repo, &claim.id, bytes)
                        .await?
                        .map(|left| left.saturating_add(claim.received));
                }
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
        let repo = RepoName::parse(&claim.session.repo)
            .ok_or_else(|| CoreError::internal("upload session of an invalid name"))?;
        let allowance = claim.allowance;
        self.write_chunk(&id, offset, hash, body, Some(claim), allowance, &repo)
            .await
    }

    /// Streams `body` into upload `id` from `offset`, hashing as it goes.
    /// Returns the bytes written, durable when this returns. With a claim,
    /// the claim is renewed before each write; on any failure the writes
    /// already queued are finished before returning, so nothing lands after
    /// the claim is given up, unless the claim was lost, when they are
    /// dropped. A body passing `allowance` (the claim's, when claimed) is
    /// refused with the quota error as soon as it does.
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
            let allowance = match claim.as_deref_mut() {
                Some(claim) => {
                    claim.received = written;
                    // On failure, dropping the writer discards what it queued.
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
            if let Err(e) = writer.write(chunk).await {
                failure = Some(e.into());
                break;
            }
        }
        if let Some(claim) = claim {
            claim.received = written;
            if failure.is_none() {
                self.renew(claim).await?;
            }
        }
        let finished = writer.finish().await;
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
