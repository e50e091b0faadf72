//! The filesystem store on a real CephFS (Ceph 16 from Debian: mon, mgr,
//! memstore OSD, one MDS), mounted twice with ceph-fuse as two nodes would
//! mount it. The kernel client cannot be loaded in this sandbox; ceph-fuse
//! is the same filesystem and the same MDS protocol.

use berth_core::blob_suite;
use berth_storage::FsBlobStore;

use berth_test_kit::ceph::Ceph;

#[allow(dead_code)]
mod fs_common;
mod shared_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cephfs_mounts_share_uploads_and_blobs() {
    let fs = Ceph::start().await.cephfs(2);
    let (a, b) = (fs.mount(0).join("berth"), fs.mount(1).join("berth"));
    std::fs::create_dir_all(&a).unwrap();
    shared_dir::two_nodes(&a, &b).await;
    // And the suite on one mount alone.
    blob_suite::run_all(&FsBlobStore::open(a).unwrap()).await;
}
