//! Projects: listed for everyone (each caller sees the public ones and
//! those it belongs to; administrators see all), created and deleted by
//! system administrators, made public or private by project admins.

use super::access::{access_to, project_access, require, ProjectAccess, ProjectPerm};
use super::common::{
    self, created, matches_query, no_content, ok, paged, rfc3339, tolerate_missing, Body, Ctx,
    Error, Input,
};
use berth_auth::model::project_robots_prefix;
use serde::Deserialize;
use serde_json::{json, Value};

/// A new project: the body of `POST /api/v1/projects`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    #[serde(alias = "project_name")]
    pub name: String,
    #[serde(default)]
    pub public: bool,
}

/// The body of `PUT /api/v1/projects/{project}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectChange {
    pub public: bool,
}

async fn view(ctx: &Ctx, access: &ProjectAccess) -> Result<Value, Error> {
    let p = &access.project;
    let registry = ctx.registry();
    let repo_count = registry.project_repository_count(&p.name).await?;
    let policy = registry.project_policy(&p.name).await?;
    Ok(json!({
        "used_bytes": registry.project_usage(&p.name).await?,
        "quota_bytes": policy.quota_bytes,
        "name": p.name,
        "public": p.public,
        "creation_time": rfc3339(p.created),
        "repo_count": repo_count,
        "current_user_role": access.role.map(|r| r.as_str()),
    }))
}

pub async fn list(ctx: &Ctx) -> common::Result {
    let paging = ctx.page()?;
    let q = ctx.query("q");
    let public = ctx.flag("public")?;
    let mut visible = Vec::new();
    for project in ctx.directory().projects().await? {
        if !matches_query(&project.name, q) || public.is_some_and(|p| p != project.public) {
            continue;
        }
        let access = access_to(ctx, project).await?;
        if access.allows(ProjectPerm::Read) {
            visible.push(access);
        }
    }
    let total = visible.len();
    let mut items = Vec::new();
    for access in paging.slice(visible) {
        items.push(view(ctx, &access).await?);
    }
    paged(items, total)
}

pub async fn create(ctx: &Ctx) -> common::Result {
    let access = create_project(ctx, Body(ctx)).await?;
    created(view(ctx, &access).await?)
}

/// Creates a project; system administrators only. The caller's standing
/// in it.
pub async fn create_project(
    ctx: &Ctx,
    new: impl Input<ProjectCreate>,
) -> Result<ProjectAccess, Error> {
    ctx.require_admin()?;
    let new = new.read()?;
    let record = ctx
        .directory()
        .create_project(&new.name, new.public)
        .await?;
    ctx.audit("create_project", &format!("{}/", record.name));
    access_to(ctx, record).await
}

pub async fn get(ctx: &Ctx) -> common::Result {
    let access = require(ctx, ctx.param("project"), ProjectPerm::Read).await?;
    ok(view(ctx, &access).await?)
}

pub async fn update(ctx: &Ctx) -> common::Result {
    let access = update_project(ctx, ctx.param("project"), Body(ctx)).await?;
    ok(view(ctx, &access).await?)
}

/// Makes a project public or private; project admins. The caller's
/// standing in it after the change.
pub async fn update_project(
    ctx: &Ctx,
    name: &str,
    change: impl Input<ProjectChange>,
) -> Result<ProjectAccess, Error> {
    require(ctx, name, ProjectPerm::Manage).await?;
    let change = change.read()?;
    let record = ctx
        .directory()
        .set_project_public(name, change.public)
        .await?;
    ctx.audit(
        "update_project",
        &format!("{name}/ (public={})", change.public),
    );
    access_to(ctx, record).await
}

pub async fn delete(ctx: &Ctx) -> common::Result {
    delete_project(ctx, ctx.param("project")).await?;
    no_content()
}

/// Deletes a project; system administrators only. Only an empty project
/// is deleted. Its members and robots go with it, so that a project
/// created later under the same name starts with nobody.
pub async fn delete_project(ctx: &Ctx, name: &str) -> Result<(), Error> {
    ctx.require_admin()?;
    project_access(ctx, name).await?;
    let repos = ctx.registry().project_repository_count(name).await?;
    if repos > 0 {
        return Err(Error::precondition(format!(
            "project {name} still has {repos} repositories; delete them first"
        )));
    }
    let directory = ctx.directory();
    for m in directory.members(name).await? {
        tolerate_missing(directory.remove_member(name, &m.kind, &m.name).await)?;
    }
    let prefix = project_robots_prefix(name);
    for r in directory.robots().await? {
        if r.name.starts_with(&prefix) {
            tolerate_missing(directory.revoke_robot(&r.name).await)?;
        }
    }
    directory.delete_project(name).await?;
    ctx.audit("delete_project", &format!("{name}/"));
    Ok(())
}
