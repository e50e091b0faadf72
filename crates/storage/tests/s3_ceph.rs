//! `S3BlobStore` against a real Ceph RGW (Ceph 16 from Debian's packages,
//! one mon, one memstore OSD, radosgw on loopback): the shared conformance
//! suite from two nodes and under a key prefix, and the sweep of abandoned
//! multipart uploads.

use berth_core::blob_suite;
use berth_storage::S3BlobStore;

mod ceph;
mod multipart;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_ceph_rgw() {
    let ceph = ceph::Ceph::start().await;
    for _ in 0..2 {
        let node = ceph.node();
        let left = multipart::Leftovers {
            store: &node,
            uploads: "uploads/",
        };
        blob_suite::run_all_inspected(&node, &left).await;
    }
    let mut prefixed = ceph.config();
    prefixed.prefix = "tenant/berth/".into();
    prefixed.part_size_mib = 5;
    let store = S3BlobStore::new(&prefixed).unwrap();
    let left = multipart::Leftovers {
        store: &store,
        uploads: "tenant/berth/uploads/",
    };
    blob_suite::run_all_inspected(&store, &left).await;
    // Every upload the suites made is gone, and no commit left a multipart
    // upload behind.
    multipart::nothing_left(&ceph.node(), &["uploads/"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_multipart_uploads_are_aborted_on_ceph_rgw() {
    let ceph = ceph::Ceph::start().await;
    multipart::stale_uploads_are_aborted(&ceph.node()).await;
}
