//! A project's storage quota, tag immutability rules and tag retention
//! rules (see `berth_core::registry::policy`). Members with pull access read
//! them; project admins change immutability and retention; only system
//! administrators change a quota, as in Harbor.

use super::access::{require, ProjectPerm};
use super::common::{self, Body, Ctx, Error, Flag, Input};
use berth_auth::model::Action;
use berth_core::registry::policy::{ProjectPolicy, RetentionReport, RetentionRule, TagSelector};
use serde::Deserialize;
use serde_json::json;

const READ: ProjectPerm = ProjectPerm::Registry(Action::Pull);

/// The body of `PUT /api/v1/projects/{project}/quota`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaChange {
    /// Bytes; null removes the limit.
    pub limit_bytes: Option<u64>,
}

/// The body of `PUT /api/v1/projects/{project}/retention`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionChange {
    pub rules: Vec<RetentionRule>,
}

/// A project's quota and what it uses.
pub struct Quota {
    /// Bytes; `None` for no limit.
    pub limit_bytes: Option<u64>,
    pub used_bytes: u64,
}

async fn quota_of(ctx: &Ctx, project: &str) -> Result<Quota, Error> {
    let registry = ctx.registry();
    let policy = registry.project_policy(project).await?;
    Ok(Quota {
        limit_bytes: policy.quota_bytes,
        used_bytes: registry.project_usage(project).await?,
    })
}

fn quota_view(q: &Quota) -> common::Result {
    common::ok(json!({
        "limit_bytes": q.limit_bytes,
        "used_bytes": q.used_bytes,
    }))
}

/// The policy of the request's project, once the caller may read it.
async fn readable(ctx: &Ctx) -> Result<ProjectPolicy, Error> {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    Ok(ctx.registry().project_policy(project).await?)
}

/// Changes the policy of `project` as `change` says, checks and saves it,
/// and records `operation` in the audit log. The policy now in force.
async fn change_policy(
    ctx: &Ctx,
    project: &str,
    operation: &str,
    change: impl FnOnce(&mut ProjectPolicy),
) -> Result<ProjectPolicy, Error> {
    let registry = ctx.registry();
    let mut policy = registry.project_policy(project).await?;
    change(&mut policy);
    policy.validate().map_err(Error::bad_request)?;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit(operation, &format!("{project}/"));
    Ok(policy)
}

pub async fn quota(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    quota_view(&quota_of(ctx, project).await?)
}

pub async fn set_quota(ctx: &Ctx) -> common::Result {
    quota_view(&set_project_quota(ctx, ctx.param("project"), Body(ctx)).await?)
}

/// Sets or removes (`None`) a project's quota; system administrators only.
pub async fn set_project_quota(
    ctx: &Ctx,
    project: &str,
    change: impl Input<QuotaChange>,
) -> Result<Quota, Error> {
    require(ctx, project, READ).await?;
    ctx.require_admin()?;
    let limit = change.read()?.limit_bytes;
    change_policy(ctx, project, "set_quota", |p| p.quota_bytes = limit).await?;
    quota_of(ctx, project).await
}

pub async fn immutable(ctx: &Ctx) -> common::Result {
    common::ok(json!(readable(ctx).await?.immutable))
}

pub async fn set_immutable(ctx: &Ctx) -> common::Result {
    let rules = set_immutable_rules(ctx, ctx.param("project"), Body(ctx)).await?;
    common::ok(json!(rules))
}

/// Replaces a project's tag immutability rules; project admins. The rules
/// now in force.
pub async fn set_immutable_rules(
    ctx: &Ctx,
    project: &str,
    rules: impl Input<Vec<TagSelector>>,
) -> Result<Vec<TagSelector>, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let rules = rules.read()?;
    let policy = change_policy(ctx, project, "set_immutable_rules", |p| p.immutable = rules);
    Ok(policy.await?.immutable)
}

pub async fn retention(ctx: &Ctx) -> common::Result {
    common::ok(json!({"rules": readable(ctx).await?.retention}))
}

pub async fn set_retention(ctx: &Ctx) -> common::Result {
    let rules = set_retention_rules(ctx, ctx.param("project"), Body(ctx)).await?;
    common::ok(json!({"rules": rules}))
}

/// Replaces a project's tag retention rules; project admins. The rules
/// now in force.
pub async fn set_retention_rules(
    ctx: &Ctx,
    project: &str,
    change: impl Input<RetentionChange>,
) -> Result<Vec<RetentionRule>, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let rules = change.read()?.rules;
    let policy = change_policy(ctx, project, "set_retention_rules", |p| p.retention = rules);
    Ok(policy.await?.retention)
}

pub async fn run_retention(ctx: &Ctx) -> common::Result {
    let report = apply_retention(ctx, ctx.param("project"), Flag(ctx, "dry_run")).await?;
    common::ok(json!(report))
}

/// Applies a project's retention rules now (`dry_run`: only report what
/// would go); project admins.
pub async fn apply_retention(
    ctx: &Ctx,
    project: &str,
    dry_run: impl Input<bool>,
) -> Result<RetentionReport, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let dry_run = dry_run.read()?;
    let report = ctx.registry().apply_retention(project, dry_run).await?;
    if !dry_run {
        ctx.audit("retention", &format!("{project}/"));
    }
    Ok(report)
}
