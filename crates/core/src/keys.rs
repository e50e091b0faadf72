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
//! uprepo:<name>@<id>                   UploadMark        (open upload in repo, its bytes)
//! upacct:<account>@<id>                (empty)           (open upload of an account)
//! policy:<project>                    ProjectPolicy     (quota, immutability, retention)
//! gcrun:<ms, 20 digits>-<id>           GcReport          (the last GC runs)
//! outbox:<ms, 15 digits>-<uuid>        Event             (a committed change, until consumed)
//! ```
//!
//! Every key of the domain is built here; scans use the prefixes below.
//! `@` and `:` cannot occur in repository names, so a scan of
//! `tag:<name>@` never sees the tags of `<name>/child`.

use berth_oci::{Digest, RepoName};

pub const REPO_PREFIX: &str = "repo:";
pub const TAG_PREFIX: &str = "tag:";
pub const MANIFEST_PREFIX: &str = "man:";
pub const REFERRER_PREFIX: &str = "ref:";
pub const REPO_BLOB_PREFIX: &str = "rblob:";
pub const BLOB_PREFIX: &str = "blob:";
pub const UPLOAD_PREFIX: &str = "upload:";
pub const POLICY_PREFIX: &str = "policy:";
pub const GC_RUN_PREFIX: &str = "gcrun:";
pub const OUTBOX_PREFIX: &str = "outbox:";
/// A proxy-cache project's binding to its upstream (written by
/// `berth-proxy`; read here by fsck, whose manifests there may name blobs
/// not fetched yet).
pub const PROXY_PREFIX: &str = "proxy:";

pub fn proxy(project: &str) -> String {
    format!("{PROXY_PREFIX}{project}")
}

pub fn outbox(id: &str) -> String {
    format!("{OUTBOX_PREFIX}{id}")
}

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

pub const UPLOAD_IN_REPO_PREFIX: &str = "uprepo:";

pub fn upload_in_repo(name: &str, id: &str) -> String {
    format!("uprepo:{name}@{id}")
}

pub fn upload_in_repo_prefix(name: &str) -> String {
    format!("uprepo:{name}@")
}

/// Every open upload of `project`, and of projects whose name extends it:
/// callers keep those whose repository is in `project`.
pub fn upload_in_project_prefix(project: &str) -> String {
    format!("uprepo:{project}")
}

pub const UPLOAD_OF_ACCOUNT_PREFIX: &str = "upacct:";

pub fn upload_of_account(account: &str, id: &str) -> String {
    format!("upacct:{account}@{id}")
}

pub fn upload_of_account_prefix(account: &str) -> String {
    format!("upacct:{account}@")
}

/// Rewritten by every link into `project` while it has a quota.
pub fn quota_fence(project: &str) -> String {
    format!("quotafence:{project}")
}

/// The secret by which the nodes of a cluster read each other's proxy
/// fetches (written once by the first node that needs it).
pub const PEER_SECRET: &str = "peersecret";

pub const NODE_PREFIX: &str = "node:";

pub fn node(id: &str) -> String {
    format!("node:{id}")
}

/// Every manifest of repository `name` (a repository's name as stored).
pub fn manifest_prefix(name: &str) -> String {
    format!("{MANIFEST_PREFIX}{name}@")
}

/// Every blob link of repository `name`.
pub fn repo_blob_prefix(name: &str) -> String {
    format!("{REPO_BLOB_PREFIX}{name}@")
}

/// Every blob link of `project` and of projects whose name extends it:
/// callers keep those whose repository is in `project`.
pub fn repo_blob_project_prefix(project: &str) -> String {
    format!("{REPO_BLOB_PREFIX}{project}")
}

pub fn policy(project: &str) -> String {
    format!("{POLICY_PREFIX}{project}")
}

/// A GC run's report, in the order the runs started.
pub fn gc_run(started_ms: u64, id: &str) -> String {
    format!("{GC_RUN_PREFIX}{started_ms:020}-{id}")
}
