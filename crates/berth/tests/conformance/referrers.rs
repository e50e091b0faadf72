//! Manifests with a `subject`, the `OCI-Subject` response header, and the
//! referrers API with its `artifactType` filter.

use super::util::*;
use serde_json::{json, Value};

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIG: &str = "application/vnd.example.signature.v1";
const BUNDLE: &str = "application/vnd.example.bundle.v1";

/// `GET /v2/<repo>/referrers/<digest>[?artifactType=..]`, checked to be an
/// OCI index; returns the response and its descriptors.
async fn referrers(
    reg: &Reg,
    repo: &str,
    digest: &str,
    artifact_type: Option<&str>,
) -> (Resp, Vec<Value>) {
    let mut path = format!("/v2/{repo}/referrers/{digest}");
    if let Some(t) = artifact_type {
        path = with_query(&path, "artifactType", t);
    }
    let r = reg.get(&path).await;
    r.expect(200);
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let manifests = v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests must be an array: {v}"))
        .clone();
    (r, manifests)
}

fn find<'a>(list: &'a [Value], digest: &str) -> &'a Value {
    list.iter()
        .find(|d| d["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} not among referrers {list:?}"))
}

/// Pushes an index with a subject; its children are `children`.
async fn push_index_with_subject(
    reg: &Reg,
    repo: &str,
    children: &[Value],
    subject: &Value,
    artifact_type: Option<&str>,
) -> (String, Vec<u8>) {
    let mut v: Value = serde_json::from_slice(&index_of(OCI_INDEX, children)).expect("json");
    v["subject"] = subject.clone();
    v["annotations"] = json!({"org.example.kind": "index"});
    if let Some(t) = artifact_type {
        v["artifactType"] = json!(t);
    }
    let body = to_json(&v);
    let r = reg
        .put_manifest(repo, &sha256(&body), Some(OCI_INDEX), &body)
        .await;
    r.expect(201);
    assert_eq!(r.header("OCI-Subject"), subject["digest"].as_str());
    (sha256(&body), body)
}

#[tokio::test]
async fn referrers_list_every_manifest_with_that_subject() {
    let (reg, img) = Reg::with_image("app", "v1", 1).await;
    let subject = img.descriptor();

    let sbom = Artifact::new(
        1,
        Some(SBOM),
        Some(&subject),
        Some(json!({"org.example.format": "spdx"})),
    );
    let r = sbom.push(&reg, "app", "sbom").await;
    r.expect(201);
    assert_eq!(r.header("OCI-Subject"), Some(img.digest.as_str()));
    // Without artifactType: the config's media type stands in.
    let sig = Artifact::new(
        2,
        None,
        Some(&subject),
        Some(json!({"org.example.signer": "me"})),
    );
    let r = sig.push(&reg, "app", &sig.digest).await;
    r.expect(201);
    assert_eq!(r.header("OCI-Subject"), Some(img.digest.as_str()));
    // An empty artifactType counts as missing.
    let empty_type = Artifact::new(3, Some(""), Some(&subject), None);
    empty_type
        .push(&reg, "app", &empty_type.digest)
        .await
        .expect(201);
    // Indexes with a subject, with and without artifactType.
    let (typed_index, typed_body) =
        push_index_with_subject(&reg, "app", &[img.descriptor()], &subject, Some(BUNDLE)).await;
    let (plain_index, plain_body) =
        push_index_with_subject(&reg, "app", &[img.descriptor()], &subject, None).await;

    let (_, list) = referrers(&reg, "app", &img.digest, None).await;
    assert_eq!(list.len(), 5, "{list:?}");
    let d = find(&list, &sbom.digest);
    assert_eq!(d["mediaType"], OCI_MANIFEST);
    assert_eq!(d["size"], sbom.manifest.len());
    assert_eq!(d["artifactType"], SBOM);
    assert_eq!(d["annotations"], json!({"org.example.format": "spdx"}));
    let d = find(&list, &sig.digest);
    assert_eq!(d["artifactType"], OCI_EMPTY);
    assert_eq!(d["annotations"], json!({"org.example.signer": "me"}));
    assert_eq!(d["size"], sig.manifest.len());
    let d = find(&list, &empty_type.digest);
    assert_eq!(d["artifactType"], OCI_EMPTY);
    assert!(d
        .get("annotations")
        .is_none_or(|a| a.as_object().is_some_and(|o| o.is_empty())));
    let d = find(&list, &typed_index);
    assert_eq!(d["mediaType"], OCI_INDEX);
    assert_eq!(d["artifactType"], BUNDLE);
    assert_eq!(d["size"], typed_body.len());
    assert_eq!(d["annotations"], json!({"org.example.kind": "index"}));
    let d = find(&list, &plain_index);
    assert_eq!(d["mediaType"], OCI_INDEX);
    assert!(
        d.get("artifactType").is_none(),
        "an index without artifactType has none: {d}"
    );
    assert_eq!(d["size"], plain_body.len());

    // The subject itself lists nothing as its own referrer, and the
    // artifacts have no referrers.
    let (_, list) = referrers(&reg, "app", &sbom.digest, None).await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn artifact_type_filter() {
    let (reg, img) = Reg::with_image("f", "v1", 2).await;
    let subject = img.descriptor();
    let a = Artifact::new(10, Some(SBOM), Some(&subject), None);
    let b = Artifact::new(11, Some(SBOM), Some(&subject), None);
    let c = Artifact::new(12, Some(SIG), Some(&subject), None);
    let e = Artifact::new(13, None, Some(&subject), None);
    for art in [&a, &b, &c, &e] {
        art.push(&reg, "f", &art.digest).await.expect(201);
    }
    let (r, list) = referrers(&reg, "f", &img.digest, Some(SBOM)).await;
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let mut got: Vec<&str> = list.iter().filter_map(|d| d["digest"].as_str()).collect();
    got.sort_unstable();
    let mut want = vec![a.digest.as_str(), b.digest.as_str()];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(list.iter().all(|d| d["artifactType"] == SBOM));

    let (r, list) = referrers(&reg, "f", &img.digest, Some(OCI_EMPTY)).await;
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], e.digest);

    let (r, list) = referrers(&reg, "f", &img.digest, Some("application/vnd.example.none")).await;
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    assert!(list.is_empty());

    // No filter: no header, everything.
    let (r, list) = referrers(&reg, "f", &img.digest, None).await;
    assert_eq!(r.header("OCI-Filters-Applied"), None);
    assert_eq!(list.len(), 4);
}

#[tokio::test]
async fn no_referrers_is_an_empty_index_not_a_404() {
    let reg = Reg::start();
    let d = sha256(b"nothing refers to this");
    // In a repository that does not exist.
    let (r, list) = referrers(&reg, "ghost", &d, None).await;
    assert!(list.is_empty());
    assert_eq!(r.header("OCI-Filters-Applied"), None);
    // In one that does, for a manifest without referrers and for an unknown digest.
    let img = Image::oci(3);
    img.push(&reg, "real", "v1").await;
    let (_, list) = referrers(&reg, "real", &img.digest, None).await;
    assert!(list.is_empty());
    let (_, list) = referrers(&reg, "real", &d, Some(SBOM)).await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn a_missing_subject_is_accepted_and_listed() {
    let reg = Reg::start();
    let absent =
        json!({"mediaType": OCI_MANIFEST, "digest": sha256(b"missing content"), "size": 123});
    let art = Artifact::new(20, Some(SBOM), Some(&absent), None);
    let r = art.push(&reg, "miss", "tagged-artifact").await;
    r.expect(201);
    assert_eq!(r.header("OCI-Subject"), absent["digest"].as_str());
    let (_, list) = referrers(
        &reg,
        "miss",
        absent["digest"].as_str().unwrap_or_default(),
        None,
    )
    .await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], art.digest);
    // Pushing the subject later changes nothing for its referrers.
    let img = Image::oci(4);
    img.push(&reg, "miss", "v1").await;
    let (_, list) = referrers(&reg, "miss", &img.digest, None).await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn manifests_without_subject_get_no_oci_subject_header() {
    let (reg, img) = Reg::with_image_blobs("ns", 5).await;
    let r = reg
        .put_manifest("ns", "v1", Some(OCI_MANIFEST), &img.manifest)
        .await;
    r.expect(201);
    assert_eq!(r.header("OCI-Subject"), None);
}

#[tokio::test]
async fn referrers_follow_deletes_of_the_referrer() {
    let (reg, img) = Reg::with_image("del", "v1", 6).await;
    let art = Artifact::new(30, Some(SIG), Some(&img.descriptor()), None);
    art.push(&reg, "del", "sig").await.expect(201);
    // Deleting the tag leaves the manifest, so it still refers.
    reg.delete("/v2/del/manifests/sig").await.expect(202);
    let (_, list) = referrers(&reg, "del", &img.digest, None).await;
    assert_eq!(list.len(), 1);
    // Deleting the manifest removes it from the list.
    reg.delete(&format!("/v2/del/manifests/{}", art.digest))
        .await
        .expect(202);
    let (_, list) = referrers(&reg, "del", &img.digest, None).await;
    assert!(list.is_empty(), "{list:?}");
    // Deleting the subject leaves the referrers of a still-present artifact.
    let again = Artifact::new(31, Some(SIG), Some(&img.descriptor()), None);
    again.push(&reg, "del", "sig2").await.expect(201);
    reg.delete(&format!("/v2/del/manifests/{}", img.digest))
        .await
        .expect(202);
    let (_, list) = referrers(&reg, "del", &img.digest, None).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], again.digest);
}

#[tokio::test]
async fn referrers_are_scoped_to_the_repository() {
    let (reg, img) = Reg::with_image("one", "v1", 7).await;
    img.push(&reg, "two", "v1").await;
    let art = Artifact::new(40, Some(SBOM), Some(&img.descriptor()), None);
    art.push(&reg, "one", "sbom").await.expect(201);
    let (_, list) = referrers(&reg, "one", &img.digest, None).await;
    assert_eq!(list.len(), 1);
    let (_, list) = referrers(&reg, "two", &img.digest, None).await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn referrers_with_an_invalid_digest_are_400() {
    let reg = Reg::start();
    for d in ["sha256:short", "notadigest", "sha256:XYZ"] {
        reg.get(&format!("/v2/r/referrers/{d}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}
