//! The records replication keeps: endpoints, policies, executions and
//! their tasks, with the rules a policy's filters and namespace apply.

use berth_core::registry::policy::glob;
use berth_oci::Digest;
use serde::{Deserialize, Serialize};

/// What kind of registry an endpoint is. Informational, except that
/// Docker Hub names of one segment live under `library/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    #[default]
    Distribution,
    Harbor,
    Berth,
    DockerHub,
}

/// How an endpoint's TLS certificate is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// Accept any certificate (self-signed registries; explicit opt-in).
    #[serde(default)]
    pub insecure: bool,
    /// Trust only these CA certificates (PEM) instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// A remote registry. Its secret is stored sealed (see `crypto`) and never
/// returned: [`Endpoint::public`] is what the API shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub kind: EndpointKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Sealed secret (`v1:...`), never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secret: Option<String>,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub description: String,
    pub created_ms: u64,
}

/// An endpoint as shown: everything but the secret, and whether it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub url: String,
    pub kind: EndpointKind,
    pub username: Option<String>,
    pub has_secret: bool,
    pub tls: Tls,
    pub description: String,
    pub created_ms: u64,
}

impl Endpoint {
    pub fn public(&self) -> EndpointView {
        EndpointView {
            name: self.name.clone(),
            url: self.url.clone(),
            kind: self.kind,
            username: self.username.clone(),
            has_secret: self.sealed_secret.is_some(),
            tls: self.tls.clone(),
            description: self.description.clone(),
            created_ms: self.created_ms,
        }
    }

    /// The repository name to use at this endpoint for `name`: Docker Hub
    /// keeps official images under `library/`.
    pub fn remote_name(&self, name: &str) -> String {
        if self.kind == EndpointKind::DockerHub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_owned()
        }
    }
}

/// An endpoint to create or change: the secret in clear, sealed before it
/// is stored. On change, an absent secret keeps the stored one and an
/// empty one removes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub kind: EndpointKind,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub description: String,
}

impl EndpointInput {
    /// The endpoint to store: the URL without a trailing slash, an empty
    /// username as none, and the secret as `sealed_secret`.
    pub(crate) fn into_record(self, sealed_secret: Option<String>, created_ms: u64) -> Endpoint {
        Endpoint {
            name: self.name,
            url: self.url.trim_end_matches('/').to_owned(),
            kind: self.kind,
            username: self.username.filter(|u| !u.is_empty()),
            sealed_secret,
            tls: self.tls,
            description: self.description,
            created_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// berth to the endpoint.
    Push,
    /// The endpoint to berth.
    Pull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// An image manifest (OCI or Docker) with an image config.
    Image,
    /// An image index or manifest list.
    Index,
    /// Any other manifest (an `artifactType`, or a non-image config).
    Artifact,
}

/// Which artifacts a policy copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Glob over the whole repository name (`*` within a segment, `**`
    /// across).
    #[serde(default = "star2")]
    pub repository: String,
    /// Glob over tags.
    #[serde(default = "star2")]
    pub tag: String,
    /// Kinds copied; empty means all.
    #[serde(default)]
    pub kinds: Vec<ArtifactKind>,
}

fn star2() -> String {
    "**".to_owned()
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            repository: star2(),
            tag: star2(),
            kinds: Vec::new(),
        }
    }
}

impl Filters {
    pub fn repo_matches(&self, repo: &str) -> bool {
        glob(&self.repository, repo)
    }

    pub fn tag_matches(&self, tag: &str) -> bool {
        glob(&self.tag, tag)
    }

    pub fn kind_matches(&self, kind: ArtifactKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

/// Where copies land.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Namespace {
    /// The same name.
    #[default]
    Keep,
    /// The first segment (the project) replaced by `with`.
    Replace { with: String },
    /// The first `levels` segments dropped (keeping at least the last),
    /// then `prefix/` put in front when not empty (Harbor's flattening).
    Flatten {
        levels: usize,
        #[serde(default)]
        prefix: String,
    },
}

impl Namespace {
    /// The destination name of `repo`.
    pub fn map(&self, repo: &str) -> String {
        match self {
            Namespace::Keep => repo.to_owned(),
            Namespace::Replace { with } => match repo.split_once('/') {
                Some((_, rest)) => format!("{with}/{rest}"),
                None => with.clone(),
            },
            Namespace::Flatten { levels, prefix } => {
                let parts: Vec<&str> = repo.split('/').collect();
                let drop = (*levels).min(parts.len() - 1);
                let rest = parts[drop..].join("/");
                if prefix.is_empty() {
                    rest
                } else {
                    format!("{prefix}/{rest}")
                }
            }
        }
    }
}

/// When a policy runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triggers {
    /// A five-field cron schedule (UTC), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// On every push to berth (push policies only), and on deletes when
    /// `replicate_deletes` is set.
    #[serde(default)]
    pub event: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub direction: Direction,
    pub endpoint: String,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default)]
    pub namespace: Namespace,
    /// Manual runs are always possible; these add automatic ones.
    #[serde(default)]
    pub triggers: Triggers,
    /// Deletes of tags, manifests and repositories at berth are replicated
    /// too (event trigger, push policies).
    #[serde(default)]
    pub replicate_deletes: bool,
    /// Replace a different manifest at an existing destination tag.
    #[serde(default = "yes")]
    pub overwrite: bool,
    /// KiB/s per blob stream; 0 = unlimited.
    #[serde(default)]
    pub bandwidth_kib: u64,
    /// Tasks at once per execution.
    #[serde(default = "one")]
    pub concurrency: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

impl Policy {
    /// Checks what a policy's fields can be checked for alone.
    pub fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if self.endpoint.is_empty() {
            return Err("a policy needs an endpoint".into());
        }
        if let Some(c) = &self.triggers.cron {
            crate::cron::Schedule::parse(c)?;
        }
        if self.triggers.event && self.direction == Direction::Pull {
            return Err(
                "event triggers are for push policies: berth sees only its own pushes".into(),
            );
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err("concurrency must be 1 to 64".into());
        }
        match &self.namespace {
            Namespace::Replace { with } if berth_oci::RepoName::parse(with).is_none() => {
                return Err(format!("namespace {with:?} is not a valid name"))
            }
            Namespace::Flatten { prefix, .. }
                if !prefix.is_empty() && berth_oci::RepoName::parse(prefix).is_none() =>
            {
                return Err(format!("prefix {prefix:?} is not a valid name"))
            }
            _ => {}
        }
        Ok(())
    }
}

/// Names of endpoints and policies: what fits in a path segment and a key.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Succeeded,
    Failed,
    Stopped,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Stopped)
    }
}

/// What started an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Cron,
    Event,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub policy: String,
    pub trigger: Trigger,
    pub status: Status,
    /// Set by a stop: workers abandon its running tasks.
    #[serde(default)]
    pub stop_requested: bool,
    pub tasks: u32,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it failed before making tasks, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a task does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Copy the manifest `digest` (children, blobs and referrers with it)
    /// and set `tags` on it.
    Copy,
    /// Delete the manifest `digest` at the destination.
    DeleteManifest,
    /// Delete the tags of `tags` at the destination (where the registry
    /// cannot delete a tag alone, the manifest it points to, when it is
    /// still `digest`).
    DeleteTags,
    /// Delete every tagged manifest of the destination repository.
    DeleteRepository,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub execution: String,
    pub seq: u32,
    #[serde(flatten)]
    pub operation: Operation,
    /// The source repository.
    pub repository: String,
    /// The destination repository.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub status: Status,
    #[serde(default)]
    pub attempts: u32,
    /// Not retried before this (Unix ms), after a failure.
    #[serde(default)]
    pub not_before_ms: u64,
    /// Bytes of blobs sent so far (the last attempt).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_table() {
        let replace = Namespace::Replace {
            with: "mirror".into(),
        };
        let flat1 = Namespace::Flatten {
            levels: 1,
            prefix: String::new(),
        };
        let flat2 = Namespace::Flatten {
            levels: 2,
            prefix: "hub".into(),
        };
        let cases: &[(&Namespace, &str, &str)] = &[
            (&Namespace::Keep, "a/b/c", "a/b/c"),
            (&replace, "a/b/c", "mirror/b/c"),
            (&replace, "single", "mirror"),
            (&flat1, "a/b/c", "b/c"),
            (&flat1, "a", "a"),
            (&flat2, "a/b/c", "hub/c"),
            (&flat2, "a/b", "hub/b"),
        ];
        for (ns, from, to) in cases {
            assert_eq!(ns.map(from), *to, "{ns:?} {from}");
        }
    }

    #[test]
    fn filters_table() {
        let f = Filters {
            repository: "library/**".into(),
            tag: "v1.*".into(),
            kinds: vec![ArtifactKind::Image],
        };
        assert!(f.repo_matches("library/app/x"));
        assert!(!f.repo_matches("other/app"));
        assert!(f.tag_matches("v1.2"));
        assert!(!f.tag_matches("v2.0"));
        assert!(f.kind_matches(ArtifactKind::Image));
        assert!(!f.kind_matches(ArtifactKind::Index));
        let all = Filters::default();
        assert!(
            all.repo_matches("a/b/c")
                && all.tag_matches("x")
                && all.kind_matches(ArtifactKind::Artifact)
        );
    }

    #[test]
    fn docker_hub_names() {
        let mut e = Endpoint {
            name: "hub".into(),
            url: "https://registry-1.docker.io".into(),
            kind: EndpointKind::DockerHub,
            username: None,
            sealed_secret: None,
            tls: Tls::default(),
            description: String::new(),
            created_ms: 0,
        };
        assert_eq!(e.remote_name("alpine"), "library/alpine");
        assert_eq!(e.remote_name("me/app"), "me/app");
        e.kind = EndpointKind::Distribution;
        assert_eq!(e.remote_name("alpine"), "alpine");
    }

    #[test]
    fn policy_validation() {
        let mut p: Policy = serde_json::from_value(serde_json::json!({
            "name": "p1", "direction": "push", "endpoint": "e",
            "triggers": {"event": true, "cron": "*/5 * * * *"},
        }))
        .unwrap();
        assert!(p.overwrite && p.enabled && p.concurrency == 1);
        assert!(p.validate().is_ok());
        p.direction = Direction::Pull;
        assert!(p.validate().is_err());
        p.triggers.event = false;
        p.triggers.cron = Some("bad".into());
        assert!(p.validate().is_err());
        p.triggers.cron = None;
        p.name = "a/b".into();
        assert!(p.validate().is_err());
    }
}
