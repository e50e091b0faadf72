//! Project members: users or directory groups with a role. Listed by every
//! member except limited guests; changed by project admins and system
//! administrators.

use super::access::{require, ProjectPerm};
use super::common::{self, created, no_content, ok, page_of, Body, Ctx, Error, Input};
use berth_auth::model::{MemberRecord, Role};
use serde::Deserialize;
use serde_json::{json, Value};

/// A new member: the body of `POST /api/v1/projects/{project}/members`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberCreate {
    /// "user" (the default) or "group".
    #[serde(default = "user_kind")]
    pub kind: String,
    pub name: String,
    /// A role name, as [`Role::parse`] reads it.
    pub role: String,
}

/// A member's new role: the body of `PUT .../members/{kind}/{member}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    pub role: String,
}

fn user_kind() -> String {
    "user".into()
}

fn view(m: &MemberRecord) -> Value {
    json!({"kind": m.kind, "name": m.name, "role": m.role.as_str()})
}

fn role(s: &str) -> Result<Role, Error> {
    Role::parse(s).ok_or_else(|| {
        Error::bad_request(format!(
            "unknown role {s:?}; one of project_admin, maintainer, developer, guest, limited_guest"
        ))
    })
}

async fn find(
    ctx: &Ctx,
    project: &str,
    kind: &str,
    name: &str,
) -> Result<Option<MemberRecord>, Error> {
    let members = ctx.directory().members(project).await?;
    Ok(members
        .into_iter()
        .find(|m| m.kind == kind && m.name == name))
}

pub async fn list(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::ListMembers).await?;
    let members = ctx.directory().members(project).await?;
    page_of(ctx, members, |m| &m.name, view)
}

pub async fn add(ctx: &Ctx) -> common::Result {
    created(view(
        &add_member(ctx, ctx.param("project"), Body(ctx)).await?,
    ))
}

/// Adds a user or group to `project` with a role; project admins.
pub async fn add_member(
    ctx: &Ctx,
    project: &str,
    new: impl Input<MemberCreate>,
) -> Result<MemberRecord, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let new = new.read()?;
    let role = role(&new.role)?;
    if find(ctx, project, &new.kind, &new.name).await?.is_some() {
        return Err(Error::conflict(format!(
            "{} {} is already a member of {project}",
            new.kind, new.name
        )));
    }
    set_role(ctx, "add_member", project, &new.kind, &new.name, role).await
}

pub async fn update(ctx: &Ctx) -> common::Result {
    let (project, kind, name) = (ctx.param("project"), ctx.param("kind"), ctx.param("member"));
    ok(view(
        &update_member(ctx, project, kind, name, Body(ctx)).await?,
    ))
}

/// Changes the role of a member (`kind` "user" or "group"); project admins.
pub async fn update_member(
    ctx: &Ctx,
    project: &str,
    kind: &str,
    name: &str,
    change: impl Input<MemberChange>,
) -> Result<MemberRecord, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let role = role(&change.read()?.role)?;
    if find(ctx, project, kind, name).await?.is_none() {
        return Err(Error::not_found(format!(
            "{kind} {name} is not a member of {project}"
        )));
    }
    set_role(ctx, "update_member", project, kind, name, role).await
}

/// Gives a member its role, recorded in the audit log as `operation`.
async fn set_role(
    ctx: &Ctx,
    operation: &str,
    project: &str,
    kind: &str,
    name: &str,
    role: Role,
) -> Result<MemberRecord, Error> {
    let record = ctx
        .directory()
        .set_member(project, kind, name, role)
        .await?;
    ctx.audit(
        operation,
        &format!("{project}/{kind}:{name} ({})", role.as_str()),
    );
    Ok(record)
}

pub async fn remove(ctx: &Ctx) -> common::Result {
    let (project, kind, name) = (ctx.param("project"), ctx.param("kind"), ctx.param("member"));
    remove_member(ctx, project, kind, name).await?;
    no_content()
}

/// Removes a member from `project`; project admins.
pub async fn remove_member(ctx: &Ctx, project: &str, kind: &str, name: &str) -> Result<(), Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    ctx.directory().remove_member(project, kind, name).await?;
    ctx.audit("remove_member", &format!("{project}/{kind}:{name}"));
    Ok(())
}
