//! The manifests and tags of a repository: read from the tree and parsed,
//! put children first once everything they name is in the repository,
//! then tagged.

use super::blobs::BlobOutcome;
use super::run::{refusal, store_failure, Importer, Order, Refusal};
use super::tree::{self, FileRead, RepoLinks};
use super::ImportReport;
use berth_oci::manifest::{self, ParsedManifest, MAX_MANIFEST_BYTES};
use berth_oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A manifest of the tree, read and parsed, not in berth yet.
pub(super) struct Candidate {
    digest: Digest,
    body: Bytes,
    parsed: ParsedManifest,
}

impl Candidate {
    /// The blobs it needs in the repository.
    pub(super) fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.parsed.required_blobs().map(|d| &d.digest)
    }
}

/// Where a manifest of the repository stands.
#[derive(Clone, Debug)]
pub(super) enum ManifestState {
    /// In berth (now or before); its size when known.
    Done(Option<u64>),
    Skipped(String),
    Failed,
}

impl Importer<'_> {
    /// Reads and parses every revision not in berth yet; the others are
    /// done or skipped in `states`.
    pub(super) async fn load_manifests(
        &self,
        repo: &RepoName,
        revisions: &[Digest],
        states: &mut HashMap<Digest, ManifestState>,
        report: &mut ImportReport,
    ) -> Vec<Candidate> {
        let loaded: Vec<(Digest, Result<Option<Candidate>, Refusal>)> = self
            .each(revisions.to_vec(), Order::Kept, |digest| async move {
                let loaded = self.load_manifest(repo, &digest).await;
                (digest, loaded)
            })
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
    /// Puts the candidates, children before parents, each only when every
    /// blob and child it names is in the repository with the size it says.
    pub(super) async fn put_manifests(
        &self,
        repo: &RepoName,
        candidates: Vec<Candidate>,
        blobs: &HashMap<Digest, BlobOutcome>,
        states: &mut HashMap<Digest, ManifestState>,
        report: &mut ImportReport,
    ) {
        for level in levels(candidates) {
            let decided: Vec<(Digest, Result<u64, Refusal>)> = {
                let states = &*states;
                self.each(level, Order::Finished, |c| async move {
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

    pub(super) async fn import_tags(
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
