//! The client against a real CNCF Distribution registry (Debian's
//! `docker-registry` 2.8): anonymous, Basic auth (htpasswd) and TLS;
//! blobs chunked and whole, mounts, manifests and indexes, listings with
//! pagination, deletes, and referrers through the tag schema (Distribution
//! 2.8 has no referrers API).

use berth_oci::{media, Digest, Reference, RepoName, Tag};
use berth_registry_client::{
    referrers_tag, AuthKind, Client, ClientError, Credentials, Endpoint, Mount, TlsVerify,
};
use berth_test_kit::distribution::{Distribution, Setup};
use berth_test_kit::pki::Pki;
use berth_test_kit::registry_client::{
    assert_mounts, assert_no_referrers, collect, fetch_blob, image_index, image_manifest,
    push_blob, push_blob_in, push_image, put_by_digest, put_manifest, sorted_tags, stream_of,
};
use berth_test_kit::server::noise;
use bytes::Bytes;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::Tag(Tag::parse(s).unwrap())
}

fn client(url: &str, chunk_size: usize) -> Client {
    let mut ep = Endpoint::new(url);
    ep.chunk_size = chunk_size;
    Client::new(&ep).unwrap()
}

#[tokio::test]
async fn blobs_chunked_and_whole_head_get_resume_and_mount() {
    let reg = Distribution::start();
    // 1 MiB chunks: the 20 MiB blob goes in 20 PATCHes.
    let c = client(&reg.url, 1 << 20);
    let ping = c.ping().await.unwrap();
    assert_eq!(ping.auth, AuthKind::Anonymous);
    assert_eq!(ping.api_version.as_deref(), Some("registry/2.0"));

    let app = repo("team/app");
    let big = noise(1, (20 << 20) + 12345);
    let big_digest = Digest::sha256_of(&big);
    assert_eq!(c.blob_head(&app, &big_digest).await.unwrap(), None);
    // Pieces that do not line up with chunks.
    push_blob_in(&c, &app, &big, 100_003).await;
    assert_eq!(
        c.blob_head(&app, &big_digest).await.unwrap(),
        Some(big.len() as u64)
    );
    // It went in 21 chunks (20 whole, one of 12345 bytes), then a PUT.
    let uploads: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| r.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(uploads.len(), 23, "{uploads:#?}");
    assert!(uploads[0].starts_with("POST ") && uploads[0].ends_with(" 202"));
    assert!(uploads[1..22]
        .iter()
        .all(|r| r.starts_with("PATCH ") && r.ends_with(" 202")));
    assert!(uploads[22].starts_with("PUT ") && uploads[22].ends_with(" 201"));

    let stream = c.blob_get(&app, &big_digest, 0).await.unwrap();
    assert_eq!(stream.total_len(), Some(big.len() as u64));
    assert!(collect(stream).await.unwrap() == big, "whole blob differs");

    let from = 7 * (1 << 20) + 3;
    let stream = c.blob_get(&app, &big_digest, from).await.unwrap();
    assert_eq!(stream.start(), from);
    assert_eq!(stream.total_len(), Some(big.len() as u64));
    assert_eq!(stream.remaining_len(), Some(big.len() as u64 - from));
    assert!(
        collect(stream).await.unwrap() == big[from as usize..],
        "resumed blob differs"
    );
    // A range request, answered 206.
    let gets: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(&format!("GET /v2/team/app/blobs/{big_digest}")))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert!(
        gets[0].ends_with(" 200") && gets[1].ends_with(" 206"),
        "{gets:#?}"
    );
    let at_end = c
        .blob_get(&app, &big_digest, big.len() as u64)
        .await
        .unwrap();
    assert!(collect(at_end).await.unwrap().is_empty());

    // Monolithic: one PUT.
    let small = noise(2, 1000);
    let small_digest = push_blob(&c, &app, &small).await;
    assert_eq!(c.blob_head(&app, &small_digest).await.unwrap(), Some(1000));
    assert_eq!(fetch_blob(&c, &app, &small_digest, 0).await, small);

    // An empty blob.
    let empty_digest = push_blob(&c, &app, b"").await;
    assert_eq!(c.blob_head(&app, &empty_digest).await.unwrap(), Some(0));

    // Mount into another repository, and a blob the source lacks.
    let other = repo("team/other");
    assert_mounts(&c, &other, &big_digest, &app, big.len() as u64).await;
    let unknown = Digest::sha256_of(b"nowhere");
    assert_eq!(
        c.blob_mount(&other, &unknown, &app).await.unwrap(),
        Mount::NotMounted
    );

    let err = c.blob_get(&app, &unknown, 0).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.code(), Some("BLOB_UNKNOWN"));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_source_that_lies_never_commits_a_blob() {
    let reg = Distribution::start();
    let c = client(&reg.url, 64 << 10);
    let app = repo("app");
    let data = noise(3, 300_000);
    let wrong = Digest::sha256_of(b"something else");

    // Chunked, wrong digest: refused before the closing PUT.
    let err = c
        .blob_put(&app, &wrong, data.len() as u64, stream_of(&data, 10_000))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
    assert_eq!(c.blob_head(&app, &wrong).await.unwrap(), None);

    // Announced size too small or too large.
    let right = Digest::sha256_of(&data);
    let err = c
        .blob_put(&app, &right, 200_000, stream_of(&data, 10_000))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");
    let err = c
        .blob_put(&app, &right, 400_000, stream_of(&data, 10_000))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");

    // Whole, wrong digest.
    let err = c
        .blob_put(&app, &wrong, 10, stream_of(&data[..10], 10))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");

    // A source that fails midway.
    let failing = futures_util::stream::iter(vec![
        Ok(Bytes::from(vec![0u8; 100_000])),
        Err(std::io::Error::other("disk on fire")),
    ]);
    let err = c
        .blob_put(&app, &right, data.len() as u64, failing)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Source(_)), "{err}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert_eq!(c.blob_head(&app, &right).await.unwrap(), None);

    // Every session opened was cancelled, none closed by a PUT.
    let uploads: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| r.contains("/blobs/uploads/"))
        .collect();
    let opened = uploads.iter().filter(|r| r.starts_with("POST ")).count();
    let cancelled = uploads
        .iter()
        .filter(|r| r.starts_with("DELETE ") && r.ends_with(" 204"))
        .count();
    // Four sessions: the whole blob with a wrong digest was checked
    // before opening one.
    assert_eq!((opened, cancelled), (4, 4), "{uploads:#?}");
    assert!(
        !uploads.iter().any(|r| r.starts_with("PUT ")),
        "{uploads:#?}"
    );
}

#[tokio::test]
async fn manifests_indexes_tags_catalog_and_delete() {
    let reg = Distribution::start();
    let mut ep = Endpoint::new(&reg.url);
    ep.page_size = Some(2);
    let c = Client::new(&ep).unwrap();
    let app = repo("proj/app");

    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = noise(4, 50_000);
    push_blob(&c, &app, config).await;
    push_blob(&c, &app, &layer).await;
    let manifest = image_manifest(
        ("application/vnd.oci.image.config.v1+json", config),
        &[&layer],
        None,
        None,
    );
    let manifest_digest = Digest::sha256_of(&manifest);

    // By tag.
    let pushed = put_manifest(&c, &app, &tag("v1"), media::OCI_MANIFEST, &manifest).await;
    assert_eq!(pushed, manifest_digest);
    let head = c.manifest_head(&app, &tag("v1")).await.unwrap().unwrap();
    assert_eq!(head.digest, manifest_digest);
    assert_eq!(head.media_type, media::OCI_MANIFEST);
    assert_eq!(head.size, manifest.len() as u64);
    let got = c.manifest_get(&app, &tag("v1")).await.unwrap();
    assert_eq!(&got.bytes[..], &manifest[..]);
    assert_eq!(got.digest, manifest_digest);
    assert_eq!(got.media_type, media::OCI_MANIFEST);
    let by_digest = Reference::Digest(manifest_digest.clone());
    assert_eq!(
        &c.manifest_get(&app, &by_digest).await.unwrap().bytes[..],
        &manifest[..]
    );

    // An index, by digest, then tagged.
    let index = image_index(&[(media::OCI_MANIFEST, &manifest)]);
    let index_digest = Digest::sha256_of(&index);
    let index_ref = Reference::Digest(index_digest.clone());
    put_manifest(&c, &app, &index_ref, media::OCI_INDEX, &index).await;
    let head = c.manifest_head(&app, &index_ref).await.unwrap().unwrap();
    assert_eq!(
        (head.digest.clone(), head.media_type.as_str(), head.size),
        (index_digest.clone(), media::OCI_INDEX, index.len() as u64)
    );
    let got = c.manifest_get(&app, &index_ref).await.unwrap();
    assert_eq!(&got.bytes[..], &index[..]);
    assert_eq!(got.media_type, media::OCI_INDEX);
    // A push by digest of bytes that do not have it is refused locally.
    let err = c
        .manifest_put(
            &app,
            &index_ref,
            media::OCI_INDEX,
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");

    for t in ["v2", "v3", "latest", "multi"] {
        let (bytes, mt) = if t == "multi" {
            (&index, media::OCI_INDEX)
        } else {
            (&manifest, media::OCI_MANIFEST)
        };
        put_manifest(&c, &app, &tag(t), mt, bytes).await;
    }
    // Five tags, two per page.
    assert_eq!(
        sorted_tags(&c, &app).await,
        ["latest", "multi", "v1", "v2", "v3"]
    );

    // Five repositories, two per page.
    for name in ["a", "b/c", "d-e", "f.g"] {
        push_image(&c, &repo(name), &tag("t"), b"x", &[]).await;
    }
    let catalog: Vec<String> = c
        .catalog()
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(catalog, ["a", "b/c", "d-e", "f.g", "proj/app"]);
    let pages = reg
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v2/_catalog "))
        .count();
    assert_eq!(pages, 3);

    // Unknown things.
    assert_eq!(c.manifest_head(&app, &tag("nope")).await.unwrap(), None);
    let err = c.manifest_get(&app, &tag("nope")).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"));
    let err = c.tags(&repo("missing")).await.unwrap_err();
    assert_eq!(err.code(), Some("NAME_UNKNOWN"));

    // Distribution deletes by digest only: a tag delete says so, and
    // leaves the tag and its manifest.
    let multi = berth_oci::Tag::parse("multi").unwrap();
    assert!(!c.tag_delete(&app, &multi).await.unwrap());
    assert!(c
        .manifest_head(&app, &tag("multi"))
        .await
        .unwrap()
        .is_some());

    // Delete the index: gone by digest and by its tag.
    c.manifest_delete(&app, &index_digest).await.unwrap();
    assert_eq!(c.manifest_head(&app, &index_ref).await.unwrap(), None);
    assert_eq!(c.manifest_head(&app, &tag("multi")).await.unwrap(), None);
    let err = c.manifest_delete(&app, &index_digest).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn referrers_through_the_tag_schema() {
    let reg = Distribution::start();
    let c = client(&reg.url, 1 << 20);
    let app = repo("signed/app");

    let (image, image_digest) = push_image(&c, &app, &tag("v1"), br#"{"os":"linux"}"#, &[]).await;
    assert_no_referrers(&c, &app, &image_digest).await;

    // Two artifacts about the image: an SBOM (explicit artifactType) and a
    // signature (artifact type taken from its config's media type).
    push_blob(&c, &app, b"{}").await;
    let sbom_blob = noise(5, 3000);
    push_blob(&c, &app, &sbom_blob).await;
    let subject = Some((media::OCI_MANIFEST, &image_digest, image.len()));
    let sbom = image_manifest(
        (media::OCI_EMPTY_CONFIG, b"{}"),
        &[&sbom_blob],
        Some("application/vnd.example.sbom"),
        subject,
    );
    let sbom_digest = put_by_digest(&c, &app, &sbom).await;
    let sig_config = br#"{"sig":true}"#;
    push_blob(&c, &app, sig_config).await;
    let sig = image_manifest(
        ("application/vnd.example.signature.config", sig_config),
        &[],
        None,
        subject,
    );
    let sig_digest = put_by_digest(&c, &app, &sig).await;
    // Pushing the same one again adds no duplicate.
    put_by_digest(&c, &app, &sig).await;

    // The client maintained the tag schema's index.
    let schema_tag = referrers_tag(&image_digest);
    assert_eq!(
        schema_tag.as_str(),
        format!("sha256-{}", image_digest.encoded())
    );
    let index = c
        .manifest_get(&app, &Reference::Tag(schema_tag.clone()))
        .await
        .unwrap();
    assert_eq!(index.media_type, media::OCI_INDEX);

    let all = c.referrers(&app, &image_digest, None).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let sbom_ref = all.iter().find(|d| d.digest == sbom_digest).unwrap();
    assert_eq!(
        sbom_ref.artifact_type.as_deref(),
        Some("application/vnd.example.sbom")
    );
    assert_eq!(sbom_ref.size, sbom.len() as u64);
    assert_eq!(sbom_ref.media_type, media::OCI_MANIFEST);
    assert_eq!(
        sbom_ref.annotations.as_ref().unwrap()["org.example.note"],
        "attached"
    );
    let sig_ref = all.iter().find(|d| d.digest == sig_digest).unwrap();
    assert_eq!(
        sig_ref.artifact_type.as_deref(),
        Some("application/vnd.example.signature.config")
    );

    let only_sboms = c
        .referrers(&app, &image_digest, Some("application/vnd.example.sbom"))
        .await
        .unwrap();
    assert_eq!(only_sboms.len(), 1);
    assert_eq!(only_sboms[0].digest, sbom_digest);
    assert!(c
        .referrers(&app, &image_digest, Some("application/none"))
        .await
        .unwrap()
        .is_empty());

    // Deleting an artifact takes it out of the index.
    c.manifest_delete(&app, &sbom_digest).await.unwrap();
    let left = c.referrers(&app, &image_digest, None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].digest, sig_digest);
}

#[tokio::test]
async fn basic_auth() {
    let reg = Distribution::start_with(Setup::default().user("alice", "s3cret-pass"));
    let app = repo("alice/app");

    // No credentials.
    let anonymous = client(&reg.url, 1 << 20);
    let err = anonymous.ping().await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert!(err.to_string().contains("none are configured"), "{err}");
    assert!(!err.is_retryable());

    // A wrong password: one clear error.
    let wrong =
        Client::new(&Endpoint::new(&reg.url).with_credentials(Credentials::new("alice", "wrong")))
            .unwrap();
    let err = wrong.ping().await.unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");
    assert_eq!(err.status(), Some(401));
    assert!(
        err.to_string().contains("refused the credentials of alice"),
        "{err}"
    );
    let err = wrong
        .blob_head(&app, &Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err}");
    // Each refused password was tried once (no storm to trip a lockout):
    // the anonymous ping, the first ping (anonymous, then Basic), the HEAD
    // (Basic at once, the scheme being known).
    let refused = reg
        .requests()
        .iter()
        .filter(|r| r.ends_with(" 401"))
        .count();
    assert_eq!(refused, 4, "{:#?}", reg.requests());

    // The right one.
    let mut ep = Endpoint::new(&reg.url).with_credentials(Credentials::new("alice", "s3cret-pass"));
    ep.chunk_size = 256 << 10;
    let c = Client::new(&ep).unwrap();
    assert_eq!(c.ping().await.unwrap().auth, AuthKind::Basic);
    let data = noise(6, 1 << 20);
    let d = push_blob(&c, &app, &data).await;
    assert_eq!(fetch_blob(&c, &app, &d, 1000).await, data[1000..]);
    let m = image_manifest(
        ("application/vnd.oci.image.config.v1+json", &data),
        &[],
        None,
        None,
    );
    put_manifest(&c, &app, &tag("v1"), media::OCI_MANIFEST, &m).await;
    assert_eq!(
        &c.manifest_get(&app, &tag("v1")).await.unwrap().bytes[..],
        &m[..]
    );
    assert_eq!(c.catalog().await.unwrap(), vec![app.clone()]);
    assert_eq!(c.tags(&app).await.unwrap(), vec![Tag::parse("v1").unwrap()]);
}

#[tokio::test]
async fn tls_verification_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let ca = pki.ca.clone();
    let reg = Distribution::start_with(Setup::default().tls(&pki.server_cert, &pki.server_key));
    assert!(reg.url.starts_with("https://"), "{}", reg.url);

    let with = |tls: TlsVerify| Client::new(&Endpoint::new(&reg.url).with_tls(tls)).unwrap();
    with(TlsVerify::CaFile(ca)).ping().await.unwrap();
    with(TlsVerify::SkipVerification).ping().await.unwrap();

    // The system's CAs do not know the test CA: a TLS failure, which no
    // retry cures.
    let err = with(TlsVerify::System).ping().await.unwrap_err();
    assert!(matches!(err, ClientError::Network { .. }), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Another CA does not verify it either.
    let err = with(TlsVerify::CaFile(pki.other_ca.clone()))
        .ping()
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retryable_network_error() {
    // Port 1 on the loopback: nothing listens there, the connection is
    // refused at once.
    let c = client("http://127.0.0.1:1", 1 << 20);
    let err = c.ping().await.unwrap_err();
    assert!(matches!(err, ClientError::Network { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.status(), None);
}
