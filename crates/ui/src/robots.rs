//! A project's robot accounts (`robot$<project>+<name>`): listed, created
//! and revoked by project admins. The secret is shown once, on the page
//! that answers the creation, and is never stored in the clear.

use super::page::{self, Notice, Section};
use super::projects::{project_header, Tab};
use super::{done, encode, project_path, Result, Submitted, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::model::{project_robots_prefix, Action};
use berth_http::time::now;
use berth_mgmt::access::{require, ProjectPerm};
use berth_mgmt::RobotCreate;
use maud::{html, Markup};

type Pairs = Vec<(String, String)>;

fn create_form(viewer: &Viewer, project: &str) -> Markup {
    html! {
        section aria-labelledby="new-robot" {
            h2 #new-robot { "New robot account" }
            form.stack method="post" action=(project_path(project, "robots")) {
                (page::csrf(viewer))
                label for="robot-name" { "Name" }
                input #robot-name type="text" name="name" required autocapitalize="none" spellcheck="false"
                    aria-describedby="robot-name-hint";
                span.hint #robot-name-hint { "Its full name will be robot$" (project) "+<name>." }
                label for="robot-description" { "Description" }
                input #robot-description type="text" name="description";
                fieldset {
                    legend { "Permissions in " (project) }
                    label.check { input type="checkbox" name="actions" value="pull" checked; " Pull" }
                    label.check { input type="checkbox" name="actions" value="push"; " Push" }
                    label.check { input type="checkbox" name="actions" value="delete"; " Delete" }
                }
                label for="robot-days" { "Expires after (days; empty for never)" }
                input #robot-days type="number" name="duration_days" min="1" max="36500";
                button type="submit" { "Create robot account" }
            }
        }
    }
}

pub async fn list(
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let access = require(&viewer.ctx(), &project, ProjectPerm::Manage).await?;
    let prefix = project_robots_prefix(&project);
    let mut robots = viewer.state.auth.directory.robots().await?;
    robots.retain(|r| r.name.starts_with(&prefix));
    let at = now();
    let body = html! {
        (project_header(&access, Tab::Robots, &project))
        (Notice::shown(&query))
        @if robots.is_empty() {
            p { "No robot accounts yet." }
        } @else {
            (page::table("Robot accounts", &["Name", "Description", "Permissions", "Status", "Created", "Actions"], html! {
                @for r in &robots {
                    tr data-robot=(r.name) {
                        th scope="row" { code { (r.name) } }
                        td { (r.description) }
                        td {
                            @for p in &r.permissions {
                                (p.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))
                            }
                        }
                        td {
                            @match r.expires_at {
                                None => "active, never expires",
                                Some(e) if e <= at => { "expired " (page::time(e)) },
                                Some(e) => { "active until " (page::time(e)) },
                            }
                        }
                        td { (page::time(r.created)) }
                        td {
                            (page::button(
                                &viewer,
                                &format!("{}/{}/revoke", project_path(&project, "robots"), encode(&r.name)),
                                "Revoke",
                                &format!("Revoke {}", r.name),
                                true,
                                Some(&format!("Revoke {}? Clients using it will be refused.", r.name)),
                            ))
                        }
                    }
                }
            }))
        }
        (create_form(&viewer, &project))
    };
    Ok(page::render(
        &viewer,
        &format!("Robot accounts of {project}"),
        Section::Projects,
        body,
    ))
}

pub async fn create(Path(project): Path<String>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let access = require(&viewer.ctx(), &project, ProjectPerm::Manage).await?;
    let actions = fields
        .all("actions")
        .into_iter()
        .map(|a| {
            Action::parse(a).ok_or_else(|| UiError::bad_request(format!("unknown action {a:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let duration_days = fields
        .get("duration_days")
        .map(|days| {
            days.parse::<i64>()
                .map_err(|_| UiError::bad_request("the expiry must be a number of days"))
        })
        .transpose()?;
    let new = RobotCreate {
        name: fields.required("name", "the robot's name")?.to_owned(),
        description: fields.get("description").unwrap_or("").to_owned(),
        actions: Some(actions),
        duration_days,
        ..RobotCreate::default()
    };
    let created = berth_mgmt::create_project_robot(&viewer.ctx(), &project, new).await?;
    let name = created.record.name.as_str();
    let secret = created.secret.as_str();
    let expires = created
        .record
        .expires_at
        .map_or("never".to_owned(), berth_http::time::rfc3339);
    let actions: Vec<&str> = created
        .record
        .permissions
        .first()
        .map(|p| p.actions.iter().map(|a| a.as_str()).collect())
        .unwrap_or_default();
    let page_body = html! {
        (project_header(&access, Tab::Robots, &project))
        section.secret aria-labelledby="created" {
            h2 #created { "Robot account created" }
            p role="status" {
                strong { "Copy the secret now: " }
                "it is shown only this once and cannot be shown again. If it is lost, revoke the robot and create another."
            }
            dl.facts {
                dt { "Name" } dd { (page::copyable("robot-name-value", name)) }
                dt { "Secret" } dd { (page::copyable("robot-secret", secret)) }
                dt { "Permissions" } dd { (actions.join(", ")) " in " (project) }
                dt { "Expires" } dd { (expires) }
                dt { "Log in with" } dd {
                    (page::copyable("robot-login", &format!("docker login -u '{name}' {}", viewer.registry_host())))
                }
            }
            p { a href=(project_path(&project, "robots")) { "Back to the robot accounts" } }
        }
    };
    Ok(page::render(
        &viewer,
        &format!("Robot account {name}"),
        Section::Projects,
        page_body,
    ))
}

pub async fn revoke(Path((project, name)): Path<(String, String)>, submitted: Submitted) -> Result {
    berth_mgmt::revoke_project_robot(&submitted.viewer.ctx(), &project, &name).await?;
    Ok(done(
        &project_path(&project, "robots"),
        Notice::RobotRevoked,
    ))
}
