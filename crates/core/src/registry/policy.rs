//! Per-project policies, Harbor's: a storage quota, tag immutability rules
//! and tag retention rules, kept in one record `policy:<project>`.
//!
//! - **Quota**: the bytes of the distinct blobs linked into the project's
//!   repositories (a layer shared by several repositories counts once).
//!   Checked before an upload's bytes are accepted when their size is
//!   known, and again when a blob is linked; the answer is `DENIED`. Two
//!   pushes racing may together pass the limit by what they add at once.
//! - **Immutability**: a tag matching a rule, once pushed, is never moved
//!   to another manifest nor deleted (nor its manifest, nor its
//!   repository): `DENIED`.
//! - **Retention**: a tag survives a retention run if any rule keeps it;
//!   the others are deleted (their manifests then wait for garbage
//!   collection). Immutable tags are always kept. No rules, no deletions.

use super::{encode, Registry};
use crate::error::CoreError;
use crate::keys;
use crate::registry::records::{RepoBlobRecord, TagRecord};
use berth_oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The project a repository belongs to: its first path component.
/// The error of anything that would pass `project`'s quota (`DENIED`,
/// as Harbor answers), saying why.
pub(super) fn quota_exceeded(project: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::with_detail(
        ErrorCode::Denied,
        format!("storage quota of project {project} exceeded: {why}"),
    )
}

pub fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

fn policy_key(project: &str) -> String {
    keys::policy(project)
}

fn any() -> String {
    "**".into()
}

/// Which tags a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagSelector {
    /// Repository names inside the project (without `<project>/`): `*`
    /// matches within one path segment, `**` across segments, `?` one
    /// character. Default `**`: every repository.
    #[serde(default = "any")]
    pub repositories: String,
    /// Tag names, same syntax, e.g. `v*` or `release-?.?`.
    pub tags: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    #[serde(default = "any")]
    pub repositories: String,
    /// Only tags matching this (default `**`: all) are considered by the rule.
    #[serde(default = "any")]
    pub tags: String,
    /// Keep the N most recently pushed tags of each repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_pushed: Option<usize>,
    /// Keep tags pushed within this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_within_days: Option<u64>,
    /// Keep tags whose manifest was pulled within this many days (what a
    /// proxy cache wants: what is in use stays, whenever it was cached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled_within_days: Option<u64>,
}

impl RetentionRule {
    /// Whether the rule keeps by something other than its pattern.
    fn has_condition(&self) -> bool {
        self.latest_pushed.is_some()
            || self.pushed_within_days.is_some()
            || self.pulled_within_days.is_some()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPolicy {
    /// Storage limit in bytes; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    #[serde(default)]
    pub immutable: Vec<TagSelector>,
    #[serde(default)]
    pub retention: Vec<RetentionRule>,
}

/// `*` within a path segment, `**` across, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) if rest.first() == Some(&b'*') => {
                let rest = &rest[1..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some((b'*', rest)) => {
                let seg = t.iter().position(|c| *c == b'/').unwrap_or(t.len());
                (0..=seg).any(|i| go(rest, &t[i..]))
            }
            Some((b'?', rest)) => t.first().is_some_and(|c| *c != b'/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// A repository's name inside its project (`_` for the one named like it).
fn inner_name(repo: &str) -> &str {
    repo.split_once('/').map_or("_", |(_, rest)| rest)
}

impl TagSelector {
    pub fn matches(&self, repo: &str, tag: &str) -> bool {
        glob(&self.repositories, inner_name(repo)) && glob(&self.tags, tag)
    }
}

impl ProjectPolicy {
    pub fn validate(&self) -> Result<(), String> {
        for r in &self.retention {
            if !r.has_condition() && r.tags == "**" {
                return Err("a retention rule needs latest_pushed, pushed_within_days, \
                     pulled_within_days or a tags pattern"
                    .into());
            }
        }
        for s in &self.immutable {
            if s.tags.is_empty() {
                return Err("an immutability rule needs a tags pattern".into());
            }
        }
        Ok(())
    }

    fn immutable(&self, repo: &str, tag: &str) -> bool {
        self.immutable.iter().any(|s| s.matches(repo, tag))
    }
}

/// One tag a retention run deletes (or, dry, would delete).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    pub project: String,
    pub dry_run: bool,
    pub started: u64,
    pub tags_examined: u64,
    /// `<repository>:<tag>` of every tag deleted.
    pub deleted: Vec<String>,
}

impl Registry {
    pub async fn project_policy(&self, project: &str) -> Result<ProjectPolicy, CoreError> {
        Ok(self
            .read::<ProjectPolicy>(&policy_key(project))
            .await?
            .map(|(p, _)| p)
            .unwrap_or_default())
    }

    pub async fn set_project_policy(
        &self,
        project: &str,
        policy: &ProjectPolicy,
    ) -> Result<(), CoreError> {
        policy
            .validate()
            .map_err(|e| CoreError::with_detail(ErrorCode::Unsupported, e))?;
        self.kv.put(&policy_key(project), encode(policy)).await?;
        Ok(())
    }

    /// Bytes of the distinct blobs linked into the project's repositories.
    pub async fn project_usage(&self, project: &str) -> Result<u64, CoreError> {
        Ok(self.project_links(project).await?.values().sum())
    }

    /// Digest -> size of every blob linked into `project`.
    async fn project_links(&self, project: &str) -> Result<HashMap<Digest, u64>, CoreError> {
        let mut sizes = HashMap::new();
        let prefix = keys::repo_blob_project_prefix(project);
        self.for_each_under(&prefix, |key, v| {
            let rest = &key[keys::REPO_BLOB_PREFIX.len()..];
            if let Some((repo, digest)) = rest.split_once('@') {
                if project_of(repo) == project {
                    if let Ok(d) = digest.parse::<Digest>() {
                        let link: RepoBlobRecord = serde_json::from_slice(&v.value)?;
                        sizes.insert(d, link.size);
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(sizes)
    }

    /// What `project`'s quota counts: its linked blobs and the bytes its
    /// open uploads have received, but those of upload `except`.
    pub(super) async fn quota_usage(
        &self,
        project: &str,
        except: Option<&str>,
    ) -> Result<QuotaUsage, CoreError> {
        Ok(QuotaUsage {
            links: self.project_links(project).await?,
            pending: self.pending_upload_bytes(project, except).await?,
        })
    }

    /// Refuses `extra` more bytes in `repo`'s project when that passes its
    /// quota. `digest`, when known, is not counted if the project has it.
    /// The bytes open uploads have received count as used, but those of
    /// `upload`, whose bytes `extra` already counts.
    pub async fn check_quota(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
        extra: u64,
        upload: Option<&str>,
    ) -> Result<(), CoreError> {
        let project = project_of(repo.as_str());
        match self.project_policy(project).await?.quota_bytes {
            Some(limit) => {
                self.check_quota_of(project, limit, digest, extra, upload)
                    .await
            }
            None => Ok(()),
        }
    }

    /// [`Registry::check_quota`] for a `project` whose quota, `limit`, the
    /// caller has read already.
    pub(super) async fn check_quota_of(
        &self,
        project: &str,
        limit: u64,
        digest: Option<&Digest>,
        extra: u64,
        upload: Option<&str>,
    ) -> Result<(), CoreError> {
        let usage = self.quota_usage(project, upload).await?;
        if digest.is_some_and(|d| usage.links.contains_key(d)) {
            return Ok(());
        }
        let used = usage.used();
        if used.saturating_add(extra) > limit {
            return Err(quota_exceeded(
                project,
                format!("{used} of {limit} bytes used, {extra} more needed"),
            ));
        }
        Ok(())
    }

    pub(super) async fn tag_is_immutable(
        &self,
        repo: &RepoName,
        tag: &str,
    ) -> Result<bool, CoreError> {
        let policy = self.project_policy(project_of(repo.as_str())).await?;
        Ok(policy.immutable(repo.as_str(), tag))
    }

    /// Refuses to move `tag` of `repo` away from `digest`, or to delete it,
    /// when an immutability rule covers it.
    pub(super) async fn check_tag_change(
        &self,
        repo: &RepoName,
        tag: &str,
        new_digest: Option<&Digest>,
    ) -> Result<(), CoreError> {
        let policy = self.project_policy(project_of(repo.as_str())).await?;
        if policy.immutable.is_empty() || !policy.immutable(repo.as_str(), tag) {
            return Ok(());
        }
        let Some((current, _)) = self.read::<TagRecord>(&keys::tag(repo, tag)).await? else {
            return Ok(());
        };
        if new_digest == Some(&current.digest) {
            return Ok(());
        }
        Err(CoreError::with_detail(
            ErrorCode::Denied,
            format!("tag {repo}:{tag} is immutable"),
        ))
    }

    /// Refuses to delete manifest `digest` (or the whole repository, when
    /// `None`) while an immutable tag points into it.
    pub(super) async fn check_no_immutable_tags(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
    ) -> Result<(), CoreError> {
        let policy = self.project_policy(project_of(repo.as_str())).await?;
        if policy.immutable.is_empty() {
            return Ok(());
        }
        let prefix = keys::tag_prefix(repo);
        let mut found = None;
        self.for_each_under(&prefix, |key, v| {
            let tag: TagRecord = serde_json::from_slice(&v.value)?;
            let name = &key[prefix.len()..];
            if digest.is_none_or(|d| *d == tag.digest) && policy.immutable(repo.as_str(), name) {
                found.get_or_insert_with(|| name.to_owned());
            }
            Ok(())
        })
        .await?;
        match found {
            None => Ok(()),
            Some(tag) => Err(CoreError::with_detail(
                ErrorCode::Denied,
                format!("tag {repo}:{tag} is immutable"),
            )),
        }
    }

    /// Applies the project's retention rules: deletes (or, dry, lists) every
    /// tag no rule keeps.
    pub async fn apply_retention(
        &self,
        project: &str,
        dry_run: bool,
    ) -> Result<RetentionReport, CoreError> {
        let policy = self.project_policy(project).await?;
        let mut report = RetentionReport {
            project: project.to_owned(),
            dry_run,
            started: self.now(),
            tags_examined: 0,
            deleted: Vec::new(),
        };
        if policy.retention.is_empty() {
            return Ok(report);
        }
        let mut repos = Vec::new();
        self.for_each_under(&format!("{}{project}", keys::REPO_PREFIX), |key, _| {
            let name = &key[keys::REPO_PREFIX.len()..];
            if project_of(name) == project {
                repos.push(name.to_owned());
            }
            Ok(())
        })
        .await?;
        let day = 86_400;
        for repo in repos {
            let Some(name) = RepoName::parse(&repo) else {
                continue;
            };
            let prefix = keys::tag_prefix(&name);
            let mut tags: Vec<(String, u64)> = Vec::new();
            let mut digests = Vec::new();
            self.for_each_under(&prefix, |key, v| {
                let tag: TagRecord = serde_json::from_slice(&v.value)?;
                tags.push((key[prefix.len()..].to_owned(), tag.updated));
                digests.push((key[prefix.len()..].to_owned(), tag.digest));
                Ok(())
            })
            .await?;
            // When each tag's manifest was last pulled, for the rules that
            // ask.
            let mut pulled = std::collections::HashMap::new();
            if policy
                .retention
                .iter()
                .any(|r| r.pulled_within_days.is_some())
            {
                for (tag, digest) in digests {
                    if let Some(at) = self.last_pulled(&name, &digest).await? {
                        pulled.insert(tag, at);
                    }
                }
            }
            report.tags_examined += tags.len() as u64;
            // Newest first, for "the N most recently pushed".
            tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut keep = vec![false; tags.len()];
            for rule in &policy.retention {
                if !glob(&rule.repositories, inner_name(&repo)) {
                    continue;
                }
                let mut rank = 0;
                for (i, (tag, pushed)) in tags.iter().enumerate() {
                    if !glob(&rule.tags, tag) {
                        continue;
                    }
                    let by_count = rule.latest_pushed.is_some_and(|n| rank < n);
                    let by_age = rule
                        .pushed_within_days
                        .is_some_and(|d| report.started.saturating_sub(*pushed) < d * day);
                    let by_pull = rule.pulled_within_days.is_some_and(|d| {
                        pulled
                            .get(tag)
                            .is_some_and(|at| report.started.saturating_sub(*at) < d * day)
                    });
                    let by_pattern_only = !rule.has_condition();
                    if by_count || by_age || by_pull || by_pattern_only {
                        keep[i] = true;
                    }
                    rank += 1;
                }
            }
            for (i, (tag, _)) in tags.iter().enumerate() {
                if keep[i] || policy.immutable(&repo, tag) {
                    continue;
                }
                if !dry_run {
                    let Some(t) = Tag::parse(tag) else { continue };
                    match self.manifest_delete(&name, &Reference::Tag(t)).await {
                        Ok(()) => {}
                        // Deleted meanwhile.
                        Err(e) if e.code == ErrorCode::ManifestUnknown => continue,
                        Err(e) => return Err(e),
                    }
                }
                report.deleted.push(format!("{repo}:{tag}"));
            }
        }
        Ok(report)
    }

    /// Retention for every project that has rules.
    pub async fn apply_all_retention(&self) -> Result<Vec<RetentionReport>, CoreError> {
        let mut projects = Vec::new();
        self.for_each_under(keys::POLICY_PREFIX, |key, v| {
            let policy: ProjectPolicy = serde_json::from_slice(&v.value)?;
            if !policy.retention.is_empty() {
                projects.push(key[keys::POLICY_PREFIX.len()..].to_owned());
            }
            Ok(())
        })
        .await?;
        let mut reports = Vec::new();
        for project in projects {
            reports.push(self.apply_retention(&project, false).await?);
        }
        Ok(reports)
    }
}

/// The bytes a project's quota counts (see [`Registry::quota_usage`]).
pub(super) struct QuotaUsage {
    /// Digest -> size of every blob linked into the project.
    pub links: HashMap<Digest, u64>,
    /// Bytes received by its open uploads.
    pub pending: u64,
}

impl QuotaUsage {
    pub fn used(&self) -> u64 {
        self.links
            .values()
            .sum::<u64>()
            .saturating_add(self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("v*", "v1.2"));
        assert!(!glob("v*", "latest"));
        assert!(glob("**", "a/b/c"));
        assert!(glob("*", "app"));
        assert!(!glob("*", "a/b"));
        assert!(glob("a/**", "a/b/c"));
        assert!(glob("release-?", "release-1"));
        assert!(!glob("release-?", "release-10"));
        assert!(glob("", ""));
        assert!(glob("*-prod", "v1-prod"));
    }

    #[test]
    fn selectors_see_names_inside_the_project() {
        let s = TagSelector {
            repositories: "app*".into(),
            tags: "v*".into(),
        };
        assert!(s.matches("team/app", "v1"));
        assert!(s.matches("team/app2", "v1"));
        assert!(!s.matches("team/web", "v1"));
        assert!(!s.matches("team/app", "latest"));
        let all = TagSelector {
            repositories: any(),
            tags: "*".into(),
        };
        assert!(all.matches("team", "x"));
        assert!(all.matches("team/a/b", "x"));
    }

    #[test]
    fn policies_deserialize_strictly() {
        let p: ProjectPolicy = serde_json::from_str(
            r#"{"quota_bytes": 10, "immutable": [{"tags": "v*"}],
                "retention": [{"latest_pushed": 3}, {"tags": "release-*"}]}"#,
        )
        .unwrap();
        assert_eq!(p.immutable[0].repositories, "**");
        assert!(p.validate().is_ok());
        assert!(serde_json::from_str::<ProjectPolicy>(r#"{"nope": 1}"#).is_err());
        let empty_rule: ProjectPolicy =
            serde_json::from_str(r#"{"retention": [{"repositories": "a"}]}"#).unwrap();
        assert!(empty_rule.validate().is_err());
    }
}
