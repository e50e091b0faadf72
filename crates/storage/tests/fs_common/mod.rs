//! What the filesystem stores' tests share: the files a store leaves in
//! its directory besides committed blobs, whole upload requests, and
//! blobs put.

use berth_core::blob_suite::{self, Inspect};
use berth_core::BlobStore;
use berth_oci::Digest;
use bytes::Bytes;
use std::path::Path;

/// The names in `dir`; none where it does not exist.
pub fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    }
}

/// The files under the subdirectories `subs` of a store's directory
/// `root` (its uploads, the temporary files of `put`, ...), which the
/// trait never lists, as `<sub>/<name>`.
pub struct FilesIn<'a> {
    pub root: &'a Path,
    pub subs: &'a [&'a str],
}

#[async_trait::async_trait]
impl Inspect for FilesIn<'_> {
    async fn leftovers(&self) -> Vec<String> {
        self.subs
            .iter()
            .flat_map(|sub| {
                entries(&self.root.join(sub))
                    .into_iter()
                    .map(move |e| format!("{sub}/{e}"))
            })
            .collect()
    }
}

/// One request of the upload `id`: `data` written at `offset`, then
/// finished, all of which must succeed.
pub async fn write_part(store: &dyn BlobStore, id: &str, offset: u64, data: &[u8]) {
    let mut w = store.upload_writer(id, offset).await.unwrap();
    w.write(Bytes::copy_from_slice(data)).await.unwrap();
    w.finish().await.unwrap();
}

/// Puts `len` bytes of the suite's content into `store`, which must
/// succeed; the bytes and their digest.
pub async fn put_content(store: &dyn BlobStore, len: usize) -> (Vec<u8>, Digest) {
    let data = blob_suite::content(len);
    let digest = Digest::sha256_of(&data);
    store.put(&digest, Bytes::from(data.clone())).await.unwrap();
    (data, digest)
}
