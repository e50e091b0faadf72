//! The page layout (header, navigation, main) and the pieces every page
//! uses: forms carrying the CSRF token, one-button POST forms, copyable
//! commands, sizes and times. Everything a colour would say is also said
//! in words, so the pages read the same in greyscale.

use super::Viewer;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// The sections of the main navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Projects,
    Users,
    Gc,
    Nodes,
    Replication,
    Audit,
}

/// A full page for a logged-in viewer.
pub fn render(viewer: &Viewer, title: &str, section: Section, body: Markup) -> Response {
    let admin = viewer.is_admin();
    let link = |s: Section, href: &str, label: &str| {
        html! {
            li {
                @if s == section {
                    a href=(href) aria-current="page" { (label) }
                } @else {
                    a href=(href) { (label) }
                }
            }
        }
    };
    let markup = document(
        title,
        html! {
            header.site {
                a.brand href="/" { "berth" }
                nav aria-label="Main" {
                    ul {
                        (link(Section::Projects, "/", "Projects"))
                        @if admin {
                            (link(Section::Users, "/ui/users", "Users"))
                            (link(Section::Gc, "/ui/gc", "Garbage collection"))
                            (link(Section::Nodes, "/ui/nodes", "Nodes"))
                            (link(Section::Replication, "/ui/replication", "Replication"))
                            (link(Section::Audit, "/ui/audit", "Audit log"))
                        }
                    }
                }
                form.logout method="post" action="/ui/logout" {
                    (csrf(viewer))
                    span.who {
                        "Signed in as " strong { (viewer.name()) }
                        @if admin { " (administrator)" }
                    }
                    " "
                    button type="submit" { "Log out" }
                }
            }
            main id="main" { (body) }
        },
    );
    Html(markup.into_string()).into_response()
}

/// The HTML document around `body`.
pub fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · berth" }
                link rel="stylesheet" href="/ui/static/berth.css";
                script src="/ui/static/berth.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (body)
            }
        }
    }
}

/// An error page, for anyone.
pub fn error(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let markup = document(
        title,
        html! {
            header.site { a.brand href="/" { "berth" } }
            main id="main" {
                h1 { "Error " (status.as_u16()) ": " (title) }
                p.error role="alert" { (message) }
                p { a href="/" { "Back to the projects" } }
            }
        },
    );
    (status, Html(markup.into_string())).into_response()
}

/// The hidden CSRF field every form carries.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A form of one button that POSTs to `action`. `confirm` asks first (in
/// the browser; the server checks permissions whatever was asked).
pub fn button(
    viewer: &Viewer,
    action: &str,
    label: &str,
    accessible: &str,
    danger: bool,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(viewer))
            button type="submit" class=[danger.then_some("danger")] aria-label=(accessible) {
                (label)
            }
        }
    }
}

/// A command shown in full with a button that copies it.
pub fn copyable(id: &str, command: &str) -> Markup {
    html! {
        span.copyable {
            code id=(id) { (command) }
            " "
            button.copy type="button" data-copy=(command) aria-controls=(id)
                aria-label={ "Copy: " (command) } { "Copy" }
            span.copy-status role="status" aria-live="polite" {}
        }
    }
}

/// A heading with a one-line description under it.
pub fn heading(title: &str, crumbs: &[(&str, String)]) -> Markup {
    html! {
        @if !crumbs.is_empty() {
            nav.crumbs aria-label="Breadcrumb" {
                ol {
                    @for (label, href) in crumbs {
                        li { a href=(href) { (label) } }
                    }
                    li aria-current="page" { (title) }
                }
            }
        }
        h1 { (title) }
    }
}

/// A notice after a change, chosen by a code in the redirect's query (never
/// text from the URL, so a link cannot put words on a page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    ProjectCreated,
    ProjectChanged,
    ProjectDeleted,
    TagDeleted,
    ArtifactDeleted,
    RepositoryDeleted,
    MemberAdded,
    MemberChanged,
    MemberRemoved,
    RobotRevoked,
    PolicyChanged,
    UserCreated,
    UserChanged,
    UserDeleted,
    GcRan,
    EndpointSaved,
    EndpointDeleted,
    PolicySaved,
    ReplicationPolicyDeleted,
    LoggedOut,
}

const NOTICES: &[(Notice, &str, &str)] = &[
    (
        Notice::ProjectCreated,
        "project-created",
        "The project was created.",
    ),
    (
        Notice::ProjectChanged,
        "project-changed",
        "The project was changed.",
    ),
    (
        Notice::ProjectDeleted,
        "project-deleted",
        "The project was deleted.",
    ),
    (Notice::TagDeleted, "tag-deleted", "The tag was deleted."),
    (
        Notice::ArtifactDeleted,
        "artifact-deleted",
        "The artifact and its tags were deleted.",
    ),
    (
        Notice::RepositoryDeleted,
        "repository-deleted",
        "The repository was deleted.",
    ),
    (Notice::MemberAdded, "member-added", "The member was added."),
    (
        Notice::MemberChanged,
        "member-changed",
        "The member's role was changed.",
    ),
    (
        Notice::MemberRemoved,
        "member-removed",
        "The member was removed.",
    ),
    (
        Notice::RobotRevoked,
        "robot-revoked",
        "The robot account was revoked.",
    ),
    (
        Notice::PolicyChanged,
        "policy-changed",
        "The policy was saved.",
    ),
    (Notice::UserCreated, "user-created", "The user was created."),
    (Notice::UserChanged, "user-changed", "The user was changed."),
    (Notice::UserDeleted, "user-deleted", "The user was deleted."),
    (
        Notice::GcRan,
        "gc-ran",
        "The garbage collection ran; its report is the first in the history.",
    ),
    (
        Notice::EndpointSaved,
        "endpoint-saved",
        "The endpoint was saved.",
    ),
    (
        Notice::EndpointDeleted,
        "endpoint-deleted",
        "The endpoint was deleted.",
    ),
    (
        Notice::PolicySaved,
        "replication-policy-saved",
        "The replication policy was saved.",
    ),
    (
        Notice::ReplicationPolicyDeleted,
        "replication-policy-deleted",
        "The replication policy was deleted.",
    ),
    (Notice::LoggedOut, "logged-out", "You are logged out."),
];

impl Notice {
    pub fn code(self) -> &'static str {
        NOTICES
            .iter()
            .find(|(n, _, _)| *n == self)
            .map_or("", |(_, c, _)| c)
    }

    /// The notice named in a `done` query value.
    pub fn shown(query: &[(String, String)]) -> Markup {
        let text = query
            .iter()
            .find(|(k, _)| k == "done")
            .and_then(|(_, code)| NOTICES.iter().find(|(_, c, _)| c == code))
            .map(|(_, _, text)| *text);
        html! {
            @if let Some(text) = text {
                p.notice role="status" { strong { "Done: " } (text) }
            }
        }
    }
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A time as `2026-05-01 12:00 UTC`, machine-readable in `datetime`.
pub fn time(secs: u64) -> Markup {
    let iso = berth_http::time::rfc3339(secs);
    let shown = format!("{} {} UTC", &iso[..10], &iso[11..16]);
    html! { time datetime=(iso) title=(ago(secs)) { (shown) } }
}

/// How long ago, in words.
pub fn ago(secs: u64) -> String {
    let elapsed = berth_http::time::now().saturating_sub(secs);
    match elapsed {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", elapsed / 60),
        3600..=86_399 => format!("{} h ago", elapsed / 3600),
        _ => format!("{} days ago", elapsed / 86_400),
    }
}

/// A digest shortened for reading: `sha256:0123456789ab`.
pub fn short_text(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

/// A digest shortened for reading, in full in a tooltip.
pub fn short_digest(digest: &str) -> Markup {
    html! { code title=(digest) { (short_text(digest)) } }
}

/// A table that scrolls inside its own box on narrow screens.
pub fn table(caption: &str, head: &[&str], rows: Markup) -> Markup {
    html! {
        div.scroll role="region" aria-label=(caption) tabindex="0" {
            table {
                caption { (caption) }
                thead { tr { @for h in head { th scope="col" { (h) } } } }
                tbody { (rows) }
            }
        }
    }
}

/// A table whose rows become stacked blocks on narrow screens, for rows
/// whose cells matter more than their alignment (pull commands).
pub fn stacked_table(caption: &str, head: &[&str], rows: Markup) -> Markup {
    html! {
        div.scroll role="region" aria-label=(caption) tabindex="0" {
            table.stack {
                caption { (caption) }
                thead { tr { @for h in head { th scope="col" { (h) } } } }
                tbody { (rows) }
            }
        }
    }
}

/// Pages of a list: links to the previous and next page.
pub fn pager(base: &str, page: usize, size: usize, total: usize) -> Markup {
    let pages = total.div_ceil(size).max(1);
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 {
                    a href={ (base) (sep) "page=" (page - 1) } rel="prev" { "← Previous" }
                }
                span { "Page " (page) " of " (pages) " (" (total) " in all)" }
                @if page < pages {
                    a href={ (base) (sep) "page=" (page + 1) } rel="next" { "Next →" }
                }
            }
        }
    }
}

/// The `page` query parameter, from 1.
pub fn page_number(query: &[(String, String)]) -> usize {
    query
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1)
}

/// A query parameter, trimmed; `None` when absent or empty.
pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_notices() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(Notice::TagDeleted.code(), "tag-deleted");
        let shown = Notice::shown(&[("done".into(), "tag-deleted".into())]).into_string();
        assert!(shown.contains("The tag was deleted."));
        let forged = Notice::shown(&[("done".into(), "<b>hi</b>".into())]).into_string();
        assert!(forged.is_empty());
        assert_eq!(
            short_digest("sha256:0123456789abcdef").into_string(),
            "<code title=\"sha256:0123456789abcdef\">sha256:0123456789ab</code>"
        );
    }
}
