//! Web UI login sessions, as records in `Kv`: `uisession:<SHA-256 of the
//! id>` ([`crate::keys::session`]) holds who logged in, their directory groups, the session's CSRF
//! token, its expiry and the version of the user's account record at
//! login. Never in node memory, so any node of a cluster serves any
//! session, and a leaked metadata dump holds no usable id (only hashes).
//! The HTTP side (cookies, forms) is the UI crate's, which reaches these
//! records through [`crate::Directory::sessions`].

use crate::{keys, secret};
use berth_core::{Clock, Kv, KvError, SystemClock};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A session ends this long after login, used or not.
pub const LIFETIME_SECS: u64 = 12 * 3600;

/// What is kept of a login.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    /// Directory groups at login (LDAP), for group memberships.
    #[serde(default)]
    pub groups: Vec<String>,
    pub csrf: String,
    pub created: u64,
    pub expires: u64,
    /// `Directory::account_version` of the user when they logged in. Absent
    /// in sessions from before it was kept: 0, which no version is, so
    /// those sessions end.
    #[serde(default)]
    pub account_version: u64,
}

/// The session records of one metadata store.
#[derive(Clone)]
pub struct Sessions {
    kv: Arc<dyn Kv>,
}

fn key(id: &str) -> String {
    keys::session(&secret::sha256_hex(id))
}

impl Sessions {
    pub(crate) fn new(kv: Arc<dyn Kv>) -> Self {
        Sessions { kv }
    }

    /// Starts a session for `user`, who just proved who they are, with
    /// their account's version as it was when the proof was checked;
    /// returns the new session's id.
    pub async fn create(
        &self,
        user: &str,
        groups: Vec<String>,
        account_version: u64,
    ) -> Result<String, KvError> {
        self.sweep().await;
        let id = secret::generate();
        let created = SystemClock.now();
        let record = SessionRecord {
            user: user.to_owned(),
            groups,
            csrf: secret::generate(),
            created,
            expires: created + LIFETIME_SECS,
            account_version,
        };
        let value = serde_json::to_vec(&record).map_err(|e| KvError::Internal(e.to_string()))?;
        self.kv.put(&key(&id), value).await?;
        Ok(id)
    }

    /// The live session `id`; an expired one is removed.
    pub async fn load(&self, id: &str) -> Result<Option<SessionRecord>, KvError> {
        let Some(v) = self.kv.get(&key(id)).await? else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<SessionRecord>(&v.value) else {
            return Ok(None);
        };
        if record.expires <= SystemClock.now() {
            self.end(id).await?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Ends session `id` (logout, or an account that changed).
    pub async fn end(&self, id: &str) -> Result<(), KvError> {
        self.kv.delete(&key(id)).await
    }

    /// Removes some expired sessions (sessions nobody logged out of), a
    /// bounded batch per login from a random point of the (hashed, so
    /// uniformly spread) keys, so that they never pile up.
    async fn sweep(&self) {
        let from = key(&secret::generate());
        let Ok(page) = self.kv.scan(keys::SESSION_PREFIX, Some(&from), 200).await else {
            return;
        };
        let at = SystemClock.now();
        for (k, v) in page {
            let expired = serde_json::from_slice::<SessionRecord>(&v.value)
                .map(|r| r.expires <= at)
                .unwrap_or(true);
            if expired {
                let _ = self.kv.delete(&k).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::MemoryKv;

    #[tokio::test]
    async fn a_session_lives_until_it_ends_and_only_its_hash_is_stored() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let sessions = Sessions::new(kv.clone());
        let id = sessions.create("alice", vec!["g".into()], 7).await.unwrap();
        let record = sessions.load(&id).await.unwrap().unwrap();
        assert_eq!((record.user.as_str(), record.account_version), ("alice", 7));
        let stored = kv.scan_keys(keys::SESSION_PREFIX, None, 10).await.unwrap();
        assert_eq!(stored, vec![key(&id)]);
        assert!(!stored[0].contains(&id), "the id itself is never stored");
        sessions.end(&id).await.unwrap();
        assert!(sessions.load(&id).await.unwrap().is_none());
    }
}
