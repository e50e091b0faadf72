//! `S3BlobStore` against a real Ceph RGW (Ceph 16 from Debian's packages,
//! one mon, one memstore OSD, radosgw on loopback): the shared conformance
//! suite from two nodes and under a key prefix, and the sweep of abandoned
//! multipart uploads.

use berth_test_kit::ceph::Ceph;

mod multipart;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_ceph_rgw() {
    let ceph = Ceph::start().await;
    multipart::suites([ceph.node(), ceph.node()], ceph.config()).await;
    // Every upload the suites made is gone, and no commit left a multipart
    // upload behind.
    multipart::nothing_left(&ceph.node(), &["uploads/"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_multipart_uploads_are_aborted_on_ceph_rgw() {
    let ceph = Ceph::start().await;
    multipart::stale_uploads_are_aborted(&ceph.node()).await;
}
