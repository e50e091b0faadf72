//! Two filesystem stores on one shared directory, as two nodes see it: the
//! same directory twice on one machine, or two CephFS mounts.

use super::fs_common::write_part;
use berth_core::blob_suite;
use berth_core::BlobStore;
use berth_oci::Digest;
use berth_storage::FsBlobStore;
use bytes::Bytes;
use std::path::Path;

/// Node A at `a` and node B at `b` (the same directory, reached two ways):
/// an upload written by both and committed by B reads back on A; a blob
/// put by A is read and deleted by B; each runs the whole suite beside the
/// other's files.
pub async fn two_nodes(a: &Path, b: &Path) {
    let open = |p: &Path| {
        FsBlobStore::open(p.to_path_buf()).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
    };
    let (a, b) = (open(a), open(b));

    let data = blob_suite::content(100_000);
    let digest = Digest::sha256_of(&data);
    write_part(&a, "shared-1", 0, &data[..40_000]).await;
    // The next request of the same upload lands on the other node.
    write_part(&b, "shared-1", 40_000, &data[40_000..]).await;
    b.commit_upload("shared-1", &digest, 100_000).await.unwrap();
    assert_eq!(a.stat(&digest).await.unwrap(), Some(100_000));
    assert_eq!(blob_suite::read_all(&a, &digest, 0, 100_000).await, data);

    let manifest = blob_suite::content(500);
    let mdigest = Digest::sha256_of(&manifest);
    a.put(&mdigest, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    assert_eq!(blob_suite::read_all(&b, &mdigest, 0, 500).await, manifest);
    b.delete(&mdigest).await.unwrap();
    assert_eq!(a.stat(&mdigest).await.unwrap(), None);

    // Each node runs the suite on the same directory; neither trips on the
    // other's files.
    blob_suite::run_all(&a).await;
    blob_suite::run_all(&b).await;
}
