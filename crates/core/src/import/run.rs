//! The import of one tree, repository by repository: blobs first, then
//! manifests with every child before its parent (images, then the indexes
//! naming them, level by level), then tags. Every step is one of the
//! registry's transactions, and every step first asks whether berth has
//! it already, so a second run changes nothing and a run after a crash
//! finishes the work.

use super::report::{ImportReport, Progress};
use super::tree::{self, FileRead, RepoLinks, Tree};
use crate::blob::StoreError;
use crate::error::CoreError;
use crate::registry::Registry;
use async_trait::async_trait;
use berth_oci::manifest::{self, ParsedManifest, MAX_MANIFEST_BYTES};
use berth_oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
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
    registry: &'a Registry,
    tree: &'a dyn Tree,
    projects: &'a dyn Projects,
    options: ImportOptions,
    progress: Arc<Progress>,
}

/// What became of one blob link.
#[derive(Clone, Debug)]
enum BlobOutcome {
    /// Linked in the repository already.
    Present(u64),
    /// Berth had the blob; it is linked now.
    Known(u64),
    /// The bytes were in the store; recorded and linked.
    Adopted(u64),
    /// Streamed from the tree into the store, verified, linked.
    Copied(u64),
    Skipped(String),
    Failed(String),
}

impl BlobOutcome {
    fn size(&self) -> Option<u64> {
        match self {
            BlobOutcome::Present(s)
            | BlobOutcome::Known(s)
            | BlobOutcome::Adopted(s)
            | BlobOutcome::Copied(s) => Some(*s),
            BlobOutcome::Skipped(_) | BlobOutcome::Failed(_) => None,
        }
    }
}

/// A manifest of the tree, read and parsed, not in berth yet.
struct Candidate {
    digest: Digest,
    body: Bytes,
    parsed: ParsedManifest,
}

/// Where a manifest of the repository stands.
#[derive(Clone, Debug)]
enum ManifestState {
    /// In berth (now or before); its size when known.
    Done(Option<u64>),
    Skipped(String),
    Failed,
}

/// A domain error: a refusal of the content (skip it, saying why) or a
/// fault of berth's (fail, and a rerun may do better).
enum Refusal {
    Skip(String),
    Fail(String),
}

fn refusal(e: CoreError) -> Refusal {
    match e.code {
        ErrorCode::Internal | ErrorCode::Unavailable => Refusal::Fail(e.to_string()),
        _ => Refusal::Skip(e.detail.unwrap_or_else(|| e.code.message().to_owned())),
    }
}

fn store_failure(e: StoreError) -> String {
    format!("reading the source: {e}")
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

    /// Imports everything; `Err` only when the tree cannot be listed at
    /// all. Anything else that goes wrong is in the report: skipped (the
    /// source's content) or failed (berth's side; rerun).
    pub async fn run(&self) -> Result<ImportReport, CoreError> {
        let names = tree::repositories(self.tree)
            .await
            .map_err(|e| CoreError::unavailable(store_failure(e)))?;
        let jobs = self.options.jobs.max(1);
        let listed: Vec<Result<RepoLinks, (String, StoreError)>> =
            futures_util::stream::iter(names)
                .map(|name| async move {
                    tree::repo_links(self.tree, &name)
                        .await
                        .map_err(|e| (name, e))
                })
                .buffered(jobs)
                .collect()
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
        let before = report.added_and_failed();
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
        let mut extra = BTreeMap::new();
        for c in &candidates {
            for b in c.parsed.required_blobs() {
                if !linked.contains(&b.digest) {
                    extra.insert(b.digest.clone(), ());
                }
            }
        }
        p.blobs.add_total(extra.len() as u64);
        blobs.extend(extra.into_keys());
        let outcomes = self.import_blobs(&repo, blobs, report).await;

        self.put_manifests(&repo, candidates, &outcomes, &mut states, report)
            .await;
        self.import_tags(&repo, &links, &states, report).await;

        let after = report.added_and_failed();
        if after.0 > before.0 {
            report.repositories.imported += 1;
        } else if after.1 > before.1 {
            report.repositories.failed += 1;
        } else {
            report.repositories.present += 1;
        }
    }

    /// Reads and parses every revision not in berth yet; the others are
    /// done or skipped in `states`.
    async fn load_manifests(
        &self,
        repo: &RepoName,
        revisions: &[Digest],
        states: &mut HashMap<Digest, ManifestState>,
        report: &mut ImportReport,
    ) -> Vec<Candidate> {
        let jobs = self.options.jobs.max(1);
        let loaded: Vec<(Digest, Result<Option<Candidate>, Refusal>)> =
            futures_util::stream::iter(revisions.iter().cloned())
                .map(|digest| async move {
                    let loaded = self.load_manifest(repo, &digest).await;
                    (digest, loaded)
                })
                .buffered(jobs)
                .collect()
                .await;
        let mut candidates = Vec::new();
        for (digest, loaded) in loaded {
            let what = format!("manifest {repo}@{digest}");
            match loaded {
                Ok(Some(c)) => candidates.push(c),
                Ok(None) => {
                    report.manifests.present += 1;
                    states.insert(digest, ManifestState::Done(None));
                    self.progress.manifests.add_done(1);
                }
                Err(Refusal::Skip(why)) => {
                    report.manifests.skipped += 1;
                    report.skip(what, why.clone());
                    states.insert(digest, ManifestState::Skipped(why));
                    self.progress.manifests.add_done(1);
                }
                Err(Refusal::Fail(e)) => {
                    report.manifests.failed += 1;
                    report.fail(what, e.clone());
                    states.insert(digest, ManifestState::Failed);
                    self.progress.manifests.add_done(1);
                }
            }
        }
        candidates
    }

    /// `None` when berth has the manifest in `repo` already.
    async fn load_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Candidate>, Refusal> {
        if self
            .registry
            .manifest_exists(repo, digest)
            .await
            .map_err(refusal)?
        {
            return Ok(None);
        }
        let body = match self
            .tree
            .read(&tree::blob_data(digest), MAX_MANIFEST_BYTES as u64)
            .await
        {
            Ok(FileRead::Bytes(b)) => b,
            Ok(FileRead::Absent) => {
                return Err(Refusal::Skip(
                    "its revision link dangles: the manifest's data is gone".into(),
                ))
            }
            Ok(FileRead::TooLarge(n)) => {
                return Err(Refusal::Skip(format!(
                    "{n} bytes, over berth's manifest limit of {MAX_MANIFEST_BYTES}"
                )))
            }
            Err(e) => return Err(Refusal::Fail(store_failure(e))),
        };
        if !digest.matches(&body) {
            return Err(Refusal::Skip(
                "its data does not match its digest (corrupt)".into(),
            ));
        }
        if schema_version(&body) == Some(1) {
            return Err(Refusal::Skip(
                "Docker schema 1 manifest: berth serves schema 2 and OCI only (re-push the image with a current client, or convert it: skopeo copy --format v2s2)".into(),
            ));
        }
        let parsed = manifest::parse(None, &body)
            .map_err(|e| Refusal::Skip(format!("not a manifest berth accepts: {e}")))?;
        Ok(Some(Candidate {
            digest: digest.clone(),
            body,
            parsed,
        }))
    }

    async fn import_blobs(
        &self,
        repo: &RepoName,
        blobs: Vec<Digest>,
        report: &mut ImportReport,
    ) -> HashMap<Digest, BlobOutcome> {
        let jobs = self.options.jobs.max(1);
        let done: Vec<(Digest, BlobOutcome)> = futures_util::stream::iter(blobs)
            .map(|digest| async move {
                let outcome = self.import_blob(repo, &digest).await;
                self.progress.blobs.add_done(1);
                (digest, outcome)
            })
            .buffer_unordered(jobs)
            .collect()
            .await;
        let mut outcomes = HashMap::new();
        for (digest, outcome) in done {
            let what = format!("blob {repo}@{digest}");
            match &outcome {
                BlobOutcome::Present(_) => report.blobs.present += 1,
                BlobOutcome::Known(_) => {
                    report.blobs.imported += 1;
                    report.blobs_known += 1;
                }
                BlobOutcome::Adopted(size) => {
                    report.blobs.imported += 1;
                    report.blobs_adopted += 1;
                    report.bytes_adopted += size;
                    if self.options.verify {
                        report.blobs_verified += 1;
                    }
                }
                BlobOutcome::Copied(size) => {
                    report.blobs.imported += 1;
                    report.blobs_copied += 1;
                    report.bytes_copied += size;
                }
                BlobOutcome::Skipped(why) => {
                    report.blobs.skipped += 1;
                    report.skip(what, why.clone());
                }
                BlobOutcome::Failed(e) => {
                    report.blobs.failed += 1;
                    report.fail(what, e.clone());
                }
            }
            outcomes.insert(digest, outcome);
        }
        outcomes
    }

    /// Links one blob into `repo`, from wherever its bytes are: in berth
    /// already, in berth's store (in place), or in the tree (copied).
    async fn import_blob(&self, repo: &RepoName, digest: &Digest) -> BlobOutcome {
        match self.try_import_blob(repo, digest).await {
            Ok(outcome) => outcome,
            Err(Refusal::Skip(why)) => BlobOutcome::Skipped(why),
            Err(Refusal::Fail(e)) => BlobOutcome::Failed(e),
        }
    }

    async fn try_import_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobOutcome, Refusal> {
        let reg = self.registry;
        match reg.blob_size(repo, digest).await {
            Ok(size) => return Ok(BlobOutcome::Present(size)),
            Err(e) if e.code == ErrorCode::BlobUnknown => {}
            Err(e) => return Err(refusal(e)),
        }
        if let Some(size) = reg.blob_recorded_size(digest).await.map_err(refusal)? {
            reg.blob_link_in_place(repo, digest, size)
                .await
                .map_err(refusal)?;
            return Ok(BlobOutcome::Known(size));
        }
        let stored = reg
            .blobs()
            .stat(digest)
            .await
            .map_err(|e| refusal(e.into()))?;
        if let Some(size) = stored {
            if self.options.verify {
                self.verify_stored(digest, size).await?;
            }
            reg.blob_link_in_place(repo, digest, size)
                .await
                .map_err(refusal)?;
            return Ok(BlobOutcome::Adopted(size));
        }
        if self.options.in_place {
            return Err(Refusal::Skip("its data is gone (a dangling link)".into()));
        }
        let path = tree::blob_data(digest);
        let Some(size) = self
            .tree
            .size(&path)
            .await
            .map_err(|e| Refusal::Fail(store_failure(e)))?
        else {
            return Err(Refusal::Skip("its data is gone (a dangling link)".into()));
        };
        let progress = self.progress.clone();
        let body = self
            .tree
            .stream(&path, size)
            .await
            .map_err(|e| Refusal::Fail(store_failure(e)))?
            .inspect_ok(move |chunk| {
                progress
                    .bytes_copied
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            });
        match reg
            .upload_monolithic(repo, digest, Some(size), Box::pin(body))
            .await
        {
            Ok(()) => Ok(BlobOutcome::Copied(size)),
            Err(e) if e.code == ErrorCode::DigestInvalid => Err(Refusal::Skip(format!(
                "its data does not match its digest (corrupt): {}",
                e.detail.unwrap_or_default()
            ))),
            Err(e) => Err(refusal(e)),
        }
    }

    /// Re-hashes the `size` bytes of `digest` in berth's store.
    async fn verify_stored(&self, digest: &Digest, size: u64) -> Result<(), Refusal> {
        let mut stream = self
            .registry
            .blobs()
            .read(digest, 0, size)
            .await
            .map_err(|e| refusal(e.into()))?;
        let mut hasher = digest.hasher();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Refusal::Fail(format!("reading {digest}: {e}")))?;
            hasher.update(&chunk);
        }
        let found = hasher.finalize();
        if found == *digest {
            Ok(())
        } else {
            Err(Refusal::Skip(format!(
                "its data does not match its digest (it hashes to {found}): corrupt"
            )))
        }
    }

    /// Puts the candidates, children before parents, each only when every
    /// blob and child it names is in the repository with the size it says.
    async fn put_manifests(
        &self,
        repo: &RepoName,
        candidates: Vec<Candidate>,
        blobs: &HashMap<Digest, BlobOutcome>,
        states: &mut HashMap<Digest, ManifestState>,
        report: &mut ImportReport,
    ) {
        let jobs = self.options.jobs.max(1);
        for level in levels(candidates) {
            let decided: Vec<(Digest, Result<u64, Refusal>)> = {
                let states = &*states;
                futures_util::stream::iter(level)
                    .map(|c| async move {
                        let outcome = match check_references(&c, blobs, states) {
                            Err(r) => Err(r),
                            Ok(()) => self
                                .registry
                                .manifest_put(
                                    repo,
                                    &Reference::Digest(c.digest.clone()),
                                    None,
                                    c.body.clone(),
                                )
                                .await
                                .map(|_| c.body.len() as u64)
                                .map_err(refusal),
                        };
                        self.progress.manifests.add_done(1);
                        (c.digest, outcome)
                    })
                    .buffer_unordered(jobs)
                    .collect()
                    .await
            };
            for (digest, outcome) in decided {
                let what = format!("manifest {repo}@{digest}");
                let state = match outcome {
                    Ok(size) => {
                        report.manifests.imported += 1;
                        ManifestState::Done(Some(size))
                    }
                    Err(Refusal::Skip(why)) => {
                        report.manifests.skipped += 1;
                        report.skip(what, why.clone());
                        ManifestState::Skipped(why)
                    }
                    Err(Refusal::Fail(e)) => {
                        report.manifests.failed += 1;
                        report.fail(what, e);
                        ManifestState::Failed
                    }
                };
                states.insert(digest, state);
            }
        }
    }

    async fn import_tags(
        &self,
        repo: &RepoName,
        links: &RepoLinks,
        states: &HashMap<Digest, ManifestState>,
        report: &mut ImportReport,
    ) {
        for link in &links.tags {
            let what = format!("tag {repo}:{}", link.tag);
            let outcome = self.import_tag(repo, &link.tag, &link.target, states).await;
            match outcome {
                Ok(true) => report.tags.imported += 1,
                Ok(false) => report.tags.present += 1,
                Err(Refusal::Skip(why)) => {
                    report.tags.skipped += 1;
                    report.skip(what, why);
                }
                Err(Refusal::Fail(e)) => {
                    report.tags.failed += 1;
                    report.fail(what, e);
                }
            }
        }
    }

    /// `Ok(true)` when the tag was created, `Ok(false)` when berth has it
    /// pointing where the tree does.
    async fn import_tag(
        &self,
        repo: &RepoName,
        tag: &str,
        target: &Result<Digest, String>,
        states: &HashMap<Digest, ManifestState>,
    ) -> Result<bool, Refusal> {
        let Some(parsed_tag) = Tag::parse(tag) else {
            return Err(Refusal::Skip("not a valid tag name".into()));
        };
        let digest = target.as_ref().map_err(|e| Refusal::Skip(e.clone()))?;
        match states.get(digest) {
            Some(ManifestState::Done(_)) => {}
            Some(ManifestState::Skipped(why)) => {
                return Err(Refusal::Skip(format!(
                    "its manifest {digest} was skipped: {why}"
                )))
            }
            Some(ManifestState::Failed) => {
                return Err(Refusal::Fail(format!("its manifest {digest} failed")))
            }
            None => {
                return Err(Refusal::Skip(format!(
                    "a dangling tag: its manifest {digest} is not in the repository"
                )))
            }
        }
        let current = self
            .registry
            .resolve(repo, &Reference::Tag(parsed_tag))
            .await;
        match current {
            Ok(d) if d == *digest => return Ok(false),
            Ok(d) => {
                return Err(Refusal::Skip(format!(
                    "berth has this tag already, pointing to {d} (not {digest}): left as it is"
                )))
            }
            Err(e) if e.code == ErrorCode::ManifestUnknown => {}
            Err(e) => return Err(refusal(e)),
        }
        match self.registry.tag_create(repo, tag, digest).await {
            Ok(true) => Ok(true),
            // Created between the look and the write, by a push: as found.
            Ok(false) => Err(Refusal::Skip(
                "berth has this tag already (pushed during the import): left as it is".into(),
            )),
            Err(e) => Err(refusal(e)),
        }
    }
}

/// Whether every blob and child manifest `c` names is in the repository
/// with the size the descriptor gives.
fn check_references(
    c: &Candidate,
    blobs: &HashMap<Digest, BlobOutcome>,
    states: &HashMap<Digest, ManifestState>,
) -> Result<(), Refusal> {
    for b in c.parsed.required_blobs() {
        match blobs.get(&b.digest) {
            Some(BlobOutcome::Skipped(why)) => {
                return Err(Refusal::Skip(format!(
                    "its blob {} is missing: {why}",
                    b.digest
                )))
            }
            Some(BlobOutcome::Failed(_)) => {
                return Err(Refusal::Fail(format!("its blob {} failed", b.digest)))
            }
            Some(outcome) => {
                if let Some(size) = outcome.size().filter(|s| *s != b.size) {
                    return Err(Refusal::Skip(format!(
                        "its blob {} is {size} bytes, the manifest says {}",
                        b.digest, b.size
                    )));
                }
            }
            None => {
                return Err(Refusal::Fail(format!(
                    "its blob {} was not looked at",
                    b.digest
                )))
            }
        }
    }
    for m in &c.parsed.manifests {
        match states.get(&m.digest) {
            Some(ManifestState::Done(size)) => {
                if let Some(size) = size.filter(|s| *s != m.size) {
                    return Err(Refusal::Skip(format!(
                        "its child manifest {} is {size} bytes, the index says {}",
                        m.digest, m.size
                    )));
                }
            }
            Some(ManifestState::Skipped(why)) => {
                return Err(Refusal::Skip(format!(
                    "its child manifest {} was skipped: {why}",
                    m.digest
                )))
            }
            Some(ManifestState::Failed) => {
                return Err(Refusal::Fail(format!(
                    "its child manifest {} failed",
                    m.digest
                )))
            }
            None => {
                return Err(Refusal::Skip(format!(
                    "its child manifest {} is not in the repository",
                    m.digest
                )))
            }
        }
    }
    Ok(())
}

/// The candidates grouped so that each group's children are all in earlier
/// groups (or not candidates at all): images first, then the indexes of
/// images, then indexes of those, and so on.
fn levels(candidates: Vec<Candidate>) -> Vec<Vec<Candidate>> {
    let children: HashMap<Digest, Vec<Digest>> = candidates
        .iter()
        .map(|c| {
            let kids = c
                .parsed
                .manifests
                .iter()
                .map(|m| m.digest.clone())
                .collect();
            (c.digest.clone(), kids)
        })
        .collect();
    let mut depth: HashMap<Digest, usize> = HashMap::new();
    for c in &candidates {
        depth_of(&c.digest, &children, &mut depth, &mut HashSet::new());
    }
    let mut grouped: BTreeMap<usize, Vec<Candidate>> = BTreeMap::new();
    for c in candidates {
        let d = depth.get(&c.digest).copied().unwrap_or(0);
        grouped.entry(d).or_default().push(c);
    }
    grouped.into_values().collect()
}

/// 0 for a manifest with no candidate children, else one more than its
/// deepest candidate child. Digests name content, so there are no cycles;
/// `visiting` guards against a malicious tree all the same.
fn depth_of(
    digest: &Digest,
    children: &HashMap<Digest, Vec<Digest>>,
    depth: &mut HashMap<Digest, usize>,
    visiting: &mut HashSet<Digest>,
) -> usize {
    if let Some(d) = depth.get(digest) {
        return *d;
    }
    let Some(kids) = children.get(digest) else {
        return 0;
    };
    if !visiting.insert(digest.clone()) {
        return 0;
    }
    let mut d = 0;
    for kid in kids {
        if children.contains_key(kid) {
            d = d.max(1 + depth_of(kid, children, depth, visiting));
        }
    }
    visiting.remove(digest);
    depth.insert(digest.clone(), d);
    d
}

/// `schemaVersion` of a JSON manifest, without parsing it further.
fn schema_version(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
    }
    serde_json::from_slice::<Version>(body).ok()?.schema_version
}

impl ImportReport {
    /// (things imported, things failed) so far, to tell what a repository's
    /// import added.
    fn added_and_failed(&self) -> (u64, u64) {
        (
            self.manifests.imported + self.tags.imported + self.blobs.imported,
            self.manifests.failed + self.tags.failed + self.blobs.failed,
        )
    }
}
