//! A repository's artifacts: tags, digest, size, platforms of an index,
//! push and last pull times, referrers (signatures, SBOMs...), and the pull
//! command of each tag with a copy button; deleting tags, artifacts and the
//! repository.
//!
//! Repository names contain slashes, so the UI addresses a repository as
//! `/ui/repo/<name>` and what is inside it after `/-/` (a lone `-` is not a
//! valid name component): `/-/artifact/<digest>`, `/-/tags/<tag>/delete`.

use super::api;
use super::artifact;
use super::page::{self, Notice, Section};
use super::session::Submitted;
use super::{done, project_path, repo_path, Result, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::model::Action;
use berth_core::registry::admin::ArtifactSummary;
use berth_mgmt::access::{require, ProjectAccess, ProjectPerm};
use berth_oci::{media, Digest, Reference, RepoName, Tag};
use maud::{html, Markup};
use serde_json::Value;

type Pairs = Vec<(String, String)>;

/// Artifacts per page.
const PAGE_SIZE: usize = 20;

/// The repository of a `/ui/repo/...` path and what follows `/-/`.
fn split(path: &str) -> Result<(RepoName, Option<&str>)> {
    let (name, rest) = match path.split_once("/-/") {
        Some((name, rest)) => (name, Some(rest)),
        None => (path.trim_end_matches('/'), None),
    };
    let repo = RepoName::parse(name)
        .ok_or_else(|| UiError::not_found(format!("{name:?} is not a repository name")))?;
    Ok((repo, rest))
}

fn digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|_| UiError::not_found(format!("{s:?} is not a digest")))
}

/// The repository's page, after the viewer's pull permission is checked.
pub async fn access(viewer: &Viewer, repo: &RepoName) -> Result<ProjectAccess> {
    Ok(require(
        &viewer.ctx(),
        repo.project(),
        ProjectPerm::Registry(Action::Pull),
    )
    .await?)
}

pub async fn page(viewer: Viewer, Path(path): Path<String>, Query(query): Query<Pairs>) -> Result {
    let (repo, rest) = split(&path)?;
    match rest {
        None => artifacts(viewer, repo, query).await,
        Some(rest) => match rest.strip_prefix("artifact/") {
            Some(d) => artifact::detail(viewer, repo, digest(d)?, query).await,
            None => Err(UiError::not_found("no such page")),
        },
    }
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

/// `os/architecture[/variant]` of each child of an index.
pub fn platforms(index: &Value) -> Vec<(String, Option<String>, u64)> {
    index["manifests"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| {
                    let p = &c["platform"];
                    let mut name = format!(
                        "{}/{}",
                        p["os"].as_str().unwrap_or("unknown"),
                        p["architecture"].as_str().unwrap_or("unknown")
                    );
                    if let Some(v) = p["variant"].as_str() {
                        name.push('/');
                        name.push_str(v);
                    }
                    (
                        name,
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

async fn artifacts(viewer: Viewer, repo: RepoName, query: Pairs) -> Result {
    let access = access(&viewer, &repo).await?;
    let can_delete = access.allows(ProjectPerm::Registry(Action::Delete));
    let registry = &viewer.state.registry;
    if registry.repository(&repo).await?.is_none() {
        return Err(UiError::not_found(format!("repository {repo} not found")));
    }
    let number = page::page_number(&query);
    let listing = registry
        .artifacts(&repo, (number - 1).saturating_mul(PAGE_SIZE), PAGE_SIZE)
        .await?;
    let mut cards = Vec::new();
    for (i, a) in listing.items.iter().enumerate() {
        let pulled = registry.last_pulled(&repo, &a.digest).await?;
        let referrers = registry.referrers(&repo, &a.digest, None).await?;
        let kind = kind(a);
        let platforms = if kind == "image index" {
            platforms(&manifest_json(&viewer, &repo, &a.digest).await?)
        } else {
            Vec::new()
        };
        let detail = format!("{}/-/artifact/{}", repo_path(repo.as_str()), a.digest);
        let (title, kind) = if a.tags.is_empty() {
            (
                page::short_text(a.digest.as_str()),
                format!("untagged {kind}"),
            )
        } else {
            let names = a
                .tags
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            (names, kind)
        };
        cards.push(html! {
            article.artifact aria-labelledby={ "artifact-" (i) } data-digest=(a.digest) {
                h2 #{ "artifact-" (i) } {
                    a href=(detail) { (title) }
                    " " span.kind { "(" (kind) ")" }
                }
                dl.facts {
                    dt { "Digest" } dd { a href=(detail) { code.digest { (a.digest) } } }
                    dt { "Size" } dd { (page::bytes(a.size)) }
                    @if !platforms.is_empty() {
                        dt { "Platforms" }
                        dd {
                            ul.inline {
                                @for (p, d, _) in &platforms {
                                    li {
                                        @match d {
                                            Some(d) => a href={ (repo_path(repo.as_str())) "/-/artifact/" (d) } { (p) },
                                            None => (p),
                                        }
                                    }
                                }
                            }
                        }
                    }
                    dt { "Pushed" } dd { (page::time(a.pushed)) }
                    dt { "Last pulled" }
                    dd { @match pulled { Some(t) => (page::time(t)), None => "never" } }
                    @if let Some(s) = &a.subject {
                        dt { "Refers to" }
                        dd { a href={ (repo_path(repo.as_str())) "/-/artifact/" (s) } { (page::short_digest(s.as_str())) } }
                    }
                    dt { "Signatures and referrers" }
                    dd {
                        @if referrers.is_empty() {
                            "none"
                        } @else {
                            ul.inline {
                                @for r in &referrers {
                                    li {
                                        a href={ (repo_path(repo.as_str())) "/-/artifact/" (r.digest) } {
                                            (r.artifact_type.as_deref().unwrap_or(&r.media_type))
                                        }
                                        " " (page::short_digest(r.digest.as_str()))
                                    }
                                }
                            }
                        }
                    }
                }
                (tags_table(&viewer, &repo, a, can_delete, &format!("pull-{i}")))
            }
        });
    }
    let base = repo_path(repo.as_str());
    let project = repo.project();
    let body = html! {
        (page::heading(repo.as_str(), &[("Projects", "/".to_owned()), (project, project_path(project, ""))]))
        (Notice::shown(&query))
        p.meta { (listing.total) " artifacts, newest first." }
        @if listing.items.is_empty() {
            p { "This repository has no artifacts." }
        }
        @for card in &cards { (card) }
        (page::pager(&base, number, PAGE_SIZE, listing.total))
        @if can_delete {
            section aria-labelledby="danger" {
                h2 #danger { "Delete the repository" }
                p { "Every tag and manifest of " code { (repo) } " is removed; the storage is freed by the next garbage collection." }
                (page::button(&viewer, &format!("{base}/-/delete"), "Delete repository",
                    &format!("Delete repository {repo}"), true, Some(&format!("Delete the repository {repo} and everything in it?"))))
            }
        }
    };
    Ok(page::render(
        &viewer,
        repo.as_str(),
        Section::Projects,
        body,
    ))
}

pub async fn action(Path(path): Path<String>, submitted: Submitted) -> Result {
    let viewer = &submitted.viewer;
    let (repo, rest) = split(&path)?;
    let api_repo = api::repository_path(&repo);
    let back = repo_path(repo.as_str());
    let rest = rest.ok_or_else(|| UiError::not_found("no such action"))?;
    if rest == "delete" {
        api::call(viewer, "DELETE", &api_repo, &[], None).await?;
        return Ok(done(
            &project_path(repo.project(), ""),
            Notice::RepositoryDeleted,
        ));
    }
    if let Some(tag) = rest
        .strip_prefix("tags/")
        .and_then(|r| r.strip_suffix("/delete"))
    {
        let tag = Tag::parse(tag).ok_or_else(|| UiError::bad_request("invalid tag"))?;
        api::call(
            viewer,
            "DELETE",
            &format!("{api_repo}/tags/{}", super::encode(tag.as_str())),
            &[],
            None,
        )
        .await?;
        return Ok(done(&back, Notice::TagDeleted));
    }
    if let Some(d) = rest
        .strip_prefix("artifact/")
        .and_then(|r| r.strip_suffix("/delete"))
    {
        let d = digest(d)?;
        api::call(
            viewer,
            "DELETE",
            &format!("{api_repo}/artifacts/{}", super::encode(d.as_str())),
            &[],
            None,
        )
        .await?;
        return Ok(done(&back, Notice::ArtifactDeleted));
    }
    Err(UiError::not_found("no such action"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_at_the_separator() {
        let (repo, rest) = split("p/a/b/-/tags/v1/delete").unwrap();
        assert_eq!((repo.as_str(), rest), ("p/a/b", Some("tags/v1/delete")));
        let (repo, rest) = split("p/app").unwrap();
        assert_eq!((repo.as_str(), rest), ("p/app", None));
        assert!(split("P/app").is_err());
    }

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
