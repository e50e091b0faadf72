//! One artifact: its tags and pull commands, the platforms of an index,
//! the layers of an image with their sizes, and its configuration (OS and
//! architecture, environment, entrypoint, labels, history); its subject,
//! referrers and annotations; the manifest itself.

use super::artifact_parts::{self, kind, manifest_json, platforms, pull_command, tags_table};
use super::page::{self, Notice, Section};
use super::{project_path, repo_path, Result, UiError, Viewer};
use berth_auth::model::Action;
use berth_mgmt::access::ProjectPerm;
use berth_oci::{Digest, Reference, RepoName};
use futures_util::TryStreamExt;
use maud::{html, Markup};
use serde_json::Value;

type Pairs = Vec<(String, String)>;

/// Configurations larger than this are not shown.
const MAX_CONFIG: u64 = 1024 * 1024;

/// The image configuration blob, when it is linked into `repo`, small and
/// JSON.
async fn config(viewer: &Viewer, repo: &RepoName, descriptor: &Value) -> Option<Value> {
    let digest: Digest = descriptor["digest"].as_str()?.parse().ok()?;
    let registry = &viewer.state.registry;
    let size = registry.blob_size(repo, &digest).await.ok()?;
    if size > MAX_CONFIG {
        return None;
    }
    let stream = registry.blob_read(&digest, 0, size).await.ok()?;
    let parts: Vec<bytes::Bytes> = stream.try_collect().await.ok()?;
    serde_json::from_slice(&parts.concat()).ok()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Key/value pairs of a JSON object (labels, annotations).
fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn command_line(v: &Value) -> Markup {
    let parts = strings(v);
    html! {
        @if parts.is_empty() { span.muted { "none" } } @else { code { (parts.join(" ")) } }
    }
}

fn config_section(config: &Value) -> Markup {
    let c = &config["config"];
    let platform = artifact_parts::platform(config);
    let env = strings(&c["Env"]);
    let labels = pairs(&c["Labels"]);
    let ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let history = config["history"].as_array().cloned().unwrap_or_default();
    html! {
        section aria-labelledby="config" {
            h2 #config { "Configuration" }
            dl.facts {
                dt { "OS and architecture" } dd { (platform) }
                @if let Some(created) = config["created"].as_str() {
                    dt { "Created" } dd { (created) }
                }
                @if let Some(author) = config["author"].as_str() {
                    dt { "Author" } dd { (author) }
                }
                dt { "Entrypoint" } dd { (command_line(&c["Entrypoint"])) }
                dt { "Command" } dd { (command_line(&c["Cmd"])) }
                @if let Some(dir) = c["WorkingDir"].as_str().filter(|d| !d.is_empty()) {
                    dt { "Working directory" } dd { code { (dir) } }
                }
                @if let Some(user) = c["User"].as_str().filter(|u| !u.is_empty()) {
                    dt { "User" } dd { code { (user) } }
                }
                @if !ports.is_empty() {
                    dt { "Exposed ports" } dd { (ports.join(", ")) }
                }
            }
            h3 { "Environment" }
            @if env.is_empty() {
                p { "No environment variables." }
            } @else {
                ul.env { @for e in &env { li { code { (e) } } } }
            }
            h3 { "Labels" }
            @if labels.is_empty() {
                p { "No labels." }
            } @else {
                (page::table("Labels", &["Label", "Value"], html! {
                    @for (k, v) in &labels { tr { th scope="row" { code { (k) } } td { (v) } } }
                }))
            }
            h3 { "History" }
            @if history.is_empty() {
                p { "No history." }
            } @else {
                (page::table("History, oldest first", &["#", "Created", "Created by", "Layer"], html! {
                    @for (i, h) in history.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td { (h["created"].as_str().unwrap_or("")) }
                            td { code.wrap { (h["created_by"].as_str().unwrap_or("")) }
                                 @if let Some(c) = h["comment"].as_str() { " " span.muted { "(" (c) ")" } } }
                            td { (if h["empty_layer"].as_bool() == Some(true) { "no layer" } else { "layer" }) }
                        }
                    }
                }))
            }
        }
    }
}

pub async fn detail(viewer: Viewer, repo: RepoName, digest: Digest, query: Pairs) -> Result {
    let access = artifact_parts::access(&viewer, &repo).await?;
    let can_delete = access.allows(ProjectPerm::Registry(Action::Delete));
    let registry = &viewer.state.registry;
    let summary = registry
        .artifact(&repo, &Reference::Digest(digest.clone()))
        .await
        .map_err(|e| match e.code {
            berth_oci::ErrorCode::ManifestUnknown | berth_oci::ErrorCode::NameUnknown => {
                UiError::not_found(format!("artifact {repo}@{digest} not found"))
            }
            _ => e.into(),
        })?;
    let manifest = manifest_json(&viewer, &repo, &digest).await?;
    let pulled = registry.last_pulled(&repo, &digest).await?;
    let referrers = registry.referrers(&repo, &digest, None).await?;
    let kind = kind(&summary);
    let index = platforms(&manifest);
    let config = if manifest["config"].is_object() {
        config(&viewer, &repo, &manifest["config"]).await
    } else {
        None
    };
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let layers_total: u64 = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
    let annotations = pairs(&manifest["annotations"]);
    let base = repo_path(repo.as_str());
    let link = |d: &str| format!("{base}/-/artifact/{d}");
    let pretty = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    let project = repo.project();
    let title = format!(
        "{repo}@{}",
        &digest.as_str()[..digest.as_str().len().min(19)]
    );
    let body = html! {
        (page::heading(&title, &[
            ("Projects", "/".to_owned()),
            (project, project_path(project, "")),
            (repo.as_str(), base.clone()),
        ]))
        (Notice::shown(&query))
        dl.facts {
            dt { "Kind" } dd { (kind) }
            dt { "Digest" } dd { code.digest { (digest) } }
            dt { "Media type" } dd { code { (summary.media_type) } }
            @if let Some(t) = &summary.artifact_type { dt { "Artifact type" } dd { code { (t) } } }
            dt { "Size" } dd { (page::bytes(summary.size)) " (manifest, config and layers)" }
            dt { "Pushed" } dd { (page::time(summary.pushed)) }
            dt { "Last pulled" } dd { @match pulled { Some(t) => (page::time(t)), None => "never" } }
            @if let Some(s) = &summary.subject {
                dt { "Refers to" } dd { a href=(link(s.as_str())) { code { (s) } } }
            }
            dt { "Pull by digest" }
            dd { (page::copyable("pull-digest", &pull_command(&viewer, &repo, digest.as_str()))) }
        }
        section aria-labelledby="tags" {
            h2 #tags { "Tags" }
            (tags_table(&viewer, &repo, &summary, can_delete, "pull-tag"))
        }
        @if !index.is_empty() {
            section aria-labelledby="platforms" {
                h2 #platforms { "Platforms" }
                (page::table("Images of this index", &["Platform", "Digest", "Manifest size"], html! {
                    @for (p, d, size) in &index {
                        tr {
                            th scope="row" { (p) }
                            td { @match d { Some(d) => a href=(link(d)) { (page::short_digest(d)) }, None => "?" } }
                            td.num { (page::bytes(*size)) }
                        }
                    }
                }))
            }
        }
        @if !layers.is_empty() {
            section aria-labelledby="layers" {
                h2 #layers { "Layers" }
                p.meta {
                    (layers.len()) (if layers.len() == 1 { " layer, " } else { " layers, " })
                    (page::bytes(layers_total)) " compressed."
                }
                (page::table("Layers, from the bottom", &["#", "Digest", "Media type", "Size"], html! {
                    @for (i, l) in layers.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td { (page::short_digest(l["digest"].as_str().unwrap_or(""))) }
                            td { code { (l["mediaType"].as_str().unwrap_or("")) } }
                            td.num { (page::bytes(l["size"].as_u64().unwrap_or(0))) }
                        }
                    }
                }))
            }
        }
        @if let Some(c) = &config { (config_section(c)) }
        section aria-labelledby="referrers" {
            h2 #referrers { "Signatures and other referrers" }
            @if referrers.is_empty() {
                p { "Nothing refers to this artifact." }
            } @else {
                (page::table("Referrers", &["Type", "Digest", "Size"], html! {
                    @for r in &referrers {
                        tr {
                            th scope="row" { (r.artifact_type.as_deref().unwrap_or(&r.media_type)) }
                            td { a href=(link(r.digest.as_str())) { (page::short_digest(r.digest.as_str())) } }
                            td.num { (page::bytes(r.size)) }
                        }
                    }
                }))
            }
        }
        @if !annotations.is_empty() {
            section aria-labelledby="annotations" {
                h2 #annotations { "Annotations" }
                (page::table("Annotations", &["Key", "Value"], html! {
                    @for (k, v) in &annotations { tr { th scope="row" { code { (k) } } td { (v) } } }
                }))
            }
        }
        details {
            summary { "Manifest (JSON)" }
            pre.manifest { code { (pretty) } }
        }
        @if can_delete {
            section aria-labelledby="delete" {
                h2 #delete { "Delete this artifact" }
                p { "The manifest and every tag pointing to it are removed." }
                (page::button(&viewer, &format!("{}/delete", link(digest.as_str())), "Delete artifact",
                    &format!("Delete artifact {digest}"), true, Some(&format!("Delete {repo}@{digest} and its tags?"))))
            }
        }
    };
    Ok(page::render(&viewer, &title, Section::Projects, body))
}
