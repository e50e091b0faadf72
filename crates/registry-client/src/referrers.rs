//! Referrers (spec v1.1): the referrers API, and for registries without it
//! (a 404) the referrers tag schema: an image index tagged
//! `<alg>-<encoded>` after the subject's digest, which clients read, and
//! which clients pushing or deleting a manifest with a `subject` keep up
//! to date.

use crate::auth::Scope;
use crate::error::ClientError;
use crate::transport::{header_str, Request};
use crate::Client;
use berth_oci::manifest::ParsedManifest;
use berth_oci::{media, Descriptor, Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};

/// The referrers tag schema's tag for `digest`: the algorithm truncated to
/// 32 characters, `-`, the encoded part truncated to 64, any character a
/// tag cannot hold replaced by `-` (`sha256:abc…` → `sha256-abc…`).
pub fn referrers_tag(digest: &Digest) -> Tag {
    let clean = |s: &str, n: usize| -> String {
        s.chars()
            .take(n)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let tag = format!(
        "{}-{}",
        clean(digest.algorithm(), 32),
        clean(digest.encoded(), 64)
    );
    // Digests are `sha256`/`sha512` with lowercase hex: always a valid tag.
    Tag::parse(&tag).unwrap_or_else(|| unreachable!("referrers tag {tag} is a valid tag"))
}

impl Client {
    /// The manifests that refer to `digest` in `repo`, optionally only
    /// those of `artifact_type`: from the referrers API (every page), or
    /// when it answers 404, from the referrers tag schema (no referrers
    /// when that tag is missing or not an image index). The filter is
    /// applied here when the registry did not apply it
    /// (`OCI-Filters-Applied`).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, ClientError> {
        let mut url = self.api(&format!("/v2/{repo}/referrers/{digest}"));
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut out = Vec::new();
        let walked = self
            .each_page_with(
                url,
                vec![Scope::pull(repo)],
                Some(media::OCI_INDEX),
                |body, headers| {
                    let filtered = header_str(headers, "oci-filters-applied").is_some_and(|f| {
                        f.split(',')
                            .any(|x| x.trim().eq_ignore_ascii_case("artifactType"))
                    });
                    let page = index_descriptors(body).ok_or_else(|| {
                        ClientError::Protocol("referrers answer is not an image index".into())
                    })?;
                    out.extend(page.into_iter().filter(|d| {
                        filtered
                            || artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t))
                    }));
                    Ok(())
                },
            )
            .await;
        match walked {
            Ok(()) => Ok(out),
            Err(e) if e.is_not_found() => {
                let mut all = self.referrers_from_tag(repo, digest).await?;
                if let Some(t) = artifact_type {
                    all.retain(|d| d.artifact_type.as_deref() == Some(t));
                }
                Ok(all)
            }
            Err(e) => Err(e),
        }
    }

    /// The referrers listed by the tag schema's index for `digest`.
    async fn referrers_from_tag(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ClientError> {
        let tag = Reference::Tag(referrers_tag(digest));
        let Some(m) = self.manifest_get_opt(repo, &tag).await? else {
            return Ok(Vec::new());
        };
        if m.media_type != media::OCI_INDEX {
            tracing::warn!(%repo, %tag, media_type = m.media_type,
                "referrers tag is not an image index: no referrers");
            return Ok(Vec::new());
        }
        Ok(index_descriptors(&m.bytes).unwrap_or_else(|| {
            tracing::warn!(%repo, %tag, "referrers tag holds an invalid index: no referrers");
            Vec::new()
        }))
    }

    /// Whether the registry has the referrers API (anything but a 404 for
    /// `digest`'s referrers).
    async fn has_referrers_api(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, ClientError> {
        let req = Request::pulling(
            Method::GET,
            self.api(&format!("/v2/{repo}/referrers/{digest}")),
            repo,
        )
        .header(reqwest::header::ACCEPT, media::OCI_INDEX);
        let resp = self.send(&req).await?;
        match resp.status().as_u16() {
            404 => Ok(false),
            s if (200..300).contains(&s) => Ok(true),
            _ => Err(crate::transport::error_from(resp, req.context()).await),
        }
    }

    /// Adds the manifest `parsed` (pushed as `digest`, `size` bytes) to the
    /// tag schema's index of its subject: read it (an empty index when the
    /// tag is missing), skip when already listed, append, write back.
    pub(crate) async fn referrers_tag_add(
        &self,
        repo: &RepoName,
        parsed: &ParsedManifest,
        digest: &Digest,
        size: u64,
    ) -> Result<(), ClientError> {
        let Some(subject) = &parsed.subject else {
            return Ok(());
        };
        let tag = Reference::Tag(referrers_tag(&subject.digest));
        let mut index = self.tag_schema_index(repo, &tag).await?;
        let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(ClientError::Protocol(format!(
                "referrers tag {tag} in {repo}: index without a manifests list"
            )));
        };
        if list
            .iter()
            .any(|d| d.get("digest").and_then(Value::as_str) == Some(digest.as_str()))
        {
            return Ok(());
        }
        let descriptor = Descriptor {
            media_type: parsed.media_type.clone(),
            digest: digest.clone(),
            size,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
            urls: Vec::new(),
        };
        list.push(
            serde_json::to_value(&descriptor)
                .map_err(|e| ClientError::Invalid(format!("descriptor of {digest}: {e}")))?,
        );
        self.put_tag_schema_index(repo, &tag, &index).await
    }

    /// Takes `digest` out of the tag schema's index of `subject`, when the
    /// registry has no referrers API and the index lists it.
    pub(crate) async fn referrers_tag_remove(
        &self,
        repo: &RepoName,
        subject: &Digest,
        digest: &Digest,
    ) -> Result<(), ClientError> {
        if self.has_referrers_api(repo, subject).await? {
            return Ok(());
        }
        let tag = Reference::Tag(referrers_tag(subject));
        let mut index = self.tag_schema_index(repo, &tag).await?;
        let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let before = list.len();
        list.retain(|d| d.get("digest").and_then(Value::as_str) != Some(digest.as_str()));
        if list.len() == before {
            return Ok(());
        }
        self.put_tag_schema_index(repo, &tag, &index).await
    }

    /// The tag schema's index at `tag`, as JSON (fields this client does not
    /// know are kept); an empty index when the tag does not exist. Anything
    /// else under that tag is an error: overwriting it would lose data.
    async fn tag_schema_index(
        &self,
        repo: &RepoName,
        tag: &Reference,
    ) -> Result<Value, ClientError> {
        match self.manifest_get_opt(repo, tag).await? {
            None => Ok(json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_INDEX,
                "manifests": [],
            })),
            Some(m) if m.media_type == media::OCI_INDEX => {
                let v: Value = serde_json::from_slice(&m.bytes).map_err(|e| {
                    ClientError::Protocol(format!("referrers tag {tag} in {repo}: {e}"))
                })?;
                if v.get("manifests").is_some_and(Value::is_array) {
                    Ok(v)
                } else {
                    Err(ClientError::Protocol(format!(
                        "referrers tag {tag} in {repo}: index without a manifests list"
                    )))
                }
            }
            Some(m) => Err(ClientError::Protocol(format!(
                "referrers tag {tag} in {repo} holds a {}, not an image index",
                m.media_type
            ))),
        }
    }

    async fn put_tag_schema_index(
        &self,
        repo: &RepoName,
        tag: &Reference,
        index: &Value,
    ) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec(index)
            .map_err(|e| ClientError::Invalid(format!("referrers index: {e}")))?;
        self.put_manifest_bytes(repo, tag, media::OCI_INDEX, Bytes::from(bytes))
            .await
            .map(|_| ())
    }
}

/// The `manifests` of an image index body; `None` when it is not one.
fn index_descriptors(body: &[u8]) -> Option<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Option<Vec<Descriptor>>,
    }
    let index: Index = serde_json::from_slice(body).ok()?;
    Some(index.manifests.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_schema() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            referrers_tag(&d).as_str(),
            format!("sha256-{}", d.encoded())
        );
        let d = Digest::sha512_of(b"x");
        let t = referrers_tag(&d);
        assert_eq!(t.as_str(), format!("sha512-{}", &d.encoded()[..64]));
        assert_eq!(t.as_str().len(), 71);
    }

    #[test]
    fn index_bodies() {
        let d = Digest::sha256_of(b"m");
        let body = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": media::OCI_MANIFEST, "digest": d, "size": 3, "artifactType": "a/b"}
        ]});
        let got = index_descriptors(body.to_string().as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].artifact_type.as_deref(), Some("a/b"));
        assert_eq!(index_descriptors(br#"{"schemaVersion":2}"#), Some(vec![]));
        assert_eq!(index_descriptors(b"nope"), None);
    }
}
