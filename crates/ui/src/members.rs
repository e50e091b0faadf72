//! A project's members (users and directory groups) and their roles;
//! project admins add, change and remove them.

use super::page::{self, Notice, Section};
use super::projects::{project_header, Tab};
use super::{done, encode, project_path, Result, Submitted, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::model::Role;
use berth_mgmt::access::{require, ProjectPerm};
use berth_mgmt::{MemberChange, MemberCreate};
use maud::{html, Markup};

type Pairs = Vec<(String, String)>;

const ROLES: [Role; 5] = [
    Role::ProjectAdmin,
    Role::Maintainer,
    Role::Developer,
    Role::Guest,
    Role::LimitedGuest,
];

fn role_label(r: Role) -> &'static str {
    match r {
        Role::ProjectAdmin => "Project admin",
        Role::Maintainer => "Maintainer",
        Role::Developer => "Developer",
        Role::Guest => "Guest",
        Role::LimitedGuest => "Limited guest",
    }
}

fn role_select(id: &str, selected: Option<Role>) -> Markup {
    html! {
        select id=(id) name="role" {
            @for r in ROLES {
                option value=(r.as_str()) selected[selected == Some(r)] { (role_label(r)) }
            }
        }
    }
}

pub async fn list(
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let access = require(&viewer.ctx(), &project, ProjectPerm::ListMembers).await?;
    let manage = access.allows(ProjectPerm::Manage);
    let members = viewer.state.auth.directory.members(&project).await?;
    let body = html! {
        (project_header(&access, Tab::Members, &project))
        (Notice::shown(&query))
        @if members.is_empty() {
            p { "This project has no members; system administrators manage it." }
        } @else {
            (page::table("Members and their roles", &["Member", "Kind", "Role", "Actions"], html! {
                @for (i, m) in members.iter().enumerate() {
                    tr data-member=(m.name) {
                        th scope="row" { (m.name) }
                        td { (m.kind) }
                        td { (role_label(m.role)) }
                        td {
                            @if manage {
                                @let action = format!("{}/{}/{}", project_path(&project, "members"), encode(&m.kind), encode(&m.name));
                                form.inline method="post" action=(action) {
                                    (page::csrf(&viewer))
                                    input type="hidden" name="action" value="role";
                                    label.visually-hidden for={ "role-" (i) } { "New role of " (m.name) }
                                    (role_select(&format!("role-{i}"), Some(m.role)))
                                    " "
                                    button type="submit" { "Change role" }
                                }
                                " "
                                form.inline method="post" action=(action)
                                    data-confirm={ "Remove " (m.name) " from " (project) "?" } {
                                    (page::csrf(&viewer))
                                    input type="hidden" name="action" value="remove";
                                    button.danger type="submit" aria-label={ "Remove " (m.name) } { "Remove" }
                                }
                            } @else {
                                span.muted { "none" }
                            }
                        }
                    }
                }
            }))
        }
        @if manage {
            section aria-labelledby="add-member" {
                h2 #add-member { "Add a member" }
                form.row method="post" action=(project_path(&project, "members")) {
                    (page::csrf(&viewer))
                    label for="member-kind" { "Kind" }
                    select #member-kind name="kind" {
                        option value="user" { "User" }
                        option value="group" { "Directory group" }
                    }
                    label for="member-name" { "Name" }
                    input #member-name type="text" name="name" required autocapitalize="none" spellcheck="false";
                    label for="member-role" { "Role" }
                    (role_select("member-role", Some(Role::Developer)))
                    button type="submit" { "Add member" }
                }
            }
        }
    };
    Ok(page::render(
        &viewer,
        &format!("Members of {project}"),
        Section::Projects,
        body,
    ))
}

pub async fn add(Path(project): Path<String>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let new = MemberCreate {
        kind: fields.get("kind").unwrap_or("user").to_owned(),
        name: fields.required("name", "the member's name")?.to_owned(),
        role: fields.required("role", "the role")?.to_owned(),
    };
    berth_mgmt::add_member(&viewer.ctx(), &project, new).await?;
    Ok(done(
        &project_path(&project, "members"),
        Notice::MemberAdded,
    ))
}

pub async fn change(
    Path((project, kind, name)): Path<(String, String, String)>,
    submitted: Submitted,
) -> Result {
    let Submitted { viewer, fields } = submitted;
    let ctx = viewer.ctx();
    let notice = match fields.get("action") {
        Some("role") => {
            let change = MemberChange {
                role: fields.required("role", "the role")?.to_owned(),
            };
            berth_mgmt::update_member(&ctx, &project, &kind, &name, change).await?;
            Notice::MemberChanged
        }
        Some("remove") => {
            berth_mgmt::remove_member(&ctx, &project, &kind, &name).await?;
            Notice::MemberRemoved
        }
        _ => return Err(UiError::bad_request("unknown action")),
    };
    Ok(done(&project_path(&project, "members"), notice))
}
