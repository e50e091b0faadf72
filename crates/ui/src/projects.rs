//! The projects list (the home page) and a project's repositories, with the
//! project's tabs and settings (public or private, delete).

use super::page::{self, Notice, Section};
use super::{done, encode, project_path, repo_path, Result, Submitted, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::model::Action;
use berth_mgmt::access::{access_to, require, ProjectAccess, ProjectPerm};
use berth_mgmt::{ProjectChange, ProjectCreate};
use maud::{html, Markup};

type Pairs = Vec<(String, String)>;

/// Repositories per page.
const PAGE_SIZE: usize = 25;

/// The tabs of a project's pages, those the viewer may open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Repositories,
    Members,
    Robots,
    Policy,
    Audit,
}

pub fn tabs(access: &ProjectAccess, current: Tab) -> Markup {
    let name = &access.project.name;
    let all = [
        (Tab::Repositories, "", "Repositories", true),
        (
            Tab::Members,
            "members",
            "Members",
            access.allows(ProjectPerm::ListMembers),
        ),
        (
            Tab::Robots,
            "robots",
            "Robot accounts",
            access.allows(ProjectPerm::Manage),
        ),
        (
            Tab::Policy,
            "policy",
            "Quota and rules",
            access.allows(ProjectPerm::Registry(Action::Pull)),
        ),
        (
            Tab::Audit,
            "audit",
            "Audit log",
            access.allows(ProjectPerm::ReadAudit),
        ),
    ];
    html! {
        nav.tabs aria-label={ "Project " (name) } {
            ul {
                @for (tab, path, label, shown) in all {
                    @if shown {
                        li {
                            @if tab == current {
                                a href=(project_path(name, path)) aria-current="page" { (label) }
                            } @else {
                                a href=(project_path(name, path)) { (label) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A project page's heading and tabs.
pub fn project_header(access: &ProjectAccess, current: Tab, title: &str) -> Markup {
    html! {
        (page::heading(title, &[("Projects", "/".to_owned())]))
        p.meta {
            (if access.project.public { "Public project" } else { "Private project" })
            " · your role: "
            strong { (role_text(access)) }
        }
        (tabs(access, current))
    }
}

pub fn role_text(access: &ProjectAccess) -> &'static str {
    match (access.role, access.sysadmin) {
        (Some(r), _) => r.as_str(),
        (None, true) => "administrator",
        (None, false) => "none (public read)",
    }
}

pub async fn list(viewer: Viewer, Query(query): Query<Pairs>) -> Result {
    let ctx = viewer.ctx();
    let registry = &viewer.state.registry;
    let q = page::param(&query, "q");
    let mut rows = Vec::new();
    for project in viewer.state.auth.directory.projects().await? {
        if q.is_some_and(|q| !project.name.contains(q)) {
            continue;
        }
        let access = access_to(&ctx, project).await?;
        if !access.allows(ProjectPerm::Read) {
            continue;
        }
        let name = access.project.name.clone();
        let used = registry.project_usage(&name).await?;
        let quota = registry.project_policy(&name).await?.quota_bytes;
        let repos = registry.project_repository_count(&name).await?;
        rows.push((access, used, quota, repos));
    }
    let body = html! {
        (page::heading("Projects", &[]))
        (Notice::shown(&query))
        form.search role="search" method="get" action="/" {
            label for="q" { "Find a project" }
            input #q type="search" name="q" value=[q];
            button type="submit" { "Search" }
        }
        @if rows.is_empty() {
            p { "No projects to show." }
        } @else {
            (page::table("Projects you can see", &["Project", "Access", "Your role", "Repositories", "Storage used", "Quota"], html! {
                @for (access, used, quota, repos) in &rows {
                    tr {
                        th scope="row" { a href=(project_path(&access.project.name, "")) { (access.project.name) } }
                        td { (if access.project.public { "public" } else { "private" }) }
                        td { (role_text(access)) }
                        td.num { (repos) }
                        td.num { (page::bytes(*used)) }
                        td { (quota_text(*used, *quota)) }
                    }
                }
            }))
        }
        @if viewer.is_admin() {
            section aria-labelledby="new-project" {
                h2 #new-project { "New project" }
                form.row method="post" action="/ui/projects" {
                    (page::csrf(&viewer))
                    label for="project-name" { "Name" }
                    input #project-name type="text" name="name" required pattern="[a-z0-9][a-z0-9._-]*"
                        autocapitalize="none" spellcheck="false";
                    label.check {
                        input type="checkbox" name="public" value="true";
                        " Public (anyone may pull)"
                    }
                    button type="submit" { "Create project" }
                }
            }
        }
    };
    Ok(page::render(&viewer, "Projects", Section::Projects, body))
}

/// "12 MiB of 1 GiB (1%)", with a meter; "no limit" without a quota.
pub fn quota_text(used: u64, quota: Option<u64>) -> Markup {
    match quota {
        None => html! { "no limit" },
        Some(limit) => {
            let percent = used
                .saturating_mul(100)
                .checked_div(limit)
                .map_or(100, |p| p.min(999));
            html! {
                meter min="0" max=(limit) value=(used.min(limit)) high=(limit / 10 * 9) {
                    (percent) "%"
                }
                " " (page::bytes(limit)) " (" (percent) "% used)"
            }
        }
    }
}

pub async fn create(submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let name = fields.required("name", "the project name")?;
    let public = fields.get("public") == Some("true");
    let new = ProjectCreate {
        name: name.to_owned(),
        public,
    };
    berth_mgmt::create_project(&viewer.ctx(), new).await?;
    Ok(done(&project_path(name, ""), Notice::ProjectCreated))
}

pub async fn repositories(
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let ctx = viewer.ctx();
    let access = require(&ctx, &project, ProjectPerm::Read).await?;
    let can_pull = access.allows(ProjectPerm::Registry(Action::Pull));
    let q = page::param(&query, "q");
    let number = page::page_number(&query);
    let listing = if can_pull {
        Some(
            viewer
                .state
                .registry
                .project_repositories(
                    &project,
                    q,
                    (number - 1).saturating_mul(PAGE_SIZE),
                    PAGE_SIZE,
                )
                .await?,
        )
    } else {
        None
    };
    let upstream = if can_pull {
        berth_mgmt::project_proxy(&ctx, &project).await?
    } else {
        None
    };
    let endpoints = if viewer.is_admin() {
        berth_mgmt::replication_overview(&ctx, 0).await?.endpoints
    } else {
        Vec::new()
    };
    let base = match q {
        Some(q) => format!("{}?q={}", project_path(&project, ""), encode(q)),
        None => project_path(&project, ""),
    };
    let body = html! {
        (project_header(&access, Tab::Repositories, &project))
        (Notice::shown(&query))
        @if let Some(b) = &upstream {
            p.hint #proxy-upstream {
                "A proxy cache of endpoint " strong { (b.endpoint) } ": pulls go through to it and are kept; pushes are refused."
            }
        }
        form.search role="search" method="get" action=(project_path(&project, "")) {
            label for="q" { "Find a repository" }
            input #q type="search" name="q" value=[q];
            button type="submit" { "Search" }
        }
        @match &listing {
            None => p { "You may not list the repositories of this project." },
            Some(l) if l.items.is_empty() => p {
                @if q.is_some() { "No repository matches." } @else { "No repositories yet." }
            },
            Some(l) => {
                (page::table("Repositories", &["Repository", "Created"], html! {
                    @for r in &l.items {
                        tr {
                            th scope="row" { a href=(repo_path(r.name.as_str())) { (r.name.as_str()) } }
                            td { (page::time(r.created)) }
                        }
                    }
                }))
                (page::pager(&base, number, PAGE_SIZE, l.total))
            }
        }
        @if access.allows(ProjectPerm::Manage) {
            section aria-labelledby="settings" {
                h2 #settings { "Settings" }
                form.row method="post" action=(project_path(&project, "settings")) {
                    (page::csrf(&viewer))
                    input type="hidden" name="action" value="visibility";
                    @if access.project.public {
                        input type="hidden" name="public" value="false";
                        button type="submit" { "Make private" }
                    } @else {
                        input type="hidden" name="public" value="true";
                        button type="submit" { "Make public" }
                    }
                }
                @if viewer.is_admin() && !endpoints.is_empty() {
                    form.row #proxy-form method="post" action=(project_path(&project, "settings")) {
                        (page::csrf(&viewer))
                        input type="hidden" name="action" value="proxy";
                        label for="proxy-endpoint" { "Proxy cache of" }
                        select #proxy-endpoint name="endpoint" {
                            @for e in &endpoints {
                                option value=(e.name) selected[upstream.as_ref().is_some_and(|b| b.endpoint == e.name)] {
                                    (e.name) " (" (e.url) ")"
                                }
                            }
                        }
                        button type="submit" { (if upstream.is_some() { "Change upstream" } else { "Make a proxy cache" }) }
                    }
                }
                @if viewer.is_admin() && upstream.is_some() {
                    form.row method="post" action=(project_path(&project, "settings")) {
                        (page::csrf(&viewer))
                        input type="hidden" name="action" value="unproxy";
                        button type="submit" { "Stop being a proxy cache (keeps what is cached)" }
                    }
                }
                @if viewer.is_admin() {
                    form.row method="post" action=(project_path(&project, "settings"))
                        data-confirm={ "Delete project " (project) "?" } {
                        (page::csrf(&viewer))
                        input type="hidden" name="action" value="delete";
                        button.danger type="submit" { "Delete project (only when empty)" }
                    }
                }
            }
        }
    };
    Ok(page::render(&viewer, &project, Section::Projects, body))
}

pub async fn settings(Path(project): Path<String>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let ctx = viewer.ctx();
    match fields.get("action") {
        Some("visibility") => {
            let public = fields.get("public") == Some("true");
            berth_mgmt::update_project(&ctx, &project, ProjectChange { public }).await?;
            Ok(done(&project_path(&project, ""), Notice::ProjectChanged))
        }
        Some("proxy") => {
            let endpoint = fields.required("endpoint", "the endpoint")?.to_owned();
            let change = berth_mgmt::ProxyChange { endpoint };
            berth_mgmt::set_project_proxy(&ctx, &project, change).await?;
            Ok(done(&project_path(&project, ""), Notice::ProjectChanged))
        }
        Some("unproxy") => {
            berth_mgmt::remove_project_proxy(&ctx, &project).await?;
            Ok(done(&project_path(&project, ""), Notice::ProjectChanged))
        }
        Some("delete") => {
            berth_mgmt::delete_project(&ctx, &project).await?;
            Ok(done("/", Notice::ProjectDeleted))
        }
        _ => Err(UiError::bad_request("unknown action")),
    }
}
