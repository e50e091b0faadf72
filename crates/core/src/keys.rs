//! The metadata layout in `Kv`: every key the domain writes, in one place.
//!
//! ```text
//! repo:<name>                          RepoRecord        (catalog)
//! tag:<name>@<tag>                     TagRecord         (tags list, tag -> digest)
//! man:<name>@<digest>                  ManifestRecord    (manifest exists in repo)
//! ref:<name>@<subject>@<digest>        Descriptor        (referrers of subject)
//! rblob:<name>@<digest>                RepoBlobRecord    (blob linked into repo)
//! blob:<digest>                        BlobRecord        (blob committed in store)
//! upload:<id>                          UploadSession     (upload in progress)
//! pulled:<name>@<digest>               PullRecord        (last pull of a manifest)
//! ```
//!
//! `@` and `:` cannot occur in repository names, so a scan of
//! `tag:<name>@` never sees the tags of `<name>/child`.

use berth_oci::{Digest, RepoName};

pub const REPO_PREFIX: &str = "repo:";

pub fn repo(name: &RepoName) -> String {
    format!("repo:{name}")
}

pub fn tag_prefix(name: &RepoName) -> String {
    format!("tag:{name}@")
}

pub fn tag(name: &RepoName, tag: &str) -> String {
    format!("tag:{name}@{tag}")
}

pub fn manifest(name: &RepoName, digest: &Digest) -> String {
    format!("man:{name}@{digest}")
}

pub fn referrer_prefix(name: &RepoName, subject: &Digest) -> String {
    format!("ref:{name}@{subject}@")
}

pub fn referrer(name: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!("ref:{name}@{subject}@{referrer}")
}

pub fn repo_blob(name: &RepoName, digest: &Digest) -> String {
    format!("rblob:{name}@{digest}")
}

pub fn blob(digest: &Digest) -> String {
    format!("blob:{digest}")
}

pub fn pulled(name: &RepoName, digest: &Digest) -> String {
    format!("pulled:{name}@{digest}")
}

pub fn pulled_prefix(name: &RepoName) -> String {
    format!("pulled:{name}@")
}

pub fn upload(id: &str) -> String {
    format!("upload:{id}")
}
