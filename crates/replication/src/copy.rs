//! One task's work: copying an artifact (children first, blobs before the
//! manifests that name them, referrers after their subject) or replaying a
//! delete, between two [`Side`]s. Blobs stream through [`Control`], which
//! counts bytes, throttles and stops the stream when the execution is
//! stopped; nothing is ever held whole in memory.

use crate::model::{ArtifactKind, Operation, Task};
use crate::side::{Bytestream, Fetched, Result, Side, SideError};
use berth_oci::manifest::parse;
use berth_oci::{media, Digest, ManifestKind, Reference, RepoName, Tag};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How deep referrers of referrers are followed (a signature of an SBOM).
const REFERRER_DEPTH: usize = 3;

/// The message of a transfer cut short by a stop.
pub const STOPPED: &str = "stopped";

/// Shared between a running task and its watcher.
#[derive(Clone, Default)]
pub struct Control {
    pub stopped: Arc<AtomicBool>,
    pub bytes: Arc<AtomicU64>,
    /// Bytes per second per stream; 0 = unlimited.
    pub rate: u64,
}

impl Control {
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.is_stopped() {
            Err(SideError::fatal(STOPPED))
        } else {
            Ok(())
        }
    }

    /// `body`, counted, throttled to `rate`, and ending in an error as soon
    /// as a stop is seen between two chunks.
    fn wrap(&self, body: Bytestream) -> Bytestream {
        let control = self.clone();
        let start = Instant::now();
        futures_util::stream::unfold(
            (body, control, 0u64, false),
            move |(mut body, control, mut sent, ended)| async move {
                if ended {
                    return None;
                }
                if control.is_stopped() {
                    let e = io::Error::other(STOPPED);
                    return Some((Err(e), (body, control, sent, true)));
                }
                let item = body.next().await?;
                if let Ok(chunk) = &item {
                    sent += chunk.len() as u64;
                    control
                        .bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if control.rate > 0 {
                        let due = Duration::from_secs_f64(sent as f64 / control.rate as f64);
                        let elapsed = start.elapsed();
                        if due > elapsed {
                            // Sleep in slices, so that a stop is seen soon.
                            let mut left = due - elapsed;
                            while !left.is_zero() && !control.is_stopped() {
                                let step = left.min(Duration::from_millis(100));
                                tokio::time::sleep(step).await;
                                left -= step;
                            }
                        }
                    }
                }
                let failed = item.is_err();
                Some((item, (body, control, sent, failed)))
            },
        )
        .boxed()
    }
}

/// Where a pull records the origin of what it writes (the loop guard of
/// push policies): the store, and the endpoint's name.
pub struct Origin {
    pub kv: std::sync::Arc<dyn berth_core::Kv>,
    pub endpoint: String,
}

/// What a copy needs besides the two sides.
pub struct Copier<'a> {
    pub src: &'a dyn Side,
    pub dst: &'a dyn Side,
    pub control: Control,
    /// Replace a different manifest at an existing destination tag.
    pub overwrite: bool,
    /// Destination repositories of the same execution: mount sources.
    pub siblings: Vec<RepoName>,
    /// Set in the pull direction: each manifest's origin is recorded
    /// before it is written (so before its push event exists).
    pub origin: Option<Origin>,
    /// Notes for the task's message (tags skipped, ...).
    pub notes: Mutex<Vec<String>>,
    done: Mutex<HashSet<String>>,
}

fn repo(name: &str) -> Result<RepoName> {
    RepoName::parse(name)
        .ok_or_else(|| SideError::fatal(format!("invalid repository name {name:?}")))
}

/// The kind of a manifest, for the policy's kind filter.
pub fn classify(media_type: &str, bytes: &[u8]) -> Option<ArtifactKind> {
    let parsed = parse(Some(media_type), bytes).ok()?;
    Some(match parsed.kind {
        ManifestKind::Index => ArtifactKind::Index,
        ManifestKind::Image => {
            let config = parsed.config.as_ref().map(|c| c.media_type.as_str());
            let image_config = matches!(
                config,
                Some("application/vnd.oci.image.config.v1+json")
                    | Some("application/vnd.docker.container.image.v1+json")
            );
            let declared = parse_artifact_type(bytes);
            if image_config && declared.is_none() {
                ArtifactKind::Image
            } else {
                ArtifactKind::Artifact
            }
        }
    })
}

fn parse_artifact_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("artifactType")?.as_str().map(str::to_owned)
}

impl<'a> Copier<'a> {
    pub fn new(src: &'a dyn Side, dst: &'a dyn Side, control: Control, overwrite: bool) -> Self {
        Copier {
            src,
            dst,
            control,
            overwrite,
            siblings: Vec::new(),
            origin: None,
            notes: Mutex::default(),
            done: Mutex::default(),
        }
    }

    fn note(&self, what: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(what);
        }
    }

    /// Does what `task` says.
    pub async fn run(&self, task: &Task) -> Result<()> {
        let src_repo = repo(&task.repository)?;
        let dst_repo = repo(&task.destination)?;
        match task.operation {
            Operation::Copy => {
                let digest = task
                    .digest
                    .clone()
                    .ok_or_else(|| SideError::fatal("a copy task without a digest"))?;
                self.copy_artifact(&src_repo, &dst_repo, &digest, &task.tags)
                    .await
            }
            Operation::DeleteManifest => match &task.digest {
                Some(d) => self.dst.delete_manifest(&dst_repo, d).await,
                None => Ok(()),
            },
            Operation::DeleteTags => {
                for t in &task.tags {
                    let Some(tag) = Tag::parse(t) else { continue };
                    if self.dst.delete_tag(&dst_repo, &tag).await? {
                        continue;
                    }
                    // No tag delete there: delete the manifest, if the tag
                    // still names what was untagged here.
                    let at = self.dst.resolve(&dst_repo, &Reference::Tag(tag)).await?;
                    match (at, &task.digest) {
                        (Some(at), Some(d)) if at == *d => {
                            self.dst.delete_manifest(&dst_repo, d).await?
                        }
                        (Some(_), _) => self.note(format!(
                            "tag {t} names another manifest at the destination: left"
                        )),
                        (None, _) => {}
                    }
                }
                Ok(())
            }
            Operation::DeleteRepository => {
                let mut seen = HashSet::new();
                for t in self.dst.tags(&dst_repo).await? {
                    let Some(tag) = Tag::parse(&t) else { continue };
                    if let Some(d) = self.dst.resolve(&dst_repo, &Reference::Tag(tag)).await? {
                        if seen.insert(d.clone()) {
                            self.dst.delete_manifest(&dst_repo, &d).await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Copies `digest` with its children, blobs and referrers, then sets
    /// `tags` on it.
    pub async fn copy_artifact(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        digest: &Digest,
        tags: &[String],
    ) -> Result<()> {
        let manifest = self
            .src
            .manifest(src_repo, &Reference::Digest(digest.clone()))
            .await?
            .ok_or_else(|| {
                SideError::fatal(format!("{src_repo}@{digest} is gone at the source"))
            })?;
        self.copy_manifest(src_repo, dst_repo, &manifest).await?;
        for t in tags {
            let Some(tag) = Tag::parse(t) else { continue };
            let reference = Reference::Tag(tag);
            match self.dst.resolve(dst_repo, &reference).await? {
                Some(at) if at == *digest => continue,
                Some(_) if !self.overwrite => {
                    self.note(format!(
                        "tag {t} exists with another manifest: not overwritten"
                    ));
                    continue;
                }
                _ => {}
            }
            self.put(dst_repo, &reference, &manifest).await?;
        }
        self.copy_referrers(src_repo, dst_repo, digest, REFERRER_DEPTH)
            .await
    }

    async fn put(&self, dst_repo: &RepoName, reference: &Reference, m: &Fetched) -> Result<()> {
        self.control.check()?;
        if let Some(o) = &self.origin {
            let key = crate::keys::origin(dst_repo.as_str(), m.digest.as_str());
            o.kv.put(&key, o.endpoint.clone().into_bytes())
                .await
                .map_err(|e| SideError {
                    message: format!("recording the origin of {dst_repo}@{}: {e}", m.digest),
                    retryable: true,
                })?;
        }
        self.dst.put_manifest(dst_repo, reference, m).await
    }

    async fn copy_referrers(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        subject: &Digest,
        depth: usize,
    ) -> Result<()> {
        if depth == 0 {
            return Ok(());
        }
        for r in self.src.referrers(src_repo, subject).await? {
            let Some(m) = self
                .src
                .manifest(src_repo, &Reference::Digest(r.digest.clone()))
                .await?
            else {
                continue;
            };
            self.copy_manifest(src_repo, dst_repo, &m).await?;
            Box::pin(self.copy_referrers(src_repo, dst_repo, &r.digest, depth - 1)).await?;
        }
        Ok(())
    }

    /// Copies one manifest by digest, after what it names; nothing when
    /// the destination has it already.
    fn copy_manifest<'s>(
        &'s self,
        src_repo: &'s RepoName,
        dst_repo: &'s RepoName,
        m: &'s Fetched,
    ) -> futures_util::future::BoxFuture<'s, Result<()>> {
        Box::pin(async move {
            self.control.check()?;
            let key = format!("{dst_repo}@{}", m.digest);
            if self.done.lock().map(|d| d.contains(&key)).unwrap_or(false) {
                return Ok(());
            }
            let reference = Reference::Digest(m.digest.clone());
            if self.dst.resolve(dst_repo, &reference).await?.is_none() {
                let parsed = parse(Some(&m.media_type), &m.bytes)
                    .map_err(|e| SideError::fatal(format!("{src_repo}@{}: {e}", m.digest)))?;
                for child in &parsed.manifests {
                    let c = self
                        .src
                        .manifest(src_repo, &Reference::Digest(child.digest.clone()))
                        .await?
                        .ok_or_else(|| {
                            SideError::fatal(format!(
                                "{src_repo}@{}: child {} is missing at the source",
                                m.digest, child.digest
                            ))
                        })?;
                    self.copy_manifest(src_repo, dst_repo, &c).await?;
                }
                for blob in parsed.required_blobs() {
                    self.copy_blob(src_repo, dst_repo, &blob.digest).await?;
                }
                self.put(dst_repo, &reference, m).await?;
            }
            if let Ok(mut d) = self.done.lock() {
                d.insert(key);
            }
            Ok(())
        })
    }

    async fn copy_blob(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        digest: &Digest,
    ) -> Result<()> {
        self.control.check()?;
        if self.dst.blob_size(dst_repo, digest).await?.is_some() {
            return Ok(());
        }
        for from in self.siblings.iter().filter(|s| *s != dst_repo) {
            if self.dst.blob_size(from, digest).await?.is_some()
                && self.dst.blob_mount(dst_repo, digest, from).await?
            {
                return Ok(());
            }
        }
        let mut blob = self.src.blob_read(src_repo, digest).await?;
        blob.body = self.control.wrap(blob.body);
        let result = self.dst.blob_write(dst_repo, digest, blob).await;
        match result {
            Err(_) if self.control.is_stopped() => Err(SideError::fatal(STOPPED)),
            other => other,
        }
    }
}

/// Whether `media_type` is an index (for events, before any fetch).
pub fn is_index(media_type: &str) -> bool {
    let m = media::essence(media_type);
    m == media::OCI_INDEX || m == media::DOCKER_MANIFEST_LIST
}
