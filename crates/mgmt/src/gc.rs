//! Garbage collection: run one now (`POST /api/v1/gc`, `?dry_run=true` to
//! only list what would go) and the history of past runs. System
//! administrators only.

use super::common::{self, Ctx, Error};
use berth_core::registry::gc::NotRun;
use serde_json::json;

pub async fn run(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let dry_run = match ctx.query("dry_run") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::bad_request("dry_run must be true or false")),
    };
    match ctx.state.gc.run("api", dry_run).await {
        Ok(report) => {
            if !dry_run {
                ctx.audit("gc", "registry");
            }
            common::ok(json!(report))
        }
        Err(NotRun::Busy(holder)) => Err(Error::conflict(format!(
            "a garbage collection is running ({})",
            holder.as_deref().unwrap_or("holder unknown")
        ))),
        Err(NotRun::Failed(e)) => Err(e.into()),
    }
}

pub async fn history(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    let gc = &ctx.state.gc;
    let runs = gc.registry().gc_history().await?;
    common::ok(json!({
        "running": gc.running().await?,
        "grace_period_secs": gc.grace_secs,
        "upload_expiry_secs": gc.upload_expiry_secs,
        "runs": runs,
    }))
}
