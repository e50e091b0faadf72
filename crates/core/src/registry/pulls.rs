//! When each manifest was last pulled, for the web UI: `pulled:<repo>@<digest>`
//! holds the time of the latest GET of that manifest. It is rewritten at most
//! once a minute per manifest, so pulls cost one small read and, now and
//! then, one small write; the time shown is exact to that minute.

use super::{encode, Registry};
use crate::error::CoreError;
use crate::keys;
use berth_oci::{Digest, RepoName};
use serde::{Deserialize, Serialize};

/// A pull record is not rewritten while it is younger than this.
const RESOLUTION_SECS: u64 = 60;

/// Manifests whose pull this node remembers noting; past it, it starts over.
const NOTED_PULLS: usize = 10_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PullRecord {
    /// Unix seconds.
    pub at: u64,
}

/// Whether a pull noted at `seen` still stands at `at`, both Unix seconds.
fn fresh(seen: u64, at: u64) -> bool {
    at < seen.saturating_add(RESOLUTION_SECS)
}

impl Registry {
    /// Whether this node noted a pull of `digest` from `repo` less than
    /// [`RESOLUTION_SECS`] ago, so that [`Registry::record_pull`] would do
    /// nothing: the caller need not even start it.
    pub fn pull_noted_recently(&self, repo: &RepoName, digest: &Digest) -> bool {
        let noted = self.pulls_noted.lock().unwrap_or_else(|e| e.into_inner());
        noted
            .get(&keys::pulled(repo, digest))
            .is_some_and(|seen| fresh(*seen, self.now()))
    }

    /// Notes that `digest` was pulled from `repo` now. Without a look at
    /// the store when this node noted it less than [`RESOLUTION_SECS`] ago:
    /// pulls then cost nothing here at all.
    pub async fn record_pull(&self, repo: &RepoName, digest: &Digest) -> Result<(), CoreError> {
        let key = keys::pulled(repo, digest);
        let at = self.now();
        {
            let mut noted = self.pulls_noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted.get(&key).is_some_and(|seen| fresh(*seen, at)) {
                return Ok(());
            }
            if noted.len() >= NOTED_PULLS {
                noted.clear();
            }
            noted.insert(key.clone(), at);
        }
        if let Some((seen, _)) = self.read::<PullRecord>(&key).await? {
            if fresh(seen.at, at) {
                return Ok(());
            }
        }
        self.kv.put(&key, encode(&PullRecord { at })).await?;
        Ok(())
    }

    /// When `digest` was last pulled from `repo` (Unix seconds), if ever.
    pub async fn last_pulled(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, CoreError> {
        Ok(self
            .read::<PullRecord>(&keys::pulled(repo, digest))
            .await?
            .map(|(r, _)| r.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::kv::Kv;
    use crate::{MemoryBlobStore, MemoryKv};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn records_at_most_once_a_minute() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let clock = Arc::new(ManualClock::default());
        let node = || {
            Registry::new(kv.clone(), Arc::new(MemoryBlobStore::new())).with_clock(clock.clone())
        };
        let reg = node();
        let repo = RepoName::parse("p/app").unwrap();
        let digest = Digest::sha256_of(b"m");
        let version = || async {
            let record = kv.get(&keys::pulled(&repo, &digest)).await.unwrap();
            record.map(|r| r.version)
        };
        assert_eq!(reg.last_pulled(&repo, &digest).await.unwrap(), None);
        reg.record_pull(&repo, &digest).await.unwrap();
        let first = version().await;
        assert_eq!(
            reg.last_pulled(&repo, &digest).await.unwrap(),
            Some(reg.now())
        );
        clock.advance(Duration::from_secs(RESOLUTION_SECS - 1));
        reg.record_pull(&repo, &digest).await.unwrap();
        assert_eq!(version().await, first, "not rewritten within a minute");
        assert!(reg.pull_noted_recently(&repo, &digest));
        // Nor by a node that has not noted it itself: the record is fresh.
        let other = node();
        assert!(!other.pull_noted_recently(&repo, &digest));
        other.record_pull(&repo, &digest).await.unwrap();
        assert_eq!(version().await, first);

        clock.advance(Duration::from_secs(1));
        assert!(!reg.pull_noted_recently(&repo, &digest));
        reg.record_pull(&repo, &digest).await.unwrap();
        assert_ne!(version().await, first, "rewritten once a minute passed");
        assert_eq!(
            other.last_pulled(&repo, &digest).await.unwrap(),
            Some(reg.now())
        );
    }
}
