//! The web UI in a real browser: headless Chromium driven through
//! WebDriver (Debian's `chromium` and `chromium-driver`) against the real
//! binary. The Docker engine pushes an image in the same test; the browser
//! logs in, finds it, copies its pull command, creates a robot account
//! (which then logs in to `/v2`) and deletes a tag; a guest sees no delete
//! button and a delete it forges is refused. A phone-sized window shows the
//! pages without sideways scrolling. With `BERTH_UI_SCREENSHOTS=1` the main
//! pages are saved under `docs/screenshots/`.

mod common;
/// Logins over plain HTTP: sessions, cookies, LDAP.
#[path = "ui/sessions.rs"]
mod sessions;

use berth_test_kit::webdriver::Browser;
use berth_test_kit::Docker;
use common::oci::{self, Image};
use common::{admin_client, basic, noise, Server, ADMIN_PASSWORD};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const GUEST: &str = "gail";
const GUEST_PASSWORD: &str = "gail-guest-pw";

/// A tar of a small root filesystem, made here (no image is downloaded).
fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("bin/app"), b"#!/bin/sh\necho hello from berth\n").unwrap();
    std::fs::write(root.join("etc/data.bin"), noise(6, 300_000)).unwrap();
    let tar = dir.join("rootfs.tar");
    berth_test_kit::tar(&root, &tar);
    tar
}

/// Saves a screenshot of the current page as `docs/screenshots/<name>.png`
/// when `BERTH_UI_SCREENSHOTS` is set.
async fn screenshot(browser: &Browser, name: &str) {
    if std::env::var_os("BERTH_UI_SCREENSHOTS").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn log_in(browser: &Browser, server: &Server, user: &str, password: &str) {
    browser.goto(&server.url("/")).await;
    // Not logged in: the login page, which comes back here afterwards.
    assert!(
        browser.current_url().await.contains("/ui/login?next=%2F"),
        "{}",
        browser.current_url().await
    );
    browser.type_into("#username", user).await;
    browser.type_into("#password", password).await;
    browser.click("form.stack button[type=submit]").await;
    browser.find("form.logout").await;
    assert_eq!(browser.text("h1").await, "Projects");
}

/// Tags of `repo`, as `/v2` lists them to the administrator.
async fn tags(server: &Server, repo: &str) -> Vec<String> {
    let resp: Value = admin_client()
        .get(server.url(&format!("/v2/{repo}/tags/list")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn browse_copy_create_robot_delete_tag_and_guests_cannot() {
    let server = Server::start();
    common::create_project(&server, "demo", false).await;

    // The Docker engine pushes an image it made from a local tar.
    let tmp = tempfile::tempdir().unwrap();
    let docker = Docker::new(&tmp.path().join("docker-config"));
    let image = format!("{}/demo/web", server.addr);
    let (v1, old) = (format!("{image}:v1"), format!("{image}:old"));
    let tar = rootfs_tar(tmp.path());
    docker.ok(&[
        "import",
        "--change",
        "ENV GREETING=hello-from-berth",
        "--change",
        "ENTRYPOINT [\"/bin/app\"]",
        "--change",
        "LABEL org.example.team=platform",
        tar.to_str().unwrap(),
        &v1,
    ]);
    docker.ok(&["tag", &v1, &old]);
    docker.login(&server.addr, "admin", ADMIN_PASSWORD);
    docker.ok(&["push", &v1]);
    docker.ok(&["push", &old]);
    // Pulled back, so that the UI has a pull time to show.
    docker.ok(&["rmi", &v1, &old]);
    docker.ok(&["pull", &v1]);
    docker.ok(&["rmi", &v1]);

    // A signature of it, and a two-platform index elsewhere, pushed over
    // HTTP.
    let client = oci::Client::new(&server.url(""), "admin", ADMIN_PASSWORD);
    let (status, manifest) = client.get("/v2/demo/web/manifests/v1").await;
    assert_eq!(status, 200);
    let subject = common::sha256(&manifest);
    let signature = Image::new("sig", vec![noise(7, 300)], Some((&subject, manifest.len())));
    client
        .push("demo/web", &signature.digest, &signature)
        .await
        .unwrap();
    let amd = Image::new("amd64", vec![noise(8, 20_000)], None);
    let arm = Image::new("arm64", vec![noise(9, 30_000)], None);
    for img in [&amd, &arm] {
        client.push("demo/tools", &img.digest, img).await.unwrap();
    }
    let (s, _) = client
        .put_manifest(
            "demo/tools",
            "multi",
            &oci::index(&[&amd, &arm]),
            oci::INDEX,
        )
        .await;
    assert_eq!(s, 201);

    let browser = Browser::start(1280, 900).await;

    // Log in; the projects list shows storage, quota and repositories.
    browser.goto(&server.url("/")).await;
    // Pages of this origin may read the clipboard, for checking what the
    // copy button copied.
    browser.grant_clipboard().await;
    screenshot(&browser, "login").await;
    log_in(&browser, &server, "admin", ADMIN_PASSWORD).await;
    let row = browser.text("table tbody tr").await;
    assert!(row.contains("demo") && row.contains("private"), "{row}");
    assert!(row.contains("no limit") && row.contains("KiB"), "{row}");
    assert_eq!(
        browser.text("table tbody tr td.num").await,
        "2",
        "repositories"
    );
    screenshot(&browser, "projects").await;

    // The project's repositories, searched.
    browser.click("a[href='/ui/projects/demo']").await;
    browser.type_into("#q", "we").await;
    browser.click("form.search button").await;
    browser
        .wait_until("the search", "return location.search === '?q=we'")
        .await;
    browser.find("a[href='/ui/repo/demo/web']").await;
    assert_eq!(browser.count("a[href='/ui/repo/demo/tools']").await, 0);
    browser.click("a[href='/ui/repo/demo/web']").await;

    // The artifacts: the pushed image with its tags, pull time and
    // signature; its pull command copied to the clipboard.
    let card = "article[data-digest='".to_owned() + &subject + "']";
    let text = browser.text(&card).await;
    assert!(text.contains("old, v1 (image)"), "{text}");
    assert!(!text.contains("Last pulled\nnever"), "{text}");
    assert!(text.contains("application/vnd.example.signature"), "{text}");
    let pull = format!("docker pull {}/demo/web:v1", server.addr);
    assert!(text.contains(&pull), "{text}");
    browser
        .click(&format!("{card} tr[data-tag='v1'] button.copy"))
        .await;
    browser
        .wait_until(
            "the copy to finish",
            "return document.querySelector(\"tr[data-tag='v1'] .copy-status\").textContent === 'Copied'",
        )
        .await;
    let copied = browser
        .script("return navigator.clipboard.readText()", json!([]))
        .await;
    assert_eq!(copied, json!(pull), "the clipboard holds the pull command");
    screenshot(&browser, "repository").await;

    // The artifact's detail: layers, configuration, history, referrers.
    browser.click(&format!("{card} h2 a")).await;
    browser.find("#layers").await;
    let detail = browser.page_text().await;
    for expected in [
        "Layers",
        "linux/amd64",
        "GREETING=hello-from-berth",
        "/bin/app",
        "org.example.team",
        "platform",
        "History",
        "application/vnd.example.signature",
    ] {
        assert!(
            detail.contains(expected),
            "{expected} missing from:\n{detail}"
        );
    }
    screenshot(&browser, "artifact").await;

    // An index shows its platforms.
    browser.goto(&server.url("/ui/repo/demo/tools")).await;
    let tools = browser.page_text().await;
    assert!(
        tools.contains("linux/amd64") && tools.contains("linux/arm64"),
        "{tools}"
    );

    // A user created and made a guest of the project, from the pages.
    browser.goto(&server.url("/ui/users")).await;
    browser.type_into("#user-name", GUEST).await;
    browser.type_into("#user-password", GUEST_PASSWORD).await;
    browser
        .click("form[action='/ui/users'] button[type=submit]")
        .await;
    browser.find("p.notice").await;
    browser.goto(&server.url("/ui/projects/demo/members")).await;
    browser.type_into("#member-name", GUEST).await;
    browser.click("#member-role option[value=guest]").await;
    browser
        .click("section[aria-labelledby=add-member] button")
        .await;
    browser.find("p.notice").await;
    let member = browser.text(&format!("tr[data-member='{GUEST}']")).await;
    assert!(member.contains("Guest"), "{member}");

    // A robot account: created, its secret shown once, and it works.
    browser.goto(&server.url("/ui/projects/demo/robots")).await;
    browser.type_into("#robot-name", "ci").await;
    browser
        .type_into("#robot-description", "pushes from CI")
        .await;
    browser.click("input[name=actions][value=push]").await;
    browser
        .click("section[aria-labelledby=new-robot] button[type=submit]")
        .await;
    let name = browser.text("#robot-name-value").await;
    let secret = browser.text("#robot-secret").await;
    assert_eq!(name, "robot$demo+ci");
    assert!(secret.len() >= 32, "{secret}");
    screenshot(&browser, "robot-created").await;
    let anonymous = berth_net::builder().no_proxy().build().unwrap();
    let as_robot = |pw: &str| {
        anonymous
            .get(server.url("/v2/demo/web/tags/list"))
            .header("Authorization", basic(&name, pw))
            .send()
    };
    assert_eq!(as_robot(&secret).await.unwrap().status(), 200);
    assert_eq!(as_robot("wrong-secret").await.unwrap().status(), 401);
    browser.goto(&server.url("/ui/projects/demo/robots")).await;
    let listed = browser.text("tr[data-robot='robot$demo+ci']").await;
    assert!(
        listed.contains("pull, push") && listed.contains("never expires"),
        "{listed}"
    );
    assert!(
        !browser.page_text().await.contains(&secret),
        "the secret is shown once"
    );
    screenshot(&browser, "robots").await;
    // Revoked, it is refused at once.
    browser
        .click("tr[data-robot='robot$demo+ci'] button.danger")
        .await;
    browser.accept_prompt().await;
    browser.find("p.notice").await;
    assert_eq!(browser.count("tr[data-robot='robot$demo+ci']").await, 0);
    assert_eq!(as_robot(&secret).await.unwrap().status(), 401);

    // A tag deleted from the UI is gone from /v2; the other stays.
    browser.goto(&server.url("/ui/repo/demo/web")).await;
    browser.click("tr[data-tag='old'] form button.danger").await;
    let asked = browser.accept_prompt().await;
    assert!(asked.contains("demo/web:old"), "{asked}");
    browser.find("p.notice").await;
    assert!(browser
        .text("p.notice")
        .await
        .contains("The tag was deleted."));
    assert_eq!(tags(&server, "demo/web").await, ["v1"]);

    // Garbage collection: a dry run from the page lands in the history.
    browser.goto(&server.url("/ui/gc")).await;
    browser.click("form button[value=true]").await;
    let report = browser.text("#gc-report").await;
    assert!(report.contains("Nothing was deleted"), "{report}");
    browser.click("form button[value=false]").await;
    browser.accept_prompt().await;
    browser.find("p.notice").await;
    let history = browser.text("table tbody").await;
    assert!(
        history.contains("api on") && history.contains("completed"),
        "{history}"
    );
    screenshot(&browser, "gc").await;

    // The other administration pages.
    browser.goto(&server.url("/ui/projects/demo/policy")).await;
    browser.type_into("#imm-tags", "v*").await;
    browser
        .click("form[action$='/policy/immutable'] button")
        .await;
    browser.find("p.notice").await;
    assert!(browser.page_text().await.contains("v*"));
    screenshot(&browser, "policy").await;
    browser.goto(&server.url("/ui/nodes")).await;
    assert!(browser.text("#this-node").await.contains("ready"));
    browser.goto(&server.url("/ui/audit")).await;
    let audit = browser.page_text().await;
    assert!(
        audit.contains("create_robot") && audit.contains("demo/web:old"),
        "{audit}"
    );
    browser.goto(&server.url("/ui/users")).await;
    assert!(browser
        .text(&format!("tr[data-user='{GUEST}']"))
        .await
        .contains("no"));

    // A phone-sized window: no sideways scrolling of the page.
    browser.set_window(390, 844).await;
    for page in ["/", "/ui/repo/demo/web", "/ui/projects/demo/robots"] {
        browser.goto(&server.url(page)).await;
        let fits = browser
            .script(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                json!([]),
            )
            .await;
        let (scroll, inner) = (fits[0].as_u64().unwrap(), fits[1].as_u64().unwrap());
        assert!(inner <= 500, "the window is phone-sized: {inner}");
        assert!(
            scroll <= inner,
            "{page} scrolls sideways: {scroll} > {inner}"
        );
    }
    browser.goto(&server.url("/ui/repo/demo/web")).await;
    screenshot(&browser, "repository-phone").await;
    browser.set_window(1280, 900).await;

    // Log out: the session is gone.
    browser.click("form.logout button").await;
    browser.find("#username").await;
    browser.goto(&server.url("/ui/gc")).await;
    assert!(browser.current_url().await.contains("/ui/login"));

    // A guest sees the artifacts but no delete button, may not manage
    // robots, and a delete they forge (with their own valid CSRF token) is
    // refused by the server.
    log_in(&browser, &server, GUEST, GUEST_PASSWORD).await;
    browser.goto(&server.url("/ui/repo/demo/web")).await;
    browser.find("tr[data-tag='v1']").await;
    assert_eq!(browser.count("button.danger").await, 0, "no delete buttons");
    assert_eq!(browser.count("form[action*='delete']").await, 0);
    let forge = "const [path, withToken] = arguments; \
        const body = new URLSearchParams(); \
        if (withToken) body.set('csrf', document.querySelector('form.logout input[name=csrf]').value); \
        return fetch(path, {method: 'POST', body}).then(r => r.status);";
    for (path, with_token) in [
        ("/ui/repo/demo/web/-/tags/v1/delete", true),
        ("/ui/repo/demo/web/-/delete", true),
        ("/ui/projects/demo/robots", true),
        ("/ui/repo/demo/web/-/tags/v1/delete", false),
    ] {
        let status = browser.script(forge, json!([path, with_token])).await;
        assert_eq!(
            status,
            json!(403),
            "a guest's POST {path} (token: {with_token})"
        );
    }
    assert_eq!(
        tags(&server, "demo/web").await,
        ["v1"],
        "nothing was deleted"
    );
    browser.goto(&server.url("/ui/projects/demo/robots")).await;
    assert!(browser.text("h1").await.contains("403"));
    browser.goto(&server.url("/ui/users")).await;
    assert!(browser.text("h1").await.contains("403"));

    browser.quit().await;
}
