//! The blobs of a repository: each linked from wherever its bytes are (in
//! berth already, in berth's store where the old registry left them, or in
//! the tree, copied and verified).

use super::run::{refusal, store_failure, Importer, Order, Refusal};
use super::tree;
use super::ImportReport;
use berth_oci::{Digest, ErrorCode, RepoName};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// What became of one blob link.
#[derive(Clone, Debug)]
pub(super) enum BlobOutcome {
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
    pub(super) fn size(&self) -> Option<u64> {
        match self {
            BlobOutcome::Present(s)
            | BlobOutcome::Known(s)
            | BlobOutcome::Adopted(s)
            | BlobOutcome::Copied(s) => Some(*s),
            BlobOutcome::Skipped(_) | BlobOutcome::Failed(_) => None,
        }
    }
}

impl Importer<'_> {
    /// Links every blob of `blobs` into `repo`, some at once; what became
    /// of each, counted in the report.
    pub(super) async fn import_blobs(
        &self,
        repo: &RepoName,
        blobs: Vec<Digest>,
        report: &mut ImportReport,
    ) -> HashMap<Digest, BlobOutcome> {
        let done: Vec<(Digest, BlobOutcome)> = self
            .each(blobs, Order::Finished, |digest| async move {
                let outcome = self.import_blob(repo, &digest).await;
                self.progress.blobs.add_done(1);
                (digest, outcome)
            })
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
}
