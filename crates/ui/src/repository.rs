//! A repository's artifacts: tags, digest, size, platforms of an index,
//! push and last pull times, referrers (signatures, SBOMs...), and the pull
//! command of each tag with a copy button; deleting tags, artifacts and the
//! repository.
//!
//! Repository names contain slashes, so the UI addresses a repository as
//! `/ui/repo/<name>` and what is inside it after `/-/` (a lone `-` is not a
//! valid name component): `/-/artifact/<digest>`, `/-/tags/<tag>/delete`.

use super::artifact;
use super::artifact_parts::{access, kind, manifest_json, platforms, tags_table};
use super::page::{self, Notice, Section};
use super::session::Submitted;
use super::{done, project_path, repo_path, Result, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::model::Action;
use berth_mgmt::access::ProjectPerm;
use berth_oci::{Digest, Reference, RepoName, Tag};
use maud::html;

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
    let ctx = submitted.viewer.ctx();
    let (repo, rest) = split(&path)?;
    let back = repo_path(repo.as_str());
    let rest = rest.ok_or_else(|| UiError::not_found("no such action"))?;
    if rest == "delete" {
        berth_mgmt::delete_repository(&ctx, &repo).await?;
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
        berth_mgmt::delete_tag(&ctx, &repo, tag).await?;
        return Ok(done(&back, Notice::TagDeleted));
    }
    if let Some(d) = rest
        .strip_prefix("artifact/")
        .and_then(|r| r.strip_suffix("/delete"))
    {
        let d = digest(d)?;
        berth_mgmt::delete_artifact(&ctx, &repo, &Reference::Digest(d)).await?;
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
}
