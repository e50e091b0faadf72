//! The management API (`/api/v1`) against the real binary: CRUD of every
//! resource, who may do what (Harbor's roles), robot accounts used for real
//! on `/v2`, the audit log, the OpenAPI document against the route table,
//! and the `berth user|project|robot` commands run as subprocesses.

mod common;

use common::oci::{Image, MANIFEST};
use common::{basic, sha256, Server, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The token service, for the registry's own tokens.
const TOKEN: &str = "/service/token?service=berth";

/// A caller of the API: anonymous or with one `Authorization` header.
struct As {
    base: String,
    auth: Option<String>,
    http: reqwest::Client,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Resp {
    fn total(&self) -> usize {
        self.headers["x-total-count"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn names(&self) -> Vec<String> {
        self.body
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {}", self.text))
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn error_code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or_default()
    }
}

impl As {
    fn anonymous(server: &Server) -> As {
        As {
            base: server.url(""),
            auth: None,
            http: berth_net::builder().no_proxy().build().unwrap(),
        }
    }

    fn user(server: &Server, name: &str, password: &str) -> As {
        As {
            auth: Some(basic(name, password)),
            ..As::anonymous(server)
        }
    }

    fn admin(server: &Server) -> As {
        As::user(server, "admin", ADMIN_PASSWORD)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.to_string());
        let resp = common::send_json(&self.http, method, url, self.auth.as_deref(), body).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// Pushes a one-layer image through `/v2`; the manifest's status and
    /// digest, and the layer and config sizes.
    async fn push(&self, repo: &str, tag: &str, seed: &str) -> (u16, String, u64) {
        let image = Image::new(seed, vec![format!("layer {seed}").into_bytes()], None);
        let (layer, config) = (&image.layers[0], &image.config);
        for blob in [layer, config] {
            let r = self
                .call_raw(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(blob)),
                    blob.clone(),
                    None,
                )
                .await;
            if r != 201 {
                return (r, String::new(), 0);
            }
        }
        let status = self
            .call_raw(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                image.manifest.clone(),
                Some(MANIFEST),
            )
            .await;
        let sizes = (layer.len() + config.len() + image.manifest.len()) as u64;
        (status, image.digest, sizes)
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> u16 {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if let Some(t) = content_type {
            req = req.header("Content-Type", t);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Status of a `/v2` request without a body.
    async fn v2(&self, method: Method, path: &str) -> u16 {
        self.call_raw(method, path, Vec::new(), None).await
    }
}

/// Creates user `name` (password `<name>-password`) as a member of
/// `project` with `role`, and returns a caller for them.
async fn member(server: &Server, project: &str, name: &str, role: &str) -> As {
    let admin = As::admin(server);
    let password = format!("{name}-password");
    let r = admin
        .post("/api/v1/users", json!({"name": name, "password": password}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin
        .post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"name": name, "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    As::user(server, name, &password)
}

/// A fresh server with `projects` (name, public), and its administrator.
async fn with_projects(projects: &[(&str, bool)]) -> (Server, As) {
    let server = Server::start();
    for (name, public) in projects {
        project(&server, name, *public).await;
    }
    let admin = As::admin(&server);
    (server, admin)
}

async fn project(server: &Server, name: &str, public: bool) {
    let r = As::admin(server)
        .post("/api/v1/projects", json!({"name": name, "public": public}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn openapi_document_lists_exactly_the_served_routes() {
    let server = Server::start();
    let anon = As::anonymous(&server);
    let doc = anon.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = berth_mgmt::openapi::documented_routes(&doc.body)
        .into_iter()
        .collect();
    let table: BTreeSet<(String, String)> = berth_mgmt::ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = table.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    assert!(
        phantom.is_empty(),
        "documented routes that do not exist: {phantom:?}"
    );

    // Every documented route is answered by a handler (not "no such
    // endpoint", not 405), and other methods on its path are 405.
    for (method, template) in &documented {
        let path = template
            .replace("{project}", "nope")
            .replace("{repository}", "team/app")
            .replace("{reference}", "v1")
            .replace("{tag}", "v1")
            .replace("{name}", "someone")
            .replace("{kind}", "user")
            .replace("{member}", "someone")
            .replace("{robot}", "robot$ci");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = anon.call(method.clone(), &path, None).await;
        assert_ne!(r.status, 405, "{method} {path}: {}", r.text);
        assert!(
            !r.text.contains("no such endpoint"),
            "{method} {path}: {}",
            r.text
        );
        let r = anon.call(Method::PATCH, &path, None).await;
        assert_eq!(r.status, 405, "PATCH {path}");
        assert!(r.headers.contains_key("allow"));
    }
    let r = anon.get("/api/v1/nothing/here").await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("no such endpoint"));
    let info = anon.get("/api/v1/systeminfo").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body["auth_enabled"], true);
    assert!(info.body["version"].is_string());
}

#[tokio::test]
async fn wrong_credentials_are_401_and_errors_are_json() {
    let server = Server::start();
    for auth in [
        basic("admin", "wrong-password"),
        basic("nobody", "whatever-pass"),
        "Bearer not.a.token".to_owned(),
    ] {
        let r = As {
            auth: Some(auth.clone()),
            ..As::anonymous(&server)
        }
        .get("/api/v1/projects")
        .await;
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.error_code(), "UNAUTHORIZED");
        assert!(r.body["errors"][0]["message"].is_string());
    }
    // A token from /service/token is a registry token, for /v2 only: the
    // management API refuses it like wrong credentials.
    let token = As::admin(&server).get(TOKEN).await.body;
    let bearer = As {
        auth: Some(format!("Bearer {}", token["token"].as_str().unwrap())),
        ..As::anonymous(&server)
    };
    let me = bearer.get("/api/v1/users/current").await;
    assert_eq!((me.status, me.error_code()), (401, "UNAUTHORIZED"));
    let bad = As::admin(&server)
        .call(Method::POST, "/api/v1/projects", None)
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "BAD_REQUEST");
}

#[tokio::test]
async fn users_crud_and_own_password() {
    let server = Server::start();
    let admin = As::admin(&server);
    let new = json!({"name": "alice", "password": "alice-password", "email": "a@example.com"});
    let r = admin.post("/api/v1/users", new.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["name"], "alice");
    assert!(!r.text.contains("password"), "no hash in {}", r.text);
    assert_eq!(admin.post("/api/v1/users", new).await.status, 409);
    let short = json!({"name": "bob", "password": "short"});
    assert_eq!(admin.post("/api/v1/users", short).await.status, 400);
    let users = admin.get("/api/v1/users").await;
    assert_eq!(users.status, 200);
    assert_eq!(users.total(), 2);
    assert_eq!(users.names(), ["admin", "alice"]);
    assert_eq!(admin.get("/api/v1/users?q=ali").await.names(), ["alice"]);
    let page = admin.get("/api/v1/users?page=2&page_size=1").await;
    assert_eq!((page.names(), page.total()), (vec!["alice".to_owned()], 2));
    assert_eq!(admin.get("/api/v1/users?page_size=1000").await.status, 400);
    assert_eq!(
        admin.get("/api/v1/users/alice").await.body["email"],
        "a@example.com"
    );
    assert_eq!(admin.get("/api/v1/users/nobody").await.status, 404);

    let alice = As::user(&server, "alice", "alice-password");
    assert_eq!(
        alice.get("/api/v1/users/current").await.body["name"],
        "alice"
    );
    assert_eq!(alice.get("/api/v1/users/alice").await.status, 200);
    assert_eq!(alice.get("/api/v1/users/admin").await.status, 403);
    assert_eq!(alice.get("/api/v1/users").await.status, 403);
    assert_eq!(
        As::anonymous(&server).get("/api/v1/users").await.status,
        401
    );
    let promote = json!({"admin": true});
    assert_eq!(
        alice
            .put("/api/v1/users/alice", promote.clone())
            .await
            .status,
        403
    );
    // Her own password: the old one is required, and must be right.
    let path = "/api/v1/users/alice";
    let r = alice.put(path, json!({"password": "alice-new-pass"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let wrong = json!({"password": "alice-new-pass", "old_password": "not-it-at-all"});
    assert_eq!(alice.put(path, wrong).await.status, 403);
    let right = json!({"password": "alice-new-pass", "old_password": "alice-password"});
    assert_eq!(alice.put(path, right).await.status, 200);
    let alice = As::user(&server, "alice", "alice-new-pass");
    assert_eq!(alice.get("/api/v1/users/current").await.status, 200);
    // The administrator sets passwords without the old one, and the flag.
    let r = admin.put(path, json!({"password": "set-by-admin"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(admin.put(path, promote).await.body["admin"], true);
    let alice = As::user(&server, "alice", "set-by-admin");
    assert_eq!(alice.get("/api/v1/users").await.status, 200, "now an admin");
    assert_eq!(admin.put(path, json!({"admin": false})).await.status, 200);
    assert_eq!(
        alice.get("/api/v1/users").await.status,
        403,
        "demoted at once"
    );
    let r = admin
        .put("/api/v1/users/admin", json!({"admin": false}))
        .await;
    assert_eq!(r.status, 400, "an admin cannot demote themself");
    assert_eq!(admin.delete("/api/v1/users/admin").await.status, 400);
    assert_eq!(alice.delete("/api/v1/users/admin").await.status, 403);
    assert_eq!(admin.delete(path).await.status, 204);
    assert_eq!(admin.get(path).await.status, 404);
    assert_eq!(admin.delete(path).await.status, 404);
    assert_eq!(
        alice.get("/api/v1/users/current").await.status,
        401,
        "a deleted user is refused at once"
    );
}

#[tokio::test]
async fn projects_visibility_and_lifecycle() {
    let (server, admin) = with_projects(&[("pub", true), ("priv", false), ("other", false)]).await;
    let dup = admin.post("/api/v1/projects", json!({"name": "pub"})).await;
    assert_eq!(dup.status, 409);
    let bad = admin
        .post("/api/v1/projects", json!({"name": "Bad Name"}))
        .await;
    assert_eq!(bad.status, 400);
    let dev = member(&server, "priv", "dev", "developer").await;

    let anon = As::anonymous(&server);
    let listed = anon.get("/api/v1/projects").await;
    assert_eq!(
        (listed.status, listed.names()),
        (200, vec!["pub".to_owned()])
    );
    assert_eq!(listed.total(), 1);
    // A project the caller cannot see answers as a missing one.
    assert_eq!(anon.get("/api/v1/projects/priv").await.status, 404);
    assert_eq!(anon.get("/api/v1/projects/pub").await.status, 200);
    let mine = dev.get("/api/v1/projects").await;
    assert_eq!(mine.names(), ["priv", "pub"]);
    assert_eq!(mine.body[0]["current_user_role"], "developer");
    assert_eq!(dev.get("/api/v1/projects/other").await.status, 404);
    assert_eq!(dev.get("/api/v1/projects/missing").await.status, 404);
    // Only an administrator creates projects.
    for (who, caller, refused) in [("anonymous", &anon, 401), ("developer", &dev, 403)] {
        let r = caller.post("/api/v1/projects", json!({"name": "x"})).await;
        assert_eq!(r.status, refused, "{who}");
    }
    assert_eq!(admin.get("/api/v1/projects").await.total(), 3);
    assert_eq!(admin.get("/api/v1/projects?public=false").await.total(), 2);
    assert_eq!(admin.get("/api/v1/projects?q=ot").await.names(), ["other"]);

    // Public flag: project admins only.
    let public = json!({"public": true});
    assert_eq!(
        dev.put("/api/v1/projects/priv", public.clone())
            .await
            .status,
        403
    );
    let padmin = member(&server, "priv", "padmin", "project_admin").await;
    let r = padmin.put("/api/v1/projects/priv", public).await;
    assert_eq!((r.status, &r.body["public"]), (200, &json!(true)));
    assert_eq!(anon.get("/api/v1/projects/priv").await.status, 200);
    assert_eq!(padmin.delete("/api/v1/projects/priv").await.status, 403);

    // Deleting: only when empty; members and robots go with the project.
    let (status, _, _) = admin.push("priv/app", "v1", "a").await;
    assert_eq!(status, 201);
    let p = admin.get("/api/v1/projects/priv").await;
    assert_eq!(p.body["repo_count"], 1);
    let r = admin.delete("/api/v1/projects/priv").await;
    assert_eq!((r.status, r.error_code()), (412, "PRECONDITION"));
    let robot = admin
        .post("/api/v1/projects/priv/robots", json!({"name": "ci"}))
        .await;
    assert_eq!(robot.status, 201);
    let r = admin.delete("/api/v1/projects/priv/repositories/app").await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(admin.delete("/api/v1/projects/priv").await.status, 204);
    assert_eq!(admin.get("/api/v1/projects/priv").await.status, 404);
    project(&server, "priv", false).await;
    let members = admin.get("/api/v1/projects/priv/members").await;
    assert_eq!(
        members.total(),
        0,
        "old members came back: {}",
        members.text
    );
    assert_eq!(admin.get("/api/v1/robots/robot$priv+ci").await.status, 404);
    assert_eq!(dev.get("/api/v1/projects/priv").await.status, 404);
}

#[tokio::test]
async fn members_and_role_permissions() {
    let (server, admin) = with_projects(&[("p", false)]).await;
    let padmin = member(&server, "p", "padmin", "project_admin").await;
    let maint = member(&server, "p", "maint", "maintainer").await;
    let dev = member(&server, "p", "dev", "developer").await;
    let guest = member(&server, "p", "guest", "guest").await;
    let limited = member(&server, "p", "lg", "limited_guest").await;
    let r = admin
        .post(
            "/api/v1/users",
            json!({"name": "eve", "password": "eve-password"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let (status, digest, _) = admin.push("p/app", "v1", "m").await;
    assert_eq!(status, 201);

    let members = "/api/v1/projects/p/members";
    let eve = json!({"name": "eve", "role": "guest"});
    assert_eq!(
        dev.post(members, eve.clone()).await.status,
        403,
        "developer adds"
    );
    assert_eq!(maint.post(members, eve.clone()).await.status, 403);
    let r = padmin.post(members, eve.clone()).await;
    assert_eq!((r.status, &r.body["role"]), (201, &json!("guest")));
    assert_eq!(padmin.post(members, eve).await.status, 409);
    let ghost = json!({"name": "ghost", "role": "guest"});
    assert_eq!(padmin.post(members, ghost).await.status, 404);
    let bad_role = json!({"name": "eve", "role": "overlord"});
    assert_eq!(padmin.post(members, bad_role).await.status, 400);
    let group = json!({"kind": "group", "name": "ops", "role": "maintainer"});
    assert_eq!(padmin.post(members, group).await.status, 201);
    let eve_path = "/api/v1/projects/p/members/user/eve";
    let r = padmin.put(eve_path, json!({"role": "developer"})).await;
    assert_eq!((r.status, &r.body["role"]), (200, &json!("developer")));
    assert_eq!(
        dev.put(eve_path, json!({"role": "guest"})).await.status,
        403
    );
    let nobody = "/api/v1/projects/p/members/user/nobody";
    assert_eq!(
        padmin.put(nobody, json!({"role": "guest"})).await.status,
        404
    );
    assert_eq!(guest.delete(eve_path).await.status, 403);
    assert_eq!(padmin.delete(eve_path).await.status, 204);
    assert_eq!(padmin.delete(eve_path).await.status, 404);

    // Listing members: everyone but limited guests.
    for who in [&padmin, &maint, &dev, &guest, &admin] {
        let r = who.get(members).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.total(), 6);
    }
    assert_eq!(limited.get(members).await.status, 403);
    let eve = As::user(&server, "eve", "eve-password");
    assert_eq!(
        eve.get(members).await.status,
        404,
        "not a member any more: the private project is hidden"
    );

    // The project's audit log: project admins and maintainers only.
    let audit = "/api/v1/projects/p/audit-logs";
    for (who, status) in [
        (&padmin, 200),
        (&maint, 200),
        (&dev, 403),
        (&guest, 403),
        (&limited, 403),
    ] {
        assert_eq!(who.get(audit).await.status, status);
    }

    // Registry actions follow the roles: a limited guest reads, a guest
    // cannot delete, a developer cannot delete, a maintainer can.
    let repos = "/api/v1/projects/p/repositories";
    assert_eq!(limited.get(repos).await.names(), ["p/app"]);
    let artifact = format!("/api/v1/projects/p/repositories/app/artifacts/{digest}");
    assert_eq!(limited.get(&artifact).await.status, 200);
    assert_eq!(guest.delete(&artifact).await.status, 403);
    assert_eq!(
        dev.delete("/api/v1/projects/p/repositories/app/tags/v1")
            .await
            .status,
        403
    );
    assert_eq!(
        dev.delete("/api/v1/projects/p/repositories/app")
            .await
            .status,
        403
    );
    assert_eq!(maint.delete(&artifact).await.status, 204);
    assert_eq!(maint.get(&artifact).await.status, 404);
}

#[tokio::test]
async fn repositories_artifacts_and_tags() {
    let (_server, admin) = with_projects(&[("p", false)]).await;
    let (s1, d1, size1) = admin.push("p/app", "v1", "one").await;
    let (s2, d1b, _) = admin.push("p/app", "latest", "one").await;
    let (s3, d2, _) = admin.push("p/app", "v2", "two").await;
    let (s4, _, _) = admin.push("p/team/tool", "1.0", "tool").await;
    assert_eq!([s1, s2, s3, s4], [201; 4]);
    assert_eq!(d1, d1b);

    let repos = admin.get("/api/v1/projects/p/repositories").await;
    assert_eq!(repos.names(), ["p/app", "p/team/tool"]);
    assert_eq!(repos.total(), 2);
    let q = admin.get("/api/v1/projects/p/repositories?q=tool").await;
    assert_eq!(q.names(), ["p/team/tool"]);
    let page = admin
        .get("/api/v1/projects/p/repositories?page_size=1&page=2")
        .await;
    assert_eq!(
        (page.names(), page.total()),
        (vec!["p/team/tool".to_owned()], 2)
    );
    let tool = admin.get("/api/v1/projects/p/repositories/team/tool").await;
    assert_eq!(
        (tool.status, &tool.body["name"]),
        (200, &json!("p/team/tool"))
    );
    assert_eq!(
        admin
            .get("/api/v1/projects/p/repositories/nope")
            .await
            .status,
        404
    );
    let encoded = admin
        .get("/api/v1/projects/p/repositories/team%2Ftool")
        .await;
    assert_eq!(encoded.status, 200);

    let base = "/api/v1/projects/p/repositories/app";
    let arts = admin.get(&format!("{base}/artifacts")).await;
    assert_eq!((arts.status, arts.total()), (200, 2), "{}", arts.text);
    let one = arts
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["digest"] == d1.as_str())
        .unwrap()
        .clone();
    let tags: Vec<&str> = one["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["latest", "v1"]);
    assert_eq!(one["size"], size1);
    assert_eq!(
        one["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        one["artifact_type"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert!(one["push_time"].as_str().unwrap().ends_with('Z'));
    let by_tag = admin.get(&format!("{base}/artifacts/v2")).await;
    assert_eq!(by_tag.body["digest"], d2.as_str());
    let art_tags = admin.get(&format!("{base}/artifacts/{d1}/tags")).await;
    assert_eq!(art_tags.names(), ["latest", "v1"]);
    let all_tags = admin.get(&format!("{base}/tags")).await;
    assert_eq!(all_tags.names(), ["latest", "v1", "v2"]);
    assert_eq!(all_tags.body[2]["digest"], d2.as_str());
    assert_eq!(
        admin
            .get(&format!("{base}/artifacts/not:a-digest"))
            .await
            .status,
        400
    );
    assert_eq!(
        admin
            .get(&format!("{base}/artifacts/nosuchtag"))
            .await
            .status,
        404
    );
    assert_eq!(
        admin.get(&format!("{base}/artifacts?page=0")).await.status,
        400
    );

    // Tag deletes: through the artifact (which must be the tag's) or directly.
    let r = admin
        .delete(&format!("{base}/artifacts/{d2}/tags/latest"))
        .await;
    assert_eq!(r.status, 404, "latest is not a tag of {d2}");
    assert_eq!(
        admin
            .delete(&format!("{base}/artifacts/{d1}/tags/latest"))
            .await
            .status,
        204
    );
    assert_eq!(admin.delete(&format!("{base}/tags/v2")).await.status, 204);
    assert_eq!(admin.delete(&format!("{base}/tags/v2")).await.status, 404);
    assert_eq!(admin.get(&format!("{base}/tags")).await.names(), ["v1"]);
    assert_eq!(admin.v2(Method::GET, "/v2/p/app/manifests/v2").await, 404);
    // An artifact delete by tag removes the manifest and all its tags.
    assert_eq!(
        admin.delete(&format!("{base}/artifacts/v1")).await.status,
        204
    );
    assert_eq!(
        admin
            .v2(Method::GET, &format!("/v2/p/app/manifests/{d1}"))
            .await,
        404
    );
    assert_eq!(
        admin.get(&format!("{base}/artifacts")).await.total(),
        1,
        "v2's manifest stays"
    );
    // Repository delete: everything of it, nothing of the others.
    let r = admin
        .delete("/api/v1/projects/p/repositories/team/tool")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        admin
            .get("/api/v1/projects/p/repositories/team/tool")
            .await
            .status,
        404
    );
    assert_eq!(
        admin
            .delete("/api/v1/projects/p/repositories/team/tool")
            .await
            .status,
        404
    );
    assert_eq!(
        admin.v2(Method::GET, "/v2/p/team/tool/tags/list").await,
        404
    );
    assert_eq!(
        admin.get("/api/v1/projects/p/repositories").await.names(),
        ["p/app"]
    );
    // The repository named like its project is addressed as `_`.
    let (s, _, _) = admin.push("p", "root", "root").await;
    assert_eq!(s, 201);
    let root = admin.get("/api/v1/projects/p/repositories/_/tags").await;
    assert_eq!(root.names(), ["root"]);
}

#[tokio::test]
async fn robots_act_within_their_permissions() {
    let (server, admin) = with_projects(&[("p", false), ("q", false)]).await;
    let (s, _, _) = admin.push("q/secret", "v1", "q").await;
    assert_eq!(s, 201);
    let dev = member(&server, "p", "dev", "developer").await;
    let padmin = member(&server, "p", "padmin", "project_admin").await;

    let robots = "/api/v1/projects/p/robots";
    let new = json!({"name": "ci", "actions": ["pull", "push"], "duration_days": 30});
    assert_eq!(dev.post(robots, new.clone()).await.status, 403);
    let created = padmin.post(robots, new.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["name"], "robot$p+ci");
    assert!(created.body["expires_at"].as_u64().unwrap() > 0);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);
    assert_eq!(padmin.post(robots, new).await.status, 409);
    let elsewhere = json!({"name": "x", "permissions": [{"project": "q", "actions": ["pull"]}]});
    assert_eq!(padmin.post(robots, elsewhere).await.status, 400);
    let past = json!({"name": "old", "expires_at": 1});
    assert_eq!(padmin.post(robots, past).await.status, 400);
    let system = json!({"name": "sys", "permissions": [{"project": "p", "actions": ["pull"]}]});
    assert_eq!(
        padmin.post("/api/v1/robots", system.clone()).await.status,
        403
    );

    // The secret is in the POST response only.
    for path in [robots, "/api/v1/robots/robot$p+ci", "/api/v1/robots"] {
        let r = admin.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.text.contains(&secret), "{path} shows the secret");
        assert!(!r.text.contains("secret"), "{path}: {}", r.text);
    }
    assert_eq!(padmin.get(robots).await.names(), ["robot$p+ci"]);

    // Within its permissions on /v2, refused beyond them.
    let robot = As::user(&server, "robot$p+ci", &secret);
    let (status, digest, _) = robot.push("p/app", "v1", "robot").await;
    assert_eq!(status, 201);
    assert_eq!(robot.push("q/app", "v1", "robot").await.0, 403);
    let by_digest = format!("/v2/p/app/manifests/{digest}");
    for (method, path, expected) in [
        (Method::GET, "/v2/p/app/manifests/v1", 200),
        (Method::DELETE, by_digest.as_str(), 403),
        (Method::GET, "/v2/q/secret/manifests/v1", 403),
    ] {
        let status = robot.v2(method.clone(), path).await;
        assert_eq!(status, expected, "{method} {path}");
    }
    // And on the management API: its own project only (another private
    // project answers as a missing one), no deletes.
    assert_eq!(
        robot.get("/api/v1/projects/p/repositories").await.names(),
        ["p/app"]
    );
    assert_eq!(
        robot.get("/api/v1/projects/q/repositories").await.status,
        404
    );
    assert_eq!(robot.get("/api/v1/projects/q").await.status, 404);
    assert_eq!(robot.get("/api/v1/projects").await.names(), ["p"]);
    assert_eq!(
        robot
            .delete("/api/v1/projects/p/repositories/app")
            .await
            .status,
        403
    );
    assert_eq!(
        robot
            .delete("/api/v1/projects/q/repositories/secret")
            .await
            .status,
        404
    );
    assert_eq!(robot.get("/api/v1/projects/p/members").await.status, 403);
    assert_eq!(robot.get(robots).await.status, 403);
    assert_eq!(robot.get("/api/v1/users/current").await.body["robot"], true);

    // System robots: administrators only, any project they name.
    let created = admin.post("/api/v1/robots", system).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["name"], "robot$sys");
    let sys = As::user(
        &server,
        "robot$sys",
        created.body["secret"].as_str().unwrap(),
    );
    assert_eq!(sys.v2(Method::GET, "/v2/p/app/manifests/v1").await, 200);
    assert_eq!(sys.push("p/app", "v2", "sys").await.0, 403);
    assert_eq!(admin.get("/api/v1/robots").await.names(), ["robot$sys"]);
    let ghost = json!({"name": "g", "permissions": [{"project": "ghost", "actions": ["pull"]}]});
    assert_eq!(admin.post("/api/v1/robots", ghost).await.status, 404);

    // Revoked: refused at once by the management API, and by /v2 once the
    // minute for which Auth::login remembers verified credentials is over.
    assert_eq!(dev.delete("/api/v1/projects/p/robots/ci").await.status, 403);
    assert_eq!(
        padmin.delete("/api/v1/projects/p/robots/ci").await.status,
        204
    );
    assert_eq!(
        padmin.delete("/api/v1/projects/p/robots/ci").await.status,
        404
    );
    assert_eq!(
        robot.get("/api/v1/projects/p/repositories").await.status,
        401
    );
    assert_eq!(admin.delete("/api/v1/robots/sys").await.status, 204);
    assert_eq!(sys.get("/api/v1/projects").await.status, 401);
    // Refused at once on /v2 too, although its credentials were just used
    // there (and so verified and cached).
    assert_eq!(
        robot.v2(Method::GET, "/v2/p/app/manifests/v1").await,
        401,
        "a revoked robot still pulls through /v2"
    );
    // A revoked robot whose credentials were never cached: refused at once.
    let fresh = padmin
        .post(robots, json!({"name": "fresh", "actions": ["pull"]}))
        .await;
    let fresh_secret = fresh.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        padmin
            .delete("/api/v1/projects/p/robots/robot$p+fresh")
            .await
            .status,
        204
    );
    let fresh = As::user(&server, "robot$p+fresh", &fresh_secret);
    assert_eq!(fresh.v2(Method::GET, "/v2/p/app/manifests/v1").await, 401);
}

/// The audit events, newest first, once `want` of them match `filter`
/// (events are written in batches).
async fn audit(admin: &As, filter: &str, want: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = admin
            .get(&format!("/api/v1/audit-logs?page_size=100&{filter}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let events = r.body.as_array().unwrap().clone();
        if events.len() >= want {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {want} audit events match {filter}");
}

#[tokio::test]
async fn audit_log_records_registry_and_management_actions() {
    let (server, admin) = with_projects(&[("p", false), ("q", false)]).await;
    let maint = member(&server, "p", "maint", "maintainer").await;
    let (s, digest, _) = maint.push("p/app", "v1", "audit").await;
    assert_eq!(s, 201);
    assert_eq!(maint.v2(Method::GET, "/v2/p/app/manifests/v1").await, 200);
    assert_eq!(
        maint
            .v2(Method::DELETE, &format!("/v2/p/app/manifests/{digest}"))
            .await,
        202
    );
    assert_eq!(admin.push("q/app", "v1", "q").await.0, 201);
    let (s, q_digest, _) = admin.push("q/old", "v1", "old").await;
    assert_eq!(s, 201);
    let r = admin
        .delete("/api/v1/projects/q/repositories/old/artifacts/v1")
        .await;
    assert_eq!(r.status, 204);
    let api_deleted = format!("q/old:{q_digest}");
    let token = As::user(&server, "maint", "maint-password")
        .get(TOKEN)
        .await;
    assert_eq!(token.status, 200);
    let wrong = As::user(&server, "maint", "wrong-password");
    assert_eq!(wrong.v2(Method::GET, "/v2/").await, 401);
    assert_eq!(wrong.get("/api/v1/projects").await.status, 401);
    let robot = admin
        .post("/api/v1/projects/p/robots", json!({"name": "ci"}))
        .await;
    assert_eq!(robot.status, 201);
    assert_eq!(
        admin.delete("/api/v1/projects/p/robots/ci").await.status,
        204
    );

    let deleted = format!("p/app:{digest}");
    for (op, user, resource) in [
        ("push", "maint", "p/app:v1"),
        ("pull", "maint", "p/app:v1"),
        ("delete", "maint", deleted.as_str()),
        ("delete", "admin", api_deleted.as_str()),
        ("login", "maint", "maint"),
        ("login_failed", "maint", "maint"),
        ("create_project", "admin", "p/"),
        ("create_user", "admin", "user:maint"),
        ("add_member", "admin", "p/user:maint (maintainer)"),
        ("create_robot", "admin", "p/robot$p+ci"),
        ("revoke_robot", "admin", "p/robot$p+ci"),
    ] {
        let events = audit(&admin, &format!("operation={op}&user={user}"), 1).await;
        let e = events
            .iter()
            .find(|e| e["resource"] == resource)
            .unwrap_or_else(|| panic!("no {op} of {resource}: {events:?}"));
        assert_eq!(e["address"], "127.0.0.1");
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        assert!(e["timestamp"].as_u64().unwrap() > 1_700_000_000);
    }
    // Both failures, on /v2 and on the API. Identical events within half a
    // second are one record with a count, so count them, not the records.
    let mut failures = 0;
    for _ in 0..100 {
        failures = audit(&admin, "operation=login_failed", 1)
            .await
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>();
        if failures >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(failures, 2, "v2 and api");

    // Cursor paging: the Link header leads to the next, older page.
    let first = admin.get("/api/v1/audit-logs?page_size=2").await;
    let link = first.headers["link"].to_str().unwrap().to_owned();
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let next = link.split('<').nth(1).unwrap().split('>').next().unwrap();
    let path = &next[next.find("/api/v1").unwrap()..];
    let second = admin.get(path).await;
    assert_eq!(second.body.as_array().unwrap().len(), 2);
    assert_ne!(first.body[0], second.body[0]);
    assert!(first.body[1]["timestamp"].as_u64() >= second.body[0]["timestamp"].as_u64());

    // Per project: only resources of the project, for its maintainers.
    let mine = maint
        .get("/api/v1/projects/p/audit-logs?page_size=100")
        .await;
    assert_eq!(mine.status, 200);
    let events = mine.body.as_array().unwrap();
    assert!(events
        .iter()
        .all(|e| e["resource"].as_str().unwrap().starts_with("p/")));
    assert!(events.iter().any(|e| e["operation"] == "push"));
    let widened = maint.get("/api/v1/projects/p/audit-logs?resource=q/").await;
    assert!(
        widened.body.as_array().unwrap().is_empty(),
        "{}",
        widened.text
    );
    assert_eq!(maint.get("/api/v1/projects/q/audit-logs").await.status, 404);
    assert_eq!(maint.get("/api/v1/audit-logs").await.status, 403);
    let all = admin.get("/api/v1/audit-logs?resource=q/").await;
    assert!(all
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"] == "q/app:v1"));
}

/// The status of `/api/v1/users/current` as `user` with `password`: 200
/// when the credentials work.
async fn current_user_status(server: &Server, user: &str, password: &str) -> u16 {
    let caller = As::user(server, user, password);
    caller.get("/api/v1/users/current").await.status
}

/// Runs `berth <args>` against `server` as `user`; exit success, stdout,
/// stderr.
fn cli(
    server: &Server,
    user: (&str, &str),
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &str,
) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env("BERTH_URL", format!("http://{}", server.addr))
        .env("BERTH_USERNAME", user.0)
        .env("BERTH_PASSWORD", user.1)
        .env_remove("BERTH_NEW_PASSWORD")
        .env("NO_PROXY", "*")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    let mut child = cmd.spawn().expect("run berth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_wrappers_drive_the_api() {
    let server = Server::start();
    let api = As::admin(&server);
    let admin = ("admin", ADMIN_PASSWORD);
    let ok = |r: (bool, String, String)| {
        assert!(r.0, "berth failed: {}\n{}", r.1, r.2);
        r.1
    };
    // The administrator's commands that read no input.
    let admin_ok = |args: &[&str]| ok(cli(&server, admin, args, &[], ""));

    admin_ok(&["project", "create", "cli", "--public"]);
    admin_ok(&["project", "create", "hidden"]);
    assert_eq!(api.get("/api/v1/projects/cli").await.body["public"], true);
    let table = admin_ok(&["project", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cli ") && l.contains("true")),
        "{table}"
    );
    let listed: Value = serde_json::from_str(&admin_ok(&["project", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // New passwords from standard input or BERTH_NEW_PASSWORD only.
    let (success, _, err) = cli(&server, admin, &["user", "add", "bob"], &[], "");
    assert!(!success && err.contains("BERTH_NEW_PASSWORD"), "{err}");
    ok(cli(
        &server,
        admin,
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--email",
            "b@example.com",
        ],
        &[],
        "bob-password\n",
    ));
    assert_eq!(
        api.get("/api/v1/users/bob").await.body["email"],
        "b@example.com"
    );
    assert_eq!(
        current_user_status(&server, "bob", "bob-password").await,
        200
    );
    let users = admin_ok(&["user", "list"]);
    assert!(users.lines().any(|l| l.starts_with("bob ")), "{users}");
    ok(cli(
        &server,
        admin,
        &["user", "passwd", "bob"],
        &[("BERTH_NEW_PASSWORD", "bob-second")],
        "",
    ));
    let bob = ("bob", "bob-second");
    assert_eq!(current_user_status(&server, bob.0, bob.1).await, 200);
    // Bob changes his own (the old one is his login password).
    ok(cli(
        &server,
        bob,
        &["user", "passwd", "--password-stdin"],
        &[],
        "bob-third-pw\n",
    ));
    assert_eq!(
        current_user_status(&server, "bob", "bob-third-pw").await,
        200
    );
    let (success, _, err) = cli(&server, ("bob", "bob-third-pw"), &["user", "list"], &[], "");
    assert!(!success && err.contains("403"), "{err}");
    let (success, _, err) = cli(
        &server,
        ("admin", "wrong-password"),
        &["project", "list"],
        &[],
        "",
    );
    assert!(!success && err.contains("401"), "{err}");

    // Robots: the secret is printed once and works on /v2.
    let out = admin_ok(&[
        "robot",
        "create",
        "ci",
        "--project",
        "cli",
        "--permission",
        "cli:pull,push",
    ]);
    assert!(out.contains("robot$cli+ci"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_owned();
    let robot = As::user(&server, "robot$cli+ci", &secret);
    assert_eq!(robot.push("cli/app", "v1", "cli").await.0, 201);
    assert_eq!(robot.push("hidden/app", "v1", "cli").await.0, 403);
    let listed = admin_ok(&["robot", "list", "--project", "cli"]);
    assert!(
        listed.contains("robot$cli+ci") && listed.contains("cli:pull,push"),
        "{listed}"
    );
    assert!(!listed.contains(&secret));
    let out = admin_ok(&[
        "robot",
        "create",
        "sys",
        "--permission",
        "hidden:pull",
        "--duration-days",
        "7",
        "--json",
    ]);
    let sys: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sys["name"], "robot$sys");
    assert!(sys["expires_at"].as_u64().is_some());
    let listed: Value = serde_json::from_str(&admin_ok(&["robot", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "robot$sys");
    admin_ok(&["robot", "revoke", "ci", "--project", "cli"]);
    admin_ok(&["robot", "revoke", "robot$sys"]);
    assert_eq!(api.get("/api/v1/projects/cli/robots").await.total(), 0);
    assert_eq!(api.get("/api/v1/robots").await.total(), 0);
    assert_eq!(
        robot.get("/api/v1/projects/cli/repositories").await.status,
        401
    );
}
