//! berth's outbound registry client (`berth-registry-client`) against the
//! real berth binary: Docker token authentication (a Bearer challenge to
//! `/service/token`), chunked pushes, mounts, listings, deletes, and the
//! referrers API (berth has it, so no tag schema is written).

mod common;

use berth_oci::{media, Digest, Reference, RepoName, Tag};
use berth_registry_client::{referrers_tag, AuthKind, Client, ClientError, Credentials, Endpoint};
use berth_test_kit::registry_client::{
    assert_blob, assert_mounts, assert_no_referrers, image_manifest, push_blob, push_blob_in,
    push_image, put_by_digest, put_manifest, sorted_tags,
};
use common::{noise, Server, ADMIN_PASSWORD};
use serde_json::json;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::Tag(Tag::parse(s).unwrap())
}

fn admin(server: &Server) -> Client {
    let mut ep =
        Endpoint::new(server.url("")).with_credentials(Credentials::new("admin", ADMIN_PASSWORD));
    ep.chunk_size = 256 << 10;
    ep.page_size = Some(1);
    Client::new(&ep).unwrap()
}

#[tokio::test]
async fn bearer_tokens_and_credentials() {
    let server = Server::start();
    let c = admin(&server);
    let ping = c.ping().await.unwrap();
    match &ping.auth {
        AuthKind::Bearer { realm } => assert!(realm.ends_with("/service/token"), "{realm}"),
        other => panic!("berth asked for {other:?}"),
    }

    // A wrong password: the token service refuses it, clearly.
    let wrong = Client::new(
        &Endpoint::new(server.url("")).with_credentials(Credentials::new("admin", "not-it")),
    )
    .unwrap();
    let err = wrong.ping().await.unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("refused the credentials of admin"),
        "{err}"
    );

    // Anonymous: a private project's repository is out of reach.
    let app = repo("private/app");
    let config = br#"{"os":"linux"}"#;
    let d = push_blob(&c, &app, config).await;
    let anonymous = Client::new(&Endpoint::new(server.url(""))).unwrap();
    let err = anonymous.blob_head(&app, &d).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
}

#[tokio::test]
async fn push_pull_mount_list_and_delete_with_tokens() {
    let server = Server::start();
    let c = admin(&server);
    let app = repo("proj/app");

    // 3 MiB in 256 KiB chunks, each PATCH with a cached token.
    let big = noise(1, (3 << 20) + 17);
    let big_digest = push_blob_in(&c, &app, &big, 70_001).await;
    assert_blob(&c, &app, &big_digest, &big, (1 << 20) + 5).await;

    // Mount within the project: needs pull on the source in the token.
    let other = repo("proj/other");
    assert_mounts(&c, &other, &big_digest, &app, big.len() as u64).await;

    // An image by tag, an index by digest.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    push_blob(&c, &app, config).await;
    let image = image_manifest(
        ("application/vnd.oci.image.config.v1+json", config),
        &[&big],
        None,
        None,
    );
    let image_digest = put_manifest(&c, &app, &tag("v1"), media::OCI_MANIFEST, &image).await;
    let got = c.manifest_get(&app, &tag("v1")).await.unwrap();
    assert_eq!((&got.bytes[..], &got.digest), (&image[..], &image_digest));
    let head = c.manifest_head(&app, &tag("v1")).await.unwrap().unwrap();
    assert_eq!(
        (head.digest, head.media_type.as_str(), head.size),
        (
            image_digest.clone(),
            media::OCI_MANIFEST,
            image.len() as u64
        )
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": image_digest, "size": image.len()}],
    }))
    .unwrap();
    let index_ref = Reference::Digest(Digest::sha256_of(&index));
    put_manifest(&c, &app, &index_ref, media::OCI_INDEX, &index).await;
    assert_eq!(
        &c.manifest_get(&app, &index_ref).await.unwrap().bytes[..],
        &index[..]
    );
    put_manifest(&c, &app, &tag("v2"), media::OCI_INDEX, &index).await;

    // Listings, one item per page; the catalog needs `registry:catalog:*`.
    assert_eq!(sorted_tags(&c, &app).await, ["v1", "v2"]);
    let catalog = c.catalog().await.unwrap();
    assert!(catalog.contains(&app), "{catalog:?}");

    // berth deletes a tag alone: the manifest stays, by digest and by its
    // other tag; deleting it again is no error.
    put_manifest(&c, &app, &tag("v3"), media::OCI_INDEX, &index).await;
    let v3 = Tag::parse("v3").unwrap();
    assert!(c.tag_delete(&app, &v3).await.unwrap());
    assert_eq!(c.manifest_head(&app, &tag("v3")).await.unwrap(), None);
    assert!(c.manifest_head(&app, &tag("v2")).await.unwrap().is_some());
    assert!(c.manifest_head(&app, &index_ref).await.unwrap().is_some());
    assert!(c.tag_delete(&app, &v3).await.unwrap());

    // Delete the index: the tag pointing at it goes with it.
    let Reference::Digest(index_digest) = &index_ref else {
        unreachable!()
    };
    c.manifest_delete(&app, index_digest).await.unwrap();
    assert_eq!(c.manifest_head(&app, &index_ref).await.unwrap(), None);
    assert_eq!(c.manifest_head(&app, &tag("v2")).await.unwrap(), None);
    let err = c.manifest_get(&app, &index_ref).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn referrers_through_the_api() {
    let server = Server::start();
    let c = admin(&server);
    let app = repo("signed/app");
    let (image, image_digest) = push_image(&c, &app, &tag("v1"), br#"{"os":"linux"}"#, &[]).await;
    assert_no_referrers(&c, &app, &image_digest).await;

    let mut artifacts = Vec::new();
    for (kind, seed) in [
        ("application/vnd.example.sbom", 1u64),
        ("application/vnd.example.sig", 2),
    ] {
        let blob = noise(seed, 1000);
        push_blob(&c, &app, &blob).await;
        let subject = (media::OCI_MANIFEST, &image_digest, image.len());
        let m = image_manifest((kind, &blob), &[], None, Some(subject));
        let d = put_by_digest(&c, &app, &m).await;
        artifacts.push((kind, d));
    }

    let all = c.referrers(&app, &image_digest, None).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    for (kind, d) in &artifacts {
        let found = all.iter().find(|x| x.digest == *d).unwrap();
        assert_eq!(found.artifact_type.as_deref(), Some(*kind));
    }
    let sboms = c
        .referrers(&app, &image_digest, Some("application/vnd.example.sbom"))
        .await
        .unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].digest, artifacts[0].1);

    // berth processed the subjects (OCI-Subject): no tag schema index.
    let tags = c.tags(&app).await.unwrap();
    assert!(!tags.contains(&referrers_tag(&image_digest)), "{tags:?}");

    c.manifest_delete(&app, &artifacts[0].1).await.unwrap();
    let left = c.referrers(&app, &image_digest, None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].digest, artifacts[1].1);
}
