//! A project's storage quota, tag immutability rules and tag retention
//! rules (see `berth_core::registry::policy`). Members with pull access read
//! them; project admins change immutability and retention; only system
//! administrators change a quota, as in Harbor.

use super::access::{require, ProjectPerm};
use super::common::{self, Ctx, Error};
use berth_auth::model::Action;
use berth_core::registry::policy::{RetentionRule, TagSelector};
use serde::Deserialize;
use serde_json::json;

const READ: ProjectPerm = ProjectPerm::Registry(Action::Pull);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaChange {
    /// Bytes; null removes the limit.
    limit_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionChange {
    rules: Vec<RetentionRule>,
}

pub async fn quota(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    let registry = &ctx.state.registry;
    let policy = registry.project_policy(project).await?;
    common::ok(json!({
        "limit_bytes": policy.quota_bytes,
        "used_bytes": registry.project_usage(project).await?,
    }))
}

pub async fn set_quota(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    ctx.require_admin()?;
    let change: QuotaChange = ctx.json()?;
    let registry = &ctx.state.registry;
    let mut policy = registry.project_policy(project).await?;
    policy.quota_bytes = change.limit_bytes;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit("set_quota", &format!("{project}/"));
    quota(ctx).await
}

pub async fn immutable(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    let policy = ctx.state.registry.project_policy(project).await?;
    common::ok(json!(policy.immutable))
}

pub async fn set_immutable(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::Manage).await?;
    let rules: Vec<TagSelector> = ctx.json()?;
    let registry = &ctx.state.registry;
    let mut policy = registry.project_policy(project).await?;
    policy.immutable = rules;
    policy.validate().map_err(Error::bad_request)?;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit("set_immutable_rules", &format!("{project}/"));
    common::ok(json!(policy.immutable))
}

pub async fn retention(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    let policy = ctx.state.registry.project_policy(project).await?;
    common::ok(json!({"rules": policy.retention}))
}

pub async fn set_retention(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::Manage).await?;
    let change: RetentionChange = ctx.json()?;
    let registry = &ctx.state.registry;
    let mut policy = registry.project_policy(project).await?;
    policy.retention = change.rules;
    policy.validate().map_err(Error::bad_request)?;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit("set_retention_rules", &format!("{project}/"));
    common::ok(json!({"rules": policy.retention}))
}

pub async fn run_retention(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::Manage).await?;
    let dry_run = match ctx.query("dry_run") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::bad_request("dry_run must be true or false")),
    };
    let report = ctx.state.registry.apply_retention(project, dry_run).await?;
    if !dry_run {
        ctx.audit("retention", &format!("{project}/"));
    }
    common::ok(json!(report))
}
