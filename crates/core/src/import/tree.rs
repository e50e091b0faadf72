//! The [`Tree`] port: a CNCF Distribution storage tree, read only, on a
//! filesystem or in a bucket (adapters in the storage crate), and what an
//! import reads from it. Paths are relative to Distribution's
//! `<rootdirectory>/docker/registry/v2/` and `/`-separated:
//!
//! ```text
//! repositories/<name...>/                 a repository: a directory holding _manifests
//!     _manifests/revisions/<alg>/<hex>/link          a manifest of the repository
//!     _manifests/tags/<tag>/current/link             tag -> manifest digest (the file's text)
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link   the tag's history (not imported)
//!     _layers/<alg>/<hex>/link                       a blob linked into the repository
//!     _uploads/<id>/...                              uploads in progress (not imported)
//! blobs/<alg>/<2 hex>/<hex>/data          the bytes of every blob and manifest
//! ```
//!
//! A revision or layer link names its digest twice, in its path and in its
//! text (Distribution writes both from the same digest); the path is used,
//! which saves a read per link. A tag's link is read: only its text says
//! where it points.

use crate::blob::{ByteStream, StoreError};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;

/// A Distribution storage tree, read only.
#[async_trait]
pub trait Tree: Send + Sync {
    /// Names of the directories right under `dir` (which is "" or ends in
    /// `/`), without their path or a trailing `/`. An absent `dir` has
    /// none.
    async fn dirs(&self, dir: &str) -> Result<Vec<String>, StoreError>;

    /// Every file under `dir` (ending in `/`), at any depth, as paths
    /// relative to `dir`. An absent `dir` has none.
    async fn files(&self, dir: &str) -> Result<Vec<String>, StoreError>;

    /// Size of the file at `path`; `None` when there is none.
    async fn size(&self, path: &str) -> Result<Option<u64>, StoreError>;

    /// The whole file at `path` when it has at most `max` bytes; a larger
    /// one is not read.
    async fn read(&self, path: &str, max: u64) -> Result<FileRead, StoreError>;

    /// Streams the first `len` bytes of the file at `path`.
    async fn stream(&self, path: &str, len: u64) -> Result<ByteStream, StoreError>;
}

/// What [`Tree::read`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRead {
    Absent,
    /// Larger than asked for: this many bytes.
    TooLarge(u64),
    Bytes(Bytes),
}

/// Where the bytes of a blob (or manifest) lie in the tree.
pub fn blob_data(digest: &Digest) -> String {
    let hex = digest.encoded();
    format!("blobs/{}/{}/{hex}/data", digest.algorithm(), &hex[..2])
}

/// Names of every repository in the tree (directories under
/// `repositories/` that hold `_manifests`; names have any number of path
/// segments, and a repository may hold others), in name order.
pub async fn repositories(tree: &dyn Tree) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(name) = pending.pop() {
        let dir = format!("repositories/{name}");
        for sub in tree.dirs(&dir).await? {
            if sub == "_manifests" {
                found.push(name.trim_end_matches('/').to_owned());
            } else if !sub.starts_with('_') && !sub.is_empty() {
                // `_layers`, `_uploads`: a repository's own. Repository name
                // components never start with `_`.
                pending.push(format!("{name}{sub}/"));
            }
        }
    }
    found.retain(|n| !n.is_empty());
    found.sort();
    Ok(found)
}

/// A tag of a repository and where its `current/link` points; the error
/// says why that link could not be read.
#[derive(Clone, Debug)]
pub struct TagLink {
    pub tag: String,
    pub target: Result<Digest, String>,
}

/// The links of one repository.
#[derive(Clone, Debug, Default)]
pub struct RepoLinks {
    /// The name, as the tree spells it (not checked against berth's
    /// grammar yet).
    pub name: String,
    pub revisions: Vec<Digest>,
    pub layers: Vec<Digest>,
    pub tags: Vec<TagLink>,
    /// Link paths that name no valid digest, with what is wrong.
    pub bad_links: Vec<(String, String)>,
}

/// Most a tag link can hold: a digest and a newline.
const LINK_MAX: u64 = 1024;

/// Reads the links of repository `name`: revisions and layers from their
/// paths, tags from their files.
pub async fn repo_links(tree: &dyn Tree, name: &str) -> Result<RepoLinks, StoreError> {
    let base = format!("repositories/{name}/");
    let mut links = RepoLinks {
        name: name.to_owned(),
        ..RepoLinks::default()
    };
    let mut tags = Vec::new();
    for file in tree.files(&format!("{base}_manifests/")).await? {
        let parts: Vec<&str> = file.split('/').collect();
        match parts.as_slice() {
            ["revisions", alg, hex, "link"] => match link_digest(alg, hex) {
                Ok(d) => links.revisions.push(d),
                Err(e) => links
                    .bad_links
                    .push((format!("{base}_manifests/{file}"), e)),
            },
            ["tags", tag, "current", "link"] => tags.push((*tag).to_owned()),
            // The tag's index of past targets, and whatever else: not
            // part of what the repository serves.
            _ => {}
        }
    }
    for file in tree.files(&format!("{base}_layers/")).await? {
        let parts: Vec<&str> = file.split('/').collect();
        if let [alg, hex, "link"] = parts.as_slice() {
            match link_digest(alg, hex) {
                Ok(d) => links.layers.push(d),
                Err(e) => links.bad_links.push((format!("{base}_layers/{file}"), e)),
            }
        }
    }
    tags.sort();
    for tag in tags {
        let path = format!("{base}_manifests/tags/{tag}/current/link");
        let target = match tree.read(&path, LINK_MAX).await? {
            FileRead::Bytes(text) => String::from_utf8_lossy(&text)
                .trim()
                .parse::<Digest>()
                .map_err(|e| format!("its link holds no valid digest ({e})")),
            FileRead::Absent => Err("its link is gone".to_owned()),
            FileRead::TooLarge(n) => Err(format!("its link is {n} bytes, not a digest")),
        };
        links.tags.push(TagLink { tag, target });
    }
    links.revisions.sort();
    links.revisions.dedup();
    links.layers.sort();
    links.layers.dedup();
    Ok(links)
}

fn link_digest(alg: &str, hex: &str) -> Result<Digest, String> {
    format!("{alg}:{hex}")
        .parse::<Digest>()
        .map_err(|e| format!("{alg}:{hex} is no digest berth accepts ({e})"))
}
