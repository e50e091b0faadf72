//! The OpenAPI 3.0 document of `/api/v1`, served at
//! `/api/v1/openapi.json`. Written by hand, operation by operation, in
//! [`operations`]; a test checks that its paths and methods are exactly
//! those of [`super::ROUTES`], so a route missing from the document, or a
//! documented route that does not exist, fails the build's tests.

use serde_json::{json, Map, Value};

const PAGED: &[&str] = &["page", "page_size", "q"];
const PAGE: &[&str] = &["page", "page_size"];
const AUDIT: &[&str] = &["user", "operation", "resource", "page_size", "cursor"];
const ANYONE: &str = "anyone, also anonymous";
const SYSADMIN: &str = "system administrators";
const PROJECT_ADMIN: &str = "project admins and system administrators";
const PULL: &str = "callers with pull permission on the project";
const DELETE: &str = "callers with delete permission on the project";
const PROJECTS: &str = "/api/v1/projects/{project}";
const REPO: &str = "/api/v1/projects/{project}/repositories/{repository}";

/// One line per operation, as a table; rustfmt would spread each over a
/// dozen lines.
#[rustfmt::skip]
fn operations() -> Vec<Operation> {
    let p = |suffix: &str| format!("{PROJECTS}{suffix}");
    let r = |suffix: &str| format!("{REPO}{suffix}");
    vec![
        doc("get", "/api/v1/systeminfo", "system", "Version and authentication settings", ANYONE, &[], None, (200, Some("SystemInfo")), &[]),
        doc("get", "/api/v1/openapi.json", "system", "This document", ANYONE, &[], None, (200, None), &[]),
        doc("get", "/api/v1/users", "users", "List users", SYSADMIN, PAGED, None, (200, Some("[User]")), &[400, 401, 403]),
        doc("post", "/api/v1/users", "users", "Create a user", SYSADMIN, &[], Some("NewUser"), (201, Some("User")), &[400, 401, 403, 409]),
        doc("get", "/api/v1/users/current", "users", "The calling user (or robot)", "any authenticated caller", &[], None, (200, Some("User")), &[401]),
        doc("get", "/api/v1/users/{name}", "users", "Get a user", "system administrators, and the user themself", &[], None, (200, Some("User")), &[401, 403, 404]),
        doc("put", "/api/v1/users/{name}", "users", "Change a user's password or administrator flag (own password: old_password required)", "system administrators; a user for their own password", &[], Some("UserChange"), (200, Some("User")), &[400, 401, 403, 404]),
        doc("delete", "/api/v1/users/{name}", "users", "Delete a user and their memberships", SYSADMIN, &[], None, (204, None), &[400, 401, 403, 404]),
        doc("get", "/api/v1/projects", "projects", "List the projects the caller can see (public ones and those it is a member of; all for administrators)", ANYONE, &["page", "page_size", "q", "public"], None, (200, Some("[Project]")), &[400]),
        doc("post", "/api/v1/projects", "projects", "Create a project", SYSADMIN, &[], Some("NewProject"), (201, Some("Project")), &[400, 401, 403, 409]),
        doc("get", PROJECTS, "projects", "Get a project", "callers who can see the project", &[], None, (200, Some("Project")), &[401, 403, 404]),
        doc("put", PROJECTS, "projects", "Make a project public or private", PROJECT_ADMIN, &[], Some("ProjectChange"), (200, Some("Project")), &[400, 401, 403, 404]),
        doc("delete", PROJECTS, "projects", "Delete an empty project with its members and robots", SYSADMIN, &[], None, (204, None), &[401, 403, 404, 412]),
        doc("get", p("/members"), "members", "List members", "project members except limited guests, and system administrators", PAGED, None, (200, Some("[Member]")), &[401, 403, 404]),
        doc("post", p("/members"), "members", "Add a member", PROJECT_ADMIN, &[], Some("NewMember"), (201, Some("Member")), &[400, 401, 403, 404, 409]),
        doc("put", p("/members/{kind}/{member}"), "members", "Change a member's role", PROJECT_ADMIN, &[], Some("MemberChange"), (200, Some("Member")), &[400, 401, 403, 404]),
        doc("delete", p("/members/{kind}/{member}"), "members", "Remove a member", PROJECT_ADMIN, &[], None, (204, None), &[401, 403, 404]),
        doc("get", "/api/v1/robots", "robots", "List system robots", SYSADMIN, PAGED, None, (200, Some("[Robot]")), &[401, 403]),
        doc("post", "/api/v1/robots", "robots", "Create a system robot; the response carries its secret, shown only this once", SYSADMIN, &[], Some("NewRobot"), (201, Some("RobotCreated")), &[400, 401, 403, 404, 409]),
        doc("get", "/api/v1/robots/{robot}", "robots", "Get any robot by full name (a system robot also by short name)", SYSADMIN, &[], None, (200, Some("Robot")), &[401, 403, 404]),
        doc("delete", "/api/v1/robots/{robot}", "robots", "Revoke any robot by full name (a system robot also by short name)", SYSADMIN, &[], None, (204, None), &[401, 403, 404]),
        doc("get", p("/robots"), "robots", "List the project's robots", PROJECT_ADMIN, PAGED, None, (200, Some("[Robot]")), &[401, 403, 404]),
        doc("post", p("/robots"), "robots", "Create a project robot; the response carries its secret, shown only this once", PROJECT_ADMIN, &[], Some("NewRobot"), (201, Some("RobotCreated")), &[400, 401, 403, 404, 409]),
        doc("delete", p("/robots/{robot}"), "robots", "Revoke a project robot (full or short name)", PROJECT_ADMIN, &[], None, (204, None), &[401, 403, 404]),
        doc("get", p("/repositories"), "repositories", "List the project's repositories", PULL, PAGED, None, (200, Some("[Repository]")), &[400, 401, 403, 404]),
        doc("get", REPO, "repositories", "Get a repository", PULL, &[], None, (200, Some("Repository")), &[400, 401, 403, 404]),
        doc("delete", REPO, "repositories", "Delete a repository: its tags, artifacts, referrers and blob links", DELETE, &[], None, (204, None), &[400, 401, 403, 404]),
        doc("get", r("/artifacts"), "artifacts", "List artifacts, newest first, with their tags", PULL, PAGE, None, (200, Some("[Artifact]")), &[400, 401, 403, 404]),
        doc("get", r("/artifacts/{reference}"), "artifacts", "Get an artifact by digest or tag", PULL, &[], None, (200, Some("Artifact")), &[400, 401, 403, 404]),
        doc("delete", r("/artifacts/{reference}"), "artifacts", "Delete an artifact (by digest or tag) and every tag pointing to it", DELETE, &[], None, (204, None), &[400, 401, 403, 404]),
        doc("get", r("/artifacts/{reference}/tags"), "tags", "List the tags of an artifact", PULL, PAGE, None, (200, Some("[Tag]")), &[400, 401, 403, 404]),
        doc("delete", r("/artifacts/{reference}/tags/{tag}"), "tags", "Delete a tag of an artifact", DELETE, &[], None, (204, None), &[400, 401, 403, 404]),
        doc("get", r("/tags"), "tags", "List the tags of a repository", PULL, PAGE, None, (200, Some("[Tag]")), &[400, 401, 403, 404]),
        doc("delete", r("/tags/{tag}"), "tags", "Delete a tag", DELETE, &[], None, (204, None), &[400, 401, 403, 404]),
        doc("get", "/api/v1/audit-logs", "audit", "Audit log, newest first", SYSADMIN, AUDIT, None, (200, Some("[AuditEvent]")), &[400, 401, 403]),
        doc("get", p("/quota"), "policies", "The project's storage quota and usage (distinct blobs, a layer shared by repositories counted once)", PULL, &[], None, (200, Some("Quota")), &[401, 403, 404]),
        doc("put", p("/quota"), "policies", "Set or remove (null) the project's storage quota in bytes; a push past it fails with DENIED", SYSADMIN, &[], Some("QuotaChange"), (200, Some("Quota")), &[400, 401, 403, 404]),
        doc("get", p("/immutable-rules"), "policies", "The project's tag immutability rules", PULL, &[], None, (200, Some("[TagSelector]")), &[401, 403, 404]),
        doc("put", p("/immutable-rules"), "policies", "Replace the tag immutability rules: matching tags can never be moved or deleted once pushed", PROJECT_ADMIN, &[], Some("[TagSelector]"), (200, Some("[TagSelector]")), &[400, 401, 403, 404]),
        doc("get", p("/retention"), "policies", "The project's tag retention rules", PULL, &[], None, (200, Some("Retention")), &[401, 403, 404]),
        doc("put", p("/retention"), "policies", "Replace the tag retention rules: a tag survives a run if any rule keeps it", PROJECT_ADMIN, &[], Some("Retention"), (200, Some("Retention")), &[400, 401, 403, 404]),
        doc("post", p("/retention/run"), "policies", "Apply the retention rules now (dry_run=true only lists what would go)", PROJECT_ADMIN, &["dry_run"], None, (200, Some("RetentionReport")), &[400, 401, 403, 404]),
        doc("post", "/api/v1/gc", "gc", "Run a garbage collection now and answer with its report (one run at a time, cluster-wide: 409 while one runs)", SYSADMIN, &["dry_run"], None, (200, Some("GcReport")), &[400, 401, 403, 409, 503]),
        doc("get", "/api/v1/gc", "gc", "Past garbage collections, newest first, and the one running", SYSADMIN, &[], None, (200, Some("GcHistory")), &[401, 403]),
        doc("get", p("/proxy"), "proxy-cache", "The project's upstream, when it is a proxy cache (404 otherwise)", PULL, &[], None, (200, Some("ProxyBinding")), &[401, 403, 404]),
        doc("put", p("/proxy"), "proxy-cache", "Make the project a proxy cache of a replication endpoint: pulls go through to it, pushes are refused", SYSADMIN, &[], Some("ProxyChange"), (200, Some("ProxyBinding")), &[400, 401, 403, 404]),
        doc("delete", p("/proxy"), "proxy-cache", "Make the project an ordinary project again (what it cached stays)", SYSADMIN, &[], None, (204, None), &[401, 403, 404]),
        doc("get", "/api/v1/replication/endpoints", "replication", "List replication endpoints (secrets are never returned: has_secret says whether one is set)", SYSADMIN, &[], None, (200, Some("[ReplicationEndpoint]")), &[401, 403]),
        doc("post", "/api/v1/replication/endpoints", "replication", "Create an endpoint: a remote registry; its secret is sealed at rest (ChaCha20-Poly1305)", SYSADMIN, &[], Some("NewReplicationEndpoint"), (201, Some("ReplicationEndpoint")), &[400, 401, 403, 409]),
        doc("get", "/api/v1/replication/endpoints/{endpoint}", "replication", "Get an endpoint", SYSADMIN, &[], None, (200, Some("ReplicationEndpoint")), &[401, 403, 404]),
        doc("put", "/api/v1/replication/endpoints/{endpoint}", "replication", "Change an endpoint (no secret: kept; an empty one: removed)", SYSADMIN, &[], Some("NewReplicationEndpoint"), (200, Some("ReplicationEndpoint")), &[400, 401, 403, 404, 409]),
        doc("delete", "/api/v1/replication/endpoints/{endpoint}", "replication", "Delete an endpoint no policy or proxy project uses", SYSADMIN, &[], None, (204, None), &[401, 403, 404, 409]),
        doc("post", "/api/v1/replication/endpoints/{endpoint}/test", "replication", "Ping the endpoint with its credentials", SYSADMIN, &[], None, (200, Some("EndpointTest")), &[401, 403, 404]),
        doc("get", "/api/v1/replication/policies", "replication", "List replication policies", SYSADMIN, &[], None, (200, Some("[ReplicationPolicy]")), &[401, 403]),
        doc("post", "/api/v1/replication/policies", "replication", "Create a replication policy", SYSADMIN, &[], Some("ReplicationPolicy"), (201, Some("ReplicationPolicy")), &[400, 401, 403, 409]),
        doc("get", "/api/v1/replication/policies/{policy}", "replication", "Get a replication policy", SYSADMIN, &[], None, (200, Some("ReplicationPolicy")), &[401, 403, 404]),
        doc("put", "/api/v1/replication/policies/{policy}", "replication", "Replace a replication policy", SYSADMIN, &[], Some("ReplicationPolicy"), (200, Some("ReplicationPolicy")), &[400, 401, 403, 404, 409]),
        doc("delete", "/api/v1/replication/policies/{policy}", "replication", "Delete a policy (its running executions are stopped)", SYSADMIN, &[], None, (204, None), &[401, 403, 404]),
        doc("get", "/api/v1/replication/policies/{policy}/executions", "replication", "The policy's executions, newest first", SYSADMIN, &[], None, (200, Some("[ReplicationExecution]")), &[401, 403, 404]),
        doc("post", "/api/v1/replication/policies/{policy}/executions", "replication", "Run the policy now (manual trigger); the execution started", SYSADMIN, &[], None, (201, Some("ReplicationExecution")), &[401, 403, 404, 409]),
        doc("get", "/api/v1/replication/executions", "replication", "Executions, newest first", SYSADMIN, &["policy"], None, (200, Some("[ReplicationExecution]")), &[401, 403]),
        doc("get", "/api/v1/replication/executions/{execution}", "replication", "An execution with its tasks, their status and progress", SYSADMIN, &[], None, (200, Some("ReplicationExecutionDetail")), &[401, 403, 404]),
        doc("post", "/api/v1/replication/executions/{execution}/stop", "replication", "Stop an execution: pending tasks never start, running transfers are cancelled", SYSADMIN, &[], None, (200, Some("ReplicationExecution")), &[401, 403, 404]),
        doc("get", p("/audit-logs"), "audit", "The project's audit log (resources under `<project>/`), newest first", "project admins, maintainers and system administrators", AUDIT, None, (200, Some("[AuditEvent]")), &[400, 401, 403, 404]),
    ]
}

fn parameter(name: &str, location: &str) -> Value {
    let (schema, description) = match name {
        "page" => (json!({"type": "integer", "minimum": 1, "default": 1}), "page number, from 1"),
        "page_size" => (json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 10}), "items per page"),
        "q" => (json!({"type": "string"}), "only names containing this"),
        "public" => (json!({"type": "boolean"}), "only public (true) or private (false) projects"),
        "user" => (json!({"type": "string"}), "only events of this user or robot"),
        "operation" => (json!({"type": "string"}), "only this operation (push, pull, delete, login, login_failed, create_user, ...)"),
        "resource" => (json!({"type": "string"}), "only resources starting with this"),
        "cursor" => (json!({"type": "string"}), "from the `Link: rel=\"next\"` header of the previous page"),
        "repository" => (json!({"type": "string"}), "repository name inside the project; may contain `/` (or `%2F`); `_` for the repository named like the project"),
        "reference" => (json!({"type": "string"}), "a digest (`sha256:...`) or a tag"),
        "kind" => (json!({"type": "string", "enum": ["user", "group"]}), "member kind"),
        "robot" => (json!({"type": "string"}), "robot name, e.g. `robot$ci` or `robot$project+ci`"),
        "dry_run" => (json!({"type": "boolean", "default": false}), "only report what would be deleted"),
        "endpoint" => (json!({"type": "string"}), "replication endpoint name"),
        "policy" => (json!({"type": "string"}), "replication policy name"),
        "execution" => (json!({"type": "string"}), "execution id"),
        _ => (json!({"type": "string"}), ""),
    };
    json!({
        "name": name,
        "in": location,
        "required": location == "path",
        "description": description,
        "schema": schema,
    })
}

fn schema_ref(name: &str) -> Value {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(item) => {
            json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}})
        }
        None => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

fn error_response(status: u16) -> Value {
    let description = match status {
        400 => "Bad request",
        401 => "Missing or wrong credentials",
        403 => "Not permitted",
        404 => "Not found",
        409 => "Already exists",
        412 => "Precondition failed (the project is not empty)",
        _ => "Error",
    };
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("Errors")}},
    })
}

/// One documented operation: its path, its method, and its description.
type Operation = (String, &'static str, Value);

/// Documents one operation. `ok` is the success status and the schema of
/// its body (`[Name]` for an array); `access` says who may call it.
#[allow(clippy::too_many_arguments)]
fn doc(
    method: &'static str,
    path: impl Into<String>,
    tag: &'static str,
    summary: &'static str,
    access: &'static str,
    query: &'static [&'static str],
    body: Option<&'static str>,
    ok: (u16, Option<&'static str>),
    errors: &'static [u16],
) -> Operation {
    let path = path.into();
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| parameter(name, "path"))
        .collect();
    params.extend(query.iter().map(|q| parameter(q, "query")));
    let mut success = json!({"description": "Success"});
    if let Some(schema) = ok.1 {
        success["content"] = json!({"application/json": {"schema": schema_ref(schema)}});
    }
    if ok.1.is_some_and(|s| s.starts_with('[')) {
        success["headers"] = if query.contains(&"cursor") {
            json!({"Link": {"description": "URL of the next page, `rel=\"next\"`; absent on the last page", "schema": {"type": "string"}}})
        } else {
            json!({"X-Total-Count": {"description": "number of items in the whole list", "schema": {"type": "integer"}}})
        };
    }
    let mut responses = Map::new();
    responses.insert(ok.0.to_string(), success);
    for e in errors {
        responses.insert(e.to_string(), error_response(*e));
    }
    let mut op = json!({
        "tags": [tag],
        "summary": summary,
        "description": format!("Allowed for: {access}."),
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = body {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema_ref(body)}},
        });
    }
    (path, method, op)
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (path, method, op) in operations() {
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "berth management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Users, projects, members, robot accounts, repositories, artifacts, tags and the audit log. Lists are paged with `page` and `page_size` and report the full count in `X-Total-Count`; the audit log is paged with a cursor in the `Link` header. Errors are `{\"errors\":[{\"code\",\"message\"}]}`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"basicAuth": []}, {}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic", "description": "a user's name and password, or a robot's name (`robot$...`) and secret; the only credentials taken here (registry tokens from /service/token are for /v2 and answer 401)"},
            },
            "schemas": super::schemas::schemas(),
        },
    })
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn serve(_: &super::Ctx) -> super::common::Result {
    super::common::ok(document())
}

/// `(method, path)` of every documented operation, upper-case methods.
pub fn documented_routes(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            if let Some(ops) = ops.as_object() {
                for method in ops.keys() {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_describes_exactly_the_routes() {
        let doc = document();
        let documented = documented_routes(&doc);
        let mut served: Vec<(String, String)> = super::super::ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
        // Every referenced schema exists.
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(doc["components"]["schemas"][&name].is_object(), "{name}");
        }
    }
}
