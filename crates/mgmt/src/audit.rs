//! The audit log: everything for system administrators, and per project
//! (events whose resource starts with `<project>/`) for its project admins
//! and maintainers. Newest first, paged with an opaque cursor: the next
//! page's URL is in the `Link` header (`rel="next"`), absent on the last.

use super::access::{require, ProjectPerm};
use super::common::{self, encode, json, rfc3339, Ctx, Error, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use axum::http::{header, HeaderValue, StatusCode};
use berth_auth::audit::{AuditEvent, AuditFilter};
use serde_json::{json, Value};

fn view(e: &AuditEvent) -> Value {
    json!({
        "time": rfc3339(e.time),
        "timestamp": e.time,
        "user": e.user,
        "operation": e.operation,
        "resource": e.resource,
        "address": e.address,
        "count": e.count,
    })
}

/// The events the request's `user`, `operation` and `resource` (a prefix)
/// filter for.
fn filter(ctx: &Ctx, resource: Option<String>) -> AuditFilter {
    AuditFilter {
        user: ctx.query("user").map(str::to_owned),
        operation: ctx.query("operation").map(str::to_owned),
        resource_prefix: resource,
    }
}

pub async fn system(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let resource = ctx.query("resource").map(str::to_owned);
    query(ctx, filter(ctx, resource), "/api/v1/audit-logs".into()).await
}

pub async fn project(ctx: &Ctx) -> common::Result {
    let project = ctx.param("project");
    require(ctx, project, ProjectPerm::ReadAudit).await?;
    let scope = format!("{project}/");
    // A `resource` filter may narrow the project's events, never widen them.
    let resource = match ctx.query("resource") {
        Some(r) if r.starts_with(&scope) => r.to_owned(),
        Some(r) => format!("{scope}{r}"),
        None => scope,
    };
    let path = format!("/api/v1/projects/{project}/audit-logs");
    query(ctx, filter(ctx, Some(resource)), path).await
}

async fn query(ctx: &Ctx, filter: AuditFilter, path: String) -> common::Result {
    let size = match ctx.query("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!("page_size must be from 1 to {MAX_PAGE_SIZE}"))
            })?,
    };
    let cursor = ctx.query("cursor");
    if cursor.is_some_and(|c| {
        !c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(Error::bad_request("malformed cursor"));
    }
    let (events, next) = ctx.state.audit.query(&filter, cursor, size).await?;
    let mut resp = json(
        StatusCode::OK,
        &Value::Array(events.iter().map(view).collect()),
    );
    if let Some(next) = next {
        let mut params: Vec<(String, String)> = ctx
            .query
            .iter()
            .filter(|(k, _)| k != "cursor")
            .cloned()
            .collect();
        params.push(("cursor".into(), next));
        let query = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let link = format!("<{}{path}?{query}>; rel=\"next\"", ctx.state.base_url);
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}
