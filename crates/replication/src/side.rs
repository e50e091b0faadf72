//! The two ends of a copy behind one interface: berth itself (through the
//! domain, [`Local`], so that quotas, immutability, verification and the
//! outbox apply as for any push) and a remote registry (through
//! `berth_registry_client`, [`Remote`]).

use async_trait::async_trait;
use berth_core::registry::Page;
use berth_core::{CoreError, Registry};
use berth_oci::{Descriptor, Digest, ErrorCode, Reference, RepoName, Tag};
use berth_registry_client::{Client, ClientError, Mount};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use std::future::Future;
use std::io;

/// A failure at either end: what happened, and whether a retry may help.
#[derive(Debug)]
pub struct SideError {
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for SideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl SideError {
    pub fn fatal(message: impl Into<String>) -> SideError {
        SideError {
            message: message.into(),
            retryable: false,
        }
    }
}

impl From<ClientError> for SideError {
    fn from(e: ClientError) -> Self {
        SideError {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

impl From<CoreError> for SideError {
    fn from(e: CoreError) -> Self {
        SideError {
            retryable: matches!(e.code, ErrorCode::Unavailable | ErrorCode::Internal),
            message: e.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, SideError>;

/// A blob's bytes as they stream.
pub type Bytestream = BoxStream<'static, io::Result<Bytes>>;

/// A blob on its way from one side to the other: its size and its bytes.
pub struct Blob {
    pub size: u64,
    pub body: Bytestream,
}

/// A manifest read from one side.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

impl Fetched {
    pub fn new(digest: Digest, media_type: String, bytes: Bytes) -> Fetched {
        Fetched {
            digest,
            media_type,
            bytes,
        }
    }
}

#[async_trait]
pub trait Side: Send + Sync {
    /// Whether this side is berth itself (a pull writes here).
    fn is_local(&self) -> bool;
    async fn repositories(&self) -> Result<Vec<String>>;
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>>;
    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Fetched>>;
    /// The digest `reference` names, if it exists.
    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Digest>>;
    /// Stores `manifest` (its media type and bytes) under `reference`.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Fetched,
    ) -> Result<()>;
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// Deletes only the tag, where the registry can; `false` where it
    /// cannot (Distribution).
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    async fn blob_read(&self, repo: &RepoName, digest: &Digest) -> Result<Blob>;
    async fn blob_write(&self, repo: &RepoName, digest: &Digest, blob: Blob) -> Result<()>;
    async fn blob_mount(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool>;
    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Descriptor>>;
}

/// berth's own registry.
pub struct Local(pub Registry);

/// Names the domain lists a page at a time.
const PAGE: usize = 1000;

fn unknown(e: &CoreError) -> bool {
    matches!(
        e.code,
        ErrorCode::ManifestUnknown | ErrorCode::NameUnknown | ErrorCode::BlobUnknown
    )
}

/// An answer in which a missing manifest, repository or blob is `None`
/// rather than a failure.
trait OrAbsent<T> {
    fn or_absent(self) -> Result<Option<T>>;
}

impl<T> OrAbsent<T> for std::result::Result<T, CoreError> {
    fn or_absent(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if unknown(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl<T> OrAbsent<T> for std::result::Result<T, ClientError> {
    fn or_absent(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Every name of a listing the domain gives [`PAGE`] at a time:
/// `page(last)` reads the page after `last`; `None` ends the listing.
async fn every_page<F, Fut>(mut page: F) -> Result<Vec<String>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Option<Page>>>,
{
    let mut out: Vec<String> = Vec::new();
    while let Some(page) = page(out.last().cloned()).await? {
        out.extend(page.items().iter().cloned());
        if page.items().len() < PAGE {
            break;
        }
    }
    Ok(out)
}

#[async_trait]
impl Side for Local {
    fn is_local(&self) -> bool {
        true
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        every_page(
            |last| async move { Ok(Some(self.0.catalog(Some(PAGE), last.as_deref()).await?)) },
        )
        .await
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        every_page(|last| async move {
            self.0
                .tags(repo, Some(PAGE), last.as_deref())
                .await
                .or_absent()
        })
        .await
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Fetched>> {
        let found = self.0.manifest_get(repo, reference).await.or_absent()?;
        Ok(found.map(|m| Fetched::new(m.digest, m.media_type, m.body)))
    }

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Digest>> {
        Ok(self.manifest(repo, reference).await?.map(|m| m.digest))
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Fetched,
    ) -> Result<()> {
        let (media_type, bytes) = (Some(manifest.media_type.as_str()), manifest.bytes.clone());
        self.0
            .manifest_put(repo, reference, media_type, bytes)
            .await?;
        Ok(())
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let reference = Reference::Digest(digest.clone());
        self.0.manifest_delete(repo, &reference).await.or_absent()?;
        Ok(())
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let reference = Reference::Tag(tag.clone());
        self.0.manifest_delete(repo, &reference).await.or_absent()?;
        Ok(true)
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        self.0.blob_size(repo, digest).await.or_absent()
    }

    async fn blob_read(&self, repo: &RepoName, digest: &Digest) -> Result<Blob> {
        let size = self.0.blob_size(repo, digest).await?;
        let stream = self.0.blob_read(digest, 0, size).await?;
        Ok(Blob {
            size,
            body: stream.boxed(),
        })
    }

    async fn blob_write(&self, repo: &RepoName, digest: &Digest, blob: Blob) -> Result<()> {
        // The domain hashes what it receives and refuses a mismatch.
        self.0
            .upload_monolithic(repo, digest, Some(blob.size), blob.body)
            .await?;
        Ok(())
    }

    async fn blob_mount(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        Ok(self.0.blob_mount(repo, digest, from).await?)
    }

    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.0.referrers(repo, digest, None).await?)
    }
}

/// A remote registry.
pub struct Remote(pub Client);

#[async_trait]
impl Side for Remote {
    fn is_local(&self) -> bool {
        false
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        let names = self.0.catalog().await?;
        Ok(names.into_iter().map(|r| r.as_str().to_owned()).collect())
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        let tags = self.0.tags(repo).await.or_absent()?.unwrap_or_default();
        Ok(tags.into_iter().map(|t| t.as_str().to_owned()).collect())
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Fetched>> {
        let found = self.0.manifest_get(repo, reference).await.or_absent()?;
        Ok(found.map(|m| Fetched::new(m.digest, m.media_type, m.bytes)))
    }

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Digest>> {
        let found = self.0.manifest_head(repo, reference).await.or_absent()?;
        Ok(found.flatten().map(|m| m.digest))
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Fetched,
    ) -> Result<()> {
        let (media_type, bytes) = (&manifest.media_type, manifest.bytes.clone());
        self.0
            .manifest_put(repo, reference, media_type, bytes)
            .await?;
        Ok(())
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.0.manifest_delete(repo, digest).await.or_absent()?;
        Ok(())
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        // `false` where the registry has no tag deletion: the caller then
        // deletes the manifest the tag named, if it still does.
        Ok(self.0.tag_delete(repo, tag).await?)
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.0.blob_head(repo, digest).await?)
    }

    async fn blob_read(&self, repo: &RepoName, digest: &Digest) -> Result<Blob> {
        let stream = self.0.blob_get(repo, digest, 0).await?;
        let size =
            match stream.total_len() {
                Some(n) => n,
                None => self.0.blob_head(repo, digest).await?.ok_or_else(|| {
                    SideError::fatal(format!("blob {digest} vanished from {repo}"))
                })?,
            };
        // The client's stream checks the digest at its end.
        let stream = stream.map_err(|e| io::Error::other(e.to_string()));
        Ok(Blob {
            size,
            body: stream.boxed(),
        })
    }

    async fn blob_write(&self, repo: &RepoName, digest: &Digest, blob: Blob) -> Result<()> {
        self.0.blob_put(repo, digest, blob.size, blob.body).await?;
        Ok(())
    }

    async fn blob_mount(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        Ok(self.0.blob_mount(repo, digest, from).await? == Mount::Mounted)
    }

    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Descriptor>> {
        let found = self.0.referrers(repo, digest, None).await.or_absent()?;
        Ok(found.unwrap_or_default())
    }
}
