//! berth's outbound registry client (`berth-registry-client`) against the
//! real berth binary: Docker token authentication (a Bearer challenge to
//! `/service/token`), chunked pushes, mounts, listings, deletes, and the
//! referrers API (berth has it, so no tag schema is written).

mod common;

use berth_oci::{media, Digest, Reference, RepoName, Tag};
use berth_registry_client::{
    referrers_tag, AuthKind, BlobStream, Client, ClientError, Credentials, Endpoint, Mount,
};
use bytes::Bytes;
use common::{Server, ADMIN_PASSWORD};
use futures_util::StreamExt;
use serde_json::json;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::Tag(Tag::parse(s).unwrap())
}

/// `len` pseudo-random bytes from `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn stream_of(data: &[u8]) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let items: Vec<_> = data
        .chunks(70_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(items)
}

async fn collect(mut s: BlobStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn admin(server: &Server) -> Client {
    let mut ep =
        Endpoint::new(server.url("")).with_credentials(Credentials::new("admin", ADMIN_PASSWORD));
    ep.chunk_size = 256 << 10;
    ep.page_size = Some(1);
    Client::new(&ep).unwrap()
}

fn manifest(config: (&str, &[u8]), layers: &[&[u8]], subject: Option<(&Digest, usize)>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": config.0, "digest": Digest::sha256_of(config.1), "size": config.1.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::sha256_of(l),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    });
    if let Some((d, size)) = subject {
        m["subject"] = json!({"mediaType": media::OCI_MANIFEST, "digest": d, "size": size});
    }
    serde_json::to_vec_pretty(&m).unwrap()
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
    let d = Digest::sha256_of(config);
    c.blob_put(&app, &d, config.len() as u64, stream_of(config))
        .await
        .unwrap();
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
    let big_digest = Digest::sha256_of(&big);
    c.blob_put(&app, &big_digest, big.len() as u64, stream_of(&big))
        .await
        .unwrap();
    assert_eq!(
        c.blob_head(&app, &big_digest).await.unwrap(),
        Some(big.len() as u64)
    );
    assert!(collect(c.blob_get(&app, &big_digest, 0).await.unwrap()).await == big);
    let from = (1 << 20) + 5;
    let part = c.blob_get(&app, &big_digest, from).await.unwrap();
    assert_eq!(part.total_len(), Some(big.len() as u64));
    assert!(collect(part).await == big[from as usize..]);

    // Mount within the project: needs pull on the source in the token.
    let other = repo("proj/other");
    assert_eq!(
        c.blob_mount(&other, &big_digest, &app).await.unwrap(),
        Mount::Mounted
    );
    assert_eq!(
        c.blob_head(&other, &big_digest).await.unwrap(),
        Some(big.len() as u64)
    );

    // An image by tag, an index by digest.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    c.blob_put(
        &app,
        &Digest::sha256_of(config),
        config.len() as u64,
        stream_of(config),
    )
    .await
    .unwrap();
    let image = manifest(
        ("application/vnd.oci.image.config.v1+json", config),
        &[&big],
        None,
    );
    let image_digest = c
        .manifest_put(
            &app,
            &tag("v1"),
            media::OCI_MANIFEST,
            Bytes::from(image.clone()),
        )
        .await
        .unwrap();
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
    c.manifest_put(
        &app,
        &index_ref,
        media::OCI_INDEX,
        Bytes::from(index.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        &c.manifest_get(&app, &index_ref).await.unwrap().bytes[..],
        &index[..]
    );
    c.manifest_put(
        &app,
        &tag("v2"),
        media::OCI_INDEX,
        Bytes::from(index.clone()),
    )
    .await
    .unwrap();

    // Listings, one item per page; the catalog needs `registry:catalog:*`.
    let mut tags: Vec<String> = c
        .tags(&app)
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
    let catalog = c.catalog().await.unwrap();
    assert!(catalog.contains(&app), "{catalog:?}");

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
    let config = br#"{"os":"linux"}"#;
    c.blob_put(
        &app,
        &Digest::sha256_of(config),
        config.len() as u64,
        stream_of(config),
    )
    .await
    .unwrap();
    let image = manifest(
        ("application/vnd.oci.image.config.v1+json", config),
        &[],
        None,
    );
    let image_digest = c
        .manifest_put(
            &app,
            &tag("v1"),
            media::OCI_MANIFEST,
            Bytes::from(image.clone()),
        )
        .await
        .unwrap();
    assert!(c
        .referrers(&app, &image_digest, None)
        .await
        .unwrap()
        .is_empty());

    let mut artifacts = Vec::new();
    for (kind, seed) in [
        ("application/vnd.example.sbom", 1u64),
        ("application/vnd.example.sig", 2),
    ] {
        let blob = noise(seed, 1000);
        c.blob_put(
            &app,
            &Digest::sha256_of(&blob),
            blob.len() as u64,
            stream_of(&blob),
        )
        .await
        .unwrap();
        let m = manifest((kind, &blob), &[], Some((&image_digest, image.len())));
        let d = Digest::sha256_of(&m);
        c.manifest_put(
            &app,
            &Reference::Digest(d.clone()),
            media::OCI_MANIFEST,
            Bytes::from(m),
        )
        .await
        .unwrap();
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
