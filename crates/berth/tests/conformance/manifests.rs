//! Manifests: push by tag and digest of OCI and Docker manifests and
//! indexes, validation, exact-byte pulls, `Accept` negotiation, delete.

use super::util::*;
use reqwest::Method;
use serde_json::json;

async fn get_accept(reg: &Reg, path: &str, accept: &[&str]) -> Resp {
    let mut rb = reg.req(Method::GET, path);
    for a in accept {
        rb = rb.header("Accept", *a);
    }
    reg.send(rb).await
}

#[tokio::test]
async fn oci_image_by_tag_pulls_back_exactly_by_tag_and_digest() {
    let reg = Reg::start();
    let img = Image::oci(1);
    let digest = img.push(&reg, "img", "v1").await;
    reg.expect_manifest("img", "v1", OCI_MANIFEST, &img.manifest)
        .await;
    reg.expect_manifest("img", &digest, OCI_MANIFEST, &img.manifest)
        .await;
    for reference in ["v1", digest.as_str()] {
        let r = reg
            .send(
                reg.req(Method::HEAD, &format!("/v2/img/manifests/{reference}"))
                    .header("Accept", OCI_MANIFEST),
            )
            .await;
        r.expect(200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        let len = img.manifest.len().to_string();
        assert_eq!(r.header("Content-Length"), Some(len.as_str()));
    }
}

#[tokio::test]
async fn push_by_digest_stores_without_a_tag() {
    let reg = Reg::start();
    let img = Image::oci(2);
    let digest = img.push(&reg, "bydigest", &img.digest).await;
    reg.expect_manifest("bydigest", &digest, OCI_MANIFEST, &img.manifest)
        .await;
    let r = reg.get("/v2/bydigest/tags/list").await;
    r.expect(200);
    assert_eq!(r.json()["tags"].as_array().map(Vec::len).unwrap_or(0), 0);
}

#[tokio::test]
async fn bytes_are_stored_exactly_as_pushed() {
    let (reg, img) = Reg::with_image_blobs("exact", 3).await;
    // Odd spacing, key order and a trailing newline must all survive.
    let v: serde_json::Value = serde_json::from_slice(&img.manifest).expect("json");
    let body = format!(
        "{{\n\t\"layers\" :{},  \"schemaVersion\":2,\"config\":   {} ,\"mediaType\":\"{OCI_MANIFEST}\", \"x-unknown-field\": [1, 2.50, \"\\u00e9\"]}}\n",
        v["layers"], v["config"]
    );
    reg.round_trip_manifest("exact", "odd", OCI_MANIFEST, body.as_bytes())
        .await;
    let d = sha256(body.as_bytes());
    reg.expect_manifest("exact", &d, OCI_MANIFEST, body.as_bytes())
        .await;
}

#[tokio::test]
async fn oci_index_with_children_and_a_nested_index() {
    let reg = Reg::start();
    let a = Image::oci(4);
    let b = Image::oci(5);
    a.push(&reg, "idx", &a.digest).await;
    b.push(&reg, "idx", &b.digest).await;
    let index = index_of(OCI_INDEX, &[a.descriptor(), b.descriptor()]);
    reg.round_trip_manifest("idx", "multi", OCI_INDEX, &index)
        .await;
    let idx_digest = sha256(&index);
    reg.expect_manifest("idx", &idx_digest, OCI_INDEX, &index)
        .await;
    // An index of indexes.
    let outer = index_of(OCI_INDEX, &[descriptor(OCI_INDEX, &index)]);
    reg.round_trip_manifest("idx", "outer", OCI_INDEX, &outer)
        .await;
    // An empty index.
    let empty = index_of(OCI_INDEX, &[]);
    reg.round_trip_manifest("idx", "empty", OCI_INDEX, &empty)
        .await;
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = Reg::start();
    let a = Image::docker(6);
    let b = Image::docker(7);
    a.push(&reg, "docker", "amd64").await;
    b.push(&reg, "docker", "arm64").await;
    reg.expect_manifest("docker", "amd64", DOCKER_MANIFEST, &a.manifest)
        .await;
    let list = index_of(DOCKER_LIST, &[a.descriptor(), b.descriptor()]);
    reg.round_trip_manifest("docker", "latest", DOCKER_LIST, &list)
        .await;
    let d = sha256(&list);
    reg.expect_manifest("docker", &d, DOCKER_LIST, &list).await;
}

#[tokio::test]
async fn foreign_and_non_distributable_layers_need_not_be_pushed() {
    let reg = Reg::start();
    let img = Image::docker(8);
    let foreign = random_bytes(9, 100);
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).expect("json");
    let mut layer = descriptor(DOCKER_FOREIGN_LAYER, &foreign);
    layer["urls"] = json!(["https://example.invalid/layer"]);
    v["layers"].as_array_mut().expect("layers").insert(0, layer);
    let body = to_json(&v);
    img.push_blobs(&reg, "foreign").await;
    reg.round_trip_manifest("foreign", "v1", DOCKER_MANIFEST, &body)
        .await;
}

#[tokio::test]
async fn oci_non_distributable_layers_with_urls_need_not_be_pushed() {
    let reg = Reg::start();
    let img = Image::oci_with(30, |v| {
        let nd = random_bytes(31, 256);
        let mut layer = descriptor(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            &nd,
        );
        layer["urls"] = json!([format!(
            "https://store.example.com/blobs/sha256/{}",
            &sha256(&nd)[7..]
        )]);
        v["layers"].as_array_mut().expect("layers").push(layer);
    });
    img.push(&reg, "nd", "v1").await;
    reg.expect_manifest("nd", "v1", OCI_MANIFEST, &img.manifest)
        .await;
}

/// The same blob may be named twice (an artifact whose config and only
/// layer are both the empty JSON), and an index may list a child twice.
#[tokio::test]
async fn repeated_descriptors_are_fine() {
    let reg = Reg::start();
    reg.push_blob("rep", EMPTY_CONFIG).await;
    let body = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing",
        "config": descriptor(OCI_EMPTY, EMPTY_CONFIG),
        "layers": [descriptor(OCI_EMPTY, EMPTY_CONFIG)],
    }));
    let d = reg
        .push_manifest("rep", "artifact", OCI_MANIFEST, &body)
        .await;
    reg.expect_manifest("rep", &d, OCI_MANIFEST, &body).await;
    let index = index_of(
        OCI_INDEX,
        &[
            descriptor(OCI_MANIFEST, &body),
            descriptor(OCI_MANIFEST, &body),
        ],
    );
    reg.round_trip_manifest("rep", "twice", OCI_INDEX, &index)
        .await;
}

#[tokio::test]
async fn image_without_layers_and_descriptors_with_data() {
    let reg = Reg::start();
    let img = Image::oci_with(10, |v| {
        v["layers"] = json!([]);
        v["config"]["data"] = json!("e30=");
        v["annotations"] = json!({"org.example.note": "no layers"});
    });
    reg.push_blob("nolayers", &img.config).await;
    reg.round_trip_manifest("nolayers", "v1", OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn manifest_with_a_wrong_digest_is_400_and_not_stored() {
    let (reg, img) = Reg::with_image_blobs("bad", 11).await;
    let other = sha256(b"a different manifest");
    let r = reg
        .put_manifest("bad", &other, Some(OCI_MANIFEST), &img.manifest)
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.get(&format!("/v2/bad/manifests/{other}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/bad/manifests/{}", img.digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // Whitespace changes the digest too.
    let mut spaced = img.manifest.clone();
    spaced.extend_from_slice(b"  ");
    let r = reg
        .put_manifest("bad", &img.digest, Some(OCI_MANIFEST), &spaced)
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/bad/manifests/{}", img.digest))
        .await
        .expect(404);
}

#[tokio::test]
async fn manifest_by_sha512_digest() {
    let (reg, img) = Reg::with_image_blobs("s512", 12).await;
    let d512 = berth_oci::Digest::sha512_of(&img.manifest).to_string();
    let r = reg
        .put_manifest("s512", &d512, Some(OCI_MANIFEST), &img.manifest)
        .await;
    r.expect(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(d512.as_str()));
    let r = get_accept(&reg, &format!("/v2/s512/manifests/{d512}"), &[OCI_MANIFEST]).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), img.manifest.as_slice());
    assert_eq!(r.header("Docker-Content-Digest"), Some(d512.as_str()));
}

#[tokio::test]
async fn missing_blobs_are_manifest_blob_unknown() {
    let reg = Reg::start();
    let img = Image::oci(13);
    // Nothing pushed.
    reg.put_manifest("mb", "v1", Some(OCI_MANIFEST), &img.manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Config only.
    reg.push_blob("mb", &img.config).await;
    reg.put_manifest("mb", "v1", Some(OCI_MANIFEST), &img.manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Layers pushed to another repository do not count.
    for l in &img.layers {
        reg.push_blob("elsewhere", l).await;
    }
    reg.put_manifest("mb", "v1", Some(OCI_MANIFEST), &img.manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.get("/v2/mb/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A blob deleted from the repository no longer counts either.
    img.push_blobs(&reg, "mb").await;
    reg.delete(&format!("/v2/mb/blobs/{}", sha256(&img.layers[1])))
        .await
        .expect(202);
    reg.put_manifest("mb", "v1", Some(OCI_MANIFEST), &img.manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    img.push(&reg, "mb", "v1").await;
}

#[tokio::test]
async fn index_with_a_missing_child_is_manifest_blob_unknown() {
    let reg = Reg::start();
    let a = Image::oci(14);
    let b = Image::oci(15);
    a.push(&reg, "mi", "a").await;
    // b's blobs exist but b itself was never pushed.
    b.push_blobs(&reg, "mi").await;
    let index = index_of(OCI_INDEX, &[a.descriptor(), b.descriptor()]);
    reg.put_manifest("mi", "multi", Some(OCI_INDEX), &index)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // A child in another repository does not count.
    b.push(&reg, "other", "b").await;
    reg.put_manifest("mi", "multi", Some(OCI_INDEX), &index)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let list = index_of(DOCKER_LIST, &[a.descriptor(), b.descriptor()]);
    reg.put_manifest("mi", "list", Some(DOCKER_LIST), &list)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.push_manifest("mi", &b.digest, OCI_MANIFEST, &b.manifest)
        .await;
    reg.push_manifest("mi", "multi", OCI_INDEX, &index).await;
}

#[tokio::test]
async fn malformed_manifests_are_manifest_invalid() {
    let (reg, img) = Reg::with_image_blobs("mal", 16).await;
    let good: serde_json::Value = serde_json::from_slice(&img.manifest).expect("json");
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        to_json(&v)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"not json at all".to_vec()),
        (OCI_MANIFEST, b"{\"schemaVersion\": 2,".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, with(&|v| v["schemaVersion"] = json!(1))),
        (OCI_MANIFEST, with(&|v| v["schemaVersion"] = json!("2"))),
        (
            OCI_MANIFEST,
            with(&|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("config");
                }
            }),
        ),
        (
            OCI_MANIFEST,
            with(&|v| v["layers"] = json!({"not": "an array"})),
        ),
        (
            OCI_MANIFEST,
            with(&|v| v["config"]["digest"] = json!("sha256:nothex")),
        ),
        (OCI_MANIFEST, with(&|v| v["config"]["size"] = json!(-1))),
        (
            OCI_MANIFEST,
            with(&|v| v["layers"][0]["mediaType"] = json!("")),
        ),
        // The mediaType field must agree with Content-Type.
        (DOCKER_MANIFEST, img.manifest.clone()),
        (OCI_INDEX, img.manifest.clone()),
        (
            OCI_MANIFEST,
            with(&|v| v["mediaType"] = json!(DOCKER_MANIFEST)),
        ),
        (OCI_MANIFEST, with(&|v| v["mediaType"] = json!(5))),
        (
            OCI_MANIFEST,
            with(&|v| v["subject"] = json!({"digest": "nope"})),
        ),
    ];
    for (i, (ct, body)) in cases.into_iter().enumerate() {
        let r = reg
            .put_manifest("mal", &format!("t{i}"), Some(ct), &body)
            .await;
        assert_eq!(
            r.status.as_u16(),
            400,
            "case {i}: {}",
            String::from_utf8_lossy(&body)
        );
        r.expect_error(400, "MANIFEST_INVALID");
        reg.head(&format!("/v2/mal/manifests/t{i}"))
            .await
            .expect(404);
    }
}

#[tokio::test]
async fn manifest_type_comes_from_the_body_when_content_type_is_missing_or_generic() {
    let (reg, img) = Reg::with_image_blobs("ct", 17).await;
    reg.put_manifest("ct", "none", None, &img.manifest)
        .await
        .expect(201);
    reg.expect_manifest("ct", "none", OCI_MANIFEST, &img.manifest)
        .await;
    // Parameters on Content-Type are ignored and not echoed.
    let r = reg
        .put_manifest(
            "ct",
            "params",
            Some(&format!("{OCI_MANIFEST}; charset=utf-8")),
            &img.manifest,
        )
        .await;
    r.expect(201);
    reg.expect_manifest("ct", "params", OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn manifests_up_to_4_mib_are_accepted_and_larger_ones_are_413() {
    let (reg, img) = Reg::with_image_blobs("big", 18).await;
    // About 3.9 MB of annotations, as the OCI conformance suite pushes.
    let annotations: serde_json::Map<String, serde_json::Value> = (0..390)
        .map(|i| (format!("large-annotation-{i}"), json!("A".repeat(10_000))))
        .collect();
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).expect("json");
    v["annotations"] = json!(annotations);
    let large = to_json(&v);
    assert!(large.len() > 3_900_000 && large.len() < 4 * 1024 * 1024);
    reg.round_trip_manifest("big", "large", OCI_MANIFEST, &large)
        .await;
    let d = sha256(&large);
    reg.expect_manifest("big", &d, OCI_MANIFEST, &large).await;

    // One byte over 4 MiB: pad with trailing whitespace, still valid JSON.
    let mut too_large = large.clone();
    too_large.resize(4 * 1024 * 1024 + 1, b' ');
    let r = reg
        .put_manifest("big", "huge", Some(OCI_MANIFEST), &too_large)
        .await;
    r.expect(413);
    let code = r.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    r.expect_error(413, &code);
    reg.head("/v2/big/manifests/huge").await.expect(404);
    // Far over the limit, announced or streamed: still a readable 413.
    let mut far = large.clone();
    far.resize(12 * 1024 * 1024, b' ');
    let r = reg
        .put_manifest("big", "far", Some(OCI_MANIFEST), &far)
        .await;
    r.expect_error(413, &code);
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = far
        .chunks(100_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let r = reg
        .send(
            reg.req(Method::PUT, "/v2/big/manifests/far")
                .header("Content-Type", OCI_MANIFEST)
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    pieces,
                ))),
        )
        .await;
    r.expect_error(413, &code);
    reg.head("/v2/big/manifests/far").await.expect(404);
    // Exactly 4 MiB is accepted.
    let mut at_limit = large;
    at_limit.resize(4 * 1024 * 1024, b' ');
    reg.round_trip_manifest("big", "limit", OCI_MANIFEST, &at_limit)
        .await;
}

#[tokio::test]
async fn accept_negotiation() {
    let (reg, img) = Reg::with_image("neg", "oci", 19).await;
    let docker = Image::docker(20);
    docker.push(&reg, "neg", "docker").await;
    let index = index_of(OCI_INDEX, &[img.descriptor()]);
    reg.push_manifest("neg", "index", OCI_INDEX, &index).await;

    let ok: &[(&str, &[&str])] = &[
        ("oci", &[]),
        ("oci", &[OCI_MANIFEST]),
        ("oci", &["*/*"]),
        ("oci", &["application/*"]),
        ("oci", &[OCI_INDEX, OCI_MANIFEST]),
        ("oci", &["application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"]),
        ("oci", &["application/vnd.oci.image.manifest.v1+json; q=0.9"]),
        ("oci", &[DOCKER_MANIFEST, "*/*;q=0.1"]),
        ("index", &[OCI_INDEX]),
        ("docker", &[DOCKER_MANIFEST, DOCKER_LIST]),
    ];
    for (tag, accept) in ok {
        let r = get_accept(&reg, &format!("/v2/neg/manifests/{tag}"), accept).await;
        r.expect(200);
        assert!(!r.body.is_empty(), "{tag} {accept:?}");
    }
    let refused: &[(&str, &[&str])] = &[
        ("oci", &[DOCKER_MANIFEST]),
        ("oci", &[OCI_INDEX]),
        ("index", &[OCI_MANIFEST]),
        ("docker", &[OCI_MANIFEST, OCI_INDEX]),
    ];
    for (tag, accept) in refused {
        let r = get_accept(&reg, &format!("/v2/neg/manifests/{tag}"), accept).await;
        r.expect_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn pushing_a_tag_again_moves_it() {
    let reg = Reg::start();
    let a = Image::oci(21);
    let b = Image::oci(22);
    a.push(&reg, "mv", "latest").await;
    b.push(&reg, "mv", "latest").await;
    reg.expect_manifest("mv", "latest", OCI_MANIFEST, &b.manifest)
        .await;
    reg.expect_manifest("mv", &a.digest, OCI_MANIFEST, &a.manifest)
        .await;
    // Pushing the same manifest again is fine.
    reg.push_manifest("mv", "latest", OCI_MANIFEST, &b.manifest)
        .await;
    let r = reg.get("/v2/mv/tags/list").await;
    assert_eq!(r.json()["tags"], json!(["latest"]));
}

#[tokio::test]
async fn unknown_manifests_are_404_manifest_unknown() {
    let reg = Reg::start();
    let d = sha256(b"no such manifest");
    let check = |repo: &'static str| {
        let reg = &reg;
        let d = d.clone();
        async move {
            for reference in ["latest", d.as_str()] {
                let path = format!("/v2/{repo}/manifests/{reference}");
                reg.get(&path).await.expect_error(404, "MANIFEST_UNKNOWN");
                reg.head(&path).await.expect(404);
                let r = reg.delete(&path).await;
                assert_eq!(r.status.as_u16(), 404, "{path}");
            }
        }
    };
    // In a repository that does not exist, and in one that does.
    check("nothing").await;
    Image::oci(23).push(&reg, "something", "v1").await;
    check("something").await;
}

#[tokio::test]
async fn invalid_tags_are_rejected() {
    let (reg, img) = Reg::with_image_blobs("tags", 24).await;
    let long = "a".repeat(129);
    for tag in ["-dash", ".dot", long.as_str(), "sp%20ace"] {
        let r = reg
            .put_manifest("tags", tag, Some(OCI_MANIFEST), &img.manifest)
            .await;
        r.expect_error(400, "MANIFEST_INVALID");
        reg.get(&format!("/v2/tags/manifests/{tag}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    // The longest tag the grammar allows.
    let longest = format!("_{}", "Z.-9".repeat(31) + "abc");
    assert_eq!(longest.len(), 128);
    reg.round_trip_manifest("tags", &longest, OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn delete_by_tag_removes_only_the_tag() {
    let (reg, img) = Reg::with_image("dt", "one", 25).await;
    reg.push_manifest("dt", "two", OCI_MANIFEST, &img.manifest)
        .await;
    let r = reg.delete("/v2/dt/manifests/one").await;
    r.expect(202);
    reg.get("/v2/dt/manifests/one")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.expect_manifest("dt", &img.digest, OCI_MANIFEST, &img.manifest)
        .await;
    reg.expect_manifest("dt", "two", OCI_MANIFEST, &img.manifest)
        .await;
    let r = reg.get("/v2/dt/tags/list").await;
    r.expect(200);
    assert_eq!(r.json()["tags"], json!(["two"]));
    reg.delete("/v2/dt/manifests/one")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_by_digest_removes_the_manifest_and_its_tags() {
    let reg = Reg::start();
    let img = Image::oci(26);
    let other = Image::oci(27);
    img.push(&reg, "dd", "a").await;
    reg.push_manifest("dd", "b", OCI_MANIFEST, &img.manifest)
        .await;
    other.push(&reg, "dd", "c").await;
    let r = reg
        .delete(&format!("/v2/dd/manifests/{}", img.digest))
        .await;
    r.expect(202);
    for reference in ["a", "b", img.digest.as_str()] {
        reg.get(&format!("/v2/dd/manifests/{reference}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        reg.head(&format!("/v2/dd/manifests/{reference}"))
            .await
            .expect(404);
    }
    let r = reg.get("/v2/dd/tags/list").await;
    r.expect(200);
    assert_eq!(r.json()["tags"], json!(["c"]));
    reg.expect_manifest("dd", "c", OCI_MANIFEST, &other.manifest)
        .await;
    reg.delete(&format!("/v2/dd/manifests/{}", img.digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // The blobs stay, and the manifest can be pushed again.
    reg.expect_blob("dd", &img.layers[0]).await;
    reg.round_trip_manifest("dd", "a", OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn delete_of_a_large_manifest_by_digest() {
    let reg = Reg::start();
    let img = Image::oci_with(28, |v| {
        v["annotations"] = json!({"pad": "x".repeat(200_000)});
    });
    img.push(&reg, "dl", "big").await;
    reg.expect_manifest("dl", "big", OCI_MANIFEST, &img.manifest)
        .await;
    reg.delete(&format!("/v2/dl/manifests/{}", img.digest))
        .await
        .expect(202);
    reg.get("/v2/dl/manifests/big")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.round_trip_manifest("dl", "again", OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn manifests_are_scoped_to_their_repository() {
    let (reg, img) = Reg::with_image("here", "v1", 29).await;
    reg.get("/v2/there/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/there/manifests/{}", img.digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/here/sub/manifests/{}", img.digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A manifest is not a blob of its repository.
    reg.head(&format!("/v2/here/blobs/{}", img.digest))
        .await
        .expect(404);
}
