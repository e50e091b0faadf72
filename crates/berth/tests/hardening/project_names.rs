//! A private project is, to whoever may not see it, indistinguishable
//! from a project that does not exist (issue 14, item 9). The management
//! API answered 403 to outsiders (401 to anonymous callers) for a private
//! project and 404 for a missing one, and the UI's project pages did the
//! same, so private project names could be confirmed one guess at a time.
//! Now both answer the same 404, with the same body, on every
//! `/api/v1/projects/{project}/...` route (the test walks the route table)
//! and on every project page of the UI.

use super::ui_sessions::{api, browser, page, post, session};
use crate::common::oci::{self, Image};
use crate::common::{basic, Server, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

const HIDDEN: &str = "classified";
const MISSING: &str = "nonexistent";

/// A server with the private project `classified` holding `app:v1`, the
/// private project `mine`, and users: `outsider` (no role anywhere),
/// `agent` (a developer of `classified`) and `owner` (project admin of
/// `mine` only). Returns the pushed image.
async fn setup(server: &Server) -> Image {
    let admin = basic("admin", ADMIN_PASSWORD);
    let image = Image::new("names", vec![b"a classified layer".to_vec()], None);
    oci::Client::new(&server.url(""), "admin", ADMIN_PASSWORD)
        .push(&format!("{HIDDEN}/app"), "v1", &image)
        .await
        .unwrap();
    let (status, _) = api(
        server,
        &admin,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_eq!(status, 201);
    for (user, project, role) in [
        ("outsider", None, ""),
        ("agent", Some(HIDDEN), "developer"),
        ("owner", Some("mine"), "project_admin"),
    ] {
        let body = json!({"name": user, "password": format!("{user}-password")});
        let (status, _) = api(server, &admin, Method::POST, "/api/v1/users", Some(body)).await;
        assert_eq!(status, 201);
        if let Some(p) = project {
            let (status, _) = api(
                server,
                &admin,
                Method::POST,
                &format!("/api/v1/projects/{p}/members"),
                Some(json!({"name": user, "role": role})),
            )
            .await;
            assert_eq!(status, 201);
        }
    }
    image
}

/// The tags of the hidden project's repository through the management
/// API, as `auth` sees them: status and body.
async fn hidden_tags(server: &Server, auth: &str) -> (u16, Value) {
    let path = format!("/api/v1/projects/{HIDDEN}/repositories/app/tags");
    api(server, auth, Method::GET, &path, None).await
}

/// `template` with `{project}` as `project` and the other parameters
/// filled in.
fn fill(template: &str, project: &str) -> String {
    template
        .replace("{project}", project)
        .replace("{repository}", "app")
        .replace("{reference}", "v1")
        .replace("{tag}", "v1")
        .replace("{kind}", "user")
        .replace("{member}", "agent")
        .replace("{robot}", "ci")
}

/// Status and raw body of a call as `auth` (anonymous when `None`).
async fn raw(
    server: &Server,
    auth: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let body = body.map(str::to_owned);
    let resp = server.send_json(method, path, auth, body).await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn the_management_api_answers_a_hidden_project_as_a_missing_one() {
    let server = Server::start();
    setup(&server).await;
    let outsider = basic("outsider", "outsider-password");
    let callers = [("outsider", Some(outsider.as_str())), ("anonymous", None)];
    let mut checked = 0;
    for route in berth_mgmt::ROUTES {
        if !route.path.contains("{project}") {
            continue;
        }
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        // A body that would do something, where one is taken.
        let body = match route.method {
            "POST" | "PUT" => Some(r#"{"name":"outsider","role":"project_admin","public":true}"#),
            _ => None,
        };
        for (who, auth) in callers {
            let call = |project| {
                let (method, path) = (method.clone(), fill(route.path, project));
                let server = &server;
                async move { raw(server, auth, method, &path, body).await }
            };
            let hidden = call(HIDDEN).await;
            let missing = call(MISSING).await;
            let what = format!("{who} {} {}", route.method, route.path);
            // Deleting a project is for administrators before anything
            // else: refused alike, whether the project exists or not.
            let admin_only = route.method == "DELETE" && route.path == "/api/v1/projects/{project}";
            if !admin_only {
                assert_eq!(missing.0, 404, "{what}: {}", missing.1);
            }
            assert_eq!(
                (hidden.0, hidden.1.replace(HIDDEN, MISSING)),
                missing,
                "{what}: a private project answers unlike a missing one"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2 * 25, "only {checked} routes were checked");

    // A project admin naming another project in a robot's permissions
    // learns nothing either.
    let owner = basic("owner", "owner-password");
    let robot = |project| {
        let permissions = json!([{"project": project, "actions": ["pull"]}]);
        let body = json!({"name": "x", "permissions": permissions}).to_string();
        let (server, owner) = (&server, owner.as_str());
        let robots = "/api/v1/projects/mine/robots";
        async move { raw(server, Some(owner), Method::POST, robots, Some(&body)).await }
    };
    let hidden = robot(HIDDEN).await;
    let missing = robot(MISSING).await;
    assert_eq!(missing.0, 400, "{}", missing.1);
    assert_eq!(hidden, missing);

    // Nothing the outsider sent changed anything.
    let admin = basic("admin", ADMIN_PASSWORD);
    let (status, project) = api(
        &server,
        &admin,
        Method::GET,
        &format!("/api/v1/projects/{HIDDEN}"),
        None,
    )
    .await;
    assert_eq!((status, &project["public"]), (200, &json!(false)));
    let (_, members) = api(
        &server,
        &admin,
        Method::GET,
        &format!("/api/v1/projects/{HIDDEN}/members"),
        None,
    )
    .await;
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["agent"]);
    let (status, _) = hidden_tags(&server, &admin).await;
    assert_eq!(status, 200);

    // Who may see the project still gets 403 for what their role lacks,
    // and a public project still asks anonymous callers to log in.
    let agent = basic("agent", "agent-password");
    let path = format!("/api/v1/projects/{HIDDEN}");
    assert_eq!(api(&server, &agent, Method::GET, &path, None).await.0, 200);
    let robots = format!("{path}/robots");
    assert_eq!(
        api(&server, &agent, Method::GET, &robots, None).await.0,
        403
    );
    let (status, _) = api(
        &server,
        &admin,
        Method::PUT,
        "/api/v1/projects/mine",
        Some(json!({"public": true})),
    )
    .await;
    assert_eq!(status, 200);
    let members = raw(
        &server,
        None,
        Method::GET,
        "/api/v1/projects/mine/members",
        None,
    )
    .await;
    assert_eq!(members.0, 401, "{}", members.1);

    // /v2 answers both alike too.
    for auth in [Some(outsider.as_str()), None] {
        let hidden = raw(
            &server,
            auth,
            Method::GET,
            &format!("/v2/{HIDDEN}/app/tags/list"),
            None,
        )
        .await;
        let missing = raw(
            &server,
            auth,
            Method::GET,
            &format!("/v2/{MISSING}/app/tags/list"),
            None,
        )
        .await;
        assert_eq!(hidden.0, missing.0, "/v2 as {auth:?}");
    }
}

#[tokio::test]
async fn the_ui_answers_a_hidden_project_as_a_missing_one() {
    let server = Server::start();
    let image = setup(&server).await;
    let http = browser();
    let outsider = session(&http, &server, "outsider", "outsider-password").await;
    let artifact = format!("/ui/repo/{{project}}/app/-/artifact/{}", image.digest);
    let pages = [
        "/ui/projects/{project}",
        "/ui/projects/{project}/members",
        "/ui/projects/{project}/robots",
        "/ui/projects/{project}/policy",
        "/ui/projects/{project}/audit",
        "/ui/repo/{project}/app",
        artifact.as_str(),
    ];
    for template in pages {
        let hidden = page(&http, &server, &outsider, &fill(template, HIDDEN)).await;
        let missing = page(&http, &server, &outsider, &fill(template, MISSING)).await;
        assert_eq!(missing.0, 404, "{template}: {}", missing.2);
        assert_eq!(
            (hidden.0, hidden.2.replace(HIDDEN, MISSING)),
            (missing.0, missing.2),
            "{template}: a private project's page differs from a missing one's"
        );
    }

    let forms: [(&str, &[(&str, &str)]); 7] = [
        (
            "/ui/projects/{project}/settings",
            &[("action", "visibility"), ("public", "true")],
        ),
        (
            "/ui/projects/{project}/members",
            &[("name", "outsider"), ("role", "project_admin")],
        ),
        ("/ui/projects/{project}/robots", &[("name", "x")]),
        ("/ui/projects/{project}/policy/quota", &[("limit_mib", "1")]),
        (
            "/ui/projects/{project}/policy/immutable",
            &[("action", "remove"), ("index", "0")],
        ),
        ("/ui/repo/{project}/app/-/delete", &[]),
        ("/ui/repo/{project}/app/-/tags/v1/delete", &[]),
    ];
    // A rule for the rule-removing form to find, if it looked.
    let admin = basic("admin", ADMIN_PASSWORD);
    let rules = json!([{"repositories": "**", "tags": "v*"}]);
    let rules_path = format!("/api/v1/projects/{HIDDEN}/immutable-rules");
    let (status, _) = api(&server, &admin, Method::PUT, &rules_path, Some(rules)).await;
    assert_eq!(status, 200);
    for (template, form) in forms {
        let hidden = post(&http, &server, &outsider, &fill(template, HIDDEN), form).await;
        let missing = post(&http, &server, &outsider, &fill(template, MISSING), form).await;
        assert_eq!(missing.0, 404, "POST {template}: {}", missing.1);
        assert_eq!(
            (hidden.0, hidden.1.replace(HIDDEN, MISSING)),
            missing,
            "POST {template}: a private project answers unlike a missing one"
        );
    }
    let (status, tags) = hidden_tags(&server, &admin).await;
    assert_eq!((status, tags.as_array().map(Vec::len)), (200, Some(1)));

    // A member still sees the project's pages.
    let agent = session(&http, &server, "agent", "agent-password").await;
    let own = page(&http, &server, &agent, &format!("/ui/projects/{HIDDEN}")).await;
    assert_eq!(own.0, 200);
    let robots = page(
        &http,
        &server,
        &agent,
        &format!("/ui/projects/{HIDDEN}/robots"),
    )
    .await;
    assert_eq!(robots.0, 403, "a developer may see, not manage");
}
