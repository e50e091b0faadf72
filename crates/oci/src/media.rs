//! Media types of the manifests and indexes the registry understands.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// Every manifest media type accepted on push.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Strips parameters (`; charset=...`) and surrounding space from a
/// `Content-Type` or `Accept` entry.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// Whether an `Accept` header (all its values, comma separated) admits a
/// manifest of `media_type`. No header, or a wildcard, admits anything.
pub fn accepts<'a>(accept: impl IntoIterator<Item = &'a str>, media_type: &str) -> bool {
    let mut seen_any = false;
    for value in accept {
        for entry in value.split(',') {
            let e = essence(entry);
            if e.is_empty() {
                continue;
            }
            seen_any = true;
            if e == media_type || e == "*/*" || e == "application/*" {
                return true;
            }
        }
    }
    !seen_any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(accepts([], OCI_MANIFEST));
        assert!(accepts(["*/*"], OCI_MANIFEST));
        assert!(accepts(
            [
                DOCKER_MANIFEST,
                "application/vnd.oci.image.manifest.v1+json; q=0.5"
            ],
            OCI_MANIFEST
        ));
        assert!(accepts(
            [format!("{DOCKER_MANIFEST}, {OCI_INDEX}").as_str()],
            OCI_INDEX
        ));
        assert!(!accepts([DOCKER_MANIFEST], OCI_MANIFEST));
        assert_eq!(
            essence(" application/json ; charset=utf-8"),
            "application/json"
        );
    }
}
