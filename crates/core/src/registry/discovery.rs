//! Content discovery: tags of a repository, the catalog, and referrers of a
//! manifest. Lists come straight from ordered `Kv` scans, so pagination with
//! `n` and `last` costs one range read.

use super::Registry;
use crate::error::CoreError;
use crate::keys;
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, ErrorCode, RepoName};

/// Page size when the client sets no `n`.
const SCAN_PAGE: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// Whether more items follow the last one returned.
    pub more: bool,
}

impl Registry {
    pub async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, CoreError> {
        if self.kv.get(&keys::repo(repo)).await?.is_none() {
            return Err(CoreError::new(ErrorCode::NameUnknown));
        }
        self.list(&keys::tag_prefix(repo), n, last).await
    }

    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<Page, CoreError> {
        self.list(keys::REPO_PREFIX, n, last).await
    }

    /// Manifests whose `subject` is `digest`, optionally only those of one
    /// artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, CoreError> {
        let prefix = keys::referrer_prefix(repo, digest);
        let mut out = Vec::new();
        self.for_each_under(&prefix, |_, v| {
            let d: Descriptor = serde_json::from_slice(&v.value)?;
            if artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)) {
                out.push(d);
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Names under `prefix` (the prefix stripped), after `last`, at most `n`
    /// (all when `n` is absent).
    async fn list(
        &self,
        prefix: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, CoreError> {
        let mut items = Vec::new();
        let mut after = last.map(|l| format!("{prefix}{l}"));
        let want = n.unwrap_or(usize::MAX);
        if want == 0 {
            return Ok(Page { items, more: false });
        }
        loop {
            let room = want.saturating_sub(items.len());
            // One extra to learn whether another page follows.
            let limit = room.saturating_add(1).min(SCAN_PAGE);
            let page = self.kv.scan_keys(prefix, after.as_deref(), limit).await?;
            let exhausted = page.len() < limit;
            after = page.last().cloned();
            for mut key in page {
                if items.len() == want {
                    return Ok(Page { items, more: true });
                }
                key.drain(..prefix.len());
                items.push(key);
            }
            if exhausted {
                return Ok(Page { items, more: false });
            }
        }
    }
}
