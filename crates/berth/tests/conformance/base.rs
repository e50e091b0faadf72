//! The API root, unsupported methods, repository names and routing.

use super::util::*;
use reqwest::Method;

#[tokio::test]
async fn api_root_answers_get_and_head() {
    let reg = Reg::start();
    let r = reg.get("/v2/").await;
    r.expect(200);
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    let r = reg.head("/v2/").await;
    r.expect(200);
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert!(r.body.is_empty(), "HEAD must not carry a body");
}

#[tokio::test]
async fn every_v2_response_carries_the_api_version_header() {
    let reg = Reg::start();
    let d = sha256(b"nothing");
    for r in [
        reg.get(&format!("/v2/a/blobs/{d}")).await,
        reg.get("/v2/a/manifests/latest").await,
        reg.get("/v2/UPPER/tags/list").await,
        reg.send(reg.req(Method::PUT, "/v2/")).await,
    ] {
        assert_eq!(
            r.header("Docker-Distribution-API-Version"),
            Some("registry/2.0")
        );
    }
}

#[tokio::test]
async fn unsupported_methods_are_405_unsupported_with_allow() {
    let reg = Reg::start();
    let d = sha256(b"x");
    let upload = reg.start_upload("a").await;
    let cases: Vec<(Method, String, &[&str])> = vec![
        (Method::POST, "/v2/".into(), &["GET", "HEAD"]),
        (Method::DELETE, "/v2/".into(), &["GET", "HEAD"]),
        (Method::PUT, "/v2/_catalog".into(), &["GET", "HEAD"]),
        (Method::POST, "/v2/a/tags/list".into(), &["GET", "HEAD"]),
        (
            Method::POST,
            "/v2/a/manifests/latest".into(),
            &["GET", "HEAD", "PUT", "DELETE"],
        ),
        (
            Method::PATCH,
            "/v2/a/manifests/latest".into(),
            &["GET", "HEAD", "PUT", "DELETE"],
        ),
        (
            Method::PUT,
            format!("/v2/a/blobs/{d}"),
            &["GET", "HEAD", "DELETE"],
        ),
        (
            Method::PATCH,
            format!("/v2/a/blobs/{d}"),
            &["GET", "HEAD", "DELETE"],
        ),
        (Method::GET, "/v2/a/blobs/uploads/".into(), &["POST"]),
        (
            Method::POST,
            upload.clone(),
            &["GET", "HEAD", "PATCH", "PUT", "DELETE"],
        ),
        (
            Method::DELETE,
            format!("/v2/a/referrers/{d}"),
            &["GET", "HEAD"],
        ),
    ];
    for (method, path, allowed) in cases {
        let r = reg.send(reg.req(method.clone(), &path)).await;
        r.expect_error(405, "UNSUPPORTED");
        let allow = r.must_header("Allow");
        let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
        got.sort_unstable();
        let mut want = allowed.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "Allow for {method} {path}");
    }
}

/// RFC 9110: wherever GET is answered, so is HEAD, with the same headers.
#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let (reg, img) = Reg::with_image("h", "v1", 3).await;
    let loc = reg.start_upload("h").await;
    for path in [
        "/v2/".to_owned(),
        "/v2/_catalog".to_owned(),
        "/v2/h/tags/list".to_owned(),
        format!("/v2/h/referrers/{}", img.digest),
        "/v2/h/manifests/v1".to_owned(),
        format!("/v2/h/blobs/{}", sha256(&img.config)),
        loc,
    ] {
        let get = reg.get(&path).await;
        let head = reg.head(&path).await;
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.body.is_empty(), "{path}");
        for h in [
            "Content-Type",
            "Content-Length",
            "Docker-Content-Digest",
            "Range",
            "Location",
        ] {
            // axum adds `Content-Length: 0` to every empty response, and
            // hyper strips it from a 204 only when answering GET.
            if h == "Content-Length" && get.status.as_u16() == 204 {
                continue;
            }
            assert_eq!(head.header(h), get.header(h), "{h} of HEAD {path}");
        }
    }
}

#[tokio::test]
async fn invalid_repository_names_are_400_name_invalid() {
    let reg = Reg::start();
    let d = sha256(b"x");
    let long = "a".repeat(256);
    for name in [
        "UPPER",
        "Mixed/case",
        "a..b",
        "a___b",
        "a_.b",
        "-a",
        "a-",
        "a/-b",
        "a/b-",
        ".a",
        "a/.b",
        "a%20b",
        long.as_str(),
    ] {
        for path in [
            format!("/v2/{name}/tags/list"),
            format!("/v2/{name}/manifests/latest"),
            format!("/v2/{name}/blobs/{d}"),
            format!("/v2/{name}/blobs/uploads/"),
            format!("/v2/{name}/referrers/{d}"),
        ] {
            let method = if path.ends_with("/uploads/") {
                Method::POST
            } else {
                Method::GET
            };
            let r = reg.send(reg.req(method, &path)).await;
            r.expect_error(400, "NAME_INVALID");
        }
        let r = reg
            .put_manifest(name, "latest", Some(OCI_MANIFEST), b"{}")
            .await;
        r.expect_error(400, "NAME_INVALID");
    }
}

#[tokio::test]
async fn longest_valid_name_is_accepted() {
    let reg = Reg::start();
    // 255 characters in all, in segments.
    let name = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(name.len(), 255);
    let img = Image::oci(1);
    img.push(&reg, &name, "v1").await;
    reg.expect_manifest(&name, "v1", OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn names_with_many_segments_work_everywhere() {
    let reg = Reg::start();
    let repo = "org/team-x/proj_a/app.v2/sub--part/b__c/deep/eighth";
    assert_eq!(repo.split('/').count(), 8);
    let img = Image::oci(2);
    img.push(&reg, repo, "v1").await;
    reg.expect_manifest(repo, "v1", OCI_MANIFEST, &img.manifest)
        .await;
    reg.expect_manifest(repo, &img.digest, OCI_MANIFEST, &img.manifest)
        .await;
    reg.expect_blob(repo, &img.layers[0]).await;

    // Chunked upload under the long name.
    let loc = reg.start_upload(repo).await;
    let data = random_bytes(9, 100);
    let r = reg
        .send(reg.req(Method::PATCH, &loc).body(data.clone()))
        .await;
    r.expect(202);
    let loc = r.must_header("Location").to_owned();
    reg.close_and_check(repo, &loc, &data).await;

    let r = reg.get(&format!("/v2/{repo}/tags/list")).await;
    r.expect(200);
    assert_eq!(r.json()["name"], repo);
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));

    let r = reg
        .get(&format!("/v2/{repo}/referrers/{}", img.digest))
        .await;
    r.expect(200);

    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(r.json()["repositories"], serde_json::json!([repo]));

    reg.delete(&format!("/v2/{repo}/manifests/v1"))
        .await
        .expect(202);
    reg.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
        .await
        .expect(202);
    reg.delete(&format!("/v2/{repo}/blobs/{}", sha256(&data)))
        .await
        .expect(202);
}

/// Repository names may contain the words the API uses in its paths.
#[tokio::test]
async fn names_that_look_like_endpoints_are_routed_by_their_ending() {
    let reg = Reg::start();
    for (i, repo) in [
        "blobs",
        "manifests",
        "tags",
        "uploads",
        "referrers",
        "a/blobs",
        "a/blobs/uploads",
        "a/manifests",
        "a/tags/list",
        "v2/x",
        "_x/y",
    ]
    .into_iter()
    .enumerate()
    {
        if repo.starts_with('_') {
            // Not a valid name: components start with a letter or digit.
            reg.get(&format!("/v2/{repo}/tags/list"))
                .await
                .expect_error(400, "NAME_INVALID");
            continue;
        }
        let img = Image::oci(100 + i as u64);
        img.push(&reg, repo, "t").await;
        reg.expect_manifest(repo, "t", OCI_MANIFEST, &img.manifest)
            .await;
        reg.expect_blob(repo, &img.config).await;
        let r = reg.get(&format!("/v2/{repo}/tags/list")).await;
        r.expect(200);
        assert_eq!(r.json()["name"], repo);
        let loc = reg.start_upload(repo).await;
        reg.upload_range(&loc).await;
        reg.delete(&loc).await.expect(204);
    }
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    let repos = r.json()["repositories"]
        .as_array()
        .expect("repositories")
        .len();
    assert_eq!(repos, 10);
}

#[tokio::test]
async fn unknown_paths_under_v2_are_json_404s() {
    let reg = Reg::start();
    for path in [
        "/v2/a",
        "/v2/a/unknown/x",
        "/v2/a/blobs",
        "/v2/a/tags",
        "/v2/a/manifests",
    ] {
        let r = reg.get(path).await;
        assert_eq!(r.status.as_u16(), 404, "{path}: {}", r.text());
        let v = r.json();
        assert!(v["errors"][0]["code"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn malformed_digests_in_paths_are_400_digest_invalid() {
    let reg = Reg::start();
    for d in [
        "sha256:abc",
        "sha256:ZZZZ",
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:baddigeststring",
    ] {
        reg.get(&format!("/v2/a/blobs/{d}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.get(&format!("/v2/a/referrers/{d}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.get(&format!("/v2/a/manifests/{d}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.put_manifest("a", d, Some(OCI_MANIFEST), b"{}")
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}
