//! The records stored under the keys of [`crate::keys`], as JSON.

use berth_oci::Digest;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoRecord {
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: Digest,
    pub updated: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Config and layers this manifest references.
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// Child manifests of an index.
    #[serde(default)]
    pub children: Vec<Digest>,
    pub created: u64,
    /// The manifest itself when small; larger ones live in the blob store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoBlobRecord {
    pub size: u64,
    pub linked: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub created: u64,
    /// When a reference to it was last made (a link, a manifest push).
    #[serde(default)]
    pub touched: u64,
    /// Set (Unix seconds) once garbage collection has claimed the blob and
    /// is deleting its bytes; see `lifecycle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting: Option<u64>,
}

impl BlobRecord {
    /// The record of a blob stored now, at `t`.
    pub fn new(size: u64, t: u64) -> BlobRecord {
        BlobRecord {
            size,
            created: t,
            touched: t,
            deleting: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadSession {
    pub repo: String,
    /// Bytes received and durable so far.
    pub offset: u64,
    /// The running SHA-256 over those bytes (`Sha256State::to_hex`).
    pub hash: String,
    pub created: u64,
    pub updated: u64,
    /// The request now writing the upload's bytes, if any. Only its holder
    /// may write them, so the bytes stored past `offset` are always those
    /// the holder is hashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<UploadClaim>,
    /// Who opened it, for the bound on open uploads per account (absent
    /// in sessions opened before that bound existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// Beside an open upload: the bytes it has received, which count toward
/// its project's quota.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMark {
    pub bytes: u64,
}

/// An exclusive, expiring right to write an upload's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadClaim {
    /// Names the claiming request.
    pub token: String,
    /// Unix time in milliseconds after which the claim is void unless
    /// renewed; a writer that crashed stops blocking the upload then.
    pub expires_ms: u64,
}
