//! `berth fsck`: checks that metadata and storage agree. Every blob record
//! has its bytes, of its size, hashing to its digest; every blob link,
//! manifest, tag and referrer entry names things that exist. With `repair`
//! the dangling entries are removed (never bytes that something names).

use super::lifecycle::STALE_DELETING_SECS;
use super::Registry;
use crate::error::CoreError;
use crate::keys;
use crate::kv::{Txn, Versioned};
use crate::registry::records::{BlobRecord, ManifestRecord, RepoBlobRecord, TagRecord};
use berth_oci::{Digest, RepoName};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_verified: u64,
    pub links_checked: u64,
    pub manifests_checked: u64,
    pub tags_checked: u64,
    pub referrers_checked: u64,
    /// One line per problem found.
    pub problems: Vec<String>,
    /// How many of them `repair` fixed.
    pub repaired: u64,
}

/// A dangling entry: what is wrong, and the key whose removal repairs it.
struct Finding {
    problem: String,
    key: String,
    version: Versioned,
}

impl Registry {
    /// Checks everything; with `verify` re-hashes every blob's bytes; with
    /// `repair` deletes the dangling entries found, pass after pass (removing
    /// a manifest leaves its tags dangling) until a pass finds nothing to
    /// repair. The report lists every problem of the first pass.
    pub async fn fsck(&self, verify: bool, repair: bool) -> Result<FsckReport, CoreError> {
        let mut report = self.fsck_pass(verify, repair).await?;
        let mut passes = 1;
        let mut last = report.repaired;
        while repair && last > 0 && passes < 10 {
            let again = self.fsck_pass(false, true).await?;
            report.problems.extend(again.problems);
            report.repaired += again.repaired;
            last = again.repaired;
            passes += 1;
        }
        Ok(report)
    }

    async fn fsck_pass(&self, verify: bool, repair: bool) -> Result<FsckReport, CoreError> {
        let mut report = FsckReport::default();
        let mut findings: Vec<Finding> = Vec::new();

        // Blob records against the store.
        let mut blobs: Vec<(Digest, BlobRecord, Versioned, String)> = Vec::new();
        self.for_each_under(keys::BLOB_PREFIX, |key, v| {
            let record: BlobRecord = serde_json::from_slice(&v.value)?;
            match key[keys::BLOB_PREFIX.len()..].parse::<Digest>() {
                Ok(d) => blobs.push((d, record, v, key)),
                Err(_) => report.problems.push(format!("{key}: not a digest")),
            }
            Ok(())
        })
        .await?;
        let mut live: HashSet<Digest> = HashSet::new();
        for (digest, record, version, key) in blobs {
            report.blobs_checked += 1;
            if let Some(since) = record.deleting {
                if self.now().saturating_sub(since) > STALE_DELETING_SECS {
                    report
                        .problems
                        .push(format!("blob {digest}: a deletion was interrupted"));
                    if repair {
                        self.finish_delete(&digest, &version).await?;
                        report.repaired += 1;
                    }
                }
                continue;
            }
            let problem = match self.blobs.stat(&digest).await? {
                None => Some(format!(
                    "blob {digest}: recorded, but its bytes are missing"
                )),
                Some(size) if size != record.size => Some(format!(
                    "blob {digest}: {size} bytes stored, {} recorded",
                    record.size
                )),
                Some(size) if verify => match self.hash_of(&digest, size).await? {
                    d if d == digest => {
                        report.bytes_verified += size;
                        None
                    }
                    d => Some(format!("blob {digest}: its bytes hash to {d}")),
                },
                Some(_) => None,
            };
            match problem {
                None => {
                    live.insert(digest);
                }
                Some(problem) => findings.push(Finding {
                    problem,
                    key,
                    version,
                }),
            }
        }

        // Blob links: the blob must be live.
        let mut links: HashSet<String> = HashSet::new();
        self.for_each_under(keys::REPO_BLOB_PREFIX, |key, v| {
            report.links_checked += 1;
            let _: RepoBlobRecord = serde_json::from_slice(&v.value)?;
            let digest = key
                .rsplit_once('@')
                .and_then(|(_, d)| d.parse::<Digest>().ok());
            match digest {
                Some(d) if live.contains(&d) => {
                    links.insert(key);
                }
                _ => findings.push(Finding {
                    problem: format!("{key}: links a blob that is not stored"),
                    key,
                    version: v,
                }),
            }
            Ok(())
        })
        .await?;

        // Manifests: their blobs linked in the repository, children present,
        // a stored body present.
        let mut manifests: HashMap<String, Vec<Digest>> = HashMap::new();
        let mut records: Vec<(String, ManifestRecord, Versioned)> = Vec::new();
        self.for_each_under(keys::MANIFEST_PREFIX, |key, v| {
            records.push((key, serde_json::from_slice(&v.value)?, v));
            Ok(())
        })
        .await?;
        let keys_present: HashSet<String> = records.iter().map(|(k, ..)| k.clone()).collect();
        // A proxy cache keeps manifests before their blobs are pulled.
        let mut proxied: HashSet<String> = HashSet::new();
        self.for_each_under(keys::PROXY_PREFIX, |key, _| {
            proxied.insert(key[keys::PROXY_PREFIX.len()..].to_owned());
            Ok(())
        })
        .await?;
        for (key, record, version) in records {
            report.manifests_checked += 1;
            let Some((repo, digest)) = key[keys::MANIFEST_PREFIX.len()..].split_once('@') else {
                report.problems.push(format!("{key}: malformed key"));
                continue;
            };
            let mut problem = None;
            if let Some(body) = &record.body {
                if !digest
                    .parse::<Digest>()
                    .is_ok_and(|d| d.matches(body.as_bytes()))
                {
                    problem = Some(format!("manifest {repo}@{digest}: its body does not match"));
                }
            } else if !digest.parse::<Digest>().is_ok_and(|d| live.contains(&d)) {
                problem = Some(format!("manifest {repo}@{digest}: its body is not stored"));
            }
            let cached = proxied.contains(super::policy::project_of(repo));
            for blob in &record.blobs {
                if problem.is_none()
                    && !cached
                    && !links.contains(&format!("{}{blob}", keys::repo_blob_prefix(repo)))
                {
                    problem = Some(format!(
                        "manifest {repo}@{digest}: blob {blob} is not in the repository"
                    ));
                }
            }
            for child in &record.children {
                if problem.is_none()
                    && !cached
                    && !keys_present.contains(&format!("{}{child}", keys::manifest_prefix(repo)))
                {
                    problem = Some(format!(
                        "manifest {repo}@{digest}: child {child} is not in the repository"
                    ));
                }
            }
            match problem {
                None => {
                    manifests
                        .entry(repo.to_owned())
                        .or_default()
                        .extend(digest.parse::<Digest>());
                }
                Some(problem) => findings.push(Finding {
                    problem,
                    key,
                    version,
                }),
            }
        }
        let has_manifest =
            |repo: &str, digest: &Digest| manifests.get(repo).is_some_and(|m| m.contains(digest));

        // Tags and referrer entries.
        for (key, v) in self.all_under(keys::TAG_PREFIX).await? {
            report.tags_checked += 1;
            let tag: TagRecord = serde_json::from_slice(&v.value)?;
            let repo = key[keys::TAG_PREFIX.len()..]
                .split_once('@')
                .map(|(r, _)| r);
            if !repo.is_some_and(|r| has_manifest(r, &tag.digest)) {
                findings.push(Finding {
                    problem: format!("{key}: points to missing manifest {}", tag.digest),
                    key,
                    version: v,
                });
            }
        }
        for (key, v) in self.all_under(keys::REFERRER_PREFIX).await? {
            report.referrers_checked += 1;
            let mut parts = key[keys::REFERRER_PREFIX.len()..].splitn(3, '@');
            let (repo, referrer) = (parts.next(), parts.nth(1));
            let ok = match (repo, referrer.and_then(|d| d.parse::<Digest>().ok())) {
                (Some(r), Some(d)) => has_manifest(r, &d),
                _ => false,
            };
            if !ok {
                findings.push(Finding {
                    problem: format!("{key}: names a missing referrer"),
                    key,
                    version: v,
                });
            }
        }

        for finding in findings {
            report.problems.push(finding.problem);
            if !repair {
                continue;
            }
            let mut txn = Txn::new()
                .if_unchanged(&finding.key, Some(&finding.version))
                .delete(&finding.key);
            // A removed tag must end the cached tag lists of its repository.
            let tag_of = finding
                .key
                .strip_prefix(keys::TAG_PREFIX)
                .and_then(|k| k.split_once('@'));
            if let Some(repo) = tag_of.and_then(|(r, _)| RepoName::parse(r)) {
                txn = self.bump_repo(&repo, txn).await?.0;
            }
            if self.kv.commit(txn).await? {
                report.repaired += 1;
            }
        }
        Ok(report)
    }

    /// What the stored bytes of `digest` hash to, with `digest`'s own
    /// algorithm: content accepted by a `sha512:` digest (a large manifest)
    /// is checked as such, not taken for corrupt.
    async fn hash_of(&self, digest: &Digest, size: u64) -> Result<Digest, CoreError> {
        let mut stream = self.blobs.read(digest, 0, size).await?;
        let mut hash = digest.hasher();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| CoreError::internal(format!("reading blob {digest}: {e}")))?;
            hash.update(&chunk);
        }
        Ok(hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobStore;
    use crate::kv::Kv;
    use crate::{MemoryBlobStore, MemoryKv};
    use berth_oci::Reference;
    use bytes::Bytes;
    use std::sync::Arc;

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";

    fn fixture() -> (Registry, Arc<MemoryBlobStore>, RepoName) {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let blobs = Arc::new(MemoryBlobStore::new());
        let reg = Registry::new(kv, blobs.clone());
        (reg, blobs, RepoName::parse("p/app").unwrap())
    }

    /// An empty index padded past the size kept inline.
    fn large_index(fill: &str, padding: usize) -> String {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [],
            "annotations": {"padding": fill.repeat(padding)},
        })
        .to_string()
    }

    async fn push(
        reg: &Registry,
        repo: &RepoName,
        digest: &Digest,
        media_type: Option<&str>,
        body: &str,
    ) {
        reg.manifest_put(
            repo,
            &Reference::Digest(digest.clone()),
            media_type,
            Bytes::from(body.to_owned()),
        )
        .await
        .unwrap();
    }

    /// A manifest too large to be kept inline goes to the blob store under
    /// its digest; pushed by a `sha512:` digest, fsck must check it with
    /// SHA-512 and find nothing wrong (it used SHA-256, reported it broken
    /// and `repair` deleted it).
    #[tokio::test]
    async fn a_large_manifest_pushed_by_sha512_is_sound() {
        let (reg, blobs, repo) = fixture();
        let body = large_index("x", 100 * 1024);
        let digest = Digest::sha512_of(body.as_bytes());
        push(&reg, &repo, &digest, Some(INDEX), &body).await;
        assert!(
            blobs.stat(&digest).await.unwrap().is_some(),
            "stored as a blob, not inline"
        );

        let report = reg.fsck(true, false).await.unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(report.bytes_verified, body.len() as u64);
        let report = reg.fsck(true, true).await.unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(report.repaired, 0);
        let got = reg
            .manifest_get(&repo, &Reference::Digest(digest))
            .await
            .unwrap();
        assert_eq!(got.body, body.as_bytes());
    }

    /// Re-hashing still finds content that does not match its digest, of
    /// either algorithm.
    #[tokio::test]
    async fn rotten_bytes_are_found_whatever_the_algorithm() {
        for sha512 in [false, true] {
            let (reg, blobs, repo) = fixture();
            let body = large_index("y", 70 * 1024);
            let digest = if sha512 {
                Digest::sha512_of(body.as_bytes())
            } else {
                Digest::sha256_of(body.as_bytes())
            };
            push(&reg, &repo, &digest, None, &body).await;
            let mut rotten = body.clone().into_bytes();
            rotten[100] ^= 1;
            blobs.tamper(&digest, Bytes::from(rotten));
            let report = reg.fsck(true, false).await.unwrap();
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.starts_with(&format!("blob {digest}: its bytes hash to"))),
                "{:?}",
                report.problems
            );
        }
    }

    /// A proxy project's manifest names layers nobody pulled yet: fsck
    /// leaves it alone there (repair would have deleted the cache), and
    /// still reports the same manifest in an ordinary project.
    #[tokio::test]
    async fn a_proxy_projects_manifest_may_wait_for_its_blobs() {
        let (reg, _, _) = fixture();
        let layer = Digest::sha256_of(b"never fetched");
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::sha256_of(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer, "size": 13}],
        })
        .to_string();
        for project in ["hub", "plain"] {
            let repo = RepoName::parse(&format!("{project}/app")).unwrap();
            reg.manifest_cache(
                &repo,
                &Reference::parse("v1").unwrap(),
                None,
                Bytes::from(body.clone()),
            )
            .await
            .unwrap();
        }
        let binding = crate::kv::Txn::new().put(keys::proxy("hub"), b"{}".to_vec());
        assert!(reg.kv.commit(binding).await.unwrap());
        let report = reg.fsck(false, false).await.unwrap();
        let problems = &report.problems;
        assert!(!problems.is_empty(), "the ordinary project's is reported");
        assert!(
            problems.iter().all(|p| p.contains("plain/app")),
            "{problems:?}"
        );
    }
}
