//! The sweep of abandoned multipart uploads, and the check that nothing of
//! an upload is left behind, on any S3 server (Garage and Ceph RGW run
//! them).

use berth_core::blob_suite::{self, content, Inspect};
use berth_storage::{S3BlobStore, S3Config};
use bytes::Bytes;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// The shared suite from the two `nodes` (stores sharing one bucket), then
/// on a store of `config` under the key prefix `tenant/berth/` with 5 MiB
/// parts, each run checking that it leaves nothing behind; that last store.
pub async fn suites(nodes: [S3BlobStore; 2], config: S3Config) -> S3BlobStore {
    for node in &nodes {
        let left = Leftovers {
            store: node,
            uploads: "uploads/",
        };
        blob_suite::run_all_inspected(node, &left).await;
    }
    let mut prefixed = config;
    prefixed.prefix = "tenant/berth/".into();
    prefixed.part_size_mib = 5;
    let store = S3BlobStore::new(&prefixed).unwrap();
    let left = Leftovers {
        store: &store,
        uploads: "tenant/berth/uploads/",
    };
    blob_suite::run_all_inspected(&store, &left).await;
    store
}

/// Commits that died after starting their multipart upload are aborted by
/// the sweep once old enough, and young ones (commits in progress on other
/// nodes) are left alone.
pub async fn stale_uploads_are_aborted(store: &S3BlobStore) {
    let client = store.client();
    let first = client
        .create_multipart("blobs/sha256/aa/aa01")
        .await
        .unwrap();
    client
        .upload_part("blobs/sha256/aa/aa01", &first, 1, Bytes::from(content(MIB)))
        .await
        .unwrap();
    client
        .create_multipart("blobs/sha256/bb/bb02")
        .await
        .unwrap();
    assert_eq!(client.list_multipart("").await.unwrap().len(), 2);

    assert_eq!(
        store
            .abort_stale_multipart(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(client.list_multipart("").await.unwrap().len(), 2);

    assert_eq!(
        store.abort_stale_multipart(Duration::ZERO).await.unwrap(),
        2
    );
    let left = client.list_multipart("").await.unwrap();
    assert!(left.is_empty(), "multipart uploads left: {left:?}");
    assert_eq!(
        store.abort_stale_multipart(Duration::ZERO).await.unwrap(),
        0
    );
}

/// No upload object is left under any of `upload_prefixes`, and no commit
/// left a multipart upload behind.
pub async fn nothing_left(store: &S3BlobStore, upload_prefixes: &[&str]) {
    let client = store.client();
    for prefix in upload_prefixes {
        let keys = client.list_keys(prefix).await.unwrap();
        assert!(keys.is_empty(), "left under {prefix}: {keys:?}");
    }
    let multipart = client.list_multipart("").await.unwrap();
    assert!(
        multipart.is_empty(),
        "multipart uploads left: {multipart:?}"
    );
}

/// What a bucket holds besides committed blobs: the objects under
/// `uploads` (a store's `<prefix>uploads/`) and unfinished multipart
/// uploads, for the suite's check that each check leaves nothing behind.
pub struct Leftovers<'a> {
    pub store: &'a S3BlobStore,
    pub uploads: &'a str,
}

#[async_trait::async_trait]
impl Inspect for Leftovers<'_> {
    async fn leftovers(&self) -> Vec<String> {
        let client = self.store.client();
        let mut left = client.list_keys(self.uploads).await.unwrap();
        for upload in client.list_multipart("").await.unwrap() {
            left.push(format!("multipart {} {}", upload.key, upload.upload_id));
        }
        left
    }
}
