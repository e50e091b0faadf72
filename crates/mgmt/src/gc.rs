//! Garbage collection: run one now (`POST /api/v1/gc`, `?dry_run=true` to
//! only list what would go) and the history of past runs. System
//! administrators only.

use super::common::{self, Ctx, Error, Flag, Input};
use berth_core::registry::gc::{GcReport, NotRun};
use serde_json::json;

/// The collector's state and its past runs (`GET /api/v1/gc`).
pub struct GcHistory {
    /// The holder of the collection lock while a run goes on.
    pub running: Option<String>,
    pub grace_period_secs: u64,
    pub upload_expiry_secs: u64,
    /// Newest first.
    pub runs: Vec<GcReport>,
}

pub async fn run(ctx: &Ctx) -> common::Result {
    let report = run_gc(ctx, Flag(ctx, "dry_run")).await?;
    common::ok(json!(report))
}

/// Runs a collection now (`dry_run`: only report what would go; not kept
/// in the history); 409 while another runs.
pub async fn run_gc(ctx: &Ctx, dry_run: impl Input<bool>) -> Result<GcReport, Error> {
    ctx.require_admin()?;
    let dry_run = dry_run.read()?;
    match ctx.state.gc.run("api", dry_run).await {
        Ok(report) => {
            if !dry_run {
                ctx.audit("gc", "registry");
            }
            Ok(report)
        }
        Err(NotRun::Busy(holder)) => Err(Error::conflict(format!(
            "a garbage collection is running ({})",
            holder.as_deref().unwrap_or("holder unknown")
        ))),
        Err(NotRun::Failed(e)) => Err(e.into()),
    }
}

pub async fn history(ctx: &Ctx) -> common::Result {
    let h = gc_history(ctx).await?;
    common::ok(json!({
        "running": h.running,
        "grace_period_secs": h.grace_period_secs,
        "upload_expiry_secs": h.upload_expiry_secs,
        "runs": h.runs,
    }))
}

/// Whether a collection runs now, its settings and the past runs.
pub async fn gc_history(ctx: &Ctx) -> Result<GcHistory, Error> {
    ctx.require_admin()?;
    let gc = &ctx.state.gc;
    let runs = gc.registry().gc_history().await?;
    Ok(GcHistory {
        running: gc.running().await?,
        grace_period_secs: gc.grace_secs,
        upload_expiry_secs: gc.upload_expiry_secs,
        runs,
    })
}
