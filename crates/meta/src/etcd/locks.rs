//! [`Locks`] on etcd: a lock is the key `lock:<name>`, created only if
//! absent and attached to a lease its holder renews. A holder that dies or
//! loses etcd for longer than the TTL loses the lock, and its guard says so.

use super::wire::{self, b64};
use super::EtcdKv;
use async_trait::async_trait;
use berth_core::kv::{Kv, KvError};
use berth_core::lock::{LockGuard, Locks};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds a lock outlives a holder that stopped renewing it.
const LOCK_TTL_SECS: u64 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(4);

fn lock_key(name: &str) -> String {
    format!("lock:{name}")
}

/// Revokes the lease (freeing the lock at once) when the guard is dropped.
struct EtcdRelease {
    kv: EtcdKv,
    lease: i64,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdRelease {
    fn drop(&mut self) {
        self.renewer.abort();
        let kv = self.kv.clone();
        let lease = self.lease;
        // Best effort: if it fails the lease simply expires.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = kv.lease_revoke(lease).await {
                    tracing::debug!(error = %e, "revoking a lock lease; it will expire");
                }
            });
        }
    }
}

impl EtcdKv {
    /// Revokes lease `id`, deleting its keys now.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), KvError> {
        let body = json!({ "ID": id.to_string() });
        let _: wire::Empty = self.call("/lease/revoke", body, true, false).await?;
        Ok(())
    }

    /// Creates `key` under lease `lease` unless it exists; `false` when it
    /// did.
    pub async fn create_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<bool, KvError> {
        let full = b64(&self.full_key(key));
        let body = json!({
            "compare": [{
                "key": full,
                "target": "CREATE",
                "result": "EQUAL",
                "create_revision": "0",
            }],
            "success": [{ "request_put": {
                "key": full,
                "value": b64(&value),
                "lease": lease.to_string(),
            }}],
        });
        let r: wire::TxnResponse = self.call("/kv/txn", body, false, false).await?;
        Ok(r.succeeded)
    }
}

#[async_trait]
impl Locks for EtcdKv {
    async fn try_lock(&self, name: &str, holder: &str) -> Result<Option<LockGuard>, KvError> {
        let lease = self.lease_grant(LOCK_TTL_SECS).await?;
        let created = match self
            .create_with_lease(&lock_key(name), holder.as_bytes().to_vec(), lease)
            .await
        {
            Ok(created) => created,
            Err(e) => {
                let _ = self.lease_revoke(lease).await;
                return Err(e);
            }
        };
        if !created {
            let _ = self.lease_revoke(lease).await;
            return Ok(None);
        }
        let held = Arc::new(AtomicBool::new(true));
        let renewer = {
            let kv = self.clone();
            let held = held.clone();
            tokio::spawn(async move {
                let mut renewed = Instant::now();
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    match kv.keepalive(lease).await {
                        Ok(Some(_)) => renewed = Instant::now(),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing a lock lease failed");
                            // Past the TTL etcd may have let it go.
                            if renewed.elapsed() >= Duration::from_secs(LOCK_TTL_SECS) {
                                break;
                            }
                        }
                    }
                }
                held.store(false, Ordering::SeqCst);
                tracing::warn!("a cluster lock was lost (its lease expired)");
            })
        };
        Ok(Some(LockGuard::new(
            held,
            Box::new(EtcdRelease {
                kv: self.clone(),
                lease,
                renewer,
            }),
        )))
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, KvError> {
        Ok(self
            .get(&lock_key(name))
            .await?
            .map(|v| String::from_utf8_lossy(&v.value).into_owned()))
    }
}
