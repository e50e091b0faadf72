//! Content discovery: tags of a repository, the catalog, and referrers of a
//! manifest. Lists come from ordered `Kv` scans, so pagination with `n` and
//! `last` costs one range read.
//!
//! A repository's tag names are also cached whole, under the version of its
//! repository record: every change to a tag rewrites that record in the
//! same transaction (see [`Registry::bump_repo`]), and every tags list
//! reads it anyway to answer NAME_UNKNOWN. A cached list is served only
//! when the version read now is the one it was read under, so a list is
//! never older than the record: correct on one node and across a cluster,
//! with no invalidation messages.

use super::Registry;
use crate::error::CoreError;
use crate::keys;
use crate::kv::Txn;
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, ErrorCode, RepoName};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Page size when the client sets no `n`.
const SCAN_PAGE: usize = 1000;

/// Repositories with more tags than this are listed page by page from the
/// store, never cached whole.
const CACHED_TAGS_PER_REPO: usize = 100_000;

/// Tag names kept in the cache at most, over all repositories; past it the
/// cache starts over.
const CACHED_TAGS: usize = 500_000;

/// Names in order: a window onto a list that may be shared with a cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    names: Arc<[String]>,
    range: Range<usize>,
    /// Whether more items follow the last one returned.
    pub more: bool,
}

impl Page {
    pub fn new(items: Vec<String>, more: bool) -> Self {
        let end = items.len();
        Page {
            names: items.into(),
            range: 0..end,
            more,
        }
    }

    pub fn items(&self) -> &[String] {
        &self.names[self.range.clone()]
    }

    /// The names strictly after `last`, at most `n`, of the sorted `names`.
    fn window(names: Arc<[String]>, n: Option<usize>, last: Option<&str>) -> Self {
        let start = last.map_or(0, |l| names.partition_point(|t| t.as_str() <= l));
        let end = start
            .saturating_add(n.unwrap_or(usize::MAX))
            .min(names.len());
        Page {
            more: end < names.len(),
            names,
            range: start..end,
        }
    }
}

/// A repository's whole tag list, or `None` when it has more than
/// [`CACHED_TAGS_PER_REPO`], with the version of its repository record it
/// was read under.
type VersionedTags = (u64, Option<Arc<[String]>>);

/// Whole tag lists by repository.
#[derive(Default)]
pub(crate) struct TagCache {
    entries: Mutex<HashMap<String, VersionedTags>>,
}

impl TagCache {
    /// What is known of `repo`'s tags at `version`: `None` when nothing,
    /// `Some(None)` when they are too many to cache.
    fn get(&self, repo: &str, version: u64) -> Option<Option<Arc<[String]>>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(repo) {
            Some((v, names)) if *v == version => Some(names.clone()),
            _ => None,
        }
    }

    fn put(&self, repo: &str, version: u64, names: Option<Arc<[String]>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let size = |n: &Option<Arc<[String]>>| n.as_ref().map_or(0, |n| n.len());
        let held: usize = entries.values().map(|(_, n)| size(n)).sum();
        if held + size(&names) > CACHED_TAGS {
            entries.clear();
        }
        entries.insert(repo.to_owned(), (version, names));
    }
}

impl Registry {
    pub async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, CoreError> {
        let Some(record) = self.kv.get(&keys::repo(repo)).await? else {
            return Err(CoreError::new(ErrorCode::NameUnknown));
        };
        let prefix = keys::tag_prefix(repo);
        match self.tag_cache.get(repo.as_str(), record.version) {
            Some(Some(names)) => return Ok(Page::window(names, n, last)),
            // Too many to cache: page from the store, without first reading
            // the cap's worth of tags again on every request.
            Some(None) => return self.list(&prefix, n, last).await,
            None => {}
        }
        // Read after the record: if a tag changed since, so did the record,
        // and this list is never served under the newer version.
        let whole = self.list(&prefix, Some(CACHED_TAGS_PER_REPO), None).await?;
        if whole.more {
            self.tag_cache.put(repo.as_str(), record.version, None);
            return self.list(&prefix, n, last).await;
        }
        self.tag_cache
            .put(repo.as_str(), record.version, Some(whole.names.clone()));
        Ok(Page::window(whole.names, n, last))
    }

    /// Adds to `txn` a rewrite of `repo`'s record, checked to be the one
    /// read here, so the change `txn` makes to the repository's tags
    /// invalidates cached tag lists. The flag is false, and `txn` returned
    /// as it was, when the repository has no record.
    pub(super) async fn bump_repo(
        &self,
        repo: &RepoName,
        txn: Txn,
    ) -> Result<(Txn, bool), CoreError> {
        let key = keys::repo(repo);
        Ok(match self.kv.get(&key).await? {
            Some(seen) => (
                txn.if_unchanged(&key, Some(&seen)).put(&key, seen.value),
                true,
            ),
            None => (txn, false),
        })
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
            return Ok(Page::new(items, false));
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
                    return Ok(Page::new(items, true));
                }
                key.drain(..prefix.len());
                items.push(key);
            }
            if exhausted {
                return Ok(Page::new(items, false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobStore;
    use crate::kv::Kv;
    use crate::registry::tests::push;
    use crate::{MemoryBlobStore, MemoryKv};
    use berth_oci::Reference;

    fn names(page: &Page) -> Vec<&str> {
        page.items().iter().map(String::as_str).collect()
    }

    /// Two registries on one store stand for two nodes of a cluster: each
    /// has its own tag cache, and neither may serve a list older than the
    /// store.
    #[tokio::test]
    async fn cached_tag_lists_follow_every_change_on_any_node() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
        let a = Registry::new(kv.clone(), blobs.clone());
        let b = Registry::new(kv.clone(), blobs);
        let repo = RepoName::parse("p/app").unwrap();
        let tags = |reg: &Registry| {
            let (reg, repo) = (reg.clone(), repo.clone());
            async move { reg.tags(&repo, None, None).await.unwrap() }
        };
        push(&a, &repo, "v1", b"one").await;
        let two = push(&a, &repo, "v2", b"two").await;
        push(&a, &repo, "v3", b"two").await;
        assert_eq!(names(&tags(&a).await), ["v1", "v2", "v3"]);
        assert_eq!(names(&tags(&b).await), ["v1", "v2", "v3"]);

        // Pages come from the cached list.
        let page = a.tags(&repo, Some(1), Some("v1")).await.unwrap();
        assert_eq!((names(&page), page.more), (vec!["v2"], true));
        let page = a.tags(&repo, Some(5), Some("v2")).await.unwrap();
        assert_eq!((names(&page), page.more), (vec!["v3"], false));
        let page = a.tags(&repo, Some(0), None).await.unwrap();
        assert_eq!((names(&page), page.more), (Vec::<&str>::new(), true));
        let page = a.tags(&repo, None, Some("v0")).await.unwrap();
        assert_eq!(names(&page), ["v1", "v2", "v3"], "last need not exist");

        // A tag added, moved or deleted on one node shows on the other.
        push(&b, &repo, "v4", b"four").await;
        assert_eq!(names(&tags(&a).await), ["v1", "v2", "v3", "v4"]);
        b.manifest_delete(&repo, &Reference::parse("v1").unwrap())
            .await
            .unwrap();
        assert_eq!(names(&tags(&a).await), ["v2", "v3", "v4"]);
        // Deleting by digest takes every tag pointing to it.
        a.manifest_delete(&repo, &Reference::Digest(two))
            .await
            .unwrap();
        assert_eq!(names(&tags(&b).await), ["v4"]);
        assert_eq!(names(&tags(&a).await), ["v4"]);

        // A deleted repository is unknown, and one pushed again under the
        // same name lists only its new tags.
        b.repository_delete(&repo).await.unwrap();
        let gone = a.tags(&repo, None, None).await.unwrap_err();
        assert_eq!(gone.code, ErrorCode::NameUnknown);
        push(&b, &repo, "again", b"x").await;
        assert_eq!(names(&tags(&a).await), ["again"]);
    }
}
