//! Online garbage collection: runs while the registry serves, on one node
//! or any node of a cluster, and never deletes what a concurrent push needs.
//!
//! One run, in this order (the order is what makes it safe; see
//! `lifecycle` for the writer's side):
//!
//! 1. Read every blob record with its version.
//! 2. Per repository: read the repository record's version (every manifest
//!    push writes it; a repository with only uploads has none yet), then
//!    its tags, manifests and blob links. Keep the
//!    tagged manifests and those younger than the grace period, then their
//!    index children and their referrers (signatures, SBOMs), transitively;
//!    keep the blob links those manifests name and links younger than the
//!    grace period. Delete the rest in transactions that check the
//!    repository record still has the version read, so a push that landed
//!    meanwhile makes the deletion fail and the repository waits for the
//!    next run.
//! 3. A blob that no remaining link or large manifest names, and that is
//!    older than the grace period, is claimed (its record, at the version
//!    read in step 1, becomes "deleting"), its bytes are deleted in batches,
//!    then its record. A link made after step 1 changed that version, so
//!    the claim fails.
//! 4. Upload sessions idle for longer than the upload expiry are removed
//!    with their bytes.
//!
//! Its cost is a few ordered scans of the metadata index (proportional to
//! the number of blobs, manifests and tags) and one delete per garbage
//! blob, batched; it never lists the blob store.

use super::lifecycle::STALE_DELETING_SECS;
use super::{encode, Registry};
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Txn, Versioned};
use crate::lock::LockGuard;
use crate::registry::records::{
    BlobRecord, ManifestRecord, RepoBlobRecord, TagRecord, UploadSession,
};
use berth_oci::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Keys written or deleted per transaction (etcd allows 128 operations).
const BATCH: usize = 100;
/// Past runs kept in the history.
const HISTORY: usize = 50;
/// Entries listed by a dry run.
const LISTED: usize = 1000;
pub const GC_LOCK: &str = "gc";

#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Nothing younger than this (seconds) is collected.
    pub grace_secs: u64,
    /// Upload sessions idle this long (seconds) are removed.
    pub upload_expiry_secs: u64,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
}

/// What one run did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub id: String,
    /// Unix seconds.
    pub started: u64,
    pub duration_ms: u64,
    pub dry_run: bool,
    pub grace_secs: u64,
    /// Who ran it: a node and a trigger ("schedule", "api", "cli").
    pub trigger: String,
    pub manifests_deleted: u64,
    pub tags_kept: u64,
    pub blob_links_deleted: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub uploads_deleted: u64,
    pub blobs_examined: u64,
    /// Repositories pushed to during the run: left for the next one.
    pub repositories_skipped: u64,
    /// What went (or would go), up to 1000 entries: `manifest <repo>@<digest>`,
    /// `link <repo>@<digest>`, `blob <digest> (<size> bytes)`, `upload <id>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Set when the run stopped early (lock lost, storage error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GcReport {
    fn note(&mut self, what: String) {
        if self.deleted.len() < LISTED {
            self.deleted.push(what);
        }
    }
}

/// What step 2 keeps of a manifest record.
struct ManifestInfo {
    key: String,
    version: Versioned,
    blobs: Vec<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
    created: u64,
    /// The body is in the blob store under the manifest's digest.
    stored: bool,
}

impl Registry {
    /// One garbage collection. The caller holds the cluster-wide GC lock;
    /// the run stops before deleting bytes once `guard` says it was lost.
    pub async fn collect_garbage(
        &self,
        opts: GcOptions,
        trigger: &str,
        guard: Option<&LockGuard>,
    ) -> Result<GcReport, CoreError> {
        let timer = Instant::now();
        let mut report = GcReport {
            id: uuid::Uuid::new_v4().to_string(),
            started: self.now(),
            dry_run: opts.dry_run,
            grace_secs: opts.grace_secs,
            trigger: trigger.to_owned(),
            ..GcReport::default()
        };
        let cutoff = report.started.saturating_sub(opts.grace_secs);

        // 1. Every blob record, with the version the claims will check.
        let mut blobs: Vec<(Digest, BlobRecord, Versioned)> = Vec::new();
        self.for_each_under(keys::BLOB_PREFIX, |key, v| {
            let record: BlobRecord = serde_json::from_slice(&v.value)?;
            if let Ok(digest) = key[keys::BLOB_PREFIX.len()..].parse::<Digest>() {
                blobs.push((digest, record, v));
            }
            Ok(())
        })
        .await?;
        report.blobs_examined = blobs.len() as u64;

        // 2. Repository by repository.
        // Every repository with a record, and those holding blob links but
        // no manifest yet (no record: uploads do not create one).
        let mut repos = std::collections::BTreeSet::new();
        self.for_each_under(keys::REPO_PREFIX, |key, _| {
            repos.insert(key[keys::REPO_PREFIX.len()..].to_owned());
            Ok(())
        })
        .await?;
        self.for_each_under(keys::REPO_BLOB_PREFIX, |key, _| {
            if let Some((name, _)) = key[keys::REPO_BLOB_PREFIX.len()..].split_once('@') {
                repos.insert(name.to_owned());
            }
            Ok(())
        })
        .await?;
        let mut referenced: HashSet<Digest> = HashSet::new();
        for repo in repos {
            self.collect_repository(&repo, cutoff, opts.dry_run, &mut referenced, &mut report)
                .await?;
        }

        // 3. Blobs nothing names any more.
        let mut claim = Vec::new();
        for (digest, record, version) in blobs {
            if referenced.contains(&digest) {
                continue;
            }
            if let Some(since) = record.deleting {
                // A collector died midway: finish its work.
                if !opts.dry_run && self.now().saturating_sub(since) > STALE_DELETING_SECS {
                    self.finish_delete(&digest, &version).await?;
                    report.blobs_deleted += 1;
                    report.bytes_freed += record.size;
                }
                continue;
            }
            if record.created.max(record.touched) > cutoff {
                continue;
            }
            claim.push((digest, record, version));
        }
        for batch in claim.chunks(BATCH) {
            if opts.dry_run {
                for (digest, record, _) in batch {
                    report.blobs_deleted += 1;
                    report.bytes_freed += record.size;
                    report.note(format!("blob {digest} ({} bytes)", record.size));
                }
                continue;
            }
            if guard.is_some_and(|g| !g.is_held()) {
                report.error = Some("the GC lock was lost; stopped before deleting".into());
                break;
            }
            self.delete_blobs(batch, &mut report).await?;
        }

        // 4. Abandoned uploads.
        self.expire_uploads(opts, &mut report).await?;

        report.duration_ms = u64::try_from(timer.elapsed().as_millis()).unwrap_or(u64::MAX);
        if !opts.dry_run {
            self.record_run(&report).await?;
        }
        Ok(report)
    }

    async fn collect_repository(
        &self,
        repo: &str,
        cutoff: u64,
        dry_run: bool,
        referenced: &mut HashSet<Digest>,
        report: &mut GcReport,
    ) -> Result<(), CoreError> {
        let repo_key = format!("{}{repo}", keys::REPO_PREFIX);
        // Read first: a manifest push after this read changes it (or
        // creates it).
        let repo_version = self.kv.get(&repo_key).await?;

        let mut tagged: HashSet<Digest> = HashSet::new();
        self.for_each_under(&format!("{}{repo}@", keys::TAG_PREFIX), |_, v| {
            let tag: TagRecord = serde_json::from_slice(&v.value)?;
            tagged.insert(tag.digest);
            Ok(())
        })
        .await?;
        report.tags_kept += tagged.len() as u64;

        let man_prefix = keys::manifest_prefix(repo);
        let mut manifests: HashMap<Digest, ManifestInfo> = HashMap::new();
        self.for_each_under(&man_prefix, |key, v| {
            let record: ManifestRecord = serde_json::from_slice(&v.value)?;
            if let Ok(digest) = key[man_prefix.len()..].parse::<Digest>() {
                manifests.insert(
                    digest,
                    ManifestInfo {
                        key,
                        version: v,
                        blobs: record.blobs,
                        children: record.children,
                        subject: record.subject,
                        created: record.created,
                        stored: record.body.is_none(),
                    },
                );
            }
            Ok(())
        })
        .await?;

        let blob_prefix = keys::repo_blob_prefix(repo);
        let mut links: Vec<(Digest, String, RepoBlobRecord, Versioned)> = Vec::new();
        self.for_each_under(&blob_prefix, |key, v| {
            let link: RepoBlobRecord = serde_json::from_slice(&v.value)?;
            if let Ok(digest) = key[blob_prefix.len()..].parse::<Digest>() {
                links.push((digest, key, link, v));
            }
            Ok(())
        })
        .await?;

        // Kept: tagged or young manifests, then what they reach.
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (digest, m) in &manifests {
            if let Some(subject) = &m.subject {
                referrers.entry(subject).or_default().push(digest);
            }
        }
        let mut kept: HashSet<&Digest> = HashSet::new();
        let mut queue: Vec<&Digest> = manifests
            .iter()
            .filter(|(d, m)| tagged.contains(*d) || m.created > cutoff)
            .map(|(d, _)| d)
            .collect();
        while let Some(digest) = queue.pop() {
            if !kept.insert(digest) {
                continue;
            }
            if let Some(m) = manifests.get(digest) {
                queue.extend(m.children.iter().filter(|c| manifests.contains_key(*c)));
            }
            if let Some(r) = referrers.get(digest) {
                queue.extend(r.iter().copied());
            }
        }
        let mut needed: HashSet<&Digest> = HashSet::new();
        for digest in &kept {
            if let Some(m) = manifests.get(*digest) {
                needed.extend(m.blobs.iter());
            }
        }

        let mut deletes: Vec<(String, Versioned, String)> = Vec::new();
        let mut dead_manifests = 0u64;
        for (digest, m) in &manifests {
            if kept.contains(digest) {
                continue;
            }
            dead_manifests += 1;
            deletes.push((
                m.key.clone(),
                m.version.clone(),
                format!("manifest {repo}@{digest}"),
            ));
        }
        let mut dead_links = 0u64;
        for (digest, key, link, version) in &links {
            if needed.contains(digest) || link.linked > cutoff {
                continue;
            }
            dead_links += 1;
            deletes.push((
                key.clone(),
                version.clone(),
                format!("link {repo}@{digest}"),
            ));
        }

        let mut swept = true;
        if !dry_run {
            // Up to three deletes per entry (a manifest, its referrer entry,
            // its pull record): etcd allows 128 operations per transaction.
            for batch in deletes.chunks(BATCH / 3) {
                let mut txn = Txn::new().if_unchanged(&repo_key, repo_version.as_ref());
                for (key, version, _) in batch {
                    txn = txn.if_unchanged(key, Some(version)).delete(key);
                    if let Some(rest) = key.strip_prefix(&man_prefix) {
                        txn = txn.delete(format!("pulled:{repo}@{rest}"));
                        let subject = rest
                            .parse::<Digest>()
                            .ok()
                            .and_then(|d| manifests.get(&d))
                            .and_then(|m| m.subject.clone());
                        if let Some(subject) = subject {
                            txn = txn.delete(format!("ref:{repo}@{subject}@{rest}"));
                        }
                    }
                }
                if !self.kv.commit(txn).await? {
                    swept = false;
                    break;
                }
            }
        }
        if !swept {
            // Something was pushed meanwhile: keep everything this
            // repository names until the next run.
            report.repositories_skipped += 1;
            referenced.extend(links.iter().map(|(d, ..)| d.clone()));
            referenced.extend(
                manifests
                    .iter()
                    .filter(|(_, m)| m.stored)
                    .map(|(d, _)| d.clone()),
            );
            return Ok(());
        }
        report.manifests_deleted += dead_manifests;
        report.blob_links_deleted += dead_links;
        for (_, _, what) in &deletes {
            report.note(what.clone());
        }
        // What stays references blobs.
        for (digest, _, link, _) in &links {
            if needed.contains(digest) || link.linked > cutoff {
                referenced.insert(digest.clone());
            }
        }
        for digest in &kept {
            if manifests.get(*digest).is_some_and(|m| m.stored) {
                referenced.insert((*digest).clone());
            }
        }
        Ok(())
    }

    /// Claims a batch of blobs, deletes their bytes, then their records.
    async fn delete_blobs(
        &self,
        batch: &[(Digest, BlobRecord, Versioned)],
        report: &mut GcReport,
    ) -> Result<(), CoreError> {
        let since = self.now();
        let mut claimed: Vec<(&Digest, &BlobRecord)> = Vec::new();
        let claim_txn = |items: &[(Digest, BlobRecord, Versioned)]| {
            items
                .iter()
                .fold(Txn::new(), |txn, (digest, record, version)| {
                    let key = keys::blob(digest);
                    let mut deleting = record.clone();
                    deleting.deleting = Some(since);
                    txn.if_unchanged(&key, Some(version))
                        .put(&key, encode(&deleting))
                })
        };
        if self.kv.commit(claim_txn(batch)).await? {
            claimed.extend(batch.iter().map(|(d, r, _)| (d, r)));
        } else {
            // One was linked meanwhile: claim the others one by one.
            for item in batch {
                if self
                    .kv
                    .commit(claim_txn(std::slice::from_ref(item)))
                    .await?
                {
                    claimed.push((&item.0, &item.1));
                }
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        let digests: Vec<Digest> = claimed.iter().map(|(d, _)| (*d).clone()).collect();
        self.blobs.delete_many(&digests).await?;
        // The records, at the version the claim wrote.
        let mut records = Txn::new();
        for (digest, _) in &claimed {
            let key = keys::blob(digest);
            if let Some(v) = self.kv.get(&key).await? {
                records = records.if_unchanged(&key, Some(&v)).delete(&key);
            }
        }
        self.kv.commit(records).await?;
        for (digest, record) in claimed {
            report.blobs_deleted += 1;
            report.bytes_freed += record.size;
            report.note(format!("blob {digest} ({} bytes)", record.size));
        }
        Ok(())
    }

    async fn expire_uploads(
        &self,
        opts: GcOptions,
        report: &mut GcReport,
    ) -> Result<(), CoreError> {
        let cutoff = self.now().saturating_sub(opts.upload_expiry_secs);
        let mut stale: Vec<(String, Versioned, UploadSession)> = Vec::new();
        self.for_each_under(keys::UPLOAD_PREFIX, |key, v| {
            let session: UploadSession = serde_json::from_slice(&v.value)?;
            let writing = session
                .writer
                .as_ref()
                .is_some_and(|w| w.expires_ms > self.now_ms());
            if session.updated <= cutoff && !writing {
                stale.push((key, v, session));
            }
            Ok(())
        })
        .await?;
        // Bytes no session names: monolithic uploads whose request died.
        let older = std::time::Duration::from_secs(opts.upload_expiry_secs);
        for id in self.blobs.stale_uploads(older).await? {
            if self.kv.get(&keys::upload(&id)).await?.is_some() {
                continue;
            }
            report.uploads_deleted += 1;
            report.note(format!("upload {id} (no session)"));
            if !opts.dry_run {
                self.blobs.delete_upload(&id).await?;
            }
        }
        for (key, version, session) in stale {
            let id = key[keys::UPLOAD_PREFIX.len()..].to_owned();
            report.uploads_deleted += 1;
            report.note(format!("upload {id}"));
            if opts.dry_run {
                continue;
            }
            let txn = Txn::new().if_unchanged(&key, Some(&version)).delete(&key);
            if self
                .kv
                .commit(super::upload_limits::delete_marks(txn, &id, &session))
                .await?
            {
                self.blobs.delete_upload(&id).await?;
            }
        }
        if !opts.dry_run {
            self.delete_orphan_upload_marks().await?;
        }
        Ok(())
    }

    /// Index entries of uploads whose session is gone. The two are written
    /// and removed together, so these are only left by a session removed
    /// some other way (by hand, or by a version before the entries).
    async fn delete_orphan_upload_marks(&self) -> Result<(), CoreError> {
        let mut marks = Vec::new();
        for prefix in [keys::UPLOAD_IN_REPO_PREFIX, keys::UPLOAD_OF_ACCOUNT_PREFIX] {
            self.for_each_under(prefix, |key, _| {
                marks.push(key);
                Ok(())
            })
            .await?;
        }
        for key in marks {
            let Some((_, id)) = key.rsplit_once('@') else {
                continue;
            };
            let session = keys::upload(id);
            let txn = Txn::new().if_unchanged(&session, None).delete(&key);
            self.kv.commit(txn).await?;
        }
        Ok(())
    }

    async fn record_run(&self, report: &GcReport) -> Result<(), CoreError> {
        let key = keys::gc_run(self.now_ms(), &report.id);
        self.kv.put(&key, encode(report)).await?;
        let mut runs = Vec::new();
        self.for_each_under(keys::GC_RUN_PREFIX, |key, _| {
            runs.push(key);
            Ok(())
        })
        .await?;
        if runs.len() > HISTORY {
            let txn = runs[..runs.len() - HISTORY]
                .iter()
                .fold(Txn::new(), |txn, key| txn.delete(key));
            self.kv.commit(txn).await?;
        }
        Ok(())
    }

    /// Past runs, newest first.
    pub async fn gc_history(&self) -> Result<Vec<GcReport>, CoreError> {
        let mut runs = Vec::new();
        self.for_each_under(keys::GC_RUN_PREFIX, |_, v| {
            runs.push(serde_json::from_slice::<GcReport>(&v.value)?);
            Ok(())
        })
        .await?;
        runs.reverse();
        Ok(runs)
    }
}

/// Runs collections: on demand, and on a schedule on every node, one at a
/// time cluster-wide through the `gc` lock.
pub struct Collector {
    registry: Registry,
    locks: std::sync::Arc<dyn crate::lock::Locks>,
    node: String,
    pub grace_secs: u64,
    pub upload_expiry_secs: u64,
}

/// Why a collection did not run.
#[derive(Debug)]
pub enum NotRun {
    /// Another run holds the lock (its holder, if known).
    Busy(Option<String>),
    Failed(CoreError),
}

impl From<CoreError> for NotRun {
    fn from(e: CoreError) -> Self {
        NotRun::Failed(e)
    }
}

impl Collector {
    pub fn new(
        registry: Registry,
        locks: std::sync::Arc<dyn crate::lock::Locks>,
        node: impl Into<String>,
        grace_secs: u64,
        upload_expiry_secs: u64,
    ) -> Collector {
        Collector {
            registry,
            locks,
            node: node.into(),
            grace_secs,
            upload_expiry_secs,
        }
    }

    fn options(&self, dry_run: bool) -> GcOptions {
        GcOptions {
            grace_secs: self.grace_secs,
            upload_expiry_secs: self.upload_expiry_secs,
            dry_run,
        }
    }

    /// One run now. A dry run deletes nothing and needs no lock.
    pub async fn run(&self, trigger: &str, dry_run: bool) -> Result<GcReport, NotRun> {
        let trigger = format!("{trigger} on {}", self.node);
        if dry_run {
            return Ok(self
                .registry
                .collect_garbage(self.options(true), &trigger, None)
                .await?);
        }
        let Some(guard) = self
            .locks
            .try_lock(GC_LOCK, &trigger)
            .await
            .map_err(CoreError::from)?
        else {
            let holder = self.locks.holder(GC_LOCK).await.ok().flatten();
            return Err(NotRun::Busy(holder));
        };
        let report = self
            .registry
            .collect_garbage(self.options(false), &trigger, Some(&guard))
            .await?;
        tracing::info!(
            blobs = report.blobs_deleted,
            manifests = report.manifests_deleted,
            bytes = report.bytes_freed,
            ms = report.duration_ms,
            "garbage collection done"
        );
        Ok(report)
    }

    /// Who runs a collection now, if anyone.
    pub async fn running(&self) -> Result<Option<String>, CoreError> {
        Ok(self.locks.holder(GC_LOCK).await?)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every `interval`, runs a collection unless one (on any node) started
    /// less than `interval` ago.
    pub fn schedule(
        self: std::sync::Arc<Self>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.every(interval, move |gc| async move {
            gc.collect_unless_recent(interval).await
        })
    }

    /// Every `interval`, applies every project's retention rules (one node
    /// at a time; running them twice deletes nothing more).
    pub fn schedule_retention(
        self: std::sync::Arc<Self>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.every(interval, |gc| async move { gc.apply_retention().await })
    }

    /// Spawns a task that waits `interval`, then runs `tick`, forever.
    fn every<F, Fut>(
        self: std::sync::Arc<Self>,
        interval: std::time::Duration,
        tick: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(std::sync::Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                tick(self.clone()).await;
            }
        })
    }

    /// The scheduled collection: runs one unless one started less than
    /// `interval` ago.
    async fn collect_unless_recent(&self, interval: std::time::Duration) {
        let last = match self.registry.gc_history().await {
            Ok(runs) => runs.first().map(|r| r.started),
            Err(e) => {
                tracing::warn!(error = %e, "scheduled GC: reading the history");
                return;
            }
        };
        if last.is_some_and(|t| self.registry.now().saturating_sub(t) < interval.as_secs()) {
            return;
        }
        match self.run("schedule", false).await {
            Ok(_) | Err(NotRun::Busy(_)) => {}
            Err(NotRun::Failed(e)) => tracing::warn!(error = %e, "scheduled GC failed"),
        }
    }

    /// The scheduled retention: applies every project's rules unless
    /// another node holds the retention lock.
    async fn apply_retention(&self) {
        let _guard = match self.locks.try_lock("retention", &self.node).await {
            Ok(Some(guard)) => guard,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "scheduled retention: taking the lock");
                return;
            }
        };
        match self.registry.apply_all_retention().await {
            Ok(reports) => {
                let deleted: usize = reports.iter().map(|r| r.deleted.len()).sum();
                tracing::info!(projects = reports.len(), deleted, "retention applied");
            }
            Err(e) => tracing::warn!(error = %e, "scheduled retention failed"),
        }
    }
}
