//! Bounds on open uploads: how many sessions one repository and one account
//! may hold open, and the bytes of open uploads, counted toward their
//! project's quota as they arrive. Each session has two index entries
//! beside it, written and removed in the transactions that write and
//! remove the session (see `keys`): `uprepo:<repo>@<id>` holds the bytes
//! the upload has received, `upacct:<account>@<id>` marks whose it is.
//! Sessions opened before these entries existed are not counted; they
//! expire like any other.

use super::policy::{project_of, quota_exceeded};
use super::records::{UploadMark, UploadSession};
use super::{encode, Registry};
use crate::error::CoreError;
use crate::keys;
use crate::kv::Txn;
use berth_oci::{ErrorCode, RepoName};

/// How many upload sessions may be open at once; 0 is no bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadLimits {
    pub per_repository: usize,
    pub per_account: usize,
}

impl Default for UploadLimits {
    /// Far above what docker (3 layers at a time), buildkit or skopeo open
    /// for one push, and a day of abandoned pushes; far below what fills a
    /// disk with empty sessions.
    fn default() -> Self {
        UploadLimits {
            per_repository: 256,
            per_account: 1024,
        }
    }
}

/// The index entries of a session: a put of each, with the bytes received.
pub(super) fn put_marks(txn: Txn, id: &str, session: &UploadSession, bytes: u64) -> Txn {
    let txn = txn.put(
        keys::upload_in_repo(&session.repo, id),
        encode(&UploadMark { bytes }),
    );
    match &session.account {
        Some(account) => txn.put(keys::upload_of_account(account, id), Vec::new()),
        None => txn,
    }
}

/// The deletes of a session's index entries.
pub(super) fn delete_marks(txn: Txn, id: &str, session: &UploadSession) -> Txn {
    let txn = txn.delete(keys::upload_in_repo(&session.repo, id));
    match &session.account {
        Some(account) => txn.delete(keys::upload_of_account(account, id)),
        None => txn,
    }
}

impl Registry {
    pub fn with_upload_limits(mut self, limits: UploadLimits) -> Self {
        self.upload_limits = limits;
        self
    }

    /// Refuses a new session with 429 when `repo` or `account` holds more
    /// open sessions than allowed, the caller's own (already written)
    /// among them.
    pub(super) async fn check_upload_slots(
        &self,
        repo: &RepoName,
        account: &str,
    ) -> Result<(), CoreError> {
        let room = 1;
        let limits = self.upload_limits;
        let too_many = |what: String| {
            Err(CoreError::with_detail(
                ErrorCode::TooManyRequests,
                format!(
                    "too many open uploads {what}: finish or cancel some, \
                     or wait for abandoned ones to expire"
                ),
            ))
        };
        if limits.per_repository > 0 {
            let prefix = keys::upload_in_repo_prefix(repo.as_str());
            let cap = limits.per_repository + room;
            if self.count_ids_under(&prefix, cap).await? >= cap {
                return too_many(format!("in {repo} ({} at most)", limits.per_repository));
            }
        }
        if limits.per_account > 0 {
            let prefix = keys::upload_of_account_prefix(account);
            let cap = limits.per_account + room;
            if self.count_ids_under(&prefix, cap).await? >= cap {
                return too_many(format!("by {account:?} ({} at most)", limits.per_account));
            }
        }
        Ok(())
    }

    /// Keys under `prefix` whose rest is a bare upload id (no `@`: an
    /// account or repository whose name extends another's is not counted),
    /// up to `cap`.
    async fn count_ids_under(&self, prefix: &str, cap: usize) -> Result<usize, CoreError> {
        const PAGE: usize = 500;
        let mut after: Option<String> = None;
        let mut count = 0;
        loop {
            let page = self.kv.scan_keys(prefix, after.as_deref(), PAGE).await?;
            let full = page.len() == PAGE;
            count += page
                .iter()
                .filter(|k| !k[prefix.len()..].contains('@'))
                .count();
            if count >= cap || !full {
                return Ok(count);
            }
            after = page.last().cloned();
        }
    }

    /// Bytes received by the open uploads of `project`, but `except`.
    pub(super) async fn pending_upload_bytes(
        &self,
        project: &str,
        except: Option<&str>,
    ) -> Result<u64, CoreError> {
        let mut total = 0u64;
        let prefix = keys::upload_in_project_prefix(project);
        self.for_each_under(&prefix, |key, v| {
            let Some((repo, id)) = key[keys::UPLOAD_IN_REPO_PREFIX.len()..].rsplit_once('@') else {
                return Ok(());
            };
            if project_of(repo) == project && Some(id) != except {
                let mark: UploadMark = serde_json::from_slice(&v.value)?;
                total = total.saturating_add(mark.bytes);
            }
            Ok(())
        })
        .await?;
        Ok(total)
    }

    /// How many more bytes upload `id`, now at `offset`, may receive
    /// before its project passes its quota; `None` without a quota.
    pub(super) async fn upload_allowance(
        &self,
        repo: &RepoName,
        id: &str,
        offset: u64,
    ) -> Result<Option<u64>, CoreError> {
        let project = project_of(repo.as_str());
        let Some(limit) = self.project_policy(project).await?.quota_bytes else {
            return Ok(None);
        };
        let used = self.quota_usage(project, Some(id)).await?.used();
        Ok(Some(limit.saturating_sub(used).saturating_sub(offset)))
    }
}

/// The error for an upload that would pass its project's quota.
pub(super) fn over_quota(repo: &RepoName) -> CoreError {
    quota_exceeded(project_of(repo.as_str()), "the upload was cancelled")
}
