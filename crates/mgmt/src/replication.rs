//! Replication (`/api/v1/replication/...`): endpoints (remote registries;
//! their secrets are accepted, never returned) with a connection test,
//! policies with manual runs, and executions with their tasks and a stop.
//! System administrators only, as in Harbor.

use super::common::{self, Body, Ctx, Error, Input};
use berth_core::CoreError;
use berth_replication::{
    EndpointInput, EndpointView, ErrorKind, Execution, ExecutionDetail, Policy, ReplError, Trigger,
};
use serde_json::json;

impl From<ReplError> for Error {
    fn from(e: ReplError) -> Self {
        match e.kind {
            ErrorKind::Invalid => Error::bad_request(e.message),
            ErrorKind::NotFound => Error::not_found(e.message),
            ErrorKind::Conflict => Error::conflict(e.message),
            ErrorKind::Unavailable => CoreError::unavailable(e.message).into(),
            ErrorKind::Internal => CoreError::internal(e.message).into(),
        }
    }
}

fn value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| CoreError::internal(e.to_string()).into())
}

// Endpoints.

pub async fn endpoints(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let list = ctx.state.replication.endpoints().await?;
    common::ok(value(&list)?)
}

/// One endpoint as shown (never its secret).
pub async fn endpoint_view(ctx: &Ctx, name: &str) -> Result<EndpointView, Error> {
    ctx.require_admin()?;
    Ok(ctx.state.replication.endpoint(name).await?)
}

pub async fn endpoint(ctx: &Ctx) -> common::Result {
    common::ok(value(&endpoint_view(ctx, ctx.param("endpoint")).await?)?)
}

/// Creates an endpoint; its secret is sealed and never shown again.
pub async fn create_endpoint(
    ctx: &Ctx,
    input: impl Input<EndpointInput>,
) -> Result<EndpointView, Error> {
    ctx.require_admin()?;
    let input = input.read()?;
    let view = ctx.state.replication.create_endpoint(input).await?;
    ctx.audit("create_replication_endpoint", &view.name);
    Ok(view)
}

pub async fn endpoint_create(ctx: &Ctx) -> common::Result {
    common::created(value(&create_endpoint(ctx, Body(ctx)).await?)?)
}

pub async fn update_endpoint(
    ctx: &Ctx,
    name: &str,
    input: impl Input<EndpointInput>,
) -> Result<EndpointView, Error> {
    ctx.require_admin()?;
    let input = input.read()?;
    let view = ctx.state.replication.update_endpoint(name, input).await?;
    ctx.audit("update_replication_endpoint", name);
    Ok(view)
}

pub async fn endpoint_update(ctx: &Ctx) -> common::Result {
    common::ok(value(
        &update_endpoint(ctx, ctx.param("endpoint"), Body(ctx)).await?,
    )?)
}

pub async fn delete_endpoint(ctx: &Ctx, name: &str) -> Result<(), Error> {
    ctx.require_admin()?;
    // Policies are checked by replication; proxy projects here.
    let bound: Vec<String> = ctx
        .state
        .proxy
        .bindings()
        .await?
        .into_iter()
        .filter(|b| b.endpoint == name)
        .map(|b| b.project)
        .collect();
    if !bound.is_empty() {
        return Err(Error::conflict(format!(
            "endpoint {name} is the upstream of proxy project(s) {}",
            bound.join(", ")
        )));
    }
    ctx.state.replication.delete_endpoint(name).await?;
    ctx.audit("delete_replication_endpoint", name);
    Ok(())
}

pub async fn endpoint_delete(ctx: &Ctx) -> common::Result {
    delete_endpoint(ctx, ctx.param("endpoint")).await?;
    common::no_content()
}

/// Pings an endpoint with its credentials: `ok`, and the auth it asked
/// for or the message of what failed.
pub async fn test_endpoint(ctx: &Ctx, name: &str) -> Result<serde_json::Value, Error> {
    ctx.require_admin()?;
    Ok(ctx.state.replication.test_endpoint(name).await?)
}

pub async fn endpoint_test(ctx: &Ctx) -> common::Result {
    common::ok(test_endpoint(ctx, ctx.param("endpoint")).await?)
}

// Policies.

pub async fn policies(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    common::ok(value(&ctx.state.replication.policies().await?)?)
}

/// One policy.
pub async fn policy_named(ctx: &Ctx, name: &str) -> Result<Policy, Error> {
    ctx.require_admin()?;
    Ok(ctx.state.replication.policy(name).await?)
}

pub async fn policy(ctx: &Ctx) -> common::Result {
    common::ok(value(&policy_named(ctx, ctx.param("policy")).await?)?)
}

pub async fn create_policy(ctx: &Ctx, input: impl Input<Policy>) -> Result<Policy, Error> {
    ctx.require_admin()?;
    let p = ctx.state.replication.create_policy(input.read()?).await?;
    ctx.audit("create_replication_policy", &p.name);
    Ok(p)
}

pub async fn policy_create(ctx: &Ctx) -> common::Result {
    common::created(value(&create_policy(ctx, Body(ctx)).await?)?)
}

pub async fn update_policy(
    ctx: &Ctx,
    name: &str,
    input: impl Input<Policy>,
) -> Result<Policy, Error> {
    ctx.require_admin()?;
    let p = ctx
        .state
        .replication
        .update_policy(name, input.read()?)
        .await?;
    ctx.audit("update_replication_policy", name);
    Ok(p)
}

pub async fn policy_update(ctx: &Ctx) -> common::Result {
    common::ok(value(
        &update_policy(ctx, ctx.param("policy"), Body(ctx)).await?,
    )?)
}

pub async fn delete_policy(ctx: &Ctx, name: &str) -> Result<(), Error> {
    ctx.require_admin()?;
    ctx.state.replication.delete_policy(name).await?;
    ctx.audit("delete_replication_policy", name);
    Ok(())
}

pub async fn policy_delete(ctx: &Ctx) -> common::Result {
    delete_policy(ctx, ctx.param("policy")).await?;
    common::no_content()
}

/// Runs a policy now (a manual trigger); the execution it started.
pub async fn run_policy(ctx: &Ctx, name: &str) -> Result<Execution, Error> {
    ctx.require_admin()?;
    let e = ctx.state.replication.run(name, Trigger::Manual).await?;
    ctx.audit("run_replication_policy", name);
    Ok(e)
}

pub async fn policy_run(ctx: &Ctx) -> common::Result {
    common::created(value(&run_policy(ctx, ctx.param("policy")).await?)?)
}

pub async fn policy_executions(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let name = ctx.param("policy");
    ctx.state.replication.policy(name).await?;
    let list = ctx.state.replication.executions(Some(name)).await?;
    common::ok(value(&list)?)
}

// Executions.

pub async fn executions(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let list = ctx
        .state
        .replication
        .executions(ctx.query("policy"))
        .await?;
    common::ok(value(&list)?)
}

pub async fn execution_detail(ctx: &Ctx, id: &str) -> Result<ExecutionDetail, Error> {
    ctx.require_admin()?;
    Ok(ctx.state.replication.execution(id).await?)
}

pub async fn execution(ctx: &Ctx) -> common::Result {
    common::ok(value(
        &execution_detail(ctx, ctx.param("execution")).await?,
    )?)
}

pub async fn stop_execution(ctx: &Ctx, id: &str) -> Result<Execution, Error> {
    ctx.require_admin()?;
    let e = ctx.state.replication.stop(id).await?;
    ctx.audit("stop_replication_execution", id);
    Ok(e)
}

pub async fn execution_stop(ctx: &Ctx) -> common::Result {
    let e = stop_execution(ctx, ctx.param("execution")).await?;
    common::ok(json!(e))
}

/// What the replication page shows: endpoints, policies and the newest
/// executions (at most `executions`).
pub struct ReplicationOverview {
    pub endpoints: Vec<EndpointView>,
    pub policies: Vec<Policy>,
    pub executions: Vec<Execution>,
}

pub async fn replication_overview(
    ctx: &Ctx,
    executions: usize,
) -> Result<ReplicationOverview, Error> {
    ctx.require_admin()?;
    let r = &ctx.state.replication;
    let mut list = r.executions(None).await?;
    list.truncate(executions);
    Ok(ReplicationOverview {
        endpoints: r.endpoints().await?,
        policies: r.policies().await?,
        executions: list,
    })
}
