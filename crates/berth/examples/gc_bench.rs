//! Measures one garbage collection over a large index, on the embedded
//! backends (redb metadata, filesystem blobs) in a temporary directory.
//!
//! `cargo run --release -p berth --example gc_bench -- 100000`
//!
//! Half of the blobs are referenced (10 per manifest, one tag per
//! manifest, 100 repositories), half are orphans older than the grace
//! period; the run must delete exactly the orphans.

use berth_core::registry::gc::GcOptions;
use berth_core::registry::{BlobRecord, ManifestRecord, RepoBlobRecord, RepoRecord, TagRecord};
use berth_core::{BlobStore, Kv, Registry, Txn};
use berth_oci::Digest;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializable")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let kv = Arc::new(berth_meta::RedbKv::open(&dir.path().join("meta.redb"))?);
    let blobs = Arc::new(berth_storage::FsBlobStore::open(dir.path().join("blobs"))?);
    let old = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 7200;

    let fill = Instant::now();
    let mut txn = Txn::new();
    let mut in_txn = 0;
    let mut referenced_in_manifest: Vec<Digest> = Vec::new();
    let mut manifests = 0;
    for i in 0..n {
        let data = format!("blob {i:>12} of the gc benchmark, padded to 64 bytes....");
        let digest = Digest::sha256_of(data.as_bytes());
        blobs.put(&digest, bytes::Bytes::from(data.clone())).await?;
        let size = data.len() as u64;
        txn = txn.put(
            format!("blob:{digest}"),
            json(&BlobRecord {
                size,
                created: old,
                touched: old,
                deleting: None,
            }),
        );
        in_txn += 1;
        if i % 2 == 0 {
            // Ten consecutive referenced blobs share a repository and a
            // manifest.
            let repo = format!("bench/r{}", (i / 20) % 100);
            txn = txn.put(
                format!("rblob:{repo}@{digest}"),
                json(&RepoBlobRecord { size, linked: old }),
            );
            in_txn += 1;
            referenced_in_manifest.push(digest);
            if referenced_in_manifest.len() == 10 {
                let body = format!("{{\"bench\": {manifests}}}");
                let mdigest = Digest::sha256_of(body.as_bytes());
                let record = ManifestRecord {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    size: body.len() as u64,
                    artifact_type: None,
                    subject: None,
                    annotations: None,
                    blobs: std::mem::take(&mut referenced_in_manifest),
                    children: Vec::new(),
                    created: old,
                    body: Some(body),
                };
                txn = txn
                    .put(format!("man:{repo}@{mdigest}"), json(&record))
                    .put(
                        format!("tag:{repo}@t{manifests}"),
                        json(&TagRecord {
                            digest: mdigest,
                            updated: old,
                        }),
                    )
                    .put(format!("repo:{repo}"), json(&RepoRecord { created: old }));
                in_txn += 3;
                manifests += 1;
            }
        }
        if in_txn >= 1000 {
            kv.commit(std::mem::take(&mut txn)).await?;
            in_txn = 0;
        }
    }
    kv.commit(txn).await?;
    println!(
        "filled: {n} blobs, {manifests} tagged manifests in 100 repositories, in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    let registry = Registry::new(kv, blobs);
    let opts = GcOptions {
        grace_secs: 3600,
        upload_expiry_secs: 86_400,
        dry_run: false,
    };
    let dry = Instant::now();
    let report = registry
        .collect_garbage(
            GcOptions {
                dry_run: true,
                ..opts
            },
            "bench",
            None,
        )
        .await?;
    println!(
        "dry run:  {} blobs examined, {} would go, in {:.2} s",
        report.blobs_examined,
        report.blobs_deleted,
        dry.elapsed().as_secs_f64()
    );
    let run = Instant::now();
    let report = registry.collect_garbage(opts, "bench", None).await?;
    let secs = run.elapsed().as_secs_f64();
    println!(
        "gc:       {} blobs examined, {} deleted ({} bytes), {} manifests deleted, in {:.2} s ({:.0} blobs examined/s)",
        report.blobs_examined,
        report.blobs_deleted,
        report.bytes_freed,
        report.manifests_deleted,
        secs,
        report.blobs_examined as f64 / secs
    );
    assert_eq!(report.blobs_deleted as usize, n / 2, "exactly the orphans");
    let again = Instant::now();
    let second = registry.collect_garbage(opts, "bench", None).await?;
    println!(
        "again:    {} blobs examined, {} deleted, in {:.2} s",
        second.blobs_examined,
        second.blobs_deleted,
        again.elapsed().as_secs_f64()
    );
    Ok(())
}
