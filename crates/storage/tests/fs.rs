//! The filesystem store against the shared BlobStore suite, plus what only a
//! directory shared between nodes can show.

use berth_core::blob_suite::{self, Inspect};
use berth_core::BlobStore;
use berth_oci::Digest;
use berth_storage::FsBlobStore;
use bytes::Bytes;
use std::path::Path;

mod shared_dir;

fn store(dir: &Path) -> FsBlobStore {
    match FsBlobStore::open(dir.to_path_buf()) {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_the_blob_suite() {
    let dir = tempfile::tempdir().unwrap();
    blob_suite::run_all(&store(dir.path())).await;
}

/// What the store holds besides committed blobs: its uploads and the
/// temporary files of `put`, which the trait never lists.
struct UploadsAndTemp<'a>(&'a Path);

#[async_trait::async_trait]
impl Inspect for UploadsAndTemp<'_> {
    async fn leftovers(&self) -> Vec<String> {
        ["uploads", "tmp"]
            .iter()
            .flat_map(|sub| {
                entries(&self.0.join(sub))
                    .into_iter()
                    .map(move |e| format!("{sub}/{e}"))
            })
            .collect()
    }
}

/// Each check of the suite leaves no upload and no temporary file.
#[tokio::test(flavor = "multi_thread")]
async fn leaves_no_uploads_or_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = UploadsAndTemp(dir.path());
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
    let data = blob_suite::content(10);
    let digest = Digest::sha256_of(&data);
    s.put(&digest, Bytes::from(data.clone())).await.unwrap();
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
    let mut w = s.upload_writer("dropped", 0).await.unwrap();
    w.write(Bytes::copy_from_slice(&data[..1000]))
        .await
        .unwrap();
    w.finish().await.unwrap();
    // A request that dies midway: its writer is dropped without finish.
    let mut w = s.upload_writer("dropped", 1000).await.unwrap();
    w.write(Bytes::from(blob_suite::content(700)))
        .await
        .unwrap();
    drop(w);
    let mut w = s.upload_writer("dropped", 1000).await.unwrap();
    w.write(Bytes::copy_from_slice(&data[1000..]))
        .await
        .unwrap();
    w.finish().await.unwrap();
    let digest = Digest::sha256_of(&data);
    s.commit_upload("dropped", &digest, 3000).await.unwrap();
    assert_eq!(blob_suite::read_all(&s, &digest, 0, 3000).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn range_past_the_end_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data = blob_suite::content(100);
    let digest = Digest::sha256_of(&data);
    s.put(&digest, Bytes::from(data)).await.unwrap();
    assert!(s.read(&digest, 50, 51).await.is_err());
    assert!(s.read(&digest, 101, 0).await.is_err());
    assert!(s.read(&digest, 1, u64::MAX).await.is_err());
}
