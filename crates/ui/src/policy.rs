//! A project's storage quota, tag immutability rules and tag retention
//! rules. Members with pull access read them; project admins change the
//! rules and run retention; only system administrators set the quota.
//! Rules are edited one at a time here and saved as the whole list, as the
//! API takes them.

use super::page::{self, Notice, Section};
use super::projects::{project_header, quota_text, Tab};
use super::session::Fields;
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

/// One rule as a row of its table: its repositories and tags patterns, and
/// the cells only rules of its kind have.
type RuleRow<'a> = (&'a str, &'a str, Markup);

/// The rules of one kind (`what`, as in the form's URL), numbered from 1,
/// each with a button to remove it for a viewer who may (`manage`).
fn rules_table(
    viewer: &Viewer,
    project: &str,
    what: &str,
    caption: &str,
    more_columns: &[&str],
    rows: Vec<RuleRow>,
    manage: bool,
) -> Markup {
    let mut head = vec!["#", "Repositories", "Tags"];
    head.extend_from_slice(more_columns);
    head.push("Actions");
    html! {
        @if rows.is_empty() {
            p { "No " (caption.to_lowercase()) "." }
        } @else {
            (page::table(caption, &head, html! {
                @for (i, (repositories, tags, more)) in rows.iter().enumerate() {
                    tr {
                        td.num { (i + 1) }
                        td { code { (repositories) } }
                        td { code { (tags) } }
                        (more)
                        td { @if manage { (remove_button(viewer, project, what, i)) } @else { span.muted { "none" } } }
                    }
                }
            }))
        }
    }
}

/// The form that adds a rule of kind `what`: its repositories pattern,
/// then the tags field and the fields only rules of its kind have
/// (`fields`), their ids starting with `id`.
fn add_rule_form(viewer: &Viewer, base: &str, what: &str, id: &str, fields: Markup) -> Markup {
    html! {
        form.row method="post" action={ (base) "/" (what) } {
            (page::csrf(viewer))
            input type="hidden" name="action" value="add";
            label for={ (id) "-repos" } { "Repositories" }
            input id={ (id) "-repos" } type="text" name="repositories" value="**";
            label for={ (id) "-tags" } { "Tags" }
            (fields)
            button type="submit" { "Add rule" }
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
    let immutable_rows: Vec<RuleRow> = policy
        .immutable
        .iter()
        .map(|r| (r.repositories.as_str(), r.tags.as_str(), html! {}))
        .collect();
    let retention_rows = policy.retention.iter().map(|r| {
        let more = html! {
            td { @match r.latest_pushed { Some(n) => { (n) " tags" }, None => "-" } }
            td { @match r.pushed_within_days { Some(d) => { (d) " days" }, None => "-" } }
            td { @match r.pulled_within_days { Some(d) => { (d) " days" }, None => "-" } }
        };
        (r.repositories.as_str(), r.tags.as_str(), more)
    });
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
            (rules_table(viewer, project, "immutable", "Immutability rules", &[], immutable_rows, manage))
            @if manage {
                h3 { "Add an immutability rule" }
                (add_rule_form(viewer, &base, "immutable", "imm", html! {
                    input #imm-tags type="text" name="tags" required placeholder="v*";
                }))
            }
        }
        section aria-labelledby="retention" {
            h2 #retention { "Tag retention" }
            p.hint { "A retention run keeps every tag that some rule keeps and deletes the others; immutable tags are always kept. No rules, no deletions." }
            (rules_table(viewer, project, "retention", "Retention rules", &["Keep the latest", "Keep pushed within", "Keep pulled within"], retention_rows.collect(), manage))
            @if manage {
                h3 { "Add a retention rule" }
                (add_rule_form(viewer, &base, "retention", "ret", html! {
                    input #ret-tags type="text" name="tags" value="**";
                    label for="ret-latest" { "Keep the latest N" }
                    input #ret-latest type="number" name="latest_pushed" min="0";
                    label for="ret-days" { "Keep pushed within (days)" }
                    input #ret-days type="number" name="pushed_within_days" min="0";
                    label for="ret-pulled" { "Keep pulled within (days)" }
                    input #ret-pulled type="number" name="pulled_within_days" min="0";
                }))
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

fn number<T: std::str::FromStr>(fields: &Fields, name: &str) -> Result<Option<T>> {
    fields
        .get(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| UiError::bad_request(format!("{name} must be a whole number")))
        })
        .transpose()
}

fn index(fields: &Fields, len: usize) -> Result<usize> {
    number::<usize>(fields, "index")?
        .filter(|i| *i < len)
        .ok_or_else(|| UiError::bad_request("no such rule"))
}

/// `rules` as the form changes them: with a rule added (`new` reads it from
/// the form) or one removed (by its index).
fn edited<R>(
    mut rules: Vec<R>,
    fields: &Fields,
    new: impl FnOnce() -> Result<R>,
) -> Result<Vec<R>> {
    match fields.get("action") {
        Some("add") => rules.push(new()?),
        Some("remove") => {
            let i = index(fields, rules.len())?;
            rules.remove(i);
        }
        _ => return Err(UiError::bad_request("unknown action")),
    }
    Ok(rules)
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
    match what.as_str() {
        "quota" => {
            let limit = number::<u64>(&fields, "limit_mib")?.map(|m| m.saturating_mul(MIB));
            let change = QuotaChange { limit_bytes: limit };
            berth_mgmt::set_project_quota(&ctx, &project, change).await?;
        }
        "immutable" => {
            let rules = edited(policy.immutable, &fields, || {
                Ok(TagSelector {
                    repositories: fields.get("repositories").unwrap_or("**").to_owned(),
                    tags: fields.required("tags", "a tags pattern")?.to_owned(),
                })
            })?;
            berth_mgmt::set_immutable_rules(&ctx, &project, rules).await?;
        }
        "retention" => {
            let rules = edited(policy.retention, &fields, || {
                Ok(RetentionRule {
                    repositories: fields.get("repositories").unwrap_or("**").to_owned(),
                    tags: fields.get("tags").unwrap_or("**").to_owned(),
                    latest_pushed: number(&fields, "latest_pushed")?,
                    pushed_within_days: number(&fields, "pushed_within_days")?,
                    pulled_within_days: number(&fields, "pulled_within_days")?,
                })
            })?;
            berth_mgmt::set_retention_rules(&ctx, &project, RetentionChange { rules }).await?;
        }
        "run" => {
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
