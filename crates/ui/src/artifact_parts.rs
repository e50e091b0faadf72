//! What the repository page and the artifact page both show: the viewer's
//! access to a repository, what an artifact is, the platforms of an index,
//! a manifest, and the tags table with pull commands. Its own module so
//! that neither page imports the other.

use super::page;
use super::{repo_path, Result, Viewer};
use berth_auth::model::Action;
use berth_core::registry::admin::ArtifactSummary;
use berth_mgmt::access::{require, ProjectAccess, ProjectPerm};
use berth_oci::{media, Digest, Reference, RepoName};
use maud::{html, Markup};
use serde_json::Value;

/// The viewer's standing in the project of `repo`, once the viewer's pull permission is checked.
pub async fn access(viewer: &Viewer, repo: &RepoName) -> Result<ProjectAccess> {
    Ok(require(
        &viewer.ctx(),
        repo.project(),
        ProjectPerm::Registry(Action::Pull),
    )
    .await?)
}

/// What an artifact is, in words.
pub fn kind(a: &ArtifactSummary) -> String {
    let essence = media::essence(&a.media_type);
    if essence == media::OCI_INDEX || essence == media::DOCKER_MANIFEST_LIST {
        return "image index".into();
    }
    let image_config = matches!(
        a.artifact_type.as_deref(),
        None | Some("application/vnd.oci.image.config.v1+json")
            | Some("application/vnd.docker.container.image.v1+json")
    );
    match (&a.subject, a.artifact_type.as_deref()) {
        (Some(_), Some(t)) if t.contains("signature") || t.contains("sigstore") => {
            format!("signature ({t})")
        }
        (Some(_), Some(t)) => format!("referrer ({t})"),
        (Some(_), None) => "referrer".into(),
        (None, _) if image_config => "image".into(),
        (None, Some(t)) => format!("artifact ({t})"),
        (None, None) => "artifact".into(),
    }
}

/// `docker pull host/repo:tag` (or `@digest`).
pub fn pull_command(viewer: &Viewer, repo: &RepoName, reference: &str) -> String {
    let sep = if reference.contains(':') { '@' } else { ':' };
    format!(
        "docker pull {}/{}{sep}{reference}",
        viewer.registry_host(),
        repo
    )
}

/// `os/architecture[/variant]` of an image config or of an index entry's
/// `platform`.
pub fn platform(p: &Value) -> String {
    let mut name = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("unknown"),
        p["architecture"].as_str().unwrap_or("unknown")
    );
    if let Some(v) = p["variant"].as_str() {
        name.push('/');
        name.push_str(v);
    }
    name
}

/// The platform of each child of an index.
pub fn platforms(index: &Value) -> Vec<(String, Option<String>, u64)> {
    index["manifests"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| {
                    (
                        platform(&c["platform"]),
                        c["digest"].as_str().map(str::to_owned),
                        c["size"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The parsed manifest of an artifact (JSON; `Null` when unreadable).
pub async fn manifest_json(viewer: &Viewer, repo: &RepoName, digest: &Digest) -> Result<Value> {
    let content = viewer
        .state
        .registry
        .manifest_get(repo, &Reference::Digest(digest.clone()))
        .await?;
    Ok(serde_json::from_slice(&content.body).unwrap_or(Value::Null))
}

/// The tags of an artifact with their pull commands, copy and delete
/// buttons.
pub fn tags_table(
    viewer: &Viewer,
    repo: &RepoName,
    a: &ArtifactSummary,
    can_delete: bool,
    id_prefix: &str,
) -> Markup {
    html! {
        @if a.tags.is_empty() {
            p {
                "Untagged. Pull by digest: "
                (page::copyable(&format!("{id_prefix}-digest"), &pull_command(viewer, repo, a.digest.as_str())))
            }
        } @else {
            (page::stacked_table("Tags", &["Tag", "Pull command", "Pushed", "Actions"], html! {
                @for (i, t) in a.tags.iter().enumerate() {
                    tr data-tag=(t.name) {
                        th scope="row" { (t.name) }
                        td { (page::copyable(&format!("{id_prefix}-{i}"), &pull_command(viewer, repo, &t.name))) }
                        td { (page::time(t.pushed)) }
                        td {
                            @if can_delete {
                                (page::button(
                                    viewer,
                                    &format!("{}/-/tags/{}/delete", repo_path(repo.as_str()), super::encode(&t.name)),
                                    "Delete tag",
                                    &format!("Delete tag {}", t.name),
                                    true,
                                    Some(&format!("Delete the tag {}:{}?", repo, t.name)),
                                ))
                            } @else {
                                span.muted { "none" }
                            }
                        }
                    }
                }
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_of_an_index() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:aa", "size": 3, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:bb", "size": 4},
        ]});
        let p = platforms(&index);
        assert_eq!(p[0].0, "linux/arm64/v8");
        assert_eq!(p[1].0, "unknown/unknown");
    }
}
