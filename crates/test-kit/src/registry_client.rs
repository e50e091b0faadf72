//! What the tests of berth's outbound client (`berth-registry-client`)
//! share, against berth or the CNCF Distribution registry: streams of
//! bytes, OCI manifests and indexes, and pushes that must succeed.

use berth_oci::{media, Digest, Reference, RepoName};
use berth_registry_client::{BlobStream, Client, ClientError, Mount};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::json;

/// `data` as a stream of `piece`-byte items, as a file or socket gives.
pub fn stream_of(
    data: &[u8],
    piece: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let items: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(items)
}

/// Everything a blob stream yields.
pub async fn collect(mut s: BlobStream) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Uploads `data` into `repo` (streamed in 64 KiB pieces), which must
/// succeed; its digest.
pub async fn push_blob(c: &Client, repo: &RepoName, data: &[u8]) -> Digest {
    push_blob_in(c, repo, data, 64 << 10).await
}

/// Uploads `data` into `repo` streamed in `piece`-byte items, which must
/// succeed; its digest.
pub async fn push_blob_in(c: &Client, repo: &RepoName, data: &[u8], piece: usize) -> Digest {
    let d = Digest::sha256_of(data);
    c.blob_put(repo, &d, data.len() as u64, stream_of(data, piece))
        .await
        .unwrap();
    d
}

/// The blob `digest` of `repo` from byte `from` on, read whole.
pub async fn fetch_blob(c: &Client, repo: &RepoName, digest: &Digest, from: u64) -> Vec<u8> {
    collect(c.blob_get(repo, digest, from).await.unwrap())
        .await
        .unwrap()
}

/// Asserts that the blob `digest` of `repo` holds `data`: its size, its
/// bytes, and its bytes from `from` on (a stream that knows the total).
pub async fn assert_blob(c: &Client, repo: &RepoName, digest: &Digest, data: &[u8], from: u64) {
    let len = data.len() as u64;
    assert_eq!(c.blob_head(repo, digest).await.unwrap(), Some(len));
    assert!(
        fetch_blob(c, repo, digest, 0).await == data,
        "whole blob differs"
    );
    let part = c.blob_get(repo, digest, from).await.unwrap();
    assert_eq!(part.total_len(), Some(len));
    assert!(
        collect(part).await.unwrap() == data[from as usize..],
        "blob from {from} differs"
    );
}

/// Mounts `digest` from `from` into `to`, which must be done; the blob is
/// then in `to`, `len` bytes.
pub async fn assert_mounts(c: &Client, to: &RepoName, digest: &Digest, from: &RepoName, len: u64) {
    assert_eq!(
        c.blob_mount(to, digest, from).await.unwrap(),
        Mount::Mounted
    );
    assert_eq!(c.blob_head(to, digest).await.unwrap(), Some(len));
}

/// Puts the manifest `bytes` of `media_type` as `reference` of `repo`,
/// which must succeed; the digest the registry answers.
pub async fn put_manifest(
    c: &Client,
    repo: &RepoName,
    reference: &Reference,
    media_type: &str,
    bytes: &[u8],
) -> Digest {
    c.manifest_put(repo, reference, media_type, Bytes::copy_from_slice(bytes))
        .await
        .unwrap()
}

/// Puts the OCI image manifest `bytes` into `repo` by its own digest,
/// which must succeed; that digest.
pub async fn put_by_digest(c: &Client, repo: &RepoName, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    let reference = Reference::Digest(d.clone());
    put_manifest(c, repo, &reference, media::OCI_MANIFEST, bytes).await;
    d
}

/// Pushes an image of `config` (an OCI image config) and `layers`, blobs
/// first, as `reference` of `repo`, all of which must succeed; its
/// manifest and the digest the registry answers.
pub async fn push_image(
    c: &Client,
    repo: &RepoName,
    reference: &Reference,
    config: &[u8],
    layers: &[&[u8]],
) -> (Vec<u8>, Digest) {
    for blob in layers.iter().copied().chain([config]) {
        push_blob(c, repo, blob).await;
    }
    let m = image_manifest(
        ("application/vnd.oci.image.config.v1+json", config),
        layers,
        None,
        None,
    );
    let d = put_manifest(c, repo, reference, media::OCI_MANIFEST, &m).await;
    (m, d)
}

/// Asserts that `repo` lists no referrers of `subject`.
pub async fn assert_no_referrers(c: &Client, repo: &RepoName, subject: &Digest) {
    let found = c.referrers(repo, subject, None).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
}

/// The tags of `repo`, which must list, sorted.
pub async fn sorted_tags(c: &Client, repo: &RepoName) -> Vec<String> {
    let mut tags: Vec<String> = c
        .tags(repo)
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    tags.sort();
    tags
}

/// An OCI image manifest over `config` and `layers`, with an optional
/// artifact type and subject (descriptor of media type, digest, size).
pub fn image_manifest(
    config: (&str, &[u8]),
    layers: &[&[u8]],
    artifact_type: Option<&str>,
    subject: Option<(&str, &Digest, usize)>,
) -> Vec<u8> {
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
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some((mt, d, size)) = subject {
        m["subject"] = json!({"mediaType": mt, "digest": d, "size": size});
        m["annotations"] = json!({"org.example.note": "attached"});
    }
    serde_json::to_vec_pretty(&m).expect("json")
}

/// An OCI image index over `(media type, manifest bytes)` children.
pub fn image_index(children: &[(&str, &[u8])]) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": children.iter().map(|(mt, b)| json!({
            "mediaType": mt,
            "digest": Digest::sha256_of(b),
            "size": b.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec_pretty(&m).expect("json")
}
