//! Referrers: manifests naming a `subject` are listed under it, filtered by
//! artifact type, per repository, and leave the list when deleted.

use super::*;
use serde_json::json;

const SIG: &str = "application/vnd.example.signature";
const SBOM: &str = "application/vnd.example.sbom";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Pushes, by digest, a manifest referring to `subject`.
async fn refer(
    reg: &Registry,
    r: &RepoName,
    subject: &Digest,
    extra: serde_json::Value,
) -> (Digest, u64) {
    let config = push_blob(reg, r, b"{}").await;
    let mut fields = json!({
        "subject": {"mediaType": IMAGE, "digest": subject, "size": 1},
    });
    if let (Some(fields), serde_json::Value::Object(extra)) = (fields.as_object_mut(), extra) {
        fields.extend(extra);
    }
    let body = image(&config, &[], fields);
    let (digest, size) = (Digest::sha256_of(&body), body.len() as u64);
    let by_digest = Reference::Digest(digest.clone());
    let put = reg.manifest_put(r, &by_digest, Some(IMAGE), body);
    assert_eq!(put.await.unwrap().subject.as_ref(), Some(subject));
    (digest, size)
}

#[tokio::test]
async fn referrers_are_listed_by_subject_and_filtered_by_type() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let subject = push_image(&fx.reg, &r, "v1", b"layer").await;
    let (sig, sig_size) = refer(
        &fx.reg,
        &r,
        &subject,
        json!({"artifactType": SIG, "annotations": {"signer": "ci"}}),
    )
    .await;
    let (sbom, _) = refer(&fx.reg, &r, &subject, json!({"artifactType": SBOM})).await;
    // Without an artifactType, the config's media type stands for it.
    let (plain, _) = refer(&fx.reg, &r, &subject, json!({})).await;

    let all = fx.reg.referrers(&r, &subject, None).await.unwrap();
    let mut listed: Vec<&Digest> = all.iter().map(|d| &d.digest).collect();
    listed.sort();
    let mut expected = vec![&sig, &sbom, &plain];
    expected.sort();
    assert_eq!(listed, expected);
    let found = all.iter().find(|d| d.digest == sig).unwrap();
    assert_eq!(found.media_type, IMAGE);
    assert_eq!(found.size, sig_size);
    assert_eq!(found.artifact_type.as_deref(), Some(SIG));
    let annotations = found.annotations.as_ref().unwrap();
    assert_eq!(annotations["signer"], "ci");

    for (kind, want) in [(SIG, &sig), (SBOM, &sbom), (CONFIG, &plain)] {
        let only = fx.reg.referrers(&r, &subject, Some(kind)).await.unwrap();
        let only: Vec<&Digest> = only.iter().map(|d| &d.digest).collect();
        assert_eq!(only, [want], "{kind}");
    }
    let none = fx.reg.referrers(&r, &subject, Some("application/x-none"));
    assert!(none.await.unwrap().is_empty());
    // Per repository.
    let elsewhere = repo("p/other");
    let listed = fx.reg.referrers(&elsewhere, &subject, None).await.unwrap();
    assert!(listed.is_empty());

    fx.reg
        .manifest_delete(&r, &Reference::Digest(sig))
        .await
        .unwrap();
    assert_eq!(fx.reg.referrers(&r, &subject, None).await.unwrap().len(), 2);
}

/// A signature may be pushed before what it signs (the subject need not
/// exist), and is listed once the subject comes.
#[tokio::test]
async fn a_referrer_may_come_before_its_subject() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let (subject_body, _) = push_image_blobs(&fx.reg, &r, b"{}", b"layer").await;
    let subject = Digest::sha256_of(&subject_body);
    let (sig, _) = refer(&fx.reg, &r, &subject, json!({"artifactType": SIG})).await;
    fx.reg
        .manifest_put(&r, &reference("v1"), Some(IMAGE), subject_body)
        .await
        .unwrap();
    let listed = fx.reg.referrers(&r, &subject, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, sig);
}
