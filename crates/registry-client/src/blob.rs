//! Blobs: HEAD, GET as a stream (from an offset, to resume; verified
//! against the digest when it starts at byte 0), and cross-repository
//! mount.

use crate::auth::Scope;
use crate::error::ClientError;
use crate::header::ContentRange;
use crate::transport::{content_length, error_from, header_str, Request};
use crate::Client;
use berth_oci::digest::Hasher;
use berth_oci::{Digest, RepoName};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::RANGE;
use reqwest::Method;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a cross-repository mount did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// The blob is now in the target repository (201).
    Mounted,
    /// The registry did not mount it (202): the blob must be uploaded. The
    /// upload session the registry opened instead has been cancelled.
    NotMounted,
}

/// A blob's bytes, from [`Client::blob_get`]: a stream of chunks, ending
/// with an error rather than quietly when the body is cut short or, for a
/// stream starting at byte 0, when the bytes do not have the blob's
/// digest. A stream from an offset cannot be checked here: whoever holds
/// the first part checks the whole.
pub struct BlobStream {
    start: u64,
    total_len: Option<u64>,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// Bytes of the body still to drop (a registry that ignored `Range`).
    skip: u64,
    /// Bytes expected in the body, when known.
    body_len: Option<u64>,
    received: u64,
    /// Running hash, when the body starts at byte 0.
    hasher: Option<Hasher>,
    digest: Digest,
    context: String,
    done: bool,
}

impl BlobStream {
    /// The offset of the first byte the stream yields (the `from` asked).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The whole blob's size, when the registry said.
    pub fn total_len(&self) -> Option<u64> {
        self.total_len
    }

    /// The bytes the stream will yield, when known.
    pub fn remaining_len(&self) -> Option<u64> {
        self.total_len.map(|t| t.saturating_sub(self.start))
    }

    fn finish(&mut self) -> Option<ClientError> {
        if let Some(expected) = self.body_len {
            if self.received != expected {
                return Some(ClientError::Protocol(format!(
                    "{}: body of {} bytes, expected {expected}",
                    self.context, self.received
                )));
            }
        }
        let hasher = self.hasher.take()?;
        let actual = hasher.finalize();
        (actual != self.digest).then(|| ClientError::DigestMismatch {
            what: format!("blob {}", self.digest),
            expected: self.digest.clone(),
            actual,
        })
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("start", &self.start)
            .field("total_len", &self.total_len)
            .finish_non_exhaustive()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ClientError::network(this.context.clone(), e))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(this.finish().map(Err));
                }
                Poll::Ready(Some(Ok(mut chunk))) => {
                    this.received += chunk.len() as u64;
                    if this.body_len.is_some_and(|n| this.received > n) {
                        this.done = true;
                        return Poll::Ready(Some(Err(ClientError::Protocol(format!(
                            "{}: body longer than announced",
                            this.context
                        )))));
                    }
                    if let Some(h) = &mut this.hasher {
                        h.update(&chunk);
                    }
                    if this.skip > 0 {
                        let drop = this.skip.min(chunk.len() as u64);
                        this.skip -= drop;
                        // `drop` <= chunk.len(), a usize.
                        chunk = chunk.slice(drop as usize..);
                    }
                    if !chunk.is_empty() {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                }
            }
        }
    }
}

impl Client {
    /// `HEAD /v2/<name>/blobs/<digest>`: the blob's size, or `None` when
    /// the repository does not have it.
    pub async fn blob_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, ClientError> {
        let req = Request::pulling(Method::HEAD, blob_url(self, repo, digest), repo);
        let resp = self.send(&req).await?;
        match resp.status().as_u16() {
            200 => content_length(resp.headers()).map(Some).ok_or_else(|| {
                ClientError::Protocol(format!("{}: no Content-Length", req.context()))
            }),
            404 => Ok(None),
            _ => Err(error_from(resp, req.context()).await),
        }
    }

    /// `GET /v2/<name>/blobs/<digest>` from byte `from` (a `Range` request
    /// when `from > 0`, to resume), following redirects (S3-backed
    /// registries send blob GETs to presigned URLs; the registry's
    /// credentials are not sent there). A registry that ignores `Range`
    /// sends the whole blob: the stream then drops the first `from` bytes
    /// itself (and can check the digest). `from` equal to the blob's size
    /// gives an empty stream.
    pub async fn blob_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: u64,
    ) -> Result<BlobStream, ClientError> {
        let mut req = Request::pulling(Method::GET, blob_url(self, repo, digest), repo);
        if from > 0 {
            req = req.header(RANGE, &format!("bytes={from}-"));
        }
        let resp = self.send(&req).await?;
        let context = req.context();
        let status = resp.status().as_u16();
        let content_range = header_str(resp.headers(), reqwest::header::CONTENT_RANGE)
            .map(crate::header::content_range);
        let length = content_length(resp.headers());
        let mut stream = BlobStream {
            start: from,
            total_len: None,
            body: Box::pin(futures_util::stream::empty()),
            skip: 0,
            body_len: length,
            received: 0,
            hasher: None,
            digest: digest.clone(),
            context: context.clone(),
            done: false,
        };
        match status {
            200 => {
                if length.is_some_and(|n| from > n) {
                    return Err(ClientError::Invalid(format!(
                        "{context}: offset {from} is beyond the blob's {} bytes",
                        length.unwrap_or_default()
                    )));
                }
                stream.total_len = length;
                stream.skip = from;
                stream.hasher = Some(digest.hasher());
            }
            206 => {
                let Some(Some(ContentRange {
                    range: Some((first, last)),
                    total,
                })) = content_range
                else {
                    return Err(ClientError::Protocol(format!(
                        "{context}: 206 without a usable Content-Range"
                    )));
                };
                if first != from {
                    return Err(ClientError::Protocol(format!(
                        "{context}: asked for bytes from {from}, got from {first}"
                    )));
                }
                stream.total_len = total;
                stream.body_len = Some(last - first + 1);
                if first == 0 {
                    stream.hasher = Some(digest.hasher());
                }
            }
            416 if from > 0 => {
                // Asking from the very end: nothing left to read.
                if let Some(Some(ContentRange {
                    range: None,
                    total: Some(total),
                })) = content_range
                {
                    if total == from {
                        stream.total_len = Some(total);
                        stream.body_len = Some(0);
                        stream.done = true;
                        return Ok(stream);
                    }
                }
                return Err(error_from(resp, context).await);
            }
            _ => return Err(error_from(resp, context).await),
        }
        stream.body = Box::pin(resp.bytes_stream());
        Ok(stream)
    }

    /// Mounts `digest` from `from_repo` into `repo` (`POST
    /// /v2/<name>/blobs/uploads/?mount=<digest>&from=<from>`), asking for
    /// push on `repo` and pull on `from_repo`. When the registry does not
    /// mount (202), the upload session it opened is cancelled (DELETE):
    /// [`Client::blob_put`] opens its own, and an abandoned session would
    /// hold storage until the registry purges it.
    pub async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from_repo: &RepoName,
    ) -> Result<Mount, ClientError> {
        let mut url = self.api(&format!("/v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from_repo.as_str());
        let scopes = vec![Scope::push(repo), Scope::pull(from_repo)];
        let req = Request::new(Method::POST, url, scopes.clone());
        let resp = self.expect(&req, &[201, 202]).await?;
        if resp.status().as_u16() == 201 {
            return Ok(Mount::Mounted);
        }
        match crate::upload::location(&resp, &req.context()) {
            Ok(session) => self.cancel_upload(session, scopes).await,
            Err(e) => tracing::debug!(error = %e, "mount refused without an upload location"),
        }
        Ok(Mount::NotMounted)
    }
}

fn blob_url(client: &Client, repo: &RepoName, digest: &Digest) -> reqwest::Url {
    client.api(&format!("/v2/{repo}/blobs/{digest}"))
}
