//! Robot accounts: system-level `robot$<name>` (system administrators)
//! and project-level `robot$<project>+<name>` (project admins). The secret
//! is returned once, by the POST that creates the robot; only its hash is
//! stored, so no GET can ever return it.

use super::access::{require, ProjectPerm};
use super::common::{self, created, no_content, ok, page_of, rfc3339, Body, Ctx, Error, Input};
use berth_auth::model::{
    project_robots_prefix, robot_name, robot_project, Action, RobotPermission, RobotRecord,
    ROBOT_NAME_PREFIX,
};
use berth_http::time::now;
use serde::Deserialize;
use serde_json::{json, Value};

const DAY: u64 = 86_400;

/// A new robot: the body of `POST /api/v1/robots` and
/// `POST /api/v1/projects/{project}/robots`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RobotCreate {
    /// The short name: `ci` becomes `robot$ci` or `robot$<project>+ci`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `[{project, actions}]`; for a project robot every entry must name
    /// that project.
    #[serde(default)]
    pub permissions: Option<Vec<RobotPermission>>,
    /// Shorthand for a project robot: these actions on its project.
    #[serde(default)]
    pub actions: Option<Vec<Action>>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Days from now; -1 for never (Harbor's convention).
    #[serde(default)]
    pub duration_days: Option<i64>,
}

/// A robot just created, with its secret: the only time it is known.
pub struct CreatedRobot {
    pub record: RobotRecord,
    pub secret: String,
}

fn created_view(robot: CreatedRobot) -> common::Result {
    let mut body = view(&robot.record);
    body["secret"] = Value::String(robot.secret);
    created(body)
}

fn view(r: &RobotRecord) -> Value {
    let project = robot_project(&r.name);
    json!({
        "name": r.name,
        "level": if project.is_some() { "project" } else { "system" },
        "project": project,
        "description": r.description,
        "permissions": r.permissions,
        "expires_at": r.expires_at,
        "expiration_time": r.expires_at.map(rfc3339),
        "expired": !r.live(now()),
        "creation_time": rfc3339(r.created),
    })
}

/// When the new robot expires, from `expires_at` or `duration_days`.
fn expiry(new: &RobotCreate) -> Result<Option<u64>, Error> {
    match (new.expires_at, new.duration_days) {
        (Some(_), Some(_)) => Err(Error::bad_request(
            "give expires_at or duration_days, not both",
        )),
        (Some(at), None) if at <= now() => Err(Error::bad_request("expires_at is in the past")),
        (Some(at), None) => Ok(Some(at)),
        (None, Some(-1)) | (None, None) => Ok(None),
        (None, Some(days)) if days > 0 && days <= 365 * 100 => Ok(Some(now() + days as u64 * DAY)),
        (None, Some(_)) => Err(Error::bad_request(
            "duration_days must be a positive number of days, or -1 for never",
        )),
    }
}

/// Refuses permissions that grant nothing or name projects that do not
/// exist (`*` means every project, for system robots).
async fn check_permissions(ctx: &Ctx, perms: &[RobotPermission]) -> Result<(), Error> {
    if perms.is_empty() {
        return Err(Error::bad_request("a robot needs at least one permission"));
    }
    for p in perms {
        if p.actions.is_empty() {
            return Err(Error::bad_request(format!(
                "the permission on {} grants no action",
                p.project
            )));
        }
        if p.project != "*" && ctx.directory().project(&p.project).await?.is_none() {
            return Err(Error::not_found(format!("project {} not found", p.project)));
        }
    }
    Ok(())
}

async fn create(ctx: &Ctx, project: Option<&str>, new: RobotCreate) -> Result<CreatedRobot, Error> {
    let permissions = match (new.permissions.clone(), new.actions.clone(), project) {
        (Some(_), Some(_), _) => {
            return Err(Error::bad_request("give permissions or actions, not both"))
        }
        (Some(p), None, _) => p,
        (None, Some(actions), Some(project)) => vec![RobotPermission {
            project: project.to_owned(),
            actions,
        }],
        (None, None, Some(project)) => vec![RobotPermission {
            project: project.to_owned(),
            actions: vec![Action::Pull],
        }],
        (None, _, None) => return Err(Error::bad_request("a system robot needs permissions")),
    };
    // Before any project is looked up: a project admin naming another
    // project must learn nothing about whether it exists.
    if let Some(p) = project {
        if permissions.iter().any(|perm| perm.project != p) {
            return Err(Error::bad_request(format!(
                "a robot of project {p} can only have permissions on {p}"
            )));
        }
    }
    check_permissions(ctx, &permissions).await?;
    let expires_at = expiry(&new)?;
    let (record, secret) = ctx
        .directory()
        .create_robot(
            project,
            &new.name,
            permissions,
            expires_at,
            &new.description,
        )
        .await?;
    ctx.audit("create_robot", &audit_resource(&record.name));
    Ok(CreatedRobot { record, secret })
}

/// Project robots are logged under their project, so that the project's
/// audit log shows them.
fn audit_resource(full: &str) -> String {
    match robot_project(full) {
        Some(project) => format!("{project}/{full}"),
        None => full.to_owned(),
    }
}

/// The robots whose full name `keep` keeps, a page of them.
async fn list(ctx: &Ctx, keep: impl Fn(&str) -> bool) -> common::Result {
    let mut robots = ctx.directory().robots().await?;
    robots.retain(|r| keep(&r.name));
    page_of(ctx, robots, |r| &r.name, view)
}

pub async fn list_system(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    list(ctx, |name| !name.contains('+')).await
}

pub async fn create_system(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    created_view(create(ctx, None, ctx.json()?).await?)
}

/// A robot's full name from a path parameter that may be the full name or
/// the short one (of a robot of `project`, or of a system robot).
fn full_name(project: Option<&str>, name: &str) -> String {
    if name.starts_with(ROBOT_NAME_PREFIX) {
        name.to_owned()
    } else {
        robot_name(project, name)
    }
}

async fn existing(ctx: &Ctx, full: &str) -> Result<RobotRecord, Error> {
    let robot = ctx.directory().robot(full).await?;
    robot.ok_or_else(|| Error::not_found(format!("robot {full} not found")))
}

pub async fn get(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    ok(view(
        &existing(ctx, &full_name(None, ctx.param("robot"))).await?,
    ))
}

/// System administrators may revoke any robot here, by its full name.
pub async fn delete_any(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let full = full_name(None, ctx.param("robot"));
    revoke(ctx, &full).await?;
    no_content()
}

async fn revoke(ctx: &Ctx, full: &str) -> Result<(), Error> {
    ctx.directory().revoke_robot(full).await?;
    ctx.audit("revoke_robot", &audit_resource(full));
    Ok(())
}

pub async fn list_project(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::Manage).await?;
    let prefix = project_robots_prefix(project);
    list(ctx, |name| name.starts_with(&prefix)).await
}

pub async fn create_project(ctx: &Ctx) -> common::Result {
    created_view(create_project_robot(ctx, ctx.param("project"), Body(ctx)).await?)
}

/// Creates a robot of `project` (its permissions on that project only);
/// project admins.
pub async fn create_project_robot(
    ctx: &Ctx,
    project: &str,
    new: impl Input<RobotCreate>,
) -> Result<CreatedRobot, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    create(ctx, Some(project), new.read()?).await
}

pub async fn delete_project(ctx: &Ctx) -> common::Result {
    revoke_project_robot(ctx, ctx.param("project"), ctx.param("robot")).await?;
    no_content()
}

/// Revokes a robot of `project`, named in full (`robot$p+ci`) or by its
/// short name; project admins.
pub async fn revoke_project_robot(ctx: &Ctx, project: &str, name: &str) -> Result<(), Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let full = full_name(Some(project), name);
    if !full.starts_with(&project_robots_prefix(project)) {
        return Err(Error::not_found(format!(
            "robot {full} is not a robot of {project}"
        )));
    }
    existing(ctx, &full).await?;
    revoke(ctx, &full).await
}
