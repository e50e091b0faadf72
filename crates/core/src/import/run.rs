//! The import of one tree, repository by repository: blobs first, then
//! manifests with every child before its parent (images, then the indexes
//! naming them, level by level), then tags. Every step is one of the
//! registry's transactions, and every step first asks whether berth has
//! it already, so a second run changes nothing and a run after a crash
//! finishes the work. The steps are in `blobs` and `manifests` (with tags);
//! this module lists the tree and runs them per repository.

use super::manifests::ManifestState;
use super::report::{ImportReport, Progress};
use super::tree::{self, RepoLinks, Tree};
use crate::blob::StoreError;
use crate::error::CoreError;
use crate::registry::Registry;
use async_trait::async_trait;
use berth_oci::{Digest, ErrorCode, RepoName};
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// How an import goes.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Re-hash every blob adopted in place (copied ones are always
    /// verified as they stream in). Without it, an adopted blob is checked
    /// for existence and for the size its manifests give.
    pub verify: bool,
    /// The tree is the registry's own blob store (the same directory or
    /// bucket, in the Distribution layout): a blob the store lacks is
    /// missing, not something to copy.
    pub in_place: bool,
    /// Blobs and manifests handled at once.
    pub jobs: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            verify: false,
            in_place: false,
            jobs: 8,
        }
    }
}

/// Projects (the first segment of a repository name) live outside the
/// registry (in the auth directory): the import asks for each one it
/// fills.
#[async_trait]
pub trait Projects: Send + Sync {
    /// Makes sure `project` exists; `true` when this call created it.
    async fn ensure(&self, project: &str) -> Result<bool, String>;
}

/// One import of `tree` into `registry`.
pub struct Importer<'a> {
    pub(super) registry: &'a Registry,
    pub(super) tree: &'a dyn Tree,
    projects: &'a dyn Projects,
    pub(super) options: ImportOptions,
    pub(super) progress: Arc<Progress>,
}

/// A domain error: a refusal of the content (skip it, saying why) or a
/// fault of berth's (fail, and a rerun may do better).
pub(super) enum Refusal {
    Skip(String),
    Fail(String),
}

pub(super) fn refusal(e: CoreError) -> Refusal {
    match e.code {
        ErrorCode::Internal | ErrorCode::Unavailable => Refusal::Fail(e.to_string()),
        _ => Refusal::Skip(e.detail.unwrap_or_else(|| e.code.message().to_owned())),
    }
}

pub(super) fn store_failure(e: StoreError) -> String {
    format!("reading the source: {e}")
}

/// The order of the results of [`Importer::each`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Order {
    /// That of the items.
    Kept,
    /// As the work on them finishes: a slow item holds up no other.
    Finished,
}

impl<'a> Importer<'a> {
    pub fn new(
        registry: &'a Registry,
        tree: &'a dyn Tree,
        projects: &'a dyn Projects,
        options: ImportOptions,
    ) -> Self {
        Importer {
            registry,
            tree,
            projects,
            options,
            progress: Arc::default(),
        }
    }

    /// The progress counters, for showing while [`Importer::run`] goes.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Runs `work` on each of `items`, `jobs` (of the options) at a time;
    /// the results in `order`.
    pub(super) async fn each<I, T, Fut>(
        &self,
        items: I,
        order: Order,
        work: impl FnMut(I::Item) -> Fut,
    ) -> Vec<T>
    where
        I: IntoIterator,
        Fut: std::future::Future<Output = T>,
    {
        let jobs = self.options.jobs.max(1);
        let started = futures_util::stream::iter(items).map(work);
        match order {
            Order::Kept => started.buffered(jobs).collect().await,
            Order::Finished => started.buffer_unordered(jobs).collect().await,
        }
    }

    /// Imports everything; `Err` only when the tree cannot be listed at
    /// all. Anything else that goes wrong is in the report: skipped (the
    /// source's content) or failed (berth's side; rerun).
    pub async fn run(&self) -> Result<ImportReport, CoreError> {
        let names = tree::repositories(self.tree)
            .await
            .map_err(|e| CoreError::unavailable(store_failure(e)))?;
        let listed: Vec<Result<RepoLinks, (String, StoreError)>> = self
            .each(names, Order::Kept, |name| async move {
                tree::repo_links(self.tree, &name)
                    .await
                    .map_err(|e| (name, e))
            })
            .await;
        let mut report = ImportReport::default();
        let mut repos = Vec::new();
        for entry in listed {
            match entry {
                Ok(links) => repos.push(links),
                Err((name, e)) => {
                    report.repositories.failed += 1;
                    report.fail(format!("repository {name}"), store_failure(e));
                }
            }
        }
        let p = &self.progress;
        p.repositories.add_total(repos.len() as u64);
        for links in &repos {
            p.manifests.add_total(links.revisions.len() as u64);
            p.blobs.add_total(links.layers.len() as u64);
        }
        let mut ensured = HashSet::new();
        for links in repos {
            self.import_repository(links, &mut ensured, &mut report)
                .await;
            p.repositories.add_done(1);
        }
        Ok(report)
    }

    async fn import_repository(
        &self,
        links: RepoLinks,
        ensured: &mut HashSet<String>,
        report: &mut ImportReport,
    ) {
        let p = &self.progress;
        for (path, why) in &links.bad_links {
            report.skip(format!("link {path}"), why.clone());
        }
        let Some(repo) = RepoName::parse(&links.name) else {
            report.repositories.skipped += 1;
            report.manifests.skipped += links.revisions.len() as u64;
            report.tags.skipped += links.tags.len() as u64;
            report.blobs.skipped += links.layers.len() as u64;
            report.skip(
                format!("repository {}", links.name),
                format!(
                    "not a valid repository name (lowercase letters, digits and separators); {} manifests, {} tags left out",
                    links.revisions.len(),
                    links.tags.len()
                ),
            );
            p.manifests.add_done(links.revisions.len() as u64);
            p.blobs.add_done(links.layers.len() as u64);
            return;
        };
        let before = report.progressed();
        let project = repo.project().to_owned();
        if !ensured.contains(&project) {
            match self.projects.ensure(&project).await {
                Ok(created) => {
                    if created {
                        report.projects_created.push(project.clone());
                    }
                    ensured.insert(project);
                }
                Err(e) => {
                    report.repositories.failed += 1;
                    report.fail(format!("project {project}"), e);
                    p.manifests.add_done(links.revisions.len() as u64);
                    p.blobs.add_done(links.layers.len() as u64);
                    return;
                }
            }
        }

        let mut states: HashMap<Digest, ManifestState> = HashMap::new();
        let candidates = self
            .load_manifests(&repo, &links.revisions, &mut states, report)
            .await;

        // The blobs: those linked into the repository, and any a manifest
        // needs (Distribution serves a manifest whose layer link was
        // removed, and fails its pull; berth links the blob if it has it).
        let mut blobs: Vec<Digest> = links.layers.clone();
        let linked: HashSet<&Digest> = links.layers.iter().collect();
        let extra: BTreeSet<&Digest> = candidates
            .iter()
            .flat_map(|c| c.blobs())
            .filter(|b| !linked.contains(b))
            .collect();
        p.blobs.add_total(extra.len() as u64);
        blobs.extend(extra.into_iter().cloned());
        let outcomes = self.import_blobs(&repo, blobs, report).await;

        self.put_manifests(&repo, candidates, &outcomes, &mut states, report)
            .await;
        self.import_tags(&repo, &links, &states, report).await;

        let after = report.progressed();
        if after.added > before.added {
            report.repositories.imported += 1;
        } else if after.failed > before.failed {
            report.repositories.failed += 1;
        } else if after.present > before.present {
            report.repositories.present += 1;
        } else {
            report.repositories.skipped += 1;
            report.skip(
                format!("repository {repo}"),
                "nothing in it that berth can serve (see its manifests, tags and blobs above)",
            );
        }
    }
}

/// Things imported, failed and found present so far, to tell what a
/// repository's import did.
struct Progressed {
    added: u64,
    failed: u64,
    present: u64,
}

impl ImportReport {
    fn progressed(&self) -> Progressed {
        let (m, t, b) = (&self.manifests, &self.tags, &self.blobs);
        Progressed {
            added: m.imported + t.imported + b.imported,
            failed: m.failed + t.failed + b.failed,
            present: m.present + t.present + b.present,
        }
    }
}
