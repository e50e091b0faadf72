//! The two ends of a copy behind one interface: berth itself (through the
//! domain, [`Local`], so that quotas, immutability, verification and the
//! outbox apply as for any push) and a remote registry (through
//! `berth_registry_client`, [`Remote`]).

use async_trait::async_trait;
use berth_core::{CoreError, Registry};
use berth_oci::{Descriptor, Digest, ErrorCode, Reference, RepoName, Tag};
use berth_registry_client::{Client, ClientError, Mount};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
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

/// A manifest read from one side.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
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
    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()>;
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// Deletes only the tag, where the registry can; `false` where it
    /// cannot (Distribution).
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    async fn blob_read(&self, repo: &RepoName, digest: &Digest) -> Result<(u64, Bytestream)>;
    async fn blob_write(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        body: Bytestream,
    ) -> Result<()>;
    async fn blob_mount(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool>;
    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Descriptor>>;
}

/// berth's own registry.
pub struct Local(pub Registry);

fn unknown(e: &CoreError) -> bool {
    matches!(
        e.code,
        ErrorCode::ManifestUnknown | ErrorCode::NameUnknown | ErrorCode::BlobUnknown
    )
}

#[async_trait]
impl Side for Local {
    fn is_local(&self) -> bool {
        true
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.0.catalog(Some(1000), last.as_deref()).await?;
            out.extend(page.items().iter().cloned());
            if page.items().len() < 1000 {
                return Ok(out);
            }
            last = page.items().last().cloned();
        }
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = match self.0.tags(repo, Some(1000), last.as_deref()).await {
                Ok(p) => p,
                Err(e) if unknown(&e) => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            out.extend(page.items().iter().cloned());
            if page.items().len() < 1000 {
                return Ok(out);
            }
            last = page.items().last().cloned();
        }
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Fetched>> {
        match self.0.manifest_get(repo, reference).await {
            Ok(m) => Ok(Some(Fetched {
                digest: m.digest,
                media_type: m.media_type,
                bytes: m.body,
            })),
            Err(e) if unknown(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Digest>> {
        Ok(self.manifest(repo, reference).await?.map(|m| m.digest))
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        self.0
            .manifest_put(repo, reference, Some(media_type), bytes)
            .await?;
        Ok(())
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        match self
            .0
            .manifest_delete(repo, &Reference::Digest(digest.clone()))
            .await
        {
            Err(e) if !unknown(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        match self
            .0
            .manifest_delete(repo, &Reference::Tag(tag.clone()))
            .await
        {
            Err(e) if !unknown(&e) => Err(e.into()),
            _ => Ok(true),
        }
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        match self.0.blob_size(repo, digest).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if unknown(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn blob_read(&self, repo: &RepoName, digest: &Digest) -> Result<(u64, Bytestream)> {
        let size = self.0.blob_size(repo, digest).await?;
        let stream = self.0.blob_read(digest, 0, size).await?;
        Ok((size, stream.boxed()))
    }

    async fn blob_write(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        body: Bytestream,
    ) -> Result<()> {
        // The domain hashes what it receives and refuses a mismatch.
        self.0
            .upload_monolithic(repo, digest, Some(size), body)
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
        Ok(self
            .0
            .catalog()
            .await?
            .into_iter()
            .map(|r| r.as_str().to_owned())
            .collect())
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        match self.0.tags(repo).await {
            Ok(tags) => Ok(tags.into_iter().map(|t| t.as_str().to_owned()).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Fetched>> {
        match self.0.manifest_get(repo, reference).await {
            Ok(m) => Ok(Some(Fetched {
                digest: m.digest,
                media_type: m.media_type,
                bytes: m.bytes,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Digest>> {
        match self.0.manifest_head(repo, reference).await {
            Ok(m) => Ok(m.map(|m| m.digest)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        self.0
            .manifest_put(repo, reference, media_type, bytes)
            .await?;
        Ok(())
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        match self.0.manifest_delete(repo, digest).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        // `false` where the registry has no tag deletion: the caller then
        // deletes the manifest the tag named, if it still does.
        Ok(self.0.tag_delete(repo, tag).await?)
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.0.blob_head(repo, digest).await?)
    }

    async fn blob_read(&self, repo: &RepoName, digest: &Digest) -> Result<(u64, Bytestream)> {
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
        Ok((size, stream.boxed()))
    }

    async fn blob_write(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        body: Bytestream,
    ) -> Result<()> {
        self.0.blob_put(repo, digest, size, body).await?;
        Ok(())
    }

    async fn blob_mount(&self, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        Ok(self.0.blob_mount(repo, digest, from).await? == Mount::Mounted)
    }

    async fn referrers(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Descriptor>> {
        match self.0.referrers(repo, digest, None).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
