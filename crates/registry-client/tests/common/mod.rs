//! What the client's tests share beyond berth-test-kit (whose
//! [`berth_test_kit::distribution`] runs the CNCF Distribution registry
//! they talk to): streams of bytes, and OCI manifests.

#![allow(dead_code)]

use berth_oci::{media, Digest};
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
pub async fn collect(
    mut s: berth_registry_client::BlobStream,
) -> Result<Vec<u8>, berth_registry_client::ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
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
