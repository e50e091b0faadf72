//! Queries and deletes for the management API: the repositories of a
//! project, the artifacts (manifests) of a repository with their tags and
//! sizes, tags with their push times, and deleting a whole repository.
//!
//! Lists are read with ordered prefix scans in bounded pages and then
//! sliced, because the management API reports a total count
//! (`X-Total-Count`) and sorts artifacts newest first; what is kept per item
//! is a small summary, never a manifest body.

use super::outbox::with_event;
use super::{Registry, TXN_RETRIES};
use crate::error::CoreError;
use crate::events::EventKind;
use crate::keys;
use crate::kv::Txn;
use crate::registry::records::{ManifestRecord, RepoBlobRecord, RepoRecord, TagRecord};
use berth_oci::{Digest, ErrorCode, Reference, RepoName};
use std::collections::{HashMap, HashSet};

/// Keys deleted per transaction when a repository is removed, so that a huge
/// repository never becomes one huge transaction.
const DELETE_BATCH: usize = 256;

/// One page of a list, and how many items the whole list has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub total: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSummary {
    pub name: RepoName,
    /// Unix seconds.
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSummary {
    pub name: String,
    pub digest: Digest,
    /// When the tag last moved, Unix seconds.
    pub pushed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactSummary {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's `artifactType`, or its config's media type.
    pub artifact_type: Option<String>,
    /// The manifest itself.
    pub manifest_size: u64,
    /// The manifest plus the blobs it names directly (config and layers).
    pub size: u64,
    /// Unix seconds.
    pub pushed: u64,
    /// The manifest this one refers to (signatures, SBOMs...).
    pub subject: Option<Digest>,
    pub tags: Vec<TagSummary>,
}

/// What is kept of a manifest record while a list is sorted.
struct Found {
    digest: Digest,
    record: ManifestRecord,
}

impl Registry {
    /// The repositories of `project` (the one named like the project, then
    /// `<project>/...`), in name order, whose name contains `query`.
    pub async fn project_repositories(
        &self,
        project: &str,
        query: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Listing<RepoSummary>, CoreError> {
        let mut items = Vec::new();
        let mut total = 0;
        let mut keep = |name: &str, record: RepoRecord| {
            if query.is_some_and(|q| !name.contains(q)) {
                return;
            }
            if total >= offset && items.len() < limit {
                if let Some(name) = RepoName::parse(name) {
                    items.push(RepoSummary {
                        name,
                        created: record.created,
                    });
                }
            }
            total += 1;
        };
        if let Some(root) = RepoName::parse(project) {
            if let Some((record, _)) = self.read::<RepoRecord>(&keys::repo(&root)).await? {
                keep(project, record);
            }
        }
        let prefix = format!("{}{project}/", keys::REPO_PREFIX);
        self.for_each_under(&prefix, |key, v| {
            let record: RepoRecord = serde_json::from_slice(&v.value)?;
            keep(&key[keys::REPO_PREFIX.len()..], record);
            Ok(())
        })
        .await?;
        Ok(Listing { items, total })
    }

    /// How many repositories `project` has.
    pub async fn project_repository_count(&self, project: &str) -> Result<usize, CoreError> {
        Ok(self.project_repositories(project, None, 0, 0).await?.total)
    }

    pub async fn repository(&self, repo: &RepoName) -> Result<Option<RepoSummary>, CoreError> {
        Ok(self
            .read::<RepoRecord>(&keys::repo(repo))
            .await?
            .map(|(record, _)| RepoSummary {
                name: repo.clone(),
                created: record.created,
            }))
    }

    /// The manifests of `repo`, newest push first, with their tags.
    pub async fn artifacts(
        &self,
        repo: &RepoName,
        offset: usize,
        limit: usize,
    ) -> Result<Listing<ArtifactSummary>, CoreError> {
        self.require_repository(repo).await?;
        let prefix = keys::manifest_prefix(repo.as_str());
        let mut found = Vec::new();
        self.for_each_under(&prefix, |key, v| {
            let Ok(digest) = key[prefix.len()..].parse::<Digest>() else {
                return Ok(());
            };
            let mut record: ManifestRecord = serde_json::from_slice(&v.value)?;
            // Only the summary is needed; bodies can be 64 KiB each.
            record.body = None;
            record.annotations = None;
            found.push(Found { digest, record });
            Ok(())
        })
        .await?;
        found.sort_by(|a, b| {
            b.record
                .created
                .cmp(&a.record.created)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        let total = found.len();
        let page: Vec<Found> = found.into_iter().skip(offset).take(limit).collect();
        let wanted: HashSet<Digest> = page.iter().map(|f| f.digest.clone()).collect();
        let mut tags = self.tags_of(repo, &wanted).await?;
        let mut items = Vec::with_capacity(page.len());
        for f in page {
            let tags = tags.remove(&f.digest).unwrap_or_default();
            items.push(self.summarize(repo, f, tags).await?);
        }
        Ok(Listing { items, total })
    }

    /// One artifact, by tag or digest.
    pub async fn artifact(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ArtifactSummary, CoreError> {
        let digest = self.resolve(repo, reference).await?;
        let Some((mut record, _)) = self
            .read::<ManifestRecord>(&keys::manifest(repo, &digest))
            .await?
        else {
            return Err(CoreError::new(ErrorCode::ManifestUnknown));
        };
        record.body = None;
        let wanted = HashSet::from([digest.clone()]);
        let tags = self
            .tags_of(repo, &wanted)
            .await?
            .remove(&digest)
            .unwrap_or_default();
        self.summarize(repo, Found { digest, record }, tags).await
    }

    /// The digest a reference names in `repo`.
    pub async fn resolve(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Digest, CoreError> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => {
                match self.read::<TagRecord>(&keys::tag(repo, t.as_str())).await? {
                    Some((tag, _)) => Ok(tag.digest),
                    None => Err(CoreError::new(ErrorCode::ManifestUnknown)),
                }
            }
        }
    }

    /// The tags of `repo` in name order, only those pointing to `digest`
    /// when given.
    pub async fn repository_tags(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
        offset: usize,
        limit: usize,
    ) -> Result<Listing<TagSummary>, CoreError> {
        self.require_repository(repo).await?;
        let prefix = keys::tag_prefix(repo);
        let mut items = Vec::new();
        let mut total = 0;
        self.for_each_under(&prefix, |key, v| {
            let tag: TagRecord = serde_json::from_slice(&v.value)?;
            if digest.is_some_and(|d| *d != tag.digest) {
                return Ok(());
            }
            if total >= offset && items.len() < limit {
                items.push(TagSummary {
                    name: key[prefix.len()..].to_owned(),
                    digest: tag.digest,
                    pushed: tag.updated,
                });
            }
            total += 1;
            Ok(())
        })
        .await?;
        Ok(Listing { items, total })
    }

    /// Removes `repo` entirely: tags first (so that clients stop finding
    /// it), then manifests, referrer entries and blob links, then the
    /// repository record. Each step deletes in bounded transactions, so the
    /// removal is not atomic: a push racing it may leave content behind,
    /// and deleting again removes that. Blob bytes are left to garbage
    /// collection, as for every delete.
    pub async fn repository_delete(&self, repo: &RepoName) -> Result<(), CoreError> {
        self.require_repository(repo).await?;
        self.check_no_immutable_tags(repo, None).await?;
        // Cached tag lists end here, before the first tag goes. A failed
        // check means the record changed anyway, which ends them too.
        let (txn, exists) = self.bump_repo(repo, Txn::new()).await?;
        if exists {
            self.kv.commit(txn).await?;
        }
        for prefix in [
            keys::tag_prefix(repo),
            format!("man:{repo}@"),
            format!("ref:{repo}@"),
            format!("rblob:{repo}@"),
            keys::pulled_prefix(repo),
        ] {
            self.delete_prefix(&prefix).await?;
        }
        let key = keys::repo(repo);
        for _ in 0..TXN_RETRIES {
            let Some(seen) = self.kv.get(&key).await? else {
                return Ok(());
            };
            // The event goes with the last step: a removal that stopped
            // half-way is finished by deleting again, which records it.
            let event = self.event(EventKind::RepositoryDeleted, repo);
            let txn = Txn::new().if_unchanged(&key, Some(&seen)).delete(&key);
            if self.kv.commit(with_event(txn, &event)).await? {
                return Ok(());
            }
        }
        Err(super::contention())
    }

    async fn require_repository(&self, repo: &RepoName) -> Result<(), CoreError> {
        match self.kv.get(&keys::repo(repo)).await? {
            Some(_) => Ok(()),
            None => Err(CoreError::new(ErrorCode::NameUnknown)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), CoreError> {
        loop {
            // Always from the start: what was deleted is gone from the scan.
            let page = self.kv.scan(prefix, None, DELETE_BATCH).await?;
            if page.is_empty() {
                return Ok(());
            }
            let txn = page
                .into_iter()
                .fold(Txn::new(), |txn, (key, _)| txn.delete(key));
            self.kv.commit(txn).await?;
        }
    }

    /// Tags of `repo` pointing to any of `wanted`, by digest, in name order.
    async fn tags_of(
        &self,
        repo: &RepoName,
        wanted: &HashSet<Digest>,
    ) -> Result<HashMap<Digest, Vec<TagSummary>>, CoreError> {
        let mut out: HashMap<Digest, Vec<TagSummary>> = HashMap::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        let prefix = keys::tag_prefix(repo);
        self.for_each_under(&prefix, |key, v| {
            let tag: TagRecord = serde_json::from_slice(&v.value)?;
            if wanted.contains(&tag.digest) {
                out.entry(tag.digest.clone()).or_default().push(TagSummary {
                    name: key[prefix.len()..].to_owned(),
                    digest: tag.digest,
                    pushed: tag.updated,
                });
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Size counts the manifest and the blobs it names directly; an index's
    /// children are artifacts of their own and are not added in.
    async fn summarize(
        &self,
        repo: &RepoName,
        found: Found,
        tags: Vec<TagSummary>,
    ) -> Result<ArtifactSummary, CoreError> {
        let Found { digest, record } = found;
        let mut size = record.size;
        let mut seen = HashSet::new();
        for blob in &record.blobs {
            if !seen.insert(blob) {
                continue;
            }
            if let Some((link, _)) = self
                .read::<RepoBlobRecord>(&keys::repo_blob(repo, blob))
                .await?
            {
                size = size.saturating_add(link.size);
            }
        }
        Ok(ArtifactSummary {
            digest,
            media_type: record.media_type,
            artifact_type: record.artifact_type,
            manifest_size: record.size,
            size,
            pushed: record.created,
            subject: record.subject,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Kv;
    use crate::registry::tests::push;
    use crate::{MemoryBlobStore, MemoryKv};
    use std::sync::Arc;

    #[tokio::test]
    async fn lists_and_deletes() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let reg = Registry::new(kv.clone(), Arc::new(MemoryBlobStore::new()));
        let app = RepoName::parse("p/app").unwrap();
        let deep = RepoName::parse("p/a/b").unwrap();
        let root = RepoName::parse("p").unwrap();
        let other = RepoName::parse("pq/app").unwrap();
        let d1 = push(&reg, &app, "v1", b"one").await;
        push(&reg, &app, "latest", b"one").await;
        let d2 = push(&reg, &app, "v2", b"two!").await;
        push(&reg, &deep, "v1", b"x").await;
        push(&reg, &root, "v1", b"x").await;
        push(&reg, &other, "v1", b"x").await;

        let all = reg.project_repositories("p", None, 0, 10).await.unwrap();
        let names: Vec<&str> = all.items.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["p", "p/a/b", "p/app"], "not pq/app");
        assert_eq!(reg.project_repository_count("p").await.unwrap(), 3);
        let page = reg.project_repositories("p", None, 1, 1).await.unwrap();
        assert_eq!((page.items.len(), page.total), (1, 3));
        assert_eq!(page.items[0].name.as_str(), "p/a/b");
        let found = reg
            .project_repositories("p", Some("ap"), 0, 10)
            .await
            .unwrap();
        assert_eq!(found.total, 1);

        let arts = reg.artifacts(&app, 0, 10).await.unwrap();
        assert_eq!(arts.total, 2);
        let a1 = arts.items.iter().find(|a| a.digest == d1).unwrap();
        let tags: Vec<&str> = a1.tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tags, ["latest", "v1"]);
        assert_eq!(a1.size, a1.manifest_size + 3 + 2);
        assert_eq!(
            a1.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let one = reg
            .artifact(&app, &Reference::parse("v2").unwrap())
            .await
            .unwrap();
        assert_eq!(one.digest, d2);
        let by_digest = reg.repository_tags(&app, Some(&d1), 0, 10).await.unwrap();
        assert_eq!(by_digest.total, 2);
        assert_eq!(
            reg.repository_tags(&app, None, 2, 10)
                .await
                .unwrap()
                .items
                .len(),
            1
        );

        reg.repository_delete(&app).await.unwrap();
        assert!(reg.repository(&app).await.unwrap().is_none());
        for prefix in [
            "tag:p/app@",
            "man:p/app@",
            "rblob:p/app@",
            "ref:p/app@",
            "pulled:p/app@",
        ] {
            assert!(
                kv.scan(prefix, None, 10).await.unwrap().is_empty(),
                "{prefix}"
            );
        }
        assert!(
            reg.repository(&deep).await.unwrap().is_some(),
            "others kept"
        );
        assert!(reg.artifacts(&app, 0, 10).await.is_err());
        assert_eq!(reg.project_repository_count("p").await.unwrap(), 2);
    }
}
