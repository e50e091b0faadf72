//! The one conformance suite of the [`BlobStore`] contract. Every backend
//! calls [`run_all`] from its tests; each check panics on a violation. It is
//! built in the normal (non-test) build so that other crates can reach it.
//!
//! Each check uses fresh upload ids and contents mixed with a random nonce,
//! so the suite can run twice against one store (two nodes sharing it).
//!
//! After every check the suite makes sure the check left nothing behind,
//! as Distribution's driver suite does: no upload it finished or removed is
//! still listed by `stale_uploads`, and nothing new shows in what the
//! backend itself can list ([`Inspect`]: temporary files, say, which the
//! trait never names). Object stores date uploads in whole seconds, so the
//! suite looks once more at the end, when every upload is seconds old.

use crate::blob::{BlobStore, StoreError, UploadWriter};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Mutex;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// A backend's own listing of what it holds besides committed blobs.
#[async_trait]
pub trait Inspect: Sync {
    /// Names of everything the store holds besides committed blobs (upload
    /// data, temporary files, unfinished multipart uploads), in any order.
    async fn leftovers(&self) -> Vec<String>;
}

/// No listing beyond the trait's own `stale_uploads`.
struct TraitOnly;

#[async_trait]
impl Inspect for TraitOnly {
    async fn leftovers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The upload ids a check made, to look for after it.
#[derive(Default)]
struct Ids(Mutex<Vec<String>>);

impl Ids {
    fn new_id(&self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().push(id.clone());
        id
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs every check in order against `store`, each followed by the check
/// that it left nothing behind.
pub async fn run_all(store: &dyn BlobStore) {
    run_all_inspected(store, &TraitOnly).await;
}

/// [`run_all`], also checking after each check that `inspect` lists
/// nothing it did not list before.
pub async fn run_all_inspected(store: &dyn BlobStore, inspect: &dyn Inspect) {
    let ids = Ids::default();
    let mut all = Vec::new();
    macro_rules! checks {
        ($($check:ident),* $(,)?) => {$(
            let before = inspect.leftovers().await;
            $check(store, &ids).await;
            let made = ids.take();
            left_nothing(store, inspect, &before, &made, stringify!($check)).await;
            all.extend(made);
        )*};
    }
    checks!(
        stat_missing_is_none,
        read_missing_is_not_found,
        put_then_stat_and_read,
        upload_resumes_at_recorded_offset,
        upload_at_smaller_offset_discards_tail,
        upload_beyond_stored_is_not_found,
        upload_unknown_id_is_not_found,
        commit_makes_blob_and_removes_upload,
        commit_onto_existing_blob_removes_upload,
        deletes_are_idempotent,
        delete_many_removes_each,
        large_blob_in_chunks,
        // Last: it waits two seconds, after which every upload above is
        // old enough for any store to list.
        stale_uploads_are_listed_by_age,
    );
    let listed = match store.stale_uploads(Duration::from_secs(1)).await {
        Ok(listed) => listed,
        Err(e) => panic!("stale_uploads: {e}"),
    };
    let left: Vec<&String> = all.iter().filter(|id| listed.contains(id)).collect();
    assert!(
        left.is_empty(),
        "uploads left behind by the suite: {left:?}"
    );
}

/// After `check`: none of the uploads it `made` is listed, and `inspect`
/// lists nothing that was not there `before` it.
async fn left_nothing(
    store: &dyn BlobStore,
    inspect: &dyn Inspect,
    before: &[String],
    made: &[String],
    check: &str,
) {
    let listed = match store.stale_uploads(Duration::ZERO).await {
        Ok(listed) => listed,
        Err(e) => panic!("stale_uploads after {check}: {e}"),
    };
    let left: Vec<&String> = made.iter().filter(|id| listed.contains(id)).collect();
    assert!(left.is_empty(), "{check} left uploads behind: {left:?}");
    let mut new = inspect.leftovers().await;
    new.retain(|name| !before.contains(name));
    assert!(new.is_empty(), "{check} left behind: {new:?}");
}

async fn delete_many_removes_each(store: &dyn BlobStore, _: &Ids) {
    let mut digests = Vec::new();
    for _ in 0..3 {
        let data = content(100);
        let digest = Digest::sha256_of(&data);
        store.put(&digest, Bytes::from(data)).await.unwrap();
        digests.push(digest);
    }
    store.delete_many(&digests).await.unwrap();
    for d in &digests {
        assert_eq!(store.stat(d).await.unwrap(), None);
    }
    store.delete_many(&digests).await.unwrap();
}

async fn stale_uploads_are_listed_by_age(store: &dyn BlobStore, ids: &Ids) {
    let id = ids.new_id();
    let mut w = store.upload_writer(&id, 0).await.unwrap();
    w.write(Bytes::from(content(10))).await.unwrap();
    w.finish().await.unwrap();
    let hour = Duration::from_secs(3600);
    assert!(!store.stale_uploads(hour).await.unwrap().contains(&id));
    // Object stores keep whole seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let old = store.stale_uploads(Duration::from_secs(1)).await.unwrap();
    assert!(old.contains(&id), "{id} not in {old:?}");
    store.delete_upload(&id).await.unwrap();
    let after = store.stale_uploads(Duration::ZERO).await.unwrap();
    assert!(!after.contains(&id));
}

/// Distinct, non-periodic bytes: a periodic pattern would hide chunks written
/// at the wrong position.
pub fn content(len: usize) -> Vec<u8> {
    noise(uuid::Uuid::new_v4().as_u128() as u64, len)
}

/// Deterministic non-periodic bytes: `len` of them, from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Reads `len` bytes at `offset` and collects them.
pub async fn read_all(store: &dyn BlobStore, digest: &Digest, offset: u64, len: u64) -> Vec<u8> {
    let mut stream = match store.read(digest, offset, len).await {
        Ok(s) => s,
        Err(e) => panic!("read {digest} at {offset}+{len}: {e}"),
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => panic!("reading {digest}: {e}"),
        }
    }
    out
}

async fn writer(store: &dyn BlobStore, id: &str, offset: u64) -> Box<dyn UploadWriter> {
    match store.upload_writer(id, offset).await {
        Ok(w) => w,
        Err(e) => panic!("upload_writer({id}, {offset}): {e}"),
    }
}

/// Writes `chunks` to upload `id` from `offset` and finishes.
async fn write_upload(store: &dyn BlobStore, id: &str, offset: u64, chunks: &[&[u8]]) {
    let mut w = writer(store, id, offset).await;
    for c in chunks {
        if let Err(e) = w.write(Bytes::copy_from_slice(c)).await {
            panic!("write to upload {id}: {e}");
        }
    }
    if let Err(e) = w.finish().await {
        panic!("finish upload {id}: {e}");
    }
}

async fn commit(store: &dyn BlobStore, id: &str, digest: &Digest, size: u64) {
    if let Err(e) = store.commit_upload(id, digest, size).await {
        panic!("commit_upload({id}, {digest}, {size}): {e}");
    }
}

/// Commits upload `id` as `digest`, taking its first `expected.len()` bytes,
/// and checks that the blob holds exactly `expected`.
async fn commit_holding(
    store: &dyn BlobStore,
    id: &str,
    digest: &Digest,
    expected: &[u8],
    what: &str,
) {
    let size = expected.len() as u64;
    commit(store, id, digest, size).await;
    assert_eq!(stat(store, digest).await, Some(size), "{what}: size");
    assert_eq!(read_all(store, digest, 0, size).await, expected, "{what}");
}

async fn delete_upload(store: &dyn BlobStore, id: &str) {
    if let Err(e) = store.delete_upload(id).await {
        panic!("delete_upload({id}): {e}");
    }
}

async fn stat(store: &dyn BlobStore, digest: &Digest) -> Option<u64> {
    match store.stat(digest).await {
        Ok(s) => s,
        Err(e) => panic!("stat {digest}: {e}"),
    }
}

async fn assert_writer_not_found(store: &dyn BlobStore, id: &str, offset: u64) {
    match store.upload_writer(id, offset).await {
        Err(StoreError::NotFound) => {}
        Err(e) => panic!("upload_writer({id}, {offset}): want NotFound, got {e}"),
        Ok(_) => panic!("upload_writer({id}, {offset}): want NotFound, got a writer"),
    }
}

async fn stat_missing_is_none(store: &dyn BlobStore, _: &Ids) {
    let digest = Digest::sha256_of(&content(32));
    assert_eq!(stat(store, &digest).await, None, "stat of a missing blob");
}

async fn read_missing_is_not_found(store: &dyn BlobStore, _: &Ids) {
    let digest = Digest::sha256_of(&content(32));
    match store.read(&digest, 0, 1).await {
        Err(StoreError::NotFound) => {}
        Err(e) => panic!("read of a missing blob: want NotFound, got {e}"),
        Ok(_) => panic!("read of a missing blob: want NotFound, got a stream"),
    }
}

async fn put_then_stat_and_read(store: &dyn BlobStore, _: &Ids) {
    let data = content(1000);
    let digest = Digest::sha256_of(&data);
    if let Err(e) = store.put(&digest, Bytes::from(data.clone())).await {
        panic!("put {digest}: {e}");
    }
    assert_eq!(stat(store, &digest).await, Some(1000), "stat after put");
    assert_eq!(read_all(store, &digest, 0, 1000).await, data, "full read");
    assert_eq!(
        read_all(store, &digest, 100, 250).await,
        &data[100..350],
        "middle range"
    );
    assert_eq!(
        read_all(store, &digest, 900, 100).await,
        &data[900..],
        "range at the end"
    );
    assert!(
        read_all(store, &digest, 500, 0).await.is_empty(),
        "zero length in the middle"
    );
    assert!(
        read_all(store, &digest, 1000, 0).await.is_empty(),
        "zero length at the end"
    );
}

async fn upload_resumes_at_recorded_offset(store: &dyn BlobStore, ids: &Ids) {
    let id = ids.new_id();
    let data = content(3000);
    write_upload(
        store,
        &id,
        0,
        &[&data[..100], &data[100..1500], &data[1500..2000]],
    )
    .await;
    // A later request, maybe on another node, continues at the recorded offset.
    write_upload(store, &id, 2000, &[&data[2000..2999], &data[2999..]]).await;
    let digest = Digest::sha256_of(&data);
    commit_holding(store, &id, &digest, &data, "resumed upload").await;
}

async fn upload_at_smaller_offset_discards_tail(store: &dyn BlobStore, ids: &Ids) {
    let id = ids.new_id();
    let data = content(2000);
    write_upload(store, &id, 0, &[&data[..1000]]).await;
    // Bytes 1000..1500 were written by a request that died before it could
    // record its progress; the recorded offset stayed at 1000.
    write_upload(store, &id, 1000, &[&content(500)]).await;
    write_upload(store, &id, 1000, &[&data[1000..1200]]).await;
    // The discarded tail is gone, not merely hidden by a later commit.
    assert_writer_not_found(store, &id, 1500).await;
    let digest = Digest::sha256_of(&data[..1200]);
    commit_holding(store, &id, &digest, &data[..1200], "tail discarded").await;

    // A rewind without writes cuts the tail too.
    let id = ids.new_id();
    write_upload(store, &id, 0, &[&content(800)]).await;
    write_upload(store, &id, 300, &[]).await;
    assert_writer_not_found(store, &id, 301).await;
    delete_upload(store, &id).await;

    // Commit takes exactly the first `size` bytes even when a dead request
    // left more and no writer has cut them since.
    let id = ids.new_id();
    let data = content(800);
    write_upload(store, &id, 0, &[&data]).await;
    let digest = Digest::sha256_of(&data[..300]);
    commit_holding(store, &id, &digest, &data[..300], "commit of a prefix").await;
    assert_writer_not_found(store, &id, 300).await;
}

async fn upload_beyond_stored_is_not_found(store: &dyn BlobStore, ids: &Ids) {
    let id = ids.new_id();
    write_upload(store, &id, 0, &[&content(100)]).await;
    assert_writer_not_found(store, &id, 101).await;
    assert_writer_not_found(store, &id, 5000).await;
    // The failed attempt must not have damaged what is stored.
    write_upload(store, &id, 100, &[]).await;
    delete_upload(store, &id).await;
}

async fn upload_unknown_id_is_not_found(store: &dyn BlobStore, ids: &Ids) {
    let id = ids.new_id();
    assert_writer_not_found(store, &id, 1).await;
    assert_writer_not_found(store, &id, 4096).await;
}

async fn commit_makes_blob_and_removes_upload(store: &dyn BlobStore, ids: &Ids) {
    let id = ids.new_id();
    let data = content(4321);
    let digest = Digest::sha256_of(&data);
    assert_eq!(stat(store, &digest).await, None);
    write_upload(store, &id, 0, &[&data]).await;
    commit_holding(store, &id, &digest, &data, "committed bytes").await;
    assert_writer_not_found(store, &id, 4321).await;
    assert_writer_not_found(store, &id, 1).await;
}

async fn commit_onto_existing_blob_removes_upload(store: &dyn BlobStore, ids: &Ids) {
    let data = content(600);
    let digest = Digest::sha256_of(&data);
    if let Err(e) = store.put(&digest, Bytes::from(data.clone())).await {
        panic!("put {digest}: {e}");
    }
    // Two clients pushing the same layer: the second commit finds it there.
    let id = ids.new_id();
    write_upload(store, &id, 0, &[&data[..200], &data[200..]]).await;
    commit_holding(store, &id, &digest, &data, "existing blob kept").await;
    assert_writer_not_found(store, &id, 600).await;
}

async fn deletes_are_idempotent(store: &dyn BlobStore, ids: &Ids) {
    let data = content(300);
    let digest = Digest::sha256_of(&data);
    if let Err(e) = store.put(&digest, Bytes::from(data)).await {
        panic!("put {digest}: {e}");
    }
    for round in 0..2 {
        if let Err(e) = store.delete(&digest).await {
            panic!("delete {digest} (round {round}): {e}");
        }
        assert_eq!(stat(store, &digest).await, None, "stat after delete");
    }
    match store.read(&digest, 0, 1).await {
        Err(StoreError::NotFound) => {}
        Err(e) => panic!("read after delete: want NotFound, got {e}"),
        Ok(_) => panic!("read after delete: want NotFound, got a stream"),
    }

    let id = ids.new_id();
    write_upload(store, &id, 0, &[&content(300)]).await;
    delete_upload(store, &id).await;
    delete_upload(store, &id).await;
    assert_writer_not_found(store, &id, 300).await;
    // Never-created ids are fine too.
    delete_upload(store, &ids.new_id()).await;
}

async fn large_blob_in_chunks(store: &dyn BlobStore, ids: &Ids) {
    let len = 5 * MIB + 12345;
    let data = content(len);
    let digest = Digest::sha256_of(&data);
    let id = ids.new_id();
    let half = len / 2;
    // Two requests, the second resuming off a chunk boundary, as a chunked
    // push would.
    let first: Vec<&[u8]> = data[..half].chunks(64 * 1024).collect();
    write_upload(store, &id, 0, &first).await;
    let rest: Vec<&[u8]> = data[half..].chunks(64 * 1024).collect();
    write_upload(store, &id, half as u64, &rest).await;
    commit(store, &id, &digest, len as u64).await;

    assert_eq!(stat(store, &digest).await, Some(len as u64));
    let back = read_all(store, &digest, 0, len as u64).await;
    assert_eq!(back.len(), len, "large blob length");
    assert_eq!(Digest::sha256_of(&back), digest, "large blob content");
    let tail = read_all(store, &digest, (len - MIB - 7) as u64, MIB as u64).await;
    assert_eq!(
        Digest::sha256_of(&tail),
        Digest::sha256_of(&data[len - MIB - 7..len - 7]),
        "large range"
    );
    if let Err(e) = store.delete(&digest).await {
        panic!("delete {digest}: {e}");
    }
}
