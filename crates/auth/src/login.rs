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
use std::sync::Mutex;
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
        let cached = self
            .lock()
            .get(&cache_key)
            .filter(|c| c.at.elapsed() < REMEMBER)
            .map(|c| (c.principal.clone(), c.account_version));
        if let Some((principal, version)) = cached {
            // One metadata read instead of argon2. Not a guess, so not
            // counted by the limiter.
            if self.directory.account_version(principal.name()).await? == version {
                return Ok(Some(principal));
            }
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
    use std::sync::Arc;

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
}
