//! Both stores in CNCF Distribution's layout (`layout = "distribution"`):
//! the shared BlobStore suite on a directory and on Garage, committed
//! blobs at the paths Distribution reads and writes, blobs Distribution
//! left read where they lie, and the tree readers over both.

use berth_core::blob_suite::{self, Inspect};
use berth_core::import::{FileRead, Tree};
use berth_core::BlobStore;
use berth_oci::Digest;
use berth_storage::tree::{FsTree, S3Tree};
use berth_storage::{BlobLayout, FsBlobStore, S3BlobStore};
use bytes::Bytes;
use std::path::Path;

// The suites' shared helpers; this file uses some of them.
#[allow(dead_code)]
mod fs_common;
#[allow(dead_code)]
mod multipart;
use berth_test_kit::garage::Garage;
use fs_common::{put_content, write_part, FilesIn};

fn store(dir: &Path) -> FsBlobStore {
    FsBlobStore::open_with_layout(dir.to_path_buf(), BlobLayout::Distribution)
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Where Distribution keeps the bytes of `digest` under its root.
fn distribution_path(digest: &Digest) -> String {
    let hex = digest.encoded();
    format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_in_distribution_layout_passes_the_blob_suite() {
    let dir = tempfile::tempdir().unwrap();
    // Uploads and temporary files, and no `blobs/` of berth's own layout.
    let left = FilesIn {
        root: dir.path(),
        subs: &["uploads", "tmp", "blobs"],
    };
    // Twice on the same directory: two nodes sharing it.
    blob_suite::run_all_inspected(&store(dir.path()), &left).await;
    blob_suite::run_all_inspected(&store(dir.path()), &left).await;
    assert_eq!(left.leftovers().await, Vec::<String>::new());
    assert!(
        !dir.path().join("blobs").exists(),
        "berth's own layout unused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_live_where_distribution_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    assert_eq!(s.layout(), BlobLayout::Distribution);

    // Written by berth: at Distribution's path, through put and upload.
    let (data, digest) = put_content(&s, 1000).await;
    let path = dir.path().join(distribution_path(&digest));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let uploaded = blob_suite::content(3000);
    let udigest = Digest::sha256_of(&uploaded);
    write_part(&s, "u-1", 0, &uploaded).await;
    s.commit_upload("u-1", &udigest, 3000).await.unwrap();
    let upath = dir.path().join(distribution_path(&udigest));
    assert_eq!(std::fs::read(&upath).unwrap(), uploaded);

    // Left by Distribution: read where it lies.
    let theirs = b"written by docker-registry".to_vec();
    let tdigest = Digest::sha256_of(&theirs);
    let tpath = dir.path().join(distribution_path(&tdigest));
    std::fs::create_dir_all(tpath.parent().unwrap()).unwrap();
    std::fs::write(&tpath, &theirs).unwrap();
    assert_eq!(s.stat(&tdigest).await.unwrap(), Some(theirs.len() as u64));
    let back = blob_suite::read_all(&s, &tdigest, 0, theirs.len() as u64).await;
    assert_eq!(back, theirs);

    // A delete removes the blob's own directory, as Distribution's does,
    // and a later commit of the same digest makes it again.
    s.delete(&digest).await.unwrap();
    assert!(!path.parent().unwrap().exists());
    assert_eq!(s.stat(&digest).await.unwrap(), None);
    s.put(&digest, Bytes::from(data.clone())).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_reader_sees_what_the_store_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (data, digest) = put_content(&s, 500).await;
    let tree = FsTree::open(dir.path()).unwrap();
    let rel = berth_core::import::tree::blob_data(&digest);
    assert_eq!(tree.size(&rel).await.unwrap(), Some(500));
    assert_eq!(
        tree.read(&rel, 500).await.unwrap(),
        FileRead::Bytes(Bytes::from(data))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_in_distribution_layout_passes_the_blob_suite_on_garage() {
    let garage = Garage::start().await;
    let mut config = garage.config();
    config.layout = BlobLayout::Distribution;
    let node = || S3BlobStore::new(&config).unwrap();
    // Two nodes on the bucket's root, then a store under a prefix (a
    // Distribution with `rootdirectory: /tenant/berth`).
    let store = multipart::suites([node(), node()], config.clone()).await;
    assert_eq!(store.layout(), BlobLayout::Distribution);

    let data = blob_suite::content(100);
    let digest = Digest::sha256_of(&data);
    store.put(&digest, Bytes::from(data.clone())).await.unwrap();
    let key = format!("tenant/berth/{}", distribution_path(&digest));
    let keys = store.client().list_keys("tenant/berth/").await.unwrap();
    assert!(keys.contains(&key), "{key} not in {keys:?}");
    assert!(
        !keys.iter().any(|k| k.starts_with("tenant/berth/blobs/")),
        "{keys:?}"
    );
    multipart::nothing_left(&store, &["uploads/", "tenant/berth/uploads/"]).await;

    // Left by Distribution's S3 driver: read where it lies, and seen by
    // the tree reader of that root directory.
    let theirs = Bytes::from_static(b"pushed to docker-registry");
    let tdigest = Digest::sha256_of(&theirs);
    let tkey = format!("tenant/berth/{}", distribution_path(&tdigest));
    store
        .client()
        .put_object(&tkey, theirs.clone())
        .await
        .unwrap();
    assert_eq!(
        store.stat(&tdigest).await.unwrap(),
        Some(theirs.len() as u64)
    );
    let back = blob_suite::read_all(&store, &tdigest, 0, theirs.len() as u64).await;
    assert_eq!(back, theirs);
    let mut tree_config = config.clone();
    tree_config.prefix = "/tenant/berth".into();
    let tree = S3Tree::new(&tree_config).unwrap();
    let rel = berth_core::import::tree::blob_data(&tdigest);
    assert_eq!(tree.read(&rel, 100).await.unwrap(), FileRead::Bytes(theirs));
    assert_eq!(tree.dirs("blobs/").await.unwrap(), ["sha256"]);
    let files = tree.files("blobs/").await.unwrap();
    assert!(files.contains(&format!(
        "sha256/{}/{}/data",
        &tdigest.encoded()[..2],
        tdigest.encoded()
    )));

    // A commit that died mid-multipart is swept under Distribution's path.
    let stale = store.client().create_multipart(&key).await.unwrap();
    assert_eq!(
        store
            .abort_stale_multipart(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1,
        "multipart upload {stale} not swept"
    );
}
