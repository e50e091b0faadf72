//! Checking a name and password, as every surface does (Basic credentials
//! on `/v2` and `/api/v1`, the token service, the UI's login form, the
//! old-password check of a password change): through the failed-login
//! limiter ([`crate::ratelimit`]), and with verified credentials
//! remembered for a minute, so that clients sending Basic on every request
//! do not pay argon2 each time. A remembered login is checked against the
//! account record's version on every use: a changed, deleted or revoked
//! account is noticed at once.

use crate::directory::{Directory, DirectoryError};
use crate::model::Principal;
use crate::ratelimit::FailedLogins;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long verified credentials are remembered.
const REMEMBER: Duration = Duration::from_secs(60);

/// Why a login could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many failures from this address (for this user, or for all).
    #[error("too many failed logins; try again later")]
    Blocked,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

pub struct Logins {
    directory: Directory,
    limiter: FailedLogins,
    /// Verified credentials, keyed by a hash of name and password: the
    /// principal, the version of its account record when it was verified,
    /// and when.
    remembered: Mutex<HashMap<[u8; 32], Remembered>>,
    /// One check at a time per name and password: concurrent logins with
    /// the same credentials (a client's parallel requests with Basic, its
    /// parallel token requests) wait for the first check and take its
    /// answer, instead of each counting as an attempt (enough of them at
    /// once would block the right password).
    checking: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

struct Remembered {
    principal: Principal,
    account_version: Option<u64>,
    at: Instant,
}

impl Logins {
    pub fn new(directory: Directory) -> Self {
        Logins {
            directory,
            limiter: FailedLogins::default(),
            remembered: Mutex::new(HashMap::new()),
            checking: Mutex::new(HashMap::new()),
        }
    }

    /// Checks `user`'s `pass`, coming from `address`. `Ok(None)` for wrong
    /// credentials; [`LoginError::Blocked`] while the limiter refuses.
    pub async fn login(
        &self,
        user: &str,
        pass: &str,
        address: &str,
    ) -> Result<Option<Principal>, LoginError> {
        let cache_key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(pass.as_bytes())
            .finalize()
            .into();
        if let Some(principal) = self.remembered_login(&cache_key).await? {
            return Ok(Some(principal));
        }
        let gate = self
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cache_key)
            .or_default()
            .clone();
        let turn = gate.lock().await;
        let checked = self.check(user, pass, address, cache_key).await;
        drop(turn);
        let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and ours: nobody else waits.
        if Arc::strong_count(&gate) <= 2 {
            checking.remove(&cache_key);
        }
        checked
    }

    /// The principal of credentials verified within [`REMEMBER`] whose
    /// account has not changed since: one metadata read instead of argon2.
    async fn remembered_login(
        &self,
        cache_key: &[u8; 32],
    ) -> Result<Option<Principal>, LoginError> {
        let cached = self
            .lock()
            .get(cache_key)
            .filter(|c| c.at.elapsed() < REMEMBER)
            .map(|c| (c.principal.clone(), c.account_version));
        if let Some((principal, version)) = cached {
            // Not a guess, so not counted by the limiter.
            if self.directory.account_version(principal.name()).await? == version {
                return Ok(Some(principal));
            }
        }
        Ok(None)
    }

    /// Checks the password with its turn held: remembered by a check that
    /// just finished, or through the limiter and the directory.
    async fn check(
        &self,
        user: &str,
        pass: &str,
        address: &str,
        cache_key: [u8; 32],
    ) -> Result<Option<Principal>, LoginError> {
        if let Some(principal) = self.remembered_login(&cache_key).await? {
            return Ok(Some(principal));
        }
        // Counted before the password is checked, so that concurrent
        // guesses cannot all pass before the first failure is recorded;
        // forgiven below when the password was right or was not checked.
        if let Err(why) = self.limiter.attempt(user, address) {
            tracing::warn!(user, address, %why, "login blocked");
            return Err(LoginError::Blocked);
        }
        let principal = match self.directory.authenticate(user, pass).await {
            Ok(p) => p,
            Err(e) => {
                self.limiter.forgive(user, address);
                return Err(e.into());
            }
        };
        match &principal {
            Some(p) => {
                self.limiter.forgive(user, address);
                let account_version = self.directory.account_version(p.name()).await?;
                let mut cache = self.lock();
                if cache.len() > 10_000 {
                    cache.retain(|_, c| c.at.elapsed() < REMEMBER);
                }
                cache.insert(
                    cache_key,
                    Remembered {
                        principal: p.clone(),
                        account_version,
                        at: Instant::now(),
                    },
                );
            }
            None => tracing::info!(user, address, "failed login"),
        }
        Ok(principal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Remembered>> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::MemoryKv;

    #[tokio::test]
    async fn a_remembered_login_ends_when_the_account_changes() {
        let directory = Directory::new(Arc::new(MemoryKv::new()));
        directory
            .ensure_admin(Some("first-password"))
            .await
            .unwrap();
        let logins = Logins::new(directory.clone());
        let ok = logins.login("admin", "first-password", "10.0.0.1").await;
        assert!(ok.unwrap().is_some());
        directory
            .update_user("admin", Some("second-password"), None)
            .await
            .unwrap();
        let again = logins.login("admin", "first-password", "10.0.0.1").await;
        assert!(
            again.unwrap().is_none(),
            "the old password is not remembered"
        );
    }

    /// Far more concurrent logins with the right password than the limiter
    /// allows failures from one address: none is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 16)]
    async fn concurrent_right_logins_are_never_blocked() {
        let directory = Directory::new(Arc::new(MemoryKv::new()));
        directory
            .ensure_admin(Some("right-password"))
            .await
            .unwrap();
        let logins = Arc::new(Logins::new(directory));
        let tries = (0..50).map(|_| {
            let logins = logins.clone();
            tokio::spawn(async move { logins.login("admin", "right-password", "10.0.0.9").await })
        });
        for t in futures_util::future::join_all(tries).await {
            let principal = t.unwrap().expect("not blocked");
            assert_eq!(
                principal.map(|p| p.name().to_owned()).as_deref(),
                Some("admin")
            );
        }
        assert!(logins.checking.lock().unwrap().is_empty(), "no gate left");
        // Wrong passwords are still counted and blocked.
        let mut blocked = false;
        for _ in 0..50 {
            if let Err(LoginError::Blocked) = logins.login("admin", "guess", "10.0.0.9").await {
                blocked = true;
                break;
            }
        }
        assert!(blocked, "guesses are limited");
    }
}
