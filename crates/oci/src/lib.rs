//! Spec types of the OCI Distribution and Image specifications, and Docker
//! schema 2: digests (with a resumable SHA-256), repository names, references,
//! media types, manifest parsing and validation, and the one table of error
//! codes. Nothing here does I/O; every other crate builds on these types.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::{Digest, DigestError, Sha256State};
pub use error::ErrorCode;
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest};
pub use name::{Reference, RepoName, Tag};
