//! A project's upstream, when it is a proxy cache
//! (`/api/v1/projects/{project}/proxy`): members with pull access read it;
//! system administrators bind a project to a replication endpoint, or
//! unbind it (what it cached stays, as an ordinary project's content).

use super::access::{require, ProjectPerm};
use super::common::{self, Body, Ctx, Error, Input};
use berth_auth::model::Action;
use berth_proxy::Binding;
use serde::Deserialize;
use serde_json::json;

/// The body of `PUT /api/v1/projects/{project}/proxy`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyChange {
    /// The replication endpoint the project pulls through.
    pub endpoint: String,
}

fn view(b: &Binding) -> common::Result {
    common::ok(json!({"project": b.project, "endpoint": b.endpoint}))
}

/// The upstream of `project`, if it is a proxy cache.
pub async fn project_proxy(ctx: &Ctx, project: &str) -> Result<Option<Binding>, Error> {
    require(ctx, project, ProjectPerm::Registry(Action::Pull)).await?;
    Ok(ctx.state.proxy.binding(project).await?)
}

pub async fn get(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    match project_proxy(ctx, project).await? {
        Some(b) => view(&b),
        None => Err(Error::not_found(format!(
            "project {project} is not a proxy cache"
        ))),
    }
}

/// Makes `project` (which exists) a proxy cache of `endpoint`, or moves it
/// to another endpoint; system administrators only.
pub async fn set_project_proxy(
    ctx: &Ctx,
    project: &str,
    change: impl Input<ProxyChange>,
) -> Result<Binding, Error> {
    // A project the caller cannot see is missing (404), as on every
    // project route; one it can is the administrators' to bind.
    require(ctx, project, ProjectPerm::Manage).await?;
    ctx.require_admin()?;
    let change = change.read()?;
    let binding = ctx.state.proxy.bind(project, &change.endpoint).await?;
    ctx.audit(
        "set_project_proxy",
        &format!("{project}/ (endpoint={})", change.endpoint),
    );
    Ok(binding)
}

pub async fn set(ctx: &Ctx) -> common::Result {
    view(&set_project_proxy(ctx, ctx.param("project"), Body(ctx)).await?)
}

/// Makes `project` an ordinary project again; system administrators only.
pub async fn remove_project_proxy(ctx: &Ctx, project: &str) -> Result<(), Error> {
    require(ctx, project, ProjectPerm::Manage).await?;
    ctx.require_admin()?;
    if !ctx.state.proxy.unbind(project).await? {
        return Err(Error::not_found(format!(
            "project {project} is not a proxy cache"
        )));
    }
    ctx.audit("remove_project_proxy", &format!("{project}/"));
    Ok(())
}

pub async fn remove(ctx: &Ctx) -> common::Result {
    remove_project_proxy(ctx, ctx.param("project")).await?;
    common::no_content()
}
