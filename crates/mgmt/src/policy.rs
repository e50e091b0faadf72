//! A project's storage quota, tag immutability rules and tag retention
//! rules (see `berth_core::registry::policy`). Members with pull access read
//! them; project admins change immutability and retention; only system
//! administrators change a quota, as in Harbor.

use super::access::{require, ProjectPerm};
use super::common::{self, Ctx, Error};
use berth_auth::model::Action;
use berth_core::registry::policy::{RetentionReport, RetentionRule, TagSelector};
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

// Each change takes its input as a function called after the permission
// checks, so that a caller without the right gets its 403 (not a 400)
// whatever it sends: the handlers pass the request's body or query, the
// typed functions a value.

fn dry_run(ctx: &Ctx) -> impl FnOnce() -> Result<bool, Error> + '_ {
    || match ctx.query("dry_run") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::bad_request("dry_run must be true or false")),
    }
}

fn body<T: serde::de::DeserializeOwned>(ctx: &Ctx) -> impl FnOnce() -> Result<T, Error> + '_ {
    || ctx.json()
}

fn given<T>(value: T) -> impl FnOnce() -> Result<T, Error> {
    || Ok(value)
}

async fn quota_of(ctx: &Ctx, project: &str) -> Result<Quota, Error> {
    let registry = &ctx.state.registry;
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

pub async fn quota(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    quota_view(&quota_of(ctx, project).await?)
}

pub async fn set_quota(ctx: &Ctx) -> common::Result {
    quota_view(&change_quota(ctx, ctx.param("project"), body(ctx)).await?)
}

/// Sets or removes (`None`) a project's quota; system administrators only.
pub async fn set_project_quota(
    ctx: &Ctx,
    project: &str,
    change: QuotaChange,
) -> Result<Quota, Error> {
    change_quota(ctx, project, given(change)).await
}

async fn change_quota(
    ctx: &Ctx,
    project: &str,
    change: impl FnOnce() -> Result<QuotaChange, Error>,
) -> Result<Quota, Error> {
    require(ctx, project, READ).await?;
    ctx.require_admin()?;
    let change = change()?;
    let registry = &ctx.state.registry;
    let mut policy = registry.project_policy(project).await?;
    policy.quota_bytes = change.limit_bytes;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit("set_quota", &format!("{project}/"));
    quota_of(ctx, project).await
}

pub async fn immutable(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    let policy = ctx.state.registry.project_policy(project).await?;
    common::ok(json!(policy.immutable))
}

pub async fn set_immutable(ctx: &Ctx) -> common::Result {
    let rules = change_immutable(ctx, ctx.param("project"), body(ctx)).await?;
    common::ok(json!(rules))
}

/// Replaces a project's tag immutability rules; project admins. The rules
/// now in force.
pub async fn set_immutable_rules(
    ctx: &Ctx,
    project: &str,
    rules: Vec<TagSelector>,
) -> Result<Vec<TagSelector>, Error> {
    change_immutable(ctx, project, given(rules)).await
}

async fn change_immutable(
    ctx: &Ctx,
    project: &str,
    rules: impl FnOnce() -> Result<Vec<TagSelector>, Error>,
) -> Result<Vec<TagSelector>, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let rules = rules()?;
    let registry = &ctx.state.registry;
    let mut policy = registry.project_policy(project).await?;
    policy.immutable = rules;
    policy.validate().map_err(Error::bad_request)?;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit("set_immutable_rules", &format!("{project}/"));
    Ok(policy.immutable)
}

pub async fn retention(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, READ).await?;
    let policy = ctx.state.registry.project_policy(project).await?;
    common::ok(json!({"rules": policy.retention}))
}

pub async fn set_retention(ctx: &Ctx) -> common::Result {
    let rules = change_retention(ctx, ctx.param("project"), body(ctx)).await?;
    common::ok(json!({"rules": rules}))
}

/// Replaces a project's tag retention rules; project admins. The rules
/// now in force.
pub async fn set_retention_rules(
    ctx: &Ctx,
    project: &str,
    change: RetentionChange,
) -> Result<Vec<RetentionRule>, Error> {
    change_retention(ctx, project, given(change)).await
}

async fn change_retention(
    ctx: &Ctx,
    project: &str,
    change: impl FnOnce() -> Result<RetentionChange, Error>,
) -> Result<Vec<RetentionRule>, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let change = change()?;
    let registry = &ctx.state.registry;
    let mut policy = registry.project_policy(project).await?;
    policy.retention = change.rules;
    policy.validate().map_err(Error::bad_request)?;
    registry.set_project_policy(project, &policy).await?;
    ctx.audit("set_retention_rules", &format!("{project}/"));
    Ok(policy.retention)
}

pub async fn run_retention(ctx: &Ctx) -> common::Result {
    let report = retention_run(ctx, ctx.param("project"), dry_run(ctx)).await?;
    common::ok(json!(report))
}

/// Applies a project's retention rules now (`dry_run`: only report what
/// would go); project admins.
pub async fn apply_retention(
    ctx: &Ctx,
    project: &str,
    dry_run: bool,
) -> Result<RetentionReport, Error> {
    retention_run(ctx, project, given(dry_run)).await
}

async fn retention_run(
    ctx: &Ctx,
    project: &str,
    dry_run: impl FnOnce() -> Result<bool, Error>,
) -> Result<RetentionReport, Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    let dry_run = dry_run()?;
    let report = ctx.state.registry.apply_retention(project, dry_run).await?;
    if !dry_run {
        ctx.audit("retention", &format!("{project}/"));
    }
    Ok(report)
}
