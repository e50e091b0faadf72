//! The filesystem store against the shared BlobStore suite, plus what only a
//! directory shared between nodes can show.

use berth_core::blob_suite::{self, Inspect};
use berth_core::BlobStore;
use berth_oci::Digest;
use berth_storage::FsBlobStore;
use bytes::Bytes;
use fs_common::{entries, put_content, write_part, FilesIn};
use std::path::Path;

mod fs_common;
mod shared_dir;

fn store(dir: &Path) -> FsBlobStore {
    match FsBlobStore::open(dir.to_path_buf()) {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_the_blob_suite() {
    let dir = tempfile::tempdir().unwrap();
    blob_suite::run_all(&store(dir.path())).await;
}

/// Each check of the suite leaves no upload and no temporary file.
#[tokio::test(flavor = "multi_thread")]
async fn leaves_no_uploads_or_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    // Its uploads and the temporary files of `put`.
    let files = FilesIn {
        root: dir.path(),
        subs: &["uploads", "tmp"],
    };
    blob_suite::run_all_inspected(&store(dir.path()), &files).await;
    assert_eq!(files.leftovers().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_sharing_a_directory_see_each_others_commits() {
    let dir = tempfile::tempdir().unwrap();
    shared_dir::two_nodes(dir.path(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_blob_lives_at_the_documented_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (data, digest) = put_content(&s, 10).await;
    let hex = digest.encoded();
    let path = dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_upload_ids_that_could_escape_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for id in ["", "../x", "a/b", "..", "a.b", "x\0y", &"a".repeat(200)] {
        assert!(s.upload_writer(id, 0).await.is_err(), "id {id:?} accepted");
        assert!(s.delete_upload(id).await.is_err(), "id {id:?} accepted");
    }
    assert_eq!(entries(&dir.path().join("uploads")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_writer_leaves_recorded_bytes_intact() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data = blob_suite::content(3000);
    write_part(&s, "dropped", 0, &data[..1000]).await;
    // A request that dies midway: its writer is dropped without finish.
    let mut w = s.upload_writer("dropped", 1000).await.unwrap();
    w.write(Bytes::from(blob_suite::content(700)))
        .await
        .unwrap();
    drop(w);
    write_part(&s, "dropped", 1000, &data[1000..]).await;
    let digest = Digest::sha256_of(&data);
    s.commit_upload("dropped", &digest, 3000).await.unwrap();
    assert_eq!(blob_suite::read_all(&s, &digest, 0, 3000).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn range_past_the_end_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (_, digest) = put_content(&s, 100).await;
    assert!(s.read(&digest, 50, 51).await.is_err());
    assert!(s.read(&digest, 101, 0).await.is_err());
    assert!(s.read(&digest, 1, u64::MAX).await.is_err());
}
