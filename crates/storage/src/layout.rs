//! Where a store keeps committed blobs: berth's own layout, or the one of
//! the CNCF Distribution registry (also Harbor's), so that berth configured
//! on the directory or bucket a Distribution used serves its blobs where
//! they lie, and writes new ones where Distribution would.
//!
//! ```text
//! berth          <root>/blobs/<alg>/<2 hex>/<hex>
//! distribution   <root>/docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data
//! ```
//!
//! `<root>` is the store's directory or key prefix: for Distribution, its
//! `rootdirectory` (filesystem driver: the directory; S3 driver: the key
//! prefix, empty by default). Only committed blobs move: uploads and
//! temporary files stay under berth's own `uploads/` and `tmp/`.

use berth_oci::Digest;
use serde::Deserialize;

/// The directory of Distribution's storage tree under its root directory
/// (`docker/registry/v2/`): `blobs/` and `repositories/` live in it.
pub const DISTRIBUTION_TREE: &str = "docker/registry/v2/";

/// `[storage] layout`: where committed blobs live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobLayout {
    /// `blobs/<alg>/<2 hex>/<hex>`.
    #[default]
    Berth,
    /// `docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data`, as CNCF
    /// Distribution (and Harbor) store them.
    Distribution,
}

impl BlobLayout {
    /// The path of a committed blob below the store's root, `/`-separated.
    pub fn blob_path(self, digest: &Digest) -> String {
        // The digest is validated (lowercase hex of fixed length), so its
        // parts are safe path components.
        let hex = digest.encoded();
        let alg = digest.algorithm();
        match self {
            BlobLayout::Berth => format!("blobs/{alg}/{}/{hex}", &hex[..2]),
            BlobLayout::Distribution => {
                format!("{DISTRIBUTION_TREE}blobs/{alg}/{}/{hex}/data", &hex[..2])
            }
        }
    }

    /// The directory every committed blob lies under, ending in `/`.
    pub fn blobs_dir(self) -> &'static str {
        match self {
            BlobLayout::Berth => "blobs/",
            BlobLayout::Distribution => "docker/registry/v2/blobs/",
        }
    }

    /// Whether each blob has a directory of its own (Distribution's
    /// `<hex>/`), which a delete removes with the blob.
    pub(crate) fn dir_per_blob(self) -> bool {
        self == BlobLayout::Distribution
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_both_layouts() {
        let d = Digest::sha256_of(b"x");
        let hex = d.encoded();
        assert_eq!(
            BlobLayout::Berth.blob_path(&d),
            format!("blobs/sha256/{}/{hex}", &hex[..2])
        );
        assert_eq!(
            BlobLayout::Distribution.blob_path(&d),
            format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
        );
        for layout in [BlobLayout::Berth, BlobLayout::Distribution] {
            assert!(layout.blob_path(&d).starts_with(layout.blobs_dir()));
        }
        assert_eq!(BlobLayout::default(), BlobLayout::Berth);
    }

    #[test]
    fn parses_from_configuration() {
        #[derive(Deserialize)]
        struct S {
            layout: BlobLayout,
        }
        let s: S = toml::from_str("layout = \"distribution\"").unwrap();
        assert_eq!(s.layout, BlobLayout::Distribution);
        let s: S = toml::from_str("layout = \"berth\"").unwrap();
        assert_eq!(s.layout, BlobLayout::Berth);
        assert!(toml::from_str::<S>("layout = \"docker\"").is_err());
    }
}
