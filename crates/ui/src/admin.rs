//! System administration: users, garbage collection (status, history, run
//! now), the cluster's nodes and their health, and the audit log (the
//! whole log for administrators, a project's for its admins and
//! maintainers).

use super::page::{self, Notice, Section};
use super::projects::{project_header, Tab};
use super::{done, encode, project_path, Result, Submitted, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::audit::AuditFilter;
use berth_core::registry::gc::GcReport;
use berth_http::time::now;
use berth_mgmt::access::{require, ProjectPerm};
use berth_mgmt::UserChange;
use maud::{html, Markup};
use std::time::Duration;

type Pairs = Vec<(String, String)>;

/// Audit events per page.
const AUDIT_PAGE: usize = 50;

pub async fn users(viewer: Viewer, Query(query): Query<Pairs>) -> Result {
    viewer.require_admin()?;
    let users = viewer.state.auth.directory.users().await?;
    let body = html! {
        (page::heading("Users", &[]))
        (Notice::shown(&query))
        (page::table("Users", &["Name", "Email", "Source", "Administrator", "Created", "Actions"], html! {
            @for u in &users {
                @let action = format!("/ui/users/{}", encode(&u.name));
                @let me = u.name == viewer.name();
                tr data-user=(u.name) {
                    th scope="row" { (u.name) }
                    td { (u.email) }
                    td { (u.source) }
                    td { (if u.admin { "yes" } else { "no" }) }
                    td { (page::time(u.created)) }
                    td.actions {
                        @if !me {
                            form.inline method="post" action=(action) {
                                (page::csrf(&viewer))
                                input type="hidden" name="action" value="admin";
                                input type="hidden" name="admin" value=(if u.admin { "false" } else { "true" });
                                button type="submit" {
                                    (if u.admin { "Remove administrator" } else { "Make administrator" })
                                }
                            }
                            " "
                        }
                        @if u.source == "local" && !me {
                            form.inline method="post" action=(action) {
                                (page::csrf(&viewer))
                                input type="hidden" name="action" value="password";
                                label.visually-hidden for={ "pw-" (u.name) } { "New password for " (u.name) }
                                input id={ "pw-" (u.name) } type="password" name="password" required
                                    autocomplete="new-password" placeholder="new password";
                                " "
                                button type="submit" { "Set password" }
                            }
                            " "
                        }
                        @if !me {
                            form.inline method="post" action=(action) data-confirm={ "Delete user " (u.name) "?" } {
                                (page::csrf(&viewer))
                                input type="hidden" name="action" value="delete";
                                button.danger type="submit" aria-label={ "Delete user " (u.name) } { "Delete" }
                            }
                        } @else {
                            span.muted { "(you)" }
                        }
                    }
                }
            }
        }))
        section aria-labelledby="new-user" {
            h2 #new-user { "New local user" }
            p.hint { "Directory (LDAP) users need no account here: they appear after their first login." }
            form.stack method="post" action="/ui/users" {
                (page::csrf(&viewer))
                label for="user-name" { "Name" }
                input #user-name type="text" name="name" required autocapitalize="none" spellcheck="false";
                label for="user-email" { "Email" }
                input #user-email type="email" name="email";
                label for="user-password" { "Password" }
                input #user-password type="password" name="password" required autocomplete="new-password";
                label.check { input type="checkbox" name="admin" value="true"; " System administrator" }
                button type="submit" { "Create user" }
            }
        }
    };
    Ok(page::render(&viewer, "Users", Section::Users, body))
}

pub async fn create_user(submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let new = berth_mgmt::UserCreate {
        name: fields.required("name", "the user name")?.to_owned(),
        password: fields.secret("password", "the password")?.to_owned(),
        email: fields.get("email").unwrap_or("").to_owned(),
        admin: fields.get("admin") == Some("true"),
    };
    berth_mgmt::create_user(&viewer.ctx(), new).await?;
    Ok(done("/ui/users", Notice::UserCreated))
}

pub async fn change_user(Path(name): Path<String>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let ctx = viewer.ctx();
    let notice = match fields.get("action") {
        Some("admin") => {
            let change = UserChange {
                admin: Some(fields.get("admin") == Some("true")),
                ..UserChange::default()
            };
            berth_mgmt::update_user(&ctx, &name, change).await?;
            Notice::UserChanged
        }
        Some("password") => {
            let change = UserChange {
                password: Some(fields.secret("password", "the new password")?.to_owned()),
                ..UserChange::default()
            };
            berth_mgmt::update_user(&ctx, &name, change).await?;
            Notice::UserChanged
        }
        Some("delete") => {
            berth_mgmt::delete_user(&ctx, &name).await?;
            Notice::UserDeleted
        }
        _ => return Err(UiError::bad_request("unknown action")),
    };
    Ok(done("/ui/users", notice))
}

fn secs(n: u64) -> String {
    match n {
        0..=119 => format!("{n} s"),
        120..=7199 => format!("{} min", n / 60),
        _ => format!("{} h", n / 3600),
    }
}

pub async fn gc(viewer: Viewer, Query(query): Query<Pairs>) -> Result {
    viewer.require_admin()?;
    render_gc(&viewer, Notice::shown(&query), None).await
}

/// A dry run's report: what a collection would delete now.
fn dry_run_report(r: &GcReport) -> Markup {
    html! {
        section.report #gc-report aria-labelledby="gc-report-title" {
            h2 #gc-report-title { "Dry run: what a collection would delete now" }
            p role="status" {
                (r.manifests_deleted) " manifests, " (r.blobs_deleted) " of "
                (r.blobs_examined) " blobs (" (page::bytes(r.bytes_freed)) "), "
                (r.uploads_deleted) " abandoned uploads. Nothing was deleted."
            }
            @if !r.deleted.is_empty() {
                ul { @for d in &r.deleted { li { code.wrap { (d) } } } }
            }
        }
    }
}

async fn render_gc(viewer: &Viewer, notice: Markup, report: Option<GcReport>) -> Result {
    let history = berth_mgmt::gc_history(&viewer.ctx()).await?;
    let runs = &history.runs;
    let body = html! {
        (page::heading("Garbage collection", &[]))
        (notice)
        dl.facts {
            dt { "Status" }
            dd #gc-status {
                @match &history.running {
                    Some(holder) => { strong { "running" } " (" (holder) ")" },
                    None => "idle",
                }
            }
            dt { "Grace period" } dd { (secs(history.grace_period_secs)) ": nothing younger is collected" }
            dt { "Upload expiry" } dd { (secs(history.upload_expiry_secs)) ": idle uploads older are removed" }
        }
        p.hint { "Collection runs online: pushes and pulls go on meanwhile, on every node." }
        div.row {
            form.inline method="post" action="/ui/gc" {
                (page::csrf(viewer))
                button type="submit" name="dry_run" value="true" { "Dry run (delete nothing)" }
            }
            " "
            form.inline method="post" action="/ui/gc"
                data-confirm="Collect garbage now? Unreferenced blobs are deleted for good." {
                (page::csrf(viewer))
                button.danger type="submit" name="dry_run" value="false" { "Collect garbage now" }
            }
        }
        @if let Some(r) = &report { (dry_run_report(r)) }
        h2 { "History" }
        @if runs.is_empty() {
            p { "No collection has run yet." }
        } @else {
            (page::table("Past collections, newest first", &["Started", "Trigger", "Duration", "Manifests deleted", "Blobs deleted", "Freed", "Uploads removed", "Result"], html! {
                @for r in runs {
                    tr {
                        td { (page::time(r.started)) }
                        td { (r.trigger) }
                        td.num { (r.duration_ms) " ms" }
                        td.num { (r.manifests_deleted) }
                        td.num { (r.blobs_deleted) " of " (r.blobs_examined) }
                        td.num { (page::bytes(r.bytes_freed)) }
                        td.num { (r.uploads_deleted) }
                        td {
                            @match &r.error {
                                Some(e) => { strong { "failed: " } (e) },
                                None => "completed",
                            }
                        }
                    }
                }
            }))
        }
    };
    Ok(page::render(
        viewer,
        "Garbage collection",
        Section::Gc,
        body,
    ))
}

pub async fn run_gc(submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    if fields.get("dry_run") == Some("false") {
        berth_mgmt::run_gc(&viewer.ctx(), false).await?;
        return Ok(done("/ui/gc", Notice::GcRan));
    }
    // A dry run is not kept in the history: its report is shown here.
    let report = berth_mgmt::run_gc(&viewer.ctx(), true).await?;
    render_gc(&viewer, maud::html! {}, Some(report)).await
}

pub async fn nodes(viewer: Viewer) -> Result {
    viewer.require_admin()?;
    let registry = &viewer.state.registry;
    let nodes = registry.cluster_nodes().await?;
    let ready = match tokio::time::timeout(Duration::from_secs(3), registry.check_ready()).await {
        Ok(Ok(())) => "ready: metadata and storage answer".to_owned(),
        Ok(Err(e)) => format!("not ready: {}", e.code.message()),
        Err(_) => "not ready: a backend timed out".to_owned(),
    };
    let at = now();
    let body = html! {
        (page::heading("Nodes", &[]))
        p #this-node { strong { "The node serving this page: " } (ready) "." }
        @if nodes.is_empty() {
            p {
                "This is a single node with an embedded metadata store (no cluster): "
                "version " (env!("CARGO_PKG_VERSION")) ", serving " (viewer.registry_host()) "."
            }
        } @else {
            p.hint { "Each node renews its record every few seconds; a node that stops is dropped within 10 seconds." }
            (page::table("Live nodes", &["Node", "Listen", "External URL", "Version", "Up for", "Health"], html! {
                @for n in &nodes {
                    tr {
                        th scope="row" { (n.id) }
                        td { code { (n.listen) } }
                        td { (n.external_url) }
                        td { (n.version) }
                        td { (secs(at.saturating_sub(n.started))) }
                        td { "alive (lease renewed)" }
                    }
                }
            }))
        }
    };
    Ok(page::render(&viewer, "Nodes", Section::Nodes, body))
}

fn audit_table(events: &[berth_auth::audit::AuditEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No events." }
        } @else {
            (page::table("Events, newest first", &["Time", "User", "Operation", "Resource", "Address"], html! {
                @for e in events {
                    tr {
                        td { (page::time(e.time)) }
                        td { (e.user) }
                        td {
                            (e.operation)
                            @if e.count > 1 { " ×" (e.count) }
                        }
                        td { code.wrap { (e.resource) } }
                        td { (e.address) }
                    }
                }
            }))
        }
    }
}

/// The audit query of a page's parameters; the cursor is opaque but
/// checked as the API checks it.
async fn audit_query(
    viewer: &Viewer,
    filter: &AuditFilter,
    query: &Pairs,
) -> Result<(Vec<berth_auth::audit::AuditEvent>, Option<String>)> {
    let cursor = page::param(query, "cursor");
    if cursor.is_some_and(|c| {
        !c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(UiError::bad_request("malformed cursor"));
    }
    Ok(viewer.state.audit.query(filter, cursor, AUDIT_PAGE).await?)
}

fn older_link(base: &str, query: &Pairs, next: Option<String>) -> Markup {
    let Some(next) = next else {
        return html! {};
    };
    let mut params: Vec<String> = query
        .iter()
        .filter(|(k, v)| k != "cursor" && !v.is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    params.push(format!("cursor={}", encode(&next)));
    html! {
        nav.pager aria-label="Pages" { a href={ (base) "?" (params.join("&")) } rel="next" { "Older events →" } }
    }
}

pub async fn audit(viewer: Viewer, Query(query): Query<Pairs>) -> Result {
    viewer.require_admin()?;
    let filter = AuditFilter {
        user: page::param(&query, "user").map(str::to_owned),
        operation: page::param(&query, "operation").map(str::to_owned),
        resource_prefix: page::param(&query, "resource").map(str::to_owned),
    };
    let (events, next) = audit_query(&viewer, &filter, &query).await?;
    let body = html! {
        (page::heading("Audit log", &[]))
        form.row role="search" method="get" action="/ui/audit" {
            label for="f-user" { "User" }
            input #f-user type="text" name="user" value=[filter.user.as_deref()];
            label for="f-op" { "Operation" }
            input #f-op type="text" name="operation" value=[filter.operation.as_deref()] placeholder="push, pull, delete, login...";
            label for="f-res" { "Resource starts with" }
            input #f-res type="text" name="resource" value=[filter.resource_prefix.as_deref()];
            button type="submit" { "Filter" }
        }
        (audit_table(&events))
        (older_link("/ui/audit", &query, next))
    };
    Ok(page::render(&viewer, "Audit log", Section::Audit, body))
}

pub async fn project_audit(
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let access = require(&viewer.ctx(), &project, ProjectPerm::ReadAudit).await?;
    let filter = AuditFilter {
        user: page::param(&query, "user").map(str::to_owned),
        operation: page::param(&query, "operation").map(str::to_owned),
        resource_prefix: Some(format!("{project}/")),
    };
    let (events, next) = audit_query(&viewer, &filter, &query).await?;
    let body = html! {
        (project_header(&access, Tab::Audit, &project))
        (audit_table(&events))
        (older_link(&project_path(&project, "audit"), &query, next))
    };
    Ok(page::render(
        &viewer,
        &format!("Audit log of {project}"),
        Section::Projects,
        body,
    ))
}
