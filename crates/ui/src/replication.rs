//! Replication (system administrators): endpoints, policies with a "Run
//! now" button, the newest executions with a "Stop" button, and one
//! execution's tasks. Endpoints and policies are created through the API
//! or the CLI (`berth replication ...`); this page shows and drives them.

use super::page::{self, Section};
use super::{encode, Result, Submitted, UiError, Viewer};
use axum::extract::Path;
use axum::response::Redirect;
use axum::response::{IntoResponse, Response};
use maud::html;

/// Executions listed on the page.
const SHOWN: usize = 30;

fn status_text<T: serde::Serialize>(s: &T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub async fn overview(viewer: Viewer) -> Result {
    if !viewer.is_admin() {
        return Err(UiError::forbidden());
    }
    let o = berth_mgmt::replication_overview(&viewer.ctx(), SHOWN).await?;
    let body = html! {
        (page::heading("Replication", &[]))
        p.hint { "Endpoints and policies are added with the API or " code { "berth replication" } " (see docs/replication.md)." }
        h2 { "Endpoints" }
        (page::table("Endpoints", &["Name", "URL", "Kind", "User", "Secret"], html! {
            @for e in &o.endpoints {
                tr data-endpoint=(e.name) {
                    th scope="row" { (e.name) }
                    td { code { (e.url) } }
                    td { (status_text(&e.kind)) }
                    td { (e.username.as_deref().unwrap_or("-")) }
                    td { (if e.has_secret { "set" } else { "none" }) }
                }
            }
        }))
        h2 { "Policies" }
        (page::table("Policies", &["Name", "Direction", "Endpoint", "Repositories", "Tags", "Triggers", "Enabled", "Actions"], html! {
            @for p in &o.policies {
                tr data-policy=(p.name) {
                    th scope="row" { (p.name) }
                    td { (status_text(&p.direction)) }
                    td { (p.endpoint) }
                    td { code { (p.filters.repository) } }
                    td { code { (p.filters.tag) } }
                    td {
                        "manual"
                        @if let Some(c) = &p.triggers.cron { ", cron " code { (c) } }
                        @if p.triggers.event { ", on push" @if p.replicate_deletes { " and delete" } }
                    }
                    td { (if p.enabled { "yes" } else { "no" }) }
                    td.actions {
                        form.inline method="post" action=(format!("/ui/replication/policies/{}/run", encode(&p.name))) {
                            (page::csrf(&viewer))
                            button type="submit" { "Run now" }
                        }
                    }
                }
            }
        }))
        h2 { "Executions" }
        (page::table("Newest executions", &["Started", "Policy", "Trigger", "Status", "Tasks", "Actions"], html! {
            @for e in &o.executions {
                tr data-execution=(e.id) {
                    td { (page::time(e.started_ms / 1000)) }
                    td { (e.policy) }
                    td { (status_text(&e.trigger)) }
                    td.status { (status_text(&e.status)) @if let Some(m) = &e.message { ": " (m) } }
                    td.num { (e.tasks) }
                    td.actions {
                        a href=(format!("/ui/replication/executions/{}", encode(&e.id))) { "Tasks" }
                        @if !e.status.is_final() && !e.stop_requested {
                            " "
                            form.inline method="post" action=(format!("/ui/replication/executions/{}/stop", encode(&e.id))) {
                                (page::csrf(&viewer))
                                button.danger type="submit" { "Stop" }
                            }
                        }
                    }
                }
            }
        }))
    };
    Ok(page::render(
        &viewer,
        "Replication",
        Section::Replication,
        body,
    ))
}

pub async fn execution(viewer: Viewer, Path(id): Path<String>) -> Result {
    let d = berth_mgmt::execution_detail(&viewer.ctx(), &id).await?;
    let e = &d.execution;
    let body = html! {
        (page::heading(&format!("Execution {id}"), &[("Replication", "/ui/replication".to_owned())]))
        dl.facts {
            dt { "Policy" } dd { (e.policy) }
            dt { "Trigger" } dd { (status_text(&e.trigger)) }
            dt { "Status" } dd #execution-status { (status_text(&e.status)) }
            dt { "Sent" } dd { (page::bytes(d.bytes)) }
        }
        (page::table("Tasks", &["#", "Operation", "Source", "Destination", "Tags", "Status", "Attempts", "Sent", "Message"], html! {
            @for t in &d.task_list {
                tr {
                    td.num { (t.seq) }
                    td { (status_text(&t.operation).replace('_', " ")) }
                    td { code { (t.repository) @if let Some(dg) = &t.digest { "@" (dg) } } }
                    td { code { (t.destination) } }
                    td { (t.tags.join(", ")) }
                    td { (status_text(&t.status)) }
                    td.num { (t.attempts) }
                    td.num { (page::bytes(t.bytes)) }
                    td { (t.message.as_deref().unwrap_or("")) }
                }
            }
        }))
    };
    Ok(page::render(
        &viewer,
        "Replication execution",
        Section::Replication,
        body,
    ))
}

pub async fn run(Path(name): Path<String>, submitted: Submitted) -> Result {
    let e = berth_mgmt::run_policy(&submitted.viewer.ctx(), &name).await?;
    Ok(see(&format!(
        "/ui/replication/executions/{}",
        encode(&e.id)
    )))
}

pub async fn stop(Path(id): Path<String>, submitted: Submitted) -> Result {
    berth_mgmt::stop_execution(&submitted.viewer.ctx(), &id).await?;
    Ok(see(&format!("/ui/replication/executions/{}", encode(&id))))
}

fn see(path: &str) -> Response {
    Redirect::to(path).into_response()
}
