//! The one conformance suite of the [`BlobStore`] contract. Every backend
//! calls [`run_all`] from its tests; each check panics on a violation. It is
//! built in the normal (non-test) build so that other crates can reach it.
//!
//! Each check uses fresh upload ids and contents mixed with a random nonce,
//! so the suite can run twice against one store (two nodes sharing it).

use crate::blob::{BlobStore, StoreError, UploadWriter};
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::StreamExt;

const MIB: usize = 1024 * 1024;

/// Runs every check in order against `store`.
pub async fn run_all(store: &dyn BlobStore) {
    stat_missing_is_none(store).await;
    read_missing_is_not_found(store).await;
    put_then_stat_and_read(store).await;
    upload_resumes_at_recorded_offset(store).await;
    upload_at_smaller_offset_discards_tail(store).await;
    upload_beyond_stored_is_not_found(store).await;
    upload_unknown_id_is_not_found(store).await;
    commit_makes_blob_and_removes_upload(store).await;
    commit_onto_existing_blob_removes_upload(store).await;
    deletes_are_idempotent(store).await;
    delete_many_removes_each(store).await;
    stale_uploads_are_listed_by_age(store).await;
    large_blob_in_chunks(store).await;
}

async fn delete_many_removes_each(store: &dyn BlobStore) {
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

async fn stale_uploads_are_listed_by_age(store: &dyn BlobStore) {
    let id = new_id();
    let mut w = store.upload_writer(&id, 0).await.unwrap();
    w.write(Bytes::from(content(10))).await.unwrap();
    w.finish().await.unwrap();
    let hour = std::time::Duration::from_secs(3600);
    assert!(!store.stale_uploads(hour).await.unwrap().contains(&id));
    // Object stores keep whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let old = store
        .stale_uploads(std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert!(old.contains(&id), "{id} not in {old:?}");
    store.delete_upload(&id).await.unwrap();
    let after = store
        .stale_uploads(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(!after.contains(&id));
}

/// Distinct, non-periodic bytes: a periodic pattern would hide chunks written
/// at the wrong position.
pub fn content(len: usize) -> Vec<u8> {
    let mut x = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
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

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
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

pub async fn stat_missing_is_none(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(&content(32));
    assert_eq!(stat(store, &digest).await, None, "stat of a missing blob");
}

pub async fn read_missing_is_not_found(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(&content(32));
    match store.read(&digest, 0, 1).await {
        Err(StoreError::NotFound) => {}
        Err(e) => panic!("read of a missing blob: want NotFound, got {e}"),
        Ok(_) => panic!("read of a missing blob: want NotFound, got a stream"),
    }
}

pub async fn put_then_stat_and_read(store: &dyn BlobStore) {
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

pub async fn upload_resumes_at_recorded_offset(store: &dyn BlobStore) {
    let id = new_id();
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
    commit(store, &id, &digest, 3000).await;
    assert_eq!(stat(store, &digest).await, Some(3000));
    assert_eq!(
        read_all(store, &digest, 0, 3000).await,
        data,
        "resumed upload"
    );
}

pub async fn upload_at_smaller_offset_discards_tail(store: &dyn BlobStore) {
    let id = new_id();
    let data = content(2000);
    write_upload(store, &id, 0, &[&data[..1000]]).await;
    // Bytes 1000..1500 were written by a request that died before it could
    // record its progress; the recorded offset stayed at 1000.
    write_upload(store, &id, 1000, &[&content(500)]).await;
    write_upload(store, &id, 1000, &[&data[1000..1200]]).await;
    // The discarded tail is gone, not merely hidden by a later commit.
    assert_writer_not_found(store, &id, 1500).await;
    let digest = Digest::sha256_of(&data[..1200]);
    commit(store, &id, &digest, 1200).await;
    assert_eq!(stat(store, &digest).await, Some(1200));
    assert_eq!(
        read_all(store, &digest, 0, 1200).await,
        &data[..1200],
        "tail discarded"
    );

    // A rewind without writes cuts the tail too.
    let id = new_id();
    write_upload(store, &id, 0, &[&content(800)]).await;
    write_upload(store, &id, 300, &[]).await;
    assert_writer_not_found(store, &id, 301).await;
    delete_upload(store, &id).await;

    // Commit takes exactly the first `size` bytes even when a dead request
    // left more and no writer has cut them since.
    let id = new_id();
    let data = content(800);
    write_upload(store, &id, 0, &[&data]).await;
    let digest = Digest::sha256_of(&data[..300]);
    commit(store, &id, &digest, 300).await;
    assert_eq!(stat(store, &digest).await, Some(300));
    assert_eq!(
        read_all(store, &digest, 0, 300).await,
        &data[..300],
        "commit of a prefix"
    );
    assert_writer_not_found(store, &id, 300).await;
}

pub async fn upload_beyond_stored_is_not_found(store: &dyn BlobStore) {
    let id = new_id();
    write_upload(store, &id, 0, &[&content(100)]).await;
    assert_writer_not_found(store, &id, 101).await;
    assert_writer_not_found(store, &id, 5000).await;
    // The failed attempt must not have damaged what is stored.
    write_upload(store, &id, 100, &[]).await;
    delete_upload(store, &id).await;
}

pub async fn upload_unknown_id_is_not_found(store: &dyn BlobStore) {
    let id = new_id();
    assert_writer_not_found(store, &id, 1).await;
    assert_writer_not_found(store, &id, 4096).await;
}

pub async fn commit_makes_blob_and_removes_upload(store: &dyn BlobStore) {
    let id = new_id();
    let data = content(4321);
    let digest = Digest::sha256_of(&data);
    assert_eq!(stat(store, &digest).await, None);
    write_upload(store, &id, 0, &[&data]).await;
    commit(store, &id, &digest, 4321).await;
    assert_eq!(stat(store, &digest).await, Some(4321));
    assert_eq!(
        read_all(store, &digest, 0, 4321).await,
        data,
        "committed bytes"
    );
    assert_writer_not_found(store, &id, 4321).await;
    assert_writer_not_found(store, &id, 1).await;
}

pub async fn commit_onto_existing_blob_removes_upload(store: &dyn BlobStore) {
    let data = content(600);
    let digest = Digest::sha256_of(&data);
    if let Err(e) = store.put(&digest, Bytes::from(data.clone())).await {
        panic!("put {digest}: {e}");
    }
    // Two clients pushing the same layer: the second commit finds it there.
    let id = new_id();
    write_upload(store, &id, 0, &[&data[..200], &data[200..]]).await;
    commit(store, &id, &digest, 600).await;
    assert_eq!(stat(store, &digest).await, Some(600));
    assert_eq!(
        read_all(store, &digest, 0, 600).await,
        data,
        "existing blob kept"
    );
    assert_writer_not_found(store, &id, 600).await;
}

pub async fn deletes_are_idempotent(store: &dyn BlobStore) {
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

    let id = new_id();
    write_upload(store, &id, 0, &[&content(300)]).await;
    delete_upload(store, &id).await;
    delete_upload(store, &id).await;
    assert_writer_not_found(store, &id, 300).await;
    // Never-created ids are fine too.
    delete_upload(store, &new_id()).await;
}

pub async fn large_blob_in_chunks(store: &dyn BlobStore) {
    let len = 5 * MIB + 12345;
    let data = content(len);
    let digest = Digest::sha256_of(&data);
    let id = new_id();
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
