//! Upload claims: one writer per upload at a time. A request that writes an
//! upload's bytes (a `PATCH`, or a `PUT` that closes the upload) first
//! claims its session with a compare-and-swap in `Kv`, writes only while
//! its claim holds, renews it as its body arrives, and gives it up in the
//! transaction that records its progress. A second writer arriving
//! meanwhile is refused before it touches a byte.
//!
//! A claim expires, so a writer whose node crashed blocks the upload for
//! [`CLAIM_MS`] at most. A request that is dropped (its client went away
//! mid-body, and the server dropped its future) gives its claim up at once
//! through its [`ClaimGuard`], as Garage's `InterruptedCleanup` does: the
//! guard's `Drop` spawns the release, which first lets the request's
//! writes settle, so no byte of it lands under the next writer.

use super::upload_limits::put_marks;
use super::{encode, Registry};
use crate::blob::{StoreError, UploadWriter};
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Kv, Txn, Versioned};
use crate::registry::records::{UploadClaim, UploadSession};
use berth_oci::{ErrorCode, RepoName};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// How long a claim to write an upload lasts unless renewed.
pub(super) const CLAIM_MS: u64 = 15_000;

/// A writer renews its claim once this much of it has passed, which leaves
/// it `CLAIM_MS - RENEW_AFTER_MS` for the bytes it has queued to reach
/// storage before anyone else may write.
pub(super) const RENEW_AFTER_MS: u64 = 5_000;

/// An upload claimed by this request: the session as this request last
/// wrote it, and that write's version.
pub(super) struct Claim {
    pub(super) id: String,
    pub(super) key: String,
    pub(super) session: UploadSession,
    pub(super) version: Versioned,
    /// Set when a renewal found the claim taken over: nothing more may be
    /// written, and the claim is no longer this request's to give up.
    pub(super) lost: bool,
    /// Bytes this request has written past the session's offset so far.
    pub(super) received: u64,
    /// How many bytes this request may write before the project passes its
    /// quota (`None`: no quota). Refreshed on each renewal, so concurrent
    /// uploads into one project see each other's bytes within seconds.
    pub(super) allowance: Option<u64>,
    /// Gives the claim up if the request is dropped holding it, and holds
    /// the request's writer meanwhile.
    pub(super) guard: ClaimGuard,
}

impl Claim {
    /// The claim is no longer this request's: what it queued is dropped,
    /// never written, and nothing is given up on drop.
    fn lose(&mut self) {
        self.lost = true;
        self.guard.disarm();
    }
}

/// The store writer of a request, kept where its claim's cleanup can reach
/// it. A writer is finished in a task of its own, so a request dropped
/// while waiting for that leaves the task for the cleanup to wait on.
#[derive(Default)]
pub(super) struct WriterSlot {
    /// In a mutex only to make the slot `Sync`: request futures hold a
    /// `&Claim` across awaits and must be `Send`. Reached through
    /// `get_mut`, never locked.
    writer: Mutex<Option<Box<dyn UploadWriter>>>,
    finishing: Option<JoinHandle<Result<(), StoreError>>>,
}

impl WriterSlot {
    fn writer(&mut self) -> &mut Option<Box<dyn UploadWriter>> {
        self.writer.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn open(&mut self, writer: Box<dyn UploadWriter>) {
        *self.writer() = Some(writer);
    }

    pub(super) async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match self.writer().as_mut() {
            Some(writer) => writer.write(chunk).await,
            None => Err(StoreError::Io("upload writer already closed".into())),
        }
    }

    /// Makes everything written durable (see `UploadWriter::finish`); once
    /// this returns, no write of this request can land any more.
    pub(super) async fn finish(&mut self) -> Result<(), StoreError> {
        if let Some(writer) = self.writer().take() {
            self.finishing = Some(tokio::spawn(writer.finish()));
        }
        let Some(finishing) = self.finishing.as_mut() else {
            return Ok(());
        };
        let outcome = finishing.await;
        self.finishing = None;
        outcome.unwrap_or_else(|e| Err(StoreError::Io(format!("upload writer task failed: {e}"))))
    }
}

/// Releases a claim when the request holding it is dropped before it has
/// settled the claim itself (recorded progress, released, or lost it).
pub(super) struct ClaimGuard {
    kv: Arc<dyn Kv>,
    key: String,
    /// The claim's token: the cleanup gives up only this claim, whatever
    /// the request last managed to write.
    token: String,
    armed: bool,
    pub(super) slot: WriterSlot,
    /// Bytes the request wrote past the session's offset: they stay in the
    /// store until the next writer cuts them, so they count toward the
    /// quota until then, however the request ends.
    pub(super) received: u64,
}

impl ClaimGuard {
    fn new(kv: Arc<dyn Kv>, key: String, token: String) -> Self {
        ClaimGuard {
            kv,
            key,
            token,
            armed: true,
            slot: WriterSlot::default(),
            received: 0,
        }
    }

    /// The request has settled its claim: nothing to do on drop. A writer
    /// still open is dropped, which discards what it queued.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
        self.slot = WriterSlot::default();
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Without a runtime the process is ending; the claim expires.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let kv = self.kv.clone();
        let key = std::mem::take(&mut self.key);
        let token = std::mem::take(&mut self.token);
        let received = self.received;
        let mut slot = std::mem::take(&mut self.slot);
        runtime.spawn(async move {
            // Writes first: none may land once another writer can claim
            // the upload. Bytes past the recorded offset are cut by the
            // next writer, so their fate does not matter, only their timing.
            if let Err(e) = slot.finish().await {
                tracing::debug!(key, error = %e, "writes of a dropped upload request");
            }
            release_dropped(kv.as_ref(), &key, &token, received).await;
        });
    }
}

/// Gives up claim `token` on the session at `key` if the session still
/// carries it, counting the `received` bytes the request left in the store.
/// The dropped request may have stopped anywhere, even just after a write
/// it never saw succeed, so the session is read afresh.
async fn release_dropped(kv: &dyn Kv, key: &str, token: &str, received: u64) {
    let seen = match kv.get(key).await {
        Ok(Some(seen)) => seen,
        // Cancelled, or finished by the request before it was dropped.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(key, error = %e, "could not release a dropped upload claim");
            return;
        }
    };
    let Ok(mut session) = serde_json::from_slice::<UploadSession>(&seen.value) else {
        return;
    };
    if session.writer.as_ref().is_none_or(|w| w.token != token) {
        return;
    }
    session.writer = None;
    let txn = Txn::new()
        .if_unchanged(key, Some(&seen))
        .put(key, encode(&session));
    let id = &key[keys::upload("").len()..];
    let txn = put_marks(txn, id, &session, session.offset.saturating_add(received));
    // A failed check means the session changed, so it is not ours any more.
    if let Err(e) = kv.commit(txn).await {
        tracing::warn!(key, error = %e, "could not release a dropped upload claim");
    }
}

impl Registry {
    /// Claims upload `id` for writing, checking that a chunk at `start`
    /// (when given) begins where the upload ends. Refused with 416 while
    /// another request holds an unexpired claim.
    pub(super) async fn claim(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
    ) -> Result<Claim, CoreError> {
        let (mut session, seen) = self.session(repo, id).await?;
        let now = self.now_ms();
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
        let token = uuid::Uuid::new_v4().to_string();
        session.writer = Some(UploadClaim {
            token: token.clone(),
            expires_ms: now + CLAIM_MS,
        });
        let key = keys::upload(id);
        // Armed before the claim is written: a request dropped while
        // writing it cannot tell whether it landed.
        let mut guard = ClaimGuard::new(self.kv.clone(), key.clone(), token);
        let Some(version) = self.put_session(&key, &seen, &session).await? else {
            guard.disarm();
            return Err(busy());
        };
        Ok(Claim {
            id: id.to_owned(),
            key,
            session,
            version,
            lost: false,
            received: 0,
            allowance: None,
            guard,
        })
    }

    /// [`Registry::claim`] for a request that brings bytes: the claim
    /// carries how many its project's quota still has room for. (A final
    /// PUT without a body claims without reading the quota: its link
    /// checks it.)
    pub(super) async fn claim_for_bytes(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
    ) -> Result<Claim, CoreError> {
        let mut claim = self.claim(repo, id, start).await?;
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
        let txn = txn.if_unchanged(key, Some(seen)).put(key, value.clone());
        if !self.kv.commit(txn).await? {
            return Ok(None);
        }
        // The version of this very write, for the next compare-and-swap; a
        // different value means the session changed again (a cancel).
        Ok(self.kv.get(key).await?.filter(|v| v.value == value))
    }

    /// Extends the claim once [`RENEW_AFTER_MS`] of it have passed. Fails,
    /// marking the claim lost, if another request took the session over.
    pub(super) async fn renew(&self, claim: &mut Claim) -> Result<(), CoreError> {
        let now = self.now_ms();
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
                claim.lose();
                Err(self.claim_lost(&claim.key).await)
            }
        }
    }

    /// Gives a claim up, leaving the session as it was before, once the
    /// request's writes have settled. Best effort: a claim that cannot be
    /// released expires.
    pub(super) async fn release(&self, mut claim: Claim) {
        if claim.lost {
            return;
        }
        if let Err(e) = claim.guard.slot.finish().await {
            tracing::debug!(upload = claim.id, error = %e, "writes of a failed upload request");
        }
        let mut session = claim.session.clone();
        session.writer = None;
        let txn = Txn::new()
            .if_unchanged(&claim.key, Some(&claim.version))
            .put(&claim.key, encode(&session));
        // What the request wrote past the offset stays in the store until
        // the next writer cuts it: it counts toward the quota until then.
        let bytes = session.offset.saturating_add(claim.received);
        let txn = put_marks(txn, &claim.id, &session, bytes);
        if let Err(e) = self.kv.commit(txn).await {
            tracing::warn!(upload = claim.id, error = %e, "could not release an upload claim");
        }
        claim.guard.disarm();
    }

    /// The error for a claimed session that changed under its writer.
    pub(super) async fn claim_lost(&self, key: &str) -> CoreError {
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
}

fn busy() -> CoreError {
    CoreError::with_detail(
        ErrorCode::BlobUploadRangeInvalid,
        "another request is writing to this upload",
    )
}
