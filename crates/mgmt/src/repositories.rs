//! Repositories, artifacts and tags of a project. Reading needs pull
//! permission on the project; deleting needs delete permission, both as
//! `rbac::permitted` decides (so robots act within their permissions).
//!
//! `{repository}` is the name inside the project, as in Harbor: `app` in
//! project `p` is `p/app`. The repository named exactly like its project
//! (pushed as `<host>/p`) is addressed as `_`, which no repository name
//! component can be.

use super::access::{require, ProjectPerm};
use super::common::{self, no_content, ok, paged, rfc3339, Ctx, Error};
use berth_auth::model::Action;
use berth_core::registry::admin::{ArtifactSummary, Listing, RepoSummary, TagSummary};
use berth_core::CoreError;
use berth_oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use serde_json::{json, Value};

/// The repository of the request, once the caller may do `action` in its
/// project.
async fn repo(ctx: &Ctx, action: Action) -> Result<RepoName, Error> {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::Registry(action)).await?;
    let relative = ctx.param("repository");
    let full = if relative == "_" {
        project.to_owned()
    } else {
        format!("{project}/{relative}")
    };
    RepoName::parse(&full)
        .ok_or_else(|| Error::bad_request(format!("invalid repository name {full:?}")))
}

fn reference(ctx: &Ctx) -> Result<Reference, Error> {
    let r = ctx.param("reference");
    Reference::parse(r).ok_or_else(|| Error::bad_request(format!("invalid reference {r:?}")))
}

fn tag(ctx: &Ctx) -> Result<Tag, Error> {
    let t = ctx.param("tag");
    Tag::parse(t).ok_or_else(|| Error::bad_request(format!("invalid tag {t:?}")))
}

/// The domain's "unknown" errors, as management 404s that say what is
/// not found.
fn missing<'a>(what: impl FnOnce() -> String + 'a) -> impl FnOnce(CoreError) -> Error + 'a {
    move |e| match e.code {
        ErrorCode::NameUnknown | ErrorCode::ManifestUnknown => Error::not_found(what()),
        _ => e.into(),
    }
}

/// [`missing`] for a repository.
fn no_repository(repo: &RepoName) -> impl FnOnce(CoreError) -> Error + '_ {
    missing(move || format!("repository {repo} not found"))
}

/// A page of the domain's listing, each item shown as `view` shows it.
fn listed<T>(listing: Listing<T>, view: impl Fn(&T) -> Value) -> common::Result {
    paged(listing.items.iter().map(view).collect(), listing.total)
}

fn repo_view(r: &RepoSummary) -> Value {
    json!({
        "name": r.name.as_str(),
        "project": r.name.project(),
        "creation_time": rfc3339(r.created),
    })
}

fn tag_view(t: &TagSummary) -> Value {
    json!({
        "name": t.name,
        "digest": t.digest.as_str(),
        "push_time": rfc3339(t.pushed),
    })
}

fn artifact_view(a: &ArtifactSummary) -> Value {
    json!({
        "digest": a.digest.as_str(),
        "media_type": a.media_type,
        "artifact_type": a.artifact_type,
        "size": a.size,
        "manifest_size": a.manifest_size,
        "push_time": rfc3339(a.pushed),
        "subject": a.subject.as_ref().map(Digest::as_str),
        "tags": a.tags.iter().map(tag_view).collect::<Vec<_>>(),
    })
}

pub async fn list(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::Registry(Action::Pull)).await?;
    let paging = ctx.page()?;
    let listing = ctx
        .registry()
        .project_repositories(project, ctx.query("q"), paging.offset(), paging.size)
        .await?;
    listed(listing, repo_view)
}

pub async fn get(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Pull).await?;
    match ctx.registry().repository(&repo).await? {
        Some(r) => ok(repo_view(&r)),
        None => Err(Error::not_found(format!("repository {repo} not found"))),
    }
}

/// Refused unless the caller may do `action` in the project of `repo`
/// (as [`repo`] checks for a request).
async fn may(ctx: &Ctx, repo: &RepoName, action: Action) -> Result<(), Error> {
    require(ctx, repo.project(), ProjectPerm::Registry(action)).await?;
    Ok(())
}

pub async fn delete(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Delete).await?;
    remove_repository(ctx, &repo).await?;
    no_content()
}

/// Deletes a repository: every tag and manifest in it; delete permission
/// in its project.
pub async fn delete_repository(ctx: &Ctx, repo: &RepoName) -> Result<(), Error> {
    may(ctx, repo, Action::Delete).await?;
    remove_repository(ctx, repo).await
}

/// After the permission check.
async fn remove_repository(ctx: &Ctx, repo: &RepoName) -> Result<(), Error> {
    ctx.registry()
        .repository_delete(repo)
        .await
        .map_err(no_repository(repo))?;
    ctx.audit("delete_repository", repo.as_str());
    Ok(())
}

pub async fn artifacts(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Pull).await?;
    let paging = ctx.page()?;
    let listing = ctx
        .registry()
        .artifacts(&repo, paging.offset(), paging.size)
        .await
        .map_err(no_repository(&repo))?;
    listed(listing, artifact_view)
}

pub async fn artifact(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Pull).await?;
    let reference = reference(ctx)?;
    let found = ctx
        .registry()
        .artifact(&repo, &reference)
        .await
        .map_err(missing(|| format!("artifact {repo}:{reference} not found")))?;
    ok(artifact_view(&found))
}

/// Deletes the manifest and every tag pointing to it, as a `/v2` delete by
/// digest does (a tag names the artifact it points to).
pub async fn artifact_delete(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Delete).await?;
    let reference = reference(ctx)?;
    remove_artifact(ctx, &repo, &reference).await?;
    no_content()
}

/// Deletes an artifact (by tag or digest) and every tag pointing to it;
/// delete permission in its project.
pub async fn delete_artifact(
    ctx: &Ctx,
    repo: &RepoName,
    reference: &Reference,
) -> Result<(), Error> {
    may(ctx, repo, Action::Delete).await?;
    remove_artifact(ctx, repo, reference).await
}

/// After the permission check.
async fn remove_artifact(ctx: &Ctx, repo: &RepoName, reference: &Reference) -> Result<(), Error> {
    let not_found = || format!("artifact {repo}:{reference} not found");
    let digest = ctx
        .registry()
        .resolve(repo, reference)
        .await
        .map_err(missing(not_found))?;
    ctx.registry()
        .manifest_delete(repo, &Reference::Digest(digest.clone()))
        .await
        .map_err(missing(not_found))?;
    // Spelled as the `/v2` guard spells a manifest delete.
    ctx.audit("delete", &format!("{repo}:{digest}"));
    Ok(())
}

pub async fn artifact_tags(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Pull).await?;
    let reference = reference(ctx)?;
    let paging = ctx.page()?;
    let not_found = || format!("artifact {repo}:{reference} not found");
    let registry = ctx.registry();
    let digest = registry
        .resolve(&repo, &reference)
        .await
        .map_err(missing(not_found))?;
    // Resolving a digest does not look it up: make sure it is there.
    registry
        .artifact(&repo, &Reference::Digest(digest.clone()))
        .await
        .map_err(missing(not_found))?;
    let listing = registry
        .repository_tags(&repo, Some(&digest), paging.offset(), paging.size)
        .await
        .map_err(missing(not_found))?;
    listed(listing, tag_view)
}

/// Deletes a tag of this artifact; 404 when the tag points elsewhere.
pub async fn artifact_tag_delete(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Delete).await?;
    let reference = reference(ctx)?;
    let tag = tag(ctx)?;
    let registry = ctx.registry();
    let not_found = || format!("artifact {repo}:{reference} has no tag {tag}");
    let digest = registry
        .resolve(&repo, &reference)
        .await
        .map_err(missing(not_found))?;
    let points_to = registry
        .resolve(&repo, &Reference::Tag(tag.clone()))
        .await
        .map_err(missing(not_found))?;
    if points_to != digest {
        return Err(Error::not_found(not_found()));
    }
    remove_tag(ctx, &repo, tag).await?;
    no_content()
}

pub async fn tags(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Pull).await?;
    let paging = ctx.page()?;
    let listing = ctx
        .registry()
        .repository_tags(&repo, None, paging.offset(), paging.size)
        .await
        .map_err(no_repository(&repo))?;
    listed(listing, tag_view)
}

pub async fn tag_delete(ctx: &Ctx) -> common::Result {
    let repo = repo(ctx, Action::Delete).await?;
    let tag = tag(ctx)?;
    remove_tag(ctx, &repo, tag).await?;
    no_content()
}

/// Deletes a tag (not the artifact it points to); delete permission in its
/// project.
pub async fn delete_tag(ctx: &Ctx, repo: &RepoName, tag: Tag) -> Result<(), Error> {
    may(ctx, repo, Action::Delete).await?;
    remove_tag(ctx, repo, tag).await
}

/// After the permission check.
async fn remove_tag(ctx: &Ctx, repo: &RepoName, tag: Tag) -> Result<(), Error> {
    ctx.registry()
        .manifest_delete(repo, &Reference::Tag(tag.clone()))
        .await
        .map_err(missing(|| format!("tag {repo}:{tag} not found")))?;
    ctx.audit("delete", &format!("{repo}:{tag}"));
    Ok(())
}
