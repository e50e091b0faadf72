//! A project's storage quota, tag immutability rules and tag retention
//! rules. Members with pull access read them; project admins change the
//! rules and run retention; only system administrators set the quota.
//! Rules are edited one at a time here and saved as the whole list, as the
//! API takes them.

use super::page::{self, Notice, Section};
use super::projects::{project_header, quota_text, Tab};
use super::{done, project_path, Result, Submitted, UiError, Viewer};
use axum::extract::{Path, Query};
use berth_auth::model::Action;
use berth_core::registry::policy::{RetentionReport, RetentionRule, TagSelector};
use berth_mgmt::access::{require, ProjectAccess, ProjectPerm};
use berth_mgmt::{QuotaChange, RetentionChange};
use maud::{html, Markup};

type Pairs = Vec<(String, String)>;

const MIB: u64 = 1024 * 1024;

fn remove_button(viewer: &Viewer, project: &str, what: &str, index: usize) -> Markup {
    html! {
        form.inline method="post" action=(project_path(project, &format!("policy/{what}")))
            data-confirm="Remove this rule?" {
            (page::csrf(viewer))
            input type="hidden" name="action" value="remove";
            input type="hidden" name="index" value=(index);
            button.danger type="submit" aria-label={ "Remove rule " (index + 1) } { "Remove" }
        }
    }
}

async fn render(
    viewer: &Viewer,
    access: &ProjectAccess,
    project: &str,
    notice: Markup,
    report: Option<RetentionReport>,
) -> Result {
    let registry = &viewer.state.registry;
    let policy = registry.project_policy(project).await?;
    let used = registry.project_usage(project).await?;
    let manage = access.allows(ProjectPerm::Manage);
    let base = project_path(project, "policy");
    let body = html! {
        (project_header(access, Tab::Policy, project))
        (notice)
        section aria-labelledby="quota" {
            h2 #quota { "Storage quota" }
            p { "Used: " strong { (page::bytes(used)) } ". Limit: " (quota_text(used, policy.quota_bytes)) "." }
            @if viewer.is_admin() {
                form.row method="post" action={ (base) "/quota" } {
                    (page::csrf(viewer))
                    label for="quota-mib" { "Limit in MiB (empty for no limit)" }
                    input #quota-mib type="number" name="limit_mib" min="0"
                        value=[policy.quota_bytes.map(|b| b / MIB)];
                    button type="submit" { "Set quota" }
                }
            }
        }
        section aria-labelledby="immutable" {
            h2 #immutable { "Immutable tags" }
            p.hint { "A tag matching a rule, once pushed, can be neither moved nor deleted. "
                     "Patterns: " code { "*" } " within a path segment, " code { "**" } " across, " code { "?" } " one character." }
            @if policy.immutable.is_empty() {
                p { "No immutability rules." }
            } @else {
                (page::table("Immutability rules", &["#", "Repositories", "Tags", "Actions"], html! {
                    @for (i, r) in policy.immutable.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td { code { (r.repositories) } }
                            td { code { (r.tags) } }
                            td { @if manage { (remove_button(viewer, project, "immutable", i)) } @else { span.muted { "none" } } }
                        }
                    }
                }))
            }
            @if manage {
                h3 { "Add an immutability rule" }
                form.row method="post" action={ (base) "/immutable" } {
                    (page::csrf(viewer))
                    input type="hidden" name="action" value="add";
                    label for="imm-repos" { "Repositories" }
                    input #imm-repos type="text" name="repositories" value="**";
                    label for="imm-tags" { "Tags" }
                    input #imm-tags type="text" name="tags" required placeholder="v*";
                    button type="submit" { "Add rule" }
                }
            }
        }
        section aria-labelledby="retention" {
            h2 #retention { "Tag retention" }
            p.hint { "A retention run keeps every tag that some rule keeps and deletes the others; immutable tags are always kept. No rules, no deletions." }
            @if policy.retention.is_empty() {
                p { "No retention rules." }
            } @else {
                (page::table("Retention rules", &["#", "Repositories", "Tags", "Keep the latest", "Keep pushed within", "Actions"], html! {
                    @for (i, r) in policy.retention.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td { code { (r.repositories) } }
                            td { code { (r.tags) } }
                            td { @match r.latest_pushed { Some(n) => { (n) " tags" }, None => "-" } }
                            td { @match r.pushed_within_days { Some(d) => { (d) " days" }, None => "-" } }
                            td { @if manage { (remove_button(viewer, project, "retention", i)) } @else { span.muted { "none" } } }
                        }
                    }
                }))
            }
            @if manage {
                h3 { "Add a retention rule" }
                form.row method="post" action={ (base) "/retention" } {
                    (page::csrf(viewer))
                    input type="hidden" name="action" value="add";
                    label for="ret-repos" { "Repositories" }
                    input #ret-repos type="text" name="repositories" value="**";
                    label for="ret-tags" { "Tags" }
                    input #ret-tags type="text" name="tags" value="**";
                    label for="ret-latest" { "Keep the latest N" }
                    input #ret-latest type="number" name="latest_pushed" min="0";
                    label for="ret-days" { "Keep pushed within (days)" }
                    input #ret-days type="number" name="pushed_within_days" min="0";
                    button type="submit" { "Add rule" }
                }
                div.row {
                    form.inline method="post" action={ (base) "/run" } {
                        (page::csrf(viewer))
                        button type="submit" name="dry_run" value="true" { "Dry run (delete nothing)" }
                    }
                    form.inline method="post" action={ (base) "/run" }
                        data-confirm="Run retention now? The tags no rule keeps are deleted." {
                        (page::csrf(viewer))
                        button.danger type="submit" name="dry_run" value="false" { "Run retention now" }
                    }
                }
            }
            @if let Some(r) = &report {
                section.report aria-labelledby="report" {
                    h3 #report {
                        @if r.dry_run { "Dry run: tags that would be deleted" } @else { "Tags deleted" }
                    }
                    p { (r.tags_examined) " tags examined." }
                    @if r.deleted.is_empty() { p { "None." } } @else { ul { @for d in &r.deleted { li { code { (d) } } } } }
                }
            }
        }
    };
    Ok(page::render(
        viewer,
        &format!("Quota and rules of {project}"),
        Section::Projects,
        body,
    ))
}

pub async fn show(
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let access = require(&viewer.ctx(), &project, ProjectPerm::Registry(Action::Pull)).await?;
    render(&viewer, &access, &project, Notice::shown(&query), None).await
}

fn number<T: std::str::FromStr>(fields: &super::session::Fields, name: &str) -> Result<Option<T>> {
    fields
        .get(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| UiError::bad_request(format!("{name} must be a whole number")))
        })
        .transpose()
}

fn index(fields: &super::session::Fields, len: usize) -> Result<usize> {
    number::<usize>(fields, "index")?
        .filter(|i| *i < len)
        .ok_or_else(|| UiError::bad_request("no such rule"))
}

pub async fn change(Path((project, what)): Path<(String, String)>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    let ctx = viewer.ctx();
    // The rules are read (and a rule index checked against them) before
    // the management layer checks the change: only for a viewer who may read them,
    // so that nobody else learns whether the project exists or what rules
    // it has.
    require(&viewer.ctx(), &project, ProjectPerm::Registry(Action::Pull)).await?;
    let policy = viewer.state.registry.project_policy(&project).await?;
    match (what.as_str(), fields.get("action")) {
        ("quota", _) => {
            let limit = number::<u64>(&fields, "limit_mib")?.map(|m| m.saturating_mul(MIB));
            let change = QuotaChange { limit_bytes: limit };
            berth_mgmt::set_project_quota(&ctx, &project, change).await?;
        }
        ("immutable", action) => {
            let mut rules = policy.immutable;
            match action {
                Some("add") => rules.push(TagSelector {
                    repositories: fields.get("repositories").unwrap_or("**").to_owned(),
                    tags: fields.required("tags", "a tags pattern")?.to_owned(),
                }),
                Some("remove") => {
                    let i = index(&fields, rules.len())?;
                    rules.remove(i);
                }
                _ => return Err(UiError::bad_request("unknown action")),
            }
            berth_mgmt::set_immutable_rules(&ctx, &project, rules).await?;
        }
        ("retention", action) => {
            let mut rules = policy.retention;
            match action {
                Some("add") => rules.push(RetentionRule {
                    repositories: fields.get("repositories").unwrap_or("**").to_owned(),
                    tags: fields.get("tags").unwrap_or("**").to_owned(),
                    latest_pushed: number(&fields, "latest_pushed")?,
                    pushed_within_days: number(&fields, "pushed_within_days")?,
                }),
                Some("remove") => {
                    let i = index(&fields, rules.len())?;
                    rules.remove(i);
                }
                _ => return Err(UiError::bad_request("unknown action")),
            }
            berth_mgmt::set_retention_rules(&ctx, &project, RetentionChange { rules }).await?;
        }
        ("run", _) => {
            let dry_run = fields.get("dry_run") != Some("false");
            let report = berth_mgmt::apply_retention(&ctx, &project, dry_run).await?;
            let access = require(&ctx, &project, ProjectPerm::Registry(Action::Pull)).await?;
            return render(&viewer, &access, &project, maud::html! {}, Some(report)).await;
        }
        _ => return Err(UiError::not_found("no such setting")),
    }
    Ok(done(
        &project_path(&project, "policy"),
        Notice::PolicyChanged,
    ))
}
