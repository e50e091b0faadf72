//! Parsing and validation of pushed manifests: OCI image manifest and index,
//! Docker schema 2 manifest and manifest list. The result names everything
//! the registry must check before accepting the manifest.

use crate::digest::Digest;
use crate::media;
use serde_json::{Map, Value};
use std::fmt;

/// Manifests larger than this are refused, as the distribution spec suggests.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

#[derive(Clone, Debug)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, the config's
    /// media type (the referrers API reports it so).
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

impl ParsedManifest {
    /// Blobs that must exist in the repository: the config and every layer
    /// that is not a foreign layer (one with `urls`).
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| l.urls.is_empty()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManifestError {}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError(msg.into())
}

/// Parses `body` pushed with `content_type`. The `mediaType` field, when
/// present, must agree with the header; without a usable header the field
/// decides, and without either the shape does (OCI allows omitting both).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<ParsedManifest, ManifestError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    match obj.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        Some(1) => return Err(invalid("schema 1 manifests are not supported")),
        _ => return Err(invalid("schemaVersion must be 2")),
    }
    let field = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    let header = content_type
        .map(media::essence)
        .filter(|h| media::MANIFEST_TYPES.contains(h));
    if let (Some(h), Some(f)) = (header, field) {
        if h != f {
            return Err(invalid(format!(
                "mediaType {f} does not match Content-Type {h}"
            )));
        }
    }
    let media_type = match header.or(field) {
        Some(t) => t.to_owned(),
        None if obj.contains_key("manifests") => media::OCI_INDEX.to_owned(),
        None if obj.contains_key("config") => media::OCI_MANIFEST.to_owned(),
        None => {
            return Err(invalid(
                "cannot tell the manifest type: no Content-Type or mediaType",
            ))
        }
    };
    if !media::MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(invalid(format!(
            "unsupported manifest media type {media_type}"
        )));
    }
    let kind = if media_type == media::OCI_INDEX || media_type == media::DOCKER_MANIFEST_LIST {
        ManifestKind::Index
    } else {
        ManifestKind::Image
    };
    let subject = obj.get("subject").map(descriptor).transpose()?;
    let annotations = match obj.get("annotations") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(invalid("annotations must be an object")),
    };
    // The image spec treats an empty artifactType as a missing one.
    let explicit_artifact_type = match obj.get("artifactType") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("artifactType must be a string")),
    };
    let mut parsed = ParsedManifest {
        media_type,
        kind,
        config: None,
        layers: Vec::new(),
        manifests: Vec::new(),
        subject,
        artifact_type: explicit_artifact_type,
        annotations,
    };
    match kind {
        ManifestKind::Image => {
            let config = descriptor(
                obj.get("config")
                    .ok_or_else(|| invalid("image manifest has no config"))?,
            )?;
            parsed.layers = descriptor_list(obj.get("layers"), "layers")?;
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = Some(config.media_type.clone());
            }
            parsed.config = Some(config);
        }
        ManifestKind::Index => {
            parsed.manifests = descriptor_list(obj.get("manifests"), "manifests")?;
        }
    }
    Ok(parsed)
}

fn descriptor_list(v: Option<&Value>, what: &str) -> Result<Vec<Descriptor>, ManifestError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(descriptor).collect(),
        Some(_) => Err(invalid(format!("{what} must be an array"))),
    }
}

fn descriptor(v: &Value) -> Result<Descriptor, ManifestError> {
    let d: Descriptor = serde_json::from_value(v.clone())
        .map_err(|e| invalid(format!("invalid descriptor: {e}")))?;
    if d.media_type.is_empty() {
        return Err(invalid("descriptor has an empty mediaType"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(data: &[u8]) -> String {
        Digest::sha256_of(data).to_string()
    }

    #[test]
    fn oci_image_with_subject() {
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": media::OCI_EMPTY_CONFIG, "digest": d(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": d(b"x"), "size": 1}],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": d(b"s"), "size": 1}
        });
        let m = parse(Some(media::OCI_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.subject.unwrap().digest.to_string(), d(b"s"));
    }

    #[test]
    fn artifact_type_falls_back_to_config_media_type() {
        let body = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.example.config", "digest": d(b"c"), "size": 1},
            "layers": []
        });
        let m = parse(None, body.to_string().as_bytes()).unwrap();
        assert_eq!(m.media_type, media::OCI_MANIFEST);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.config")
        );
    }

    #[test]
    fn empty_artifact_type_counts_as_missing() {
        let config = json!({"mediaType": media::OCI_EMPTY_CONFIG, "digest": d(b"{}"), "size": 2});
        let body = json!({"schemaVersion": 2, "artifactType": "", "config": config, "layers": []});
        let m = parse(Some(media::OCI_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some(media::OCI_EMPTY_CONFIG));
        let body = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "artifactType": "", "manifests": []});
        let m = parse(Some(media::OCI_INDEX), body.to_string().as_bytes()).unwrap();
        assert_eq!(m.artifact_type, None);
    }

    #[test]
    fn docker_list_and_foreign_layers() {
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST_LIST,
            "manifests": [{"mediaType": media::DOCKER_MANIFEST, "digest": d(b"m"), "size": 5,
                           "platform": {"architecture": "amd64", "os": "linux"}}]
        });
        let m = parse(
            Some(media::DOCKER_MANIFEST_LIST),
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);

        let body = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d(b"c"), "size": 1},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                        "digest": d(b"f"), "size": 1, "urls": ["https://example.invalid/f"]}]
        });
        let m = parse(Some(media::DOCKER_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(
            m.required_blobs().count(),
            1,
            "foreign layers need not exist"
        );
    }

    #[test]
    fn rejects_bad_manifests() {
        let cases = [
            (Some(media::OCI_MANIFEST), "not json".to_string()),
            (Some(media::OCI_MANIFEST), "[]".to_string()),
            (Some(media::OCI_MANIFEST), json!({"schemaVersion": 1}).to_string()),
            (Some(media::OCI_MANIFEST), json!({"schemaVersion": 2, "layers": []}).to_string()),
            (
                Some(media::OCI_INDEX),
                json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": {}}).to_string(),
            ),
            (
                Some(media::OCI_MANIFEST),
                json!({"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:00", "size": 1}})
                    .to_string(),
            ),
            (
                Some(media::OCI_MANIFEST),
                json!({"schemaVersion": 2, "config": {"mediaType": "x", "digest": d(b"c"), "size": -1}})
                    .to_string(),
            ),
            (Some("application/json"), json!({"schemaVersion": 2}).to_string()),
        ];
        for (ct, body) in cases {
            assert!(parse(ct, body.as_bytes()).is_err(), "{body}");
        }
    }
}
