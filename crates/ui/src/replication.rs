//! Replication (system administrators): endpoints with forms to add,
//! change, test and delete them; policies with forms to add, change and
//! delete them and a "Run now" button; the newest executions with a
//! "Stop" button, and one execution's tasks. Every change goes through the
//! management layer's typed function, as the API's does.

use super::page::{self, Notice, Section};
use super::{done, encode, Result, Submitted, UiError, Viewer};
use crate::session::Fields;
use axum::extract::{Path, Query};
use axum::response::Redirect;
use axum::response::{IntoResponse, Response};
use berth_replication::{
    ArtifactKind, Direction, EndpointInput, EndpointKind, EndpointView, Filters, Namespace, Policy,
    Tls, Triggers,
};
use maud::{html, Markup};

/// Executions listed on the page.
const SHOWN: usize = 30;

const HOME: &str = "/ui/replication";

type Pairs = Vec<(String, String)>;

/// A value's serde name (`docker-hub`, `push`, `succeeded`).
fn status_text<T: serde::Serialize>(s: &T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The value a form sent for an enum, read by its serde name.
fn parse_named<T: serde::de::DeserializeOwned>(value: &str, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| UiError::bad_request(format!("unknown {what} {value:?}")))
}

fn number<T: std::str::FromStr>(fields: &Fields, name: &str, label: &str, absent: T) -> Result<T> {
    match fields.get(name) {
        None => Ok(absent),
        Some(v) => v
            .parse()
            .map_err(|_| UiError::bad_request(format!("{label} must be a whole number"))),
    }
}

fn endpoint_path(name: &str) -> String {
    format!("{HOME}/endpoints/{}", encode(name))
}

fn policy_path(name: &str) -> String {
    format!("{HOME}/policies/{}", encode(name))
}

pub async fn overview(viewer: Viewer, Query(query): Query<Pairs>) -> Result {
    viewer.require_admin()?;
    let o = berth_mgmt::replication_overview(&viewer.ctx(), SHOWN).await?;
    let body = html! {
        (page::heading("Replication", &[]))
        (Notice::shown(&query))
        h2 { "Endpoints" }
        p { a.button href=(format!("{HOME}/new/endpoint")) { "New endpoint" } }
        (page::table("Endpoints", &["Name", "URL", "Kind", "User", "Secret", "Actions"], html! {
            @for e in &o.endpoints {
                tr data-endpoint=(e.name) {
                    th scope="row" { a href=(endpoint_path(&e.name)) { (e.name) } }
                    td { code { (e.url) } }
                    td { (status_text(&e.kind)) }
                    td { (e.username.as_deref().unwrap_or("-")) }
                    td { (if e.has_secret { "set" } else { "none" }) }
                    td.actions {
                        (page::button(&viewer, &format!("{}/test", endpoint_path(&e.name)), "Test",
                            &format!("Test the connection to {}", e.name), false, None))
                        " "
                        (page::button(&viewer, &format!("{}/delete", endpoint_path(&e.name)), "Delete",
                            &format!("Delete endpoint {}", e.name), true,
                            Some(&format!("Delete endpoint {}?", e.name))))
                    }
                }
            }
        }))
        h2 { "Policies" }
        p { a.button href=(format!("{HOME}/new/policy")) { "New policy" } }
        (page::table("Policies", &["Name", "Direction", "Endpoint", "Repositories", "Tags", "Triggers", "Enabled", "Actions"], html! {
            @for p in &o.policies {
                tr data-policy=(p.name) {
                    th scope="row" { a href=(policy_path(&p.name)) { (p.name) } }
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
                        (page::button(&viewer, &format!("{}/run", policy_path(&p.name)), "Run now",
                            &format!("Run {} now", p.name), false, None))
                        " "
                        (page::button(&viewer, &format!("{}/delete", policy_path(&p.name)), "Delete",
                            &format!("Delete policy {}", p.name), true,
                            Some(&format!("Delete policy {}? Its executions stay in the history.", p.name))))
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
                        a href=(format!("{HOME}/executions/{}", encode(&e.id))) { "Tasks" }
                        @if !e.status.is_final() && !e.stop_requested {
                            " "
                            (page::button(&viewer, &format!("{HOME}/executions/{}/stop", encode(&e.id)), "Stop",
                                &format!("Stop execution {}", e.id), true, None))
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

// Endpoints.

const KINDS: &[(EndpointKind, &str)] = &[
    (EndpointKind::Distribution, "CNCF Distribution (registry:2)"),
    (EndpointKind::Harbor, "Harbor"),
    (EndpointKind::Berth, "berth"),
    (EndpointKind::DockerHub, "Docker Hub"),
];

/// The endpoint form: empty to add one, filled (name fixed, secret never
/// shown) to change one.
fn endpoint_form(viewer: &Viewer, current: Option<&EndpointView>) -> Markup {
    let action = current.map_or_else(|| format!("{HOME}/endpoints"), |e| endpoint_path(&e.name));
    let kind = current.map_or(EndpointKind::default(), |e| e.kind);
    html! {
        form.stack #endpoint-form method="post" action=(action) {
            (page::csrf(viewer))
            label for="endpoint-name" { "Name" }
            @if let Some(e) = current {
                input #endpoint-name type="text" value=(e.name) disabled;
            } @else {
                input #endpoint-name type="text" name="name" required autocapitalize="none" spellcheck="false";
            }
            label for="endpoint-url" { "URL" }
            input #endpoint-url type="url" name="url" required placeholder="https://registry.example"
                value=[current.map(|e| e.url.as_str())];
            label for="endpoint-kind" { "Kind" }
            select #endpoint-kind name="kind" {
                @for (k, label) in KINDS {
                    option value=(status_text(k)) selected[*k == kind] { (label) }
                }
            }
            label for="endpoint-username" { "User (empty for anonymous)" }
            input #endpoint-username type="text" name="username" autocomplete="off" autocapitalize="none"
                value=[current.and_then(|e| e.username.as_deref())];
            label for="endpoint-secret" { "Password or token" }
            input #endpoint-secret type="password" name="secret" autocomplete="new-password"
                aria-describedby="endpoint-secret-hint";
            span.hint #endpoint-secret-hint {
                @if current.is_some_and(|e| e.has_secret) {
                    "A secret is stored; it is never shown. Leave this empty to keep it."
                } @else {
                    "Stored encrypted; never shown again."
                }
            }
            @if current.is_some_and(|e| e.has_secret) {
                label.check { input type="checkbox" name="remove_secret" value="true"; " Remove the stored secret" }
            }
            label.check {
                input type="checkbox" name="insecure" value="true" checked[current.is_some_and(|e| e.tls.insecure)];
                " Accept any TLS certificate (self-signed registries)"
            }
            label for="endpoint-ca" { "Trusted CA certificates (PEM; empty for the system's)" }
            textarea #endpoint-ca name="ca_pem" rows="4" spellcheck="false" {
                (current.and_then(|e| e.tls.ca_pem.as_deref()).unwrap_or(""))
            }
            label for="endpoint-description" { "Description" }
            input #endpoint-description type="text" name="description"
                value=[current.map(|e| e.description.as_str())];
            button type="submit" { (if current.is_some() { "Save endpoint" } else { "Add endpoint" }) }
        }
    }
}

/// What an endpoint form says. `name` is the path's on a change.
fn endpoint_input(fields: &Fields, name: Option<&str>) -> Result<EndpointInput> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => fields.required("name", "the endpoint's name")?.to_owned(),
    };
    let secret = if fields.get("remove_secret") == Some("true") {
        Some(String::new())
    } else {
        fields.secret("secret", "").ok().map(str::to_owned)
    };
    Ok(EndpointInput {
        name,
        url: fields.required("url", "the URL")?.to_owned(),
        kind: parse_named(fields.get("kind").unwrap_or("distribution"), "kind")?,
        username: fields.get("username").map(str::to_owned),
        secret,
        tls: Tls {
            insecure: fields.get("insecure") == Some("true"),
            ca_pem: fields.get("ca_pem").map(str::to_owned),
        },
        description: fields.get("description").unwrap_or("").to_owned(),
    })
}

pub async fn new_endpoint(viewer: Viewer) -> Result {
    viewer.require_admin()?;
    let body = html! {
        (page::heading("New endpoint", &[("Replication", HOME.to_owned())]))
        (endpoint_form(&viewer, None))
    };
    Ok(page::render(
        &viewer,
        "New endpoint",
        Section::Replication,
        body,
    ))
}

pub async fn show_endpoint(
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let e = berth_mgmt::endpoint_view(&viewer.ctx(), &name).await?;
    let body = html! {
        (page::heading(&format!("Endpoint {name}"), &[("Replication", HOME.to_owned())]))
        (Notice::shown(&query))
        (endpoint_form(&viewer, Some(&e)))
        h2 { "Connection" }
        (page::button(&viewer, &format!("{}/test", endpoint_path(&name)), "Test connection",
            &format!("Test the connection to {name}"), false, None))
    };
    Ok(page::render(
        &viewer,
        &format!("Endpoint {name}"),
        Section::Replication,
        body,
    ))
}

pub async fn create_endpoint(submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    viewer.require_admin()?;
    let input = endpoint_input(&fields, None)?;
    let e = berth_mgmt::create_endpoint(&viewer.ctx(), input).await?;
    Ok(done(&endpoint_path(&e.name), Notice::EndpointSaved))
}

pub async fn update_endpoint(Path(name): Path<String>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    viewer.require_admin()?;
    let input = endpoint_input(&fields, Some(&name))?;
    berth_mgmt::update_endpoint(&viewer.ctx(), &name, input).await?;
    Ok(done(&endpoint_path(&name), Notice::EndpointSaved))
}

pub async fn delete_endpoint(Path(name): Path<String>, submitted: Submitted) -> Result {
    berth_mgmt::delete_endpoint(&submitted.viewer.ctx(), &name).await?;
    Ok(done(HOME, Notice::EndpointDeleted))
}

/// Pings the endpoint with its credentials and shows what it answered.
pub async fn test_endpoint(Path(name): Path<String>, submitted: Submitted) -> Result {
    let viewer = submitted.viewer;
    let r = berth_mgmt::test_endpoint(&viewer.ctx(), &name).await?;
    let ok = r["ok"].as_bool().unwrap_or(false);
    let body = html! {
        (page::heading(&format!("Testing {name}"), &[("Replication", HOME.to_owned()), (&name, endpoint_path(&name))]))
        @if ok {
            p.notice #endpoint-test role="status" data-ok="true" {
                strong { "Connected. " }
                "The registry answered "
                @match r["auth"].as_str() {
                    Some("bearer") => { "with token authentication (realm " code { (r["realm"].as_str().unwrap_or("")) } ")" },
                    Some("basic") => "with Basic authentication",
                    _ => "without authentication",
                }
                " and accepted the credentials."
            }
        } @else {
            p.error #endpoint-test role="alert" data-ok="false" {
                strong { "Failed: " } (r["message"].as_str().unwrap_or("no answer"))
            }
        }
        p { a href=(endpoint_path(&name)) { "Back to " (name) } }
    };
    Ok(page::render(
        &viewer,
        &format!("Testing {name}"),
        Section::Replication,
        body,
    ))
}

// Policies.

const DIRECTIONS: &[(Direction, &str)] = &[
    (Direction::Push, "Push: berth to the endpoint"),
    (Direction::Pull, "Pull: the endpoint into berth"),
];

const ARTIFACT_KINDS: &[(ArtifactKind, &str)] = &[
    (ArtifactKind::Image, "Images"),
    (ArtifactKind::Index, "Indexes"),
    (ArtifactKind::Artifact, "Other artifacts"),
];

/// The policy form: empty to add one, filled (name fixed) to change one.
fn policy_form(viewer: &Viewer, endpoints: &[EndpointView], current: Option<&Policy>) -> Markup {
    let action = current.map_or_else(|| format!("{HOME}/policies"), |p| policy_path(&p.name));
    let default = Policy {
        name: String::new(),
        direction: Direction::Push,
        endpoint: String::new(),
        filters: Filters::default(),
        namespace: Namespace::default(),
        triggers: Triggers::default(),
        replicate_deletes: false,
        overwrite: true,
        bandwidth_kib: 0,
        concurrency: 1,
        enabled: true,
        description: String::new(),
    };
    let p = current.unwrap_or(&default);
    let (mode, with, levels, prefix) = match &p.namespace {
        Namespace::Keep => ("keep", "", 1, ""),
        Namespace::Replace { with } => ("replace", with.as_str(), 1, ""),
        Namespace::Flatten { levels, prefix } => ("flatten", "", *levels, prefix.as_str()),
    };
    html! {
        form.stack #policy-form method="post" action=(action) {
            (page::csrf(viewer))
            label for="policy-name" { "Name" }
            @if current.is_some() {
                input #policy-name type="text" value=(p.name) disabled;
            } @else {
                input #policy-name type="text" name="name" required autocapitalize="none" spellcheck="false";
            }
            label for="policy-direction" { "Direction" }
            select #policy-direction name="direction" {
                @for (d, label) in DIRECTIONS {
                    option value=(status_text(d)) selected[*d == p.direction] { (label) }
                }
            }
            label for="policy-endpoint" { "Endpoint" }
            select #policy-endpoint name="endpoint" required {
                @for e in endpoints {
                    option value=(e.name) selected[e.name == p.endpoint] { (e.name) " (" (e.url) ")" }
                }
            }
            label for="policy-repository" { "Repositories (glob: * within a path segment, ** across)" }
            input #policy-repository type="text" name="repository" value=(p.filters.repository) spellcheck="false";
            label for="policy-tag" { "Tags (glob)" }
            input #policy-tag type="text" name="tag" value=(p.filters.tag) spellcheck="false";
            fieldset {
                legend { "Artifact kinds (none checked: all)" }
                @for (k, label) in ARTIFACT_KINDS {
                    label.check {
                        input type="checkbox" name="kinds" value=(status_text(k)) checked[p.filters.kinds.contains(k)];
                        " " (label)
                    }
                }
            }
            label for="policy-namespace" { "Destination names" }
            select #policy-namespace name="namespace" {
                option value="keep" selected[mode == "keep"] { "Keep the same name" }
                option value="replace" selected[mode == "replace"] { "Replace the project" }
                option value="flatten" selected[mode == "flatten"] { "Flatten path levels" }
            }
            label for="policy-with" { "Replace the project with" }
            input #policy-with type="text" name="with" value=(with) spellcheck="false";
            label for="policy-levels" { "Flatten: path levels to drop" }
            input #policy-levels type="number" name="levels" min="0" max="16" value=(levels);
            label for="policy-prefix" { "Flatten: prefix to put in front (may be empty)" }
            input #policy-prefix type="text" name="prefix" value=(prefix) spellcheck="false";
            label for="policy-cron" { "Cron schedule (five fields, UTC; empty for none)" }
            input #policy-cron type="text" name="cron" value=[p.triggers.cron.as_deref()] placeholder="0 3 * * *" spellcheck="false";
            label.check { input type="checkbox" name="event" value="true" checked[p.triggers.event]; " On push (push policies)" }
            label.check { input type="checkbox" name="replicate_deletes" value="true" checked[p.replicate_deletes]; " Replicate deletes too" }
            label.check { input type="checkbox" name="overwrite" value="true" checked[p.overwrite]; " Overwrite a different manifest at an existing tag" }
            label for="policy-bandwidth" { "Bandwidth per blob stream (KiB/s; 0 for unlimited)" }
            input #policy-bandwidth type="number" name="bandwidth_kib" min="0" value=(p.bandwidth_kib);
            label for="policy-concurrency" { "Tasks at once (1 to 64)" }
            input #policy-concurrency type="number" name="concurrency" min="1" max="64" value=(p.concurrency);
            label.check { input type="checkbox" name="enabled" value="true" checked[p.enabled]; " Enabled" }
            label for="policy-description" { "Description" }
            input #policy-description type="text" name="description" value=(p.description);
            button type="submit" { (if current.is_some() { "Save policy" } else { "Add policy" }) }
        }
    }
}

/// What a policy form says. `name` is the path's on a change. The
/// management layer validates the whole (globs, cron, namespace).
fn policy_input(fields: &Fields, name: Option<&str>) -> Result<Policy> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => fields.required("name", "the policy's name")?.to_owned(),
    };
    let namespace = match fields.get("namespace").unwrap_or("keep") {
        "keep" => Namespace::Keep,
        "replace" => Namespace::Replace {
            with: fields
                .required("with", "the project to put in place")?
                .to_owned(),
        },
        "flatten" => Namespace::Flatten {
            levels: number(fields, "levels", "the levels to drop", 1)?,
            prefix: fields.get("prefix").unwrap_or("").to_owned(),
        },
        other => return Err(UiError::bad_request(format!("unknown namespace {other:?}"))),
    };
    let kinds = fields
        .all("kinds")
        .into_iter()
        .map(|k| parse_named(k, "artifact kind"))
        .collect::<Result<Vec<ArtifactKind>>>()?;
    let checked = |name: &str| fields.get(name) == Some("true");
    Ok(Policy {
        name,
        direction: parse_named(fields.required("direction", "the direction")?, "direction")?,
        endpoint: fields.required("endpoint", "the endpoint")?.to_owned(),
        filters: Filters {
            repository: fields.get("repository").unwrap_or("**").to_owned(),
            tag: fields.get("tag").unwrap_or("**").to_owned(),
            kinds,
        },
        namespace,
        triggers: Triggers {
            cron: fields.get("cron").map(str::to_owned),
            event: checked("event"),
        },
        replicate_deletes: checked("replicate_deletes"),
        overwrite: checked("overwrite"),
        bandwidth_kib: number(fields, "bandwidth_kib", "the bandwidth", 0)?,
        concurrency: number(fields, "concurrency", "the tasks at once", 1)?,
        enabled: checked("enabled"),
        description: fields.get("description").unwrap_or("").to_owned(),
    })
}

pub async fn new_policy(viewer: Viewer) -> Result {
    viewer.require_admin()?;
    let endpoints = berth_mgmt::replication_overview(&viewer.ctx(), 0)
        .await?
        .endpoints;
    let body = html! {
        (page::heading("New policy", &[("Replication", HOME.to_owned())]))
        @if endpoints.is_empty() {
            p { "A policy copies to or from an endpoint: " a href=(format!("{HOME}/new/endpoint")) { "add an endpoint" } " first." }
        } @else {
            (policy_form(&viewer, &endpoints, None))
        }
    };
    Ok(page::render(
        &viewer,
        "New policy",
        Section::Replication,
        body,
    ))
}

pub async fn show_policy(
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<Pairs>,
) -> Result {
    let p = berth_mgmt::policy_named(&viewer.ctx(), &name).await?;
    let endpoints = berth_mgmt::replication_overview(&viewer.ctx(), 0)
        .await?
        .endpoints;
    let body = html! {
        (page::heading(&format!("Policy {name}"), &[("Replication", HOME.to_owned())]))
        (Notice::shown(&query))
        (page::button(&viewer, &format!("{}/run", policy_path(&name)), "Run now",
            &format!("Run {name} now"), false, None))
        (policy_form(&viewer, &endpoints, Some(&p)))
    };
    Ok(page::render(
        &viewer,
        &format!("Policy {name}"),
        Section::Replication,
        body,
    ))
}

pub async fn create_policy(submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    viewer.require_admin()?;
    let p = berth_mgmt::create_policy(&viewer.ctx(), policy_input(&fields, None)?).await?;
    Ok(done(&policy_path(&p.name), Notice::PolicySaved))
}

pub async fn update_policy(Path(name): Path<String>, submitted: Submitted) -> Result {
    let Submitted { viewer, fields } = submitted;
    viewer.require_admin()?;
    let p = policy_input(&fields, Some(&name))?;
    berth_mgmt::update_policy(&viewer.ctx(), &name, p).await?;
    Ok(done(&policy_path(&name), Notice::PolicySaved))
}

pub async fn delete_policy(Path(name): Path<String>, submitted: Submitted) -> Result {
    berth_mgmt::delete_policy(&submitted.viewer.ctx(), &name).await?;
    Ok(done(HOME, Notice::ReplicationPolicyDeleted))
}

// Executions.

pub async fn execution(viewer: Viewer, Path(id): Path<String>) -> Result {
    let d = berth_mgmt::execution_detail(&viewer.ctx(), &id).await?;
    let e = &d.execution;
    let body = html! {
        (page::heading(&format!("Execution {id}"), &[("Replication", HOME.to_owned())]))
        dl.facts {
            dt { "Policy" } dd { a href=(policy_path(&e.policy)) { (e.policy) } }
            dt { "Trigger" } dd { (status_text(&e.trigger)) }
            dt { "Status" } dd #execution-status { (status_text(&e.status)) }
            dt { "Sent" } dd { (page::bytes(d.bytes)) }
        }
        @if !e.status.is_final() && !e.stop_requested {
            (page::button(&viewer, &format!("{HOME}/executions/{}/stop", encode(&id)), "Stop",
                &format!("Stop execution {id}"), true, None))
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
    Ok(see(&format!("{HOME}/executions/{}", encode(&e.id))))
}

pub async fn stop(Path(id): Path<String>, submitted: Submitted) -> Result {
    berth_mgmt::stop_execution(&submitted.viewer.ctx(), &id).await?;
    Ok(see(&format!("{HOME}/executions/{}", encode(&id))))
}

fn see(path: &str) -> Response {
    Redirect::to(path).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_policy_form_reads_into_a_policy() {
        let p = policy_input(
            &fields(&[
                ("name", "p1"),
                ("direction", "pull"),
                ("endpoint", "hub"),
                ("repository", "lib/**"),
                ("tag", ""),
                ("kinds", "image"),
                ("kinds", "index"),
                ("namespace", "flatten"),
                ("levels", "2"),
                ("prefix", "mirror"),
                ("cron", "0 3 * * *"),
                ("overwrite", "true"),
                ("concurrency", "4"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(p.direction, Direction::Pull);
        assert_eq!(p.filters.repository, "lib/**");
        assert_eq!(p.filters.tag, "**", "an empty glob is every tag");
        assert_eq!(p.filters.kinds, [ArtifactKind::Image, ArtifactKind::Index]);
        assert_eq!(
            p.namespace,
            Namespace::Flatten {
                levels: 2,
                prefix: "mirror".into()
            }
        );
        assert_eq!(p.triggers.cron.as_deref(), Some("0 3 * * *"));
        assert!(!p.triggers.event && !p.enabled && !p.replicate_deletes);
        assert!(p.overwrite);
        assert_eq!((p.concurrency, p.bandwidth_kib), (4, 0));
    }

    #[test]
    fn bad_policy_fields_are_refused() {
        let base = [("name", "p"), ("direction", "push"), ("endpoint", "e")];
        for (extra, why) in [
            (("direction", "sideways"), "unknown direction"),
            (("kinds", "helm"), "unknown artifact kind"),
            (("namespace", "rename"), "unknown namespace"),
            (("concurrency", "many"), "whole number"),
            (("levels", "-1"), "whole number"),
        ] {
            let mut all = base.to_vec();
            all.retain(|(k, _)| *k != extra.0);
            all.push(extra);
            if extra.0 == "levels" {
                all.push(("namespace", "flatten"));
            }
            match policy_input(&fields(&all), None) {
                Err(UiError::Status(s, m)) => {
                    assert_eq!(s, 400);
                    assert!(m.contains(why), "{m}");
                }
                other => panic!("{extra:?}: {:?}", other.map(|p| p.name)),
            }
        }
    }

    #[test]
    fn an_endpoint_form_keeps_removes_or_sets_the_secret() {
        let base = [("url", "https://r.example"), ("kind", "docker-hub")];
        let read = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            endpoint_input(&fields(&all), Some("e")).unwrap()
        };
        let kept = read(&[("secret", "")]);
        assert_eq!(kept.secret, None, "empty keeps the stored secret");
        assert_eq!(kept.kind, EndpointKind::DockerHub);
        assert_eq!(
            read(&[("secret", " s p ")]).secret.as_deref(),
            Some(" s p ")
        );
        assert_eq!(
            read(&[("secret", "x"), ("remove_secret", "true")])
                .secret
                .as_deref(),
            Some("")
        );
        assert!(endpoint_input(&fields(&[("url", "u"), ("kind", "quay")]), Some("e")).is_err());
    }
}
