//! Manifests: HEAD, GET (bytes verified against their digest), PUT and
//! DELETE. A PUT of a manifest with a `subject` to a registry that did not
//! process it (no `OCI-Subject` in the answer), and a DELETE of one, keep
//! the referrers tag schema's index up to date, as spec v1.1 asks of
//! clients.

use crate::auth::Scope;
use crate::error::ClientError;
use crate::transport::{content_length, header_str, read_limited, Request};
use crate::Client;
use berth_oci::manifest::{ParsedManifest, MAX_MANIFEST_BYTES};
use berth_oci::{media, Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;

/// The `Accept` header of manifest requests: every OCI and Docker schema 2
/// manifest and index type ([`berth_oci::media::MANIFEST_TYPES`]). Docker
/// schema 1 is left out on purpose: a registry then converts to schema 2
/// or answers that it has nothing acceptable, rather than handing over a
/// signed schema 1 manifest nobody can push to berth.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// What a manifest HEAD tells: enough to decide whether to copy it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestMeta {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A fetched manifest, its bytes verified against `digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The exact bytes the registry stores (the digest is of these).
    pub bytes: Bytes,
    /// The media type (`Content-Type`, or the body's `mediaType`).
    pub media_type: String,
    /// The digest: the one asked for, or `Docker-Content-Digest`, or the
    /// SHA-256 of the bytes.
    pub digest: Digest,
}

impl Client {
    /// `HEAD /v2/<name>/manifests/<reference>`: the digest, media type and
    /// size, or `None` when the registry has no such manifest. When the
    /// registry leaves out a header this needs (some omit
    /// `Docker-Content-Digest` on HEAD), the manifest is fetched instead.
    pub async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestMeta>, ClientError> {
        let req = Request::pulling(Method::HEAD, manifest_url(self, repo, reference), repo)
            .header(ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(&req).await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if resp.status().as_u16() != 200 {
            return Err(crate::transport::error_from(resp, req.context()).await);
        }
        let headers = resp.headers();
        let header_digest = header_str(headers, "docker-content-digest")
            .and_then(|d| d.trim().parse::<Digest>().ok());
        let digest = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => header_digest,
        };
        let media_type = header_str(headers, CONTENT_TYPE)
            .map(media::essence)
            .filter(|t| !is_generic(t))
            .map(str::to_owned);
        if let (Some(digest), Some(media_type), Some(size)) =
            (digest, media_type, content_length(headers))
        {
            return Ok(Some(ManifestMeta {
                digest,
                media_type,
                size,
            }));
        }
        match self.manifest_get_opt(repo, reference).await? {
            Some(m) => Ok(Some(ManifestMeta {
                size: m.bytes.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            })),
            None => Ok(None),
        }
    }

    /// `GET /v2/<name>/manifests/<reference>`, accepting every manifest and
    /// index type. The bytes are checked against the digest asked for and
    /// against `Docker-Content-Digest` when the registry sends it; a
    /// mismatch is a [`ClientError::DigestMismatch`]. Manifests over 4 MiB
    /// are refused.
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Manifest, ClientError> {
        let req = Request::pulling(Method::GET, manifest_url(self, repo, reference), repo)
            .header(ACCEPT, MANIFEST_ACCEPT);
        let resp = self.expect(&req, &[200]).await?;
        let header_digest =
            match header_str(resp.headers(), "docker-content-digest") {
                None => None,
                Some(d) => Some(d.trim().parse::<Digest>().map_err(|e| {
                    ClientError::Protocol(format!("Docker-Content-Digest {d:?}: {e}"))
                })?),
            };
        let content_type = header_str(resp.headers(), CONTENT_TYPE).map(str::to_owned);
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &req.context()).await?;
        let what = format!("manifest {repo}:{reference}");
        if let Reference::Digest(d) = reference {
            verify(&what, d, &bytes)?;
        }
        if let Some(d) = &header_digest {
            verify(&what, d, &bytes)?;
        }
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(_) => header_digest.unwrap_or_else(|| Digest::sha256_of(&bytes)),
        };
        let media_type = media_type_of(content_type.as_deref(), &bytes).ok_or_else(|| {
            ClientError::Protocol(format!(
                "{what}: no Content-Type, and the body names no mediaType"
            ))
        })?;
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// [`Client::manifest_get`], `None` for a 404.
    pub(crate) async fn manifest_get_opt(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Manifest>, ClientError> {
        match self.manifest_get(repo, reference).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v2/<name>/manifests/<reference>` of `bytes` as `media_type`;
    /// the manifest's digest. By digest, the bytes must match it (checked
    /// before sending). When the manifest has a `subject` and the registry
    /// does not answer `OCI-Subject` (it has no referrers API), the
    /// referrers tag schema's index for the subject gets a descriptor of
    /// it, as spec v1.1 asks (read, append, write back: not atomic against
    /// another client doing the same).
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, ClientError> {
        let digest = match reference {
            Reference::Digest(d) => {
                if !d.matches(&bytes) {
                    return Err(ClientError::Invalid(format!(
                        "manifest pushed as {d} does not have that digest"
                    )));
                }
                d.clone()
            }
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        if reqwest::header::HeaderValue::from_str(media_type).is_err() || media_type.is_empty() {
            return Err(ClientError::Invalid(format!(
                "media type {media_type:?} cannot be a Content-Type"
            )));
        }
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ClientError::Invalid(format!(
                "manifest of {} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit registries apply",
                bytes.len()
            )));
        }
        let subject_processed = self
            .put_manifest_bytes(repo, reference, media_type, bytes.clone())
            .await?;
        if !subject_processed {
            if let Some(parsed) = parse_with_subject(media_type, &bytes) {
                self.referrers_tag_add(repo, &parsed, &digest, bytes.len() as u64)
                    .await?;
            }
        }
        Ok(digest)
    }

    /// The PUT itself; whether the registry processed a `subject`
    /// (`OCI-Subject`).
    pub(crate) async fn put_manifest_bytes(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<bool, ClientError> {
        let req = Request::new(
            Method::PUT,
            manifest_url(self, repo, reference),
            vec![Scope::push(repo)],
        )
        .header(CONTENT_TYPE, media_type)
        .body(bytes.clone());
        let resp = self.expect(&req, &[200, 201, 202, 204]).await?;
        if let Some(d) = header_str(resp.headers(), "docker-content-digest") {
            // A registry that stored something else than what was sent.
            if let Ok(d) = d.trim().parse::<Digest>() {
                verify(
                    &format!("manifest {repo}:{reference} as stored"),
                    &d,
                    &bytes,
                )?;
            }
        }
        Ok(resp.headers().contains_key("oci-subject"))
    }

    /// Deletes tag `tag` of `repo`, leaving its manifest (`DELETE
    /// /v2/<name>/manifests/<tag>`, which the spec lets registries
    /// support). `Ok(false)` when the registry has no tag deletion (405,
    /// `UNSUPPORTED`, or, as CNCF Distribution 2.8 answers, 400
    /// `DIGEST_INVALID`: it takes only digests there); `Ok(true)` when the
    /// tag is gone, or was not there.
    pub async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> Result<bool, ClientError> {
        let reference = Reference::Tag(tag.clone());
        let req = Request::new(
            Method::DELETE,
            manifest_url(self, repo, &reference),
            vec![Scope::delete(repo)],
        );
        match self.expect(&req, &[200, 202, 204]).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(true),
            Err(e)
                if e.status() == Some(405)
                    || matches!(e.code(), Some("UNSUPPORTED" | "DIGEST_INVALID")) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// `DELETE /v2/<name>/manifests/<digest>`. When the manifest had a
    /// `subject` and the registry has no referrers API, its descriptor is
    /// also taken out of the referrers tag schema's index (best effort:
    /// a failure there is logged, the manifest is deleted either way).
    pub async fn manifest_delete(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), ClientError> {
        let reference = Reference::Digest(digest.clone());
        // Read first: once deleted, its subject can no longer be known.
        let subject = match self.manifest_get_opt(repo, &reference).await {
            Ok(Some(m)) => parse_with_subject(&m.media_type, &m.bytes)
                .and_then(|p| p.subject.map(|s| s.digest)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(%repo, %digest, error = %e, "manifest unreadable before delete");
                None
            }
        };
        let req = Request::new(
            Method::DELETE,
            manifest_url(self, repo, &reference),
            vec![Scope::delete(repo)],
        );
        self.expect(&req, &[200, 202, 204]).await?;
        if let Some(subject) = subject {
            if let Err(e) = self.referrers_tag_remove(repo, &subject, digest).await {
                tracing::warn!(%repo, %digest, %subject, error = %e,
                    "manifest deleted, but its referrers tag could not be updated");
            }
        }
        Ok(())
    }
}

fn manifest_url(client: &Client, repo: &RepoName, reference: &Reference) -> reqwest::Url {
    client.api(&format!("/v2/{repo}/manifests/{reference}"))
}

/// Checks `bytes` against `digest`.
pub(crate) fn verify(what: &str, digest: &Digest, bytes: &[u8]) -> Result<(), ClientError> {
    if digest.matches(bytes) {
        return Ok(());
    }
    let mut h = digest.hasher();
    h.update(bytes);
    Err(ClientError::DigestMismatch {
        what: what.to_owned(),
        expected: digest.clone(),
        actual: h.finalize(),
    })
}

/// A `Content-Type` that says nothing about which manifest it is.
fn is_generic(t: &str) -> bool {
    t.is_empty()
        || matches!(
            t,
            "application/json" | "text/plain" | "application/octet-stream"
        )
}

/// The media type of a fetched manifest: a specific `Content-Type`, else
/// the body's `mediaType`, else its shape (OCI allows omitting both).
fn media_type_of(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(t) = content_type.map(media::essence).filter(|t| !is_generic(t)) {
        return Some(t.to_owned());
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(t) = value.get("mediaType").and_then(|t| t.as_str()) {
        return Some(t.to_owned());
    }
    if value.get("manifests").is_some() {
        Some(media::OCI_INDEX.to_owned())
    } else if value.get("config").is_some() {
        Some(media::OCI_MANIFEST.to_owned())
    } else {
        None
    }
}

/// `bytes` parsed, when it is a manifest with a `subject`.
fn parse_with_subject(media_type: &str, bytes: &[u8]) -> Option<ParsedManifest> {
    match berth_oci::manifest::parse(Some(media_type), bytes) {
        Ok(p) if p.subject.is_some() => Some(p),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "manifest not parsed for its subject");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_names_every_manifest_type() {
        for t in media::MANIFEST_TYPES {
            assert!(media::accepts([MANIFEST_ACCEPT], t), "{t}");
            assert!(MANIFEST_ACCEPT.contains(t), "{t}");
        }
    }

    #[test]
    fn media_types_of_fetched_manifests() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            media_type_of(Some("application/json"), index).as_deref(),
            Some(media::OCI_INDEX)
        );
        assert_eq!(
            media_type_of(
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
                index
            )
            .as_deref(),
            Some(media::DOCKER_MANIFEST)
        );
        let typed = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}"}}"#,
            media::OCI_MANIFEST
        );
        assert_eq!(
            media_type_of(None, typed.as_bytes()).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        assert_eq!(media_type_of(None, b"{}"), None);
    }

    #[test]
    fn verification_reports_both_digests() {
        let d = Digest::sha256_of(b"a");
        assert!(verify("m", &d, b"a").is_ok());
        match verify("m", &d, b"b") {
            Err(ClientError::DigestMismatch { actual, .. }) => {
                assert_eq!(actual, Digest::sha256_of(b"b"))
            }
            other => panic!("{other:?}"),
        }
        let d = Digest::sha512_of(b"a");
        match verify("m", &d, b"b") {
            Err(ClientError::DigestMismatch { actual, .. }) => {
                assert_eq!(actual, Digest::sha512_of(b"b"))
            }
            other => panic!("{other:?}"),
        }
    }
}
