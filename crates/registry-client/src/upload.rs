//! Blob upload: a session opened by POST, then either one PUT of the whole
//! blob (blobs up to one chunk) or PATCHes of chunks with `Content-Range`
//! and a closing PUT `?digest=`. Memory stays bounded whatever the blob's
//! size: at most the chunk being sent plus the next one being filled (and
//! one item of the source stream beyond it); the source is never read
//! whole. The bytes are hashed on the way, and a source whose size
//! or digest is not the one announced cancels the session before the
//! closing PUT.

use crate::auth::Scope;
use crate::endpoint::MAX_CHUNK_SIZE;
use crate::error::ClientError;
use crate::transport::{header_str, Request};
use crate::Client;
use berth_oci::{Digest, RepoName};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, Url};
use std::error::Error as StdError;
use std::pin::Pin;

const OCTET_STREAM: &str = "application/octet-stream";

/// The URL of the `Location` header of `resp`, resolved against the
/// request's URL (registries send both relative and absolute ones, often
/// with a query string of their own).
pub(crate) fn location(resp: &Response, context: &str) -> Result<Url, ClientError> {
    let raw = header_str(resp.headers(), LOCATION).ok_or_else(|| {
        ClientError::Protocol(format!("{context}: {} without a Location", resp.status()))
    })?;
    resp.url()
        .join(raw)
        .map_err(|e| ClientError::Protocol(format!("{context}: Location {raw:?}: {e}")))
}

/// `url` with `digest=<digest>` appended to whatever query it has.
fn with_digest(url: &Url, digest: &Digest) -> Url {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

/// Cuts a stream of arbitrary pieces into chunks of `size` bytes (the last
/// one shorter).
struct Chunker<S> {
    source: Pin<Box<S>>,
    buf: BytesMut,
    size: usize,
    ended: bool,
}

impl<S, E> Chunker<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    fn new(source: S, size: usize) -> Self {
        Chunker {
            source: Box::pin(source),
            buf: BytesMut::new(),
            size,
            ended: false,
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        while self.buf.len() < self.size && !self.ended {
            match self.source.next().await {
                Some(Ok(piece)) => self.buf.extend_from_slice(&piece),
                Some(Err(e)) => return Err(ClientError::Source(e.into())),
                None => self.ended = true,
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let n = self.size.min(self.buf.len());
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

impl Client {
    /// Uploads the blob `digest` of `size` bytes, read from `body`, into
    /// `repo`. Blobs up to the chunk size go in one PUT; larger ones in
    /// chunks of the configured size, or of the registry's
    /// `OCI-Chunk-Min-Length` when larger (capped at
    /// [`MAX_CHUNK_SIZE`]). The blob is
    /// sent even if the registry has it: check with [`Client::blob_head`]
    /// (or try [`Client::blob_mount`]) first. On failure the upload
    /// session is cancelled; nothing resumes a broken upload, the caller
    /// retries the whole blob when the error says it may help.
    pub async fn blob_put<S, E>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), ClientError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let scopes = vec![Scope::push(repo)];
        let mut chunker = Chunker::new(body, self.inner.chunk_size);
        // Small blobs are read whole first: a failing source then never
        // opens a session.
        let whole = if size <= self.inner.chunk_size as u64 {
            let data = chunker.next().await?.unwrap_or_default();
            if chunker.next().await?.is_some() {
                return Err(too_long(digest, size));
            }
            check_source(digest, size, &data)?;
            Some(data)
        } else {
            None
        };

        let mut start = self.api(&format!("/v2/{repo}/blobs/uploads/"));
        if !digest.is_sha256() {
            start
                .query_pairs_mut()
                .append_pair("digest-algorithm", digest.algorithm());
        }
        let open = Request::new(Method::POST, start, scopes.clone());
        let resp = self.expect(&open, &[202]).await?;
        let session = location(&resp, &open.context())?;
        let min_chunk = header_str(resp.headers(), "oci-chunk-min-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|n| {
                usize::try_from(n)
                    .unwrap_or(MAX_CHUNK_SIZE)
                    .min(MAX_CHUNK_SIZE)
            });

        let mut current = session.clone();
        let result = match whole {
            Some(data) => self.put_whole(&current, digest, data, &scopes).await,
            None => {
                if let Some(min) = min_chunk.filter(|m| *m > chunker.size) {
                    tracing::debug!(min, "registry asks for larger chunks");
                    chunker.size = min;
                }
                self.put_chunks(&mut current, digest, size, &mut chunker, &scopes)
                    .await
            }
        };
        if result.is_err() {
            self.cancel_upload(current, scopes).await;
        }
        result
    }

    /// The closing PUT carrying the whole blob.
    async fn put_whole(
        &self,
        session: &Url,
        digest: &Digest,
        data: Bytes,
        scopes: &[Scope],
    ) -> Result<(), ClientError> {
        let req = Request::new(Method::PUT, with_digest(session, digest), scopes.to_vec())
            .header(CONTENT_TYPE, OCTET_STREAM)
            .body(data);
        self.expect(&req, &[201, 204]).await.map(|_| ())
    }

    /// PATCHes every chunk of `chunker` to `session` (updated to each
    /// answer's `Location`), then the closing PUT.
    async fn put_chunks<S, E>(
        &self,
        session: &mut Url,
        digest: &Digest,
        size: u64,
        chunker: &mut Chunker<S>,
        scopes: &[Scope],
    ) -> Result<(), ClientError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let mut hasher = digest.hasher();
        let mut offset = 0u64;
        while let Some(chunk) = chunker.next().await? {
            let len = chunk.len() as u64;
            if offset + len > size {
                return Err(too_long(digest, size));
            }
            hasher.update(&chunk);
            let last = offset + len - 1;
            let req = Request::new(Method::PATCH, session.clone(), scopes.to_vec())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(reqwest::header::CONTENT_RANGE, &format!("{offset}-{last}"))
                .body(chunk);
            let resp = self.expect(&req, &[202]).await?;
            if let Some(end) = header_str(resp.headers(), reqwest::header::RANGE)
                .and_then(crate::header::upload_range_end)
            {
                if end != last {
                    return Err(ClientError::Protocol(format!(
                        "{}: the registry holds bytes 0-{end} after a chunk ending at {last}",
                        req.context()
                    )));
                }
            }
            // Each chunk goes to the location the previous answer gave.
            if resp.headers().contains_key(LOCATION) {
                *session = location(&resp, &req.context())?;
            }
            offset += len;
        }
        if offset != size {
            return Err(ClientError::Invalid(format!(
                "blob {digest}: the source ended after {offset} of {size} bytes"
            )));
        }
        let actual = hasher.finalize();
        if actual != *digest {
            return Err(ClientError::DigestMismatch {
                what: "blob to upload".into(),
                expected: digest.clone(),
                actual,
            });
        }
        let req = Request::new(Method::PUT, with_digest(session, digest), scopes.to_vec());
        self.expect(&req, &[201, 204]).await.map(|_| ())
    }

    /// DELETEs an upload session, best effort: the registry purges
    /// abandoned sessions anyway.
    pub(crate) async fn cancel_upload(&self, session: Url, scopes: Vec<Scope>) {
        let req = Request::new(Method::DELETE, session, scopes);
        match self.send(&req).await {
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 404 => {}
            Ok(resp) => tracing::debug!(status = %resp.status(), "cancelling an upload failed"),
            Err(e) => tracing::debug!(error = %e, "cancelling an upload failed"),
        }
    }
}

fn too_long(digest: &Digest, size: u64) -> ClientError {
    ClientError::Invalid(format!(
        "blob {digest}: the source yields more than the announced {size} bytes"
    ))
}

/// Size and digest of a blob read whole.
fn check_source(digest: &Digest, size: u64, data: &[u8]) -> Result<(), ClientError> {
    if data.len() as u64 != size {
        return Err(ClientError::Invalid(format!(
            "blob {digest}: the source yields {} bytes, not the announced {size}",
            data.len()
        )));
    }
    crate::manifest::verify("blob to upload", digest, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(sizes: &[usize]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        let mut n = 0u8;
        let items: Vec<_> = sizes
            .iter()
            .map(|&s| {
                let v: Vec<u8> = (0..s)
                    .map(|_| {
                        n = n.wrapping_add(1);
                        n
                    })
                    .collect();
                Ok(Bytes::from(v))
            })
            .collect();
        futures_util::stream::iter(items)
    }

    async fn drain(sizes: &[usize], chunk: usize) -> Vec<usize> {
        let mut c = Chunker::new(pieces(sizes), chunk);
        let mut out = Vec::new();
        while let Some(b) = c.next().await.unwrap() {
            out.push(b.len());
        }
        out
    }

    #[tokio::test]
    async fn chunks_have_the_chunk_size_whatever_the_pieces() {
        assert_eq!(drain(&[3, 3, 3, 1], 4).await, vec![4, 4, 2]);
        assert_eq!(drain(&[10], 4).await, vec![4, 4, 2]);
        assert_eq!(drain(&[1; 8], 4).await, vec![4, 4]);
        assert_eq!(drain(&[], 4).await, Vec::<usize>::new());
        assert_eq!(drain(&[0, 0, 5, 0], 8).await, vec![5]);
    }

    #[tokio::test]
    async fn chunk_bytes_keep_their_order() {
        let mut c = Chunker::new(pieces(&[5, 7, 2]), 3);
        let mut all = Vec::new();
        while let Some(b) = c.next().await.unwrap() {
            all.extend_from_slice(&b);
        }
        assert_eq!(all, (1..=14).collect::<Vec<u8>>());
    }

    #[test]
    fn digest_goes_after_an_existing_query() {
        let d = Digest::sha256_of(b"x");
        let digest = format!("sha256%3A{}", d.encoded());
        for (upload, with) in [
            (
                "https://r/v2/a/blobs/uploads/u?_state=a%2Bb%3D&x=1",
                "https://r/v2/a/blobs/uploads/u?_state=a%2Bb%3D&x=1&digest=",
            ),
            (
                "https://r/v2/a/blobs/uploads/u",
                "https://r/v2/a/blobs/uploads/u?digest=",
            ),
        ] {
            let u = Url::parse(upload).unwrap();
            assert_eq!(with_digest(&u, &d).as_str(), format!("{with}{digest}"));
        }
    }
}
