//! Tags list and catalog, with `n`/`last` pagination and `Link` headers.

use super::util::*;
use serde_json::{json, Value};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Pushes one manifest under every tag in `tags`.
async fn tag_all(reg: &Reg, repo: &str, tags: &[&str]) {
    let img = Image::oci(1);
    img.push_blobs(reg, repo).await;
    for t in tags {
        reg.push_manifest(repo, t, OCI_MANIFEST, &img.manifest)
            .await;
    }
}

/// Follows `Link: rel="next"` from `first`, checking every page holds at
/// most `n` entries of `key`; returns all entries in order.
async fn walk(reg: &Reg, first: &str, key: &str, n: usize) -> (Vec<String>, usize) {
    let mut url = first.to_owned();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let r = reg.get(&url).await;
        r.expect(200);
        assert!(r
            .header("Content-Type")
            .unwrap_or_default()
            .starts_with("application/json"));
        let page = strings(&r.json()[key]);
        assert!(page.len() <= n, "page of {} exceeds n={n}", page.len());
        pages += 1;
        match r.next_link() {
            Some(next) => {
                assert_eq!(page.len(), n, "a page followed by a Link must be full");
                all.extend(page);
                url = next;
            }
            None => {
                all.extend(page);
                return (all, pages);
            }
        }
        assert!(pages < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn tags_are_listed_in_lexical_order() {
    let reg = Reg::start();
    let tags = [
        "v2", "latest", "V1", "1.0", "_x", "v10", "a-b", "a.b", "a_b", "Z", "0",
    ];
    tag_all(&reg, "lex", &tags).await;
    let r = reg.get("/v2/lex/tags/list").await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["name"], "lex");
    let got = strings(&v["tags"]);
    let mut want: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(r.header("Link"), None);
}

#[tokio::test]
async fn tags_paginate_with_n_last_and_link() {
    let reg = Reg::start();
    let mut tags: Vec<String> = (0..23).map(|i| format!("t{i:03}")).collect();
    tag_all(
        &reg,
        "pg",
        &tags.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    tags.sort();

    // n alone.
    let r = reg.get("/v2/pg/tags/list?n=5").await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), tags[..5]);
    let link = r.next_link().expect("a Link when more tags follow");
    assert!(link.contains("/v2/pg/tags/list?"), "{link}");
    assert!(
        link.contains("n=5") && link.contains(&format!("last={}", tags[4])),
        "{link}"
    );

    // Following every Link yields each tag once, in order.
    for n in [1, 4, 5, 22, 23] {
        let (all, pages) = walk(&reg, &format!("/v2/pg/tags/list?n={n}"), "tags", n).await;
        assert_eq!(all, tags, "n={n}");
        assert_eq!(pages, tags.len().div_ceil(n), "n={n}");
    }
    // More than there are: one page, no Link.
    let r = reg.get("/v2/pg/tags/list?n=1000").await;
    assert_eq!(strings(&r.json()["tags"]), tags);
    assert_eq!(r.next_link(), None);

    // last alone, and with n.
    let r = reg
        .get(&format!("/v2/pg/tags/list?last={}", tags[19]))
        .await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), tags[20..]);
    let r = reg
        .get(&format!("/v2/pg/tags/list?n=2&last={}", tags[10]))
        .await;
    assert_eq!(strings(&r.json()["tags"]), tags[11..13]);
    // last need not be a tag of the repository: it is a position.
    let r = reg.get("/v2/pg/tags/list?n=3&last=t0105").await;
    assert_eq!(strings(&r.json()["tags"]), tags[11..14]);
    let r = reg
        .get(&format!("/v2/pg/tags/list?last={}", tags[22]))
        .await;
    assert_eq!(strings(&r.json()["tags"]), Vec::<String>::new());
    assert_eq!(r.next_link(), None);

    // n=0: an empty list and no Link.
    let r = reg.get("/v2/pg/tags/list?n=0").await;
    r.expect(200);
    assert_eq!(r.json()["tags"], json!([]));
    assert_eq!(r.header("Link"), None);
}

#[tokio::test]
async fn tags_of_an_unknown_repository_are_404_name_unknown() {
    let reg = Reg::start();
    reg.get("/v2/unknown/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    // A repository holding only blobs has no tags to list either.
    reg.push_blob("blobsonly", b"data").await;
    let r = reg.get("/v2/blobsonly/tags/list").await;
    assert!(
        r.status.as_u16() == 404 || (r.status.as_u16() == 200 && r.json()["tags"] == json!([])),
        "{} {}",
        r.status,
        r.text()
    );
    if r.status.as_u16() == 404 {
        r.expect_error(404, "NAME_UNKNOWN");
    }
}

#[tokio::test]
async fn tags_list_after_every_tag_is_deleted() {
    let reg = Reg::start();
    tag_all(&reg, "emptied", &["a", "b"]).await;
    reg.delete("/v2/emptied/manifests/a").await.expect(202);
    reg.delete("/v2/emptied/manifests/b").await.expect(202);
    let r = reg.get("/v2/emptied/tags/list").await;
    r.expect(200);
    assert_eq!(r.json()["tags"], json!([]));
}

#[tokio::test]
async fn bad_pagination_parameters_are_400() {
    let reg = Reg::start();
    tag_all(&reg, "badn", &["a"]).await;
    for q in ["n=-1", "n=abc", "n=1.5"] {
        let r = reg.get(&format!("/v2/badn/tags/list?{q}")).await;
        assert_eq!(r.status.as_u16(), 400, "{q}: {}", r.text());
        let code = r.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        r.expect_error(400, &code);
        let r = reg.get(&format!("/v2/_catalog?{q}")).await;
        assert_eq!(r.status.as_u16(), 400, "{q}: {}", r.text());
    }
}

#[tokio::test]
async fn catalog_lists_repositories_in_order_with_pagination() {
    let reg = Reg::start();
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(r.json()["repositories"], json!([]));

    let mut repos = vec![
        "zeta",
        "alpha",
        "alpha/beta",
        "alpha/beta/gamma",
        "alpha-two",
        "m/n/o/p/q/r/s/t",
        "b0",
    ];
    let img = Image::oci(2);
    for repo in &repos {
        img.push(&reg, repo, "v1").await;
    }
    repos.sort_unstable();
    let want: Vec<String> = repos.iter().map(|s| s.to_string()).collect();
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(strings(&r.json()["repositories"]), want);
    for n in [1, 2, 3, 7] {
        let (all, _) = walk(&reg, &format!("/v2/_catalog?n={n}"), "repositories", n).await;
        assert_eq!(all, want, "n={n}");
    }
    let r = reg.get("/v2/_catalog?n=2&last=alpha/beta").await;
    assert_eq!(strings(&r.json()["repositories"]), want[3..5]);
    let r = reg.get("/v2/_catalog?n=0").await;
    assert_eq!(r.json()["repositories"], json!([]));
    assert_eq!(r.header("Link"), None);
}
