//! `S3BlobStore` against a real Garage server: the shared conformance suite,
//! a chunked upload spread over several store instances (nodes) with
//! rewinds and dead writers, the sweep of stale multipart uploads, and
//! failures that must surface as `Unavailable` rather than hang.

use berth_core::blob_suite::{content, read_all};
use berth_core::{BlobStore, StoreError};
use berth_oci::Digest;
use berth_storage::{S3BlobStore, S3Config};
use bytes::Bytes;
use std::time::{Duration, Instant};

mod multipart;
use berth_test_kit::garage::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_garage() {
    let garage = Garage::start().await;
    let store = multipart::suites([garage.node(), garage.node()], garage.config()).await;

    let data = content(100);
    let digest = Digest::sha256_of(&data);
    store.put(&digest, Bytes::from(data)).await.unwrap();
    let hex = digest.encoded();
    let keys = store
        .client()
        .list_keys(&format!("tenant/berth/blobs/sha256/{}/", &hex[..2]))
        .await
        .unwrap();
    assert!(
        keys.contains(&format!("tenant/berth/blobs/sha256/{}/{hex}", &hex[..2])),
        "{keys:?}"
    );
    // Every upload the suite made is gone, and no commit left a multipart
    // upload behind.
    multipart::nothing_left(&store, &["uploads/", "tenant/berth/uploads/"]).await;
}

/// One PATCH: a writer on `node` at `offset`, `chunks` written, finished.
async fn patch(node: &S3BlobStore, id: &str, offset: usize, chunks: &[&[u8]]) {
    let mut w = node.upload_writer(id, offset as u64).await.unwrap();
    for c in chunks {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w.finish().await.unwrap();
}

/// A node with the given part size, as separate nodes may be configured.
fn node_with_parts(garage: &Garage, part_size_mib: u64) -> S3BlobStore {
    let mut c = garage.config();
    c.part_size_mib = part_size_mib;
    S3BlobStore::new(&c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_upload_across_nodes_with_rewinds() {
    let garage = Garage::start().await;
    let len = 40 * MIB;
    let data = content(len);
    let id = uuid::Uuid::new_v4().to_string();
    let m = MIB;

    // Each PATCH runs on a fresh store instance: no state survives between
    // them but the bucket's.
    patch(
        &garage.node(),
        &id,
        0,
        &[&data[..m], &data[m..2 * m], &data[2 * m..3 * m]],
    )
    .await;
    patch(
        &node_with_parts(&garage, 5),
        &id,
        3 * m,
        &[&data[3 * m..10 * m]],
    )
    .await;
    patch(&garage.node(), &id, 10 * m, &[&data[10 * m..10 * m + 1]]).await;
    let slices: Vec<&[u8]> = data[10 * m + 1..22 * m + 1].chunks(64 * 1024 + 3).collect();
    patch(&garage.node(), &id, 10 * m + 1, &slices).await;

    // A PATCH that finished but died before the registry recorded it: its
    // bytes must not survive the next writer at the recorded offset.
    patch(
        &node_with_parts(&garage, 5),
        &id,
        22 * m + 1,
        &[&content(18 * m)],
    )
    .await;

    // A rewind into the middle of the 12 MiB chunk, then the right bytes.
    let at = 17 * m - 12345;
    let node = garage.node();
    let mut w = node.upload_writer(&id, at as u64).await.unwrap();
    assert!(matches!(
        node.upload_writer(&id, 22 * m as u64 + 2).await,
        Err(StoreError::NotFound)
    ));
    drop(node);
    for c in [
        &data[at..at + 5 * m],
        &data[at + 5 * m..at + 5 * m + 2],
        &data[at + 5 * m + 2..29 * m],
    ] {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w.finish().await.unwrap();

    // A writer dropped midway, one chunk in flight, another buffered.
    let node = node_with_parts(&garage, 5);
    let mut w = node.upload_writer(&id, 29 * m as u64).await.unwrap();
    w.write(Bytes::from(content(7 * m))).await.unwrap();
    drop(w);

    let slices: Vec<&[u8]> = data[29 * m..].chunks(m + 7).collect();
    patch(&garage.node(), &id, 29 * m, &slices).await;
    assert!(matches!(
        garage.node().upload_writer(&id, len as u64 + 1).await,
        Err(StoreError::NotFound)
    ));

    let digest = Digest::sha256_of(&data);
    let committer = garage.node();
    committer
        .commit_upload(&id, &digest, len as u64)
        .await
        .unwrap();

    let reader = garage.node();
    assert_eq!(reader.stat(&digest).await.unwrap(), Some(len as u64));
    let back = read_all(&reader, &digest, 0, len as u64).await;
    assert_eq!(back.len(), len);
    assert_eq!(Digest::sha256_of(&back), digest, "40 MiB round trip");
    for (offset, n) in [
        (0, 1),
        (3 * m - 1, 2),
        (10 * m, 1),
        (at - 7, 5 * m + 13),
        (22 * m, 3 * m),
        (len - 1, 1),
        (len - 12 * m, 12 * m),
    ] {
        let got = read_all(&reader, &digest, offset as u64, n as u64).await;
        assert!(got == data[offset..offset + n], "range {offset}+{n}");
    }
    // Past the end is an error, not a short read.
    assert!(reader.read(&digest, len as u64 - 10, 11).await.is_err());

    assert!(matches!(
        reader.upload_writer(&id, 1).await,
        Err(StoreError::NotFound)
    ));
    let left = reader
        .client()
        .list_keys(&format!("uploads/{id}/"))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "upload objects left after commit: {left:?}"
    );
    assert!(reader.client().list_multipart("").await.unwrap().is_empty());
    reader.delete(&digest).await.unwrap();
    assert_eq!(reader.stat(&digest).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_multipart_uploads_are_aborted() {
    let garage = Garage::start().await;
    multipart::stale_uploads_are_aborted(&garage.node()).await;
}

/// Puts `data` into `store`, which must succeed; its digest.
async fn put_static(store: &S3BlobStore, data: &'static [u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    store.put(&digest, Bytes::from_static(data)).await.unwrap();
    digest
}

fn assert_unavailable<T>(what: &str, r: Result<T, StoreError>) {
    match r {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("{what}: want Unavailable, got {e}"),
        Ok(_) => panic!("{what}: want Unavailable, got success"),
    }
}

/// Every kind of call against `store`, each expected to fail `Unavailable`.
async fn all_unavailable(store: &S3BlobStore) {
    let digest = Digest::sha256_of(b"x");
    assert_unavailable("stat", store.stat(&digest).await);
    assert_unavailable("read", store.read(&digest, 0, 1).await);
    assert_unavailable("put", store.put(&digest, Bytes::from_static(b"x")).await);
    assert_unavailable("delete", store.delete(&digest).await);
    assert_unavailable("upload_writer", store.upload_writer("u1", 0).await);
    assert_unavailable("commit_upload", store.commit_upload("u1", &digest, 1).await);
    assert_unavailable("delete_upload", store.delete_upload("u1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_store_is_unavailable_not_a_hang() {
    // A store that went down: connections are refused.
    let garage = Garage::start().await;
    let store = garage.node();
    let digest = put_static(&store, b"kept").await;
    let mut w = store.upload_writer("writer-open", 0).await.unwrap();
    drop(garage);
    let started = Instant::now();
    all_unavailable(&store).await;
    // A writer opened before the outage fails on its next chunk PUT.
    w.write(Bytes::from(content(5 * MIB))).await.unwrap();
    let mut failed = w.write(Bytes::from(content(12 * MIB))).await.err();
    if failed.is_none() {
        failed = w.finish().await.err();
    }
    assert!(
        matches!(failed, Some(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused connections took {:?}",
        started.elapsed()
    );

    // A server that accepts connections and never answers: the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = S3Config::new(&format!("http://{}", silent.local_addr().unwrap()), BUCKET);
    c.access_key_id = Some("id".into());
    c.secret_access_key = Some("secret".into());
    c.timeout_secs = 1;
    let store = S3BlobStore::new(&c).unwrap();
    let started = Instant::now();
    assert_unavailable("stat on a silent server", store.stat(&digest).await);
    assert_unavailable("read on a silent server", store.read(&digest, 0, 1).await);
    assert_unavailable(
        "upload_writer on a silent server",
        store.upload_writer("u2", 0).await,
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "three timed-out calls took {took:?}"
    );
    drop(silent);
}

/// A store that sheds load (`503 SlowDown`, from a relay in front of
/// Garage that answers its first connections so) is asked again, with
/// backoff: the calls succeed, the multipart POST among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_refused_with_slow_down_are_retried() {
    use berth_test_kit::relay::{Faults, Relay};
    let garage = Garage::start().await;
    let faults = Faults {
        slow_down_first: 2,
        ..Faults::default()
    };
    let relay = Relay::start(&format!("127.0.0.1:{}", garage.s3_port), faults).await;
    let mut c = garage.config();
    c.endpoint = format!("http://{}", relay.addr);
    let store = S3BlobStore::new(&c).unwrap();
    let digest = put_static(&store, b"shed").await;
    assert_eq!(
        relay.slowed_down(),
        2,
        "the first two attempts were refused"
    );
    assert_eq!(store.stat(&digest).await.unwrap(), Some(4));

    // Refused again, a chunked upload (its multipart POST first) goes on.
    let faults = Faults {
        slow_down_first: 3,
        ..Faults::default()
    };
    let relay = Relay::start(&format!("127.0.0.1:{}", garage.s3_port), faults).await;
    c.endpoint = format!("http://{}", relay.addr);
    let store = S3BlobStore::new(&c).unwrap();
    let data = content(12 * MIB);
    patch(&store, "shed-upload", 0, &[&data]).await;
    let digest = Digest::sha256_of(&data);
    store
        .commit_upload("shed-upload", &digest, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(relay.slowed_down(), 3);
    assert!(read_all(&store, &digest, 0, data.len() as u64).await == data);
}

/// A blob held whole in one chunk object (a layer pushed in one PATCH) is
/// committed inside the store, by CopyObject: its bytes do not come back
/// through berth (a relay in front of Garage counts what the store sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_in_one_chunk_is_committed_without_reading_it_back() {
    use berth_test_kit::relay::{Faults, Relay};
    let garage = Garage::start().await;
    let relay = Relay::start(&format!("127.0.0.1:{}", garage.s3_port), Faults::default()).await;
    let mut c = garage.config();
    c.endpoint = format!("http://{}", relay.addr);
    let store = S3BlobStore::new(&c).unwrap();
    let data = content(4 * MIB);
    patch(&store, "one-chunk", 0, &[&data]).await;
    let digest = Digest::sha256_of(&data);
    let before = relay.carried();
    store
        .commit_upload("one-chunk", &digest, data.len() as u64)
        .await
        .unwrap();
    let carried = relay.carried() - before;
    assert!(
        carried < (MIB / 4) as u64,
        "{carried} bytes came back from the store for the commit"
    );
    assert!(read_all(&store, &digest, 0, data.len() as u64).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn harness_moves_off_taken_ports() {
    // The S3 port taken: Garage runs on without S3; the harness must notice
    // and start over elsewhere.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let garage = Garage::start_at(Some(port - 1)).await;
    assert_ne!(garage.s3_port, port);
    let store = garage.node();
    let digest = put_static(&store, b"moved").await;
    assert_eq!(store.stat(&digest).await.unwrap(), Some(5));
    drop(taken);
}
