//! `--rgw`: native RADOS (`rados bench`) against S3 to RGW alone and
//! berth on RGW, on one throwaway Ceph (the tests' fixture).

use crate::oci::{Blob, ClientAuth};
use crate::stats::{median, share_out};
use crate::workloads::{Workload, Workloads};
use crate::{process, Res, MIB};
use berth_test_kit::ceph::Ceph;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

/// `rados bench` on a fresh pool of `ceph`: 4 MiB objects, 16 in flight,
/// for `secs`; MB/s written, then read back in order.
fn rados_bench(ceph: &Ceph, secs: u32) -> Res<(f64, f64)> {
    let conf = ceph.path().join("ceph.conf");
    let run = |program: &str, args: &[&str]| -> Res<String> {
        let mut cmd = Command::new(program);
        cmd.arg("-c").arg(&conf).args(args);
        process::stdout_of(&mut cmd, &format!("{program} {args:?}"))
    };
    run("ceph", &["osd", "pool", "create", "bench", "8"])?;
    let bandwidth = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("Bandwidth (MB/sec):"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no bandwidth in rados bench output:\n{out}"))
    };
    let secs = secs.to_string();
    let write = run(
        "rados",
        &[
            "-p",
            "bench",
            "bench",
            &secs,
            "write",
            "-b",
            "4194304",
            "-t",
            "16",
            "--no-cleanup",
        ],
    )?;
    let read = run("rados", &["-p", "bench", "bench", &secs, "seq", "-t", "16"])?;
    run("rados", &["-p", "bench", "cleanup"])?;
    // rados bench reports MiB/s; the table is in MB/s like the rest.
    let mb = 1.048_576;
    Ok((bandwidth(&write)? * mb, bandwidth(&read)? * mb))
}

/// RGW alone: the 200 layers PUT as objects and read back, 16 at a time,
/// by berth's own S3 client (no registry in between). MB/s each way.
async fn rgw_direct(ceph: &Ceph, layers: &[Blob]) -> Res<(f64, f64)> {
    use berth_core::BlobStore;
    let store = ceph.node();
    let blobs: Vec<(berth_oci::Digest, Bytes)> = layers
        .iter()
        .map(|l| {
            let digest = l.digest.parse().map_err(|e| format!("{e:?}"))?;
            Ok((digest, Bytes::from(l.pieces.concat())))
        })
        .collect::<Res<_>>()?;
    let total: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    let count = blobs.len();
    let shared = Arc::new((store, blobs));
    let mut rates = Vec::new();
    for read in [false, true] {
        let t = Instant::now();
        share_out(16, count, shared.clone(), move |shared, i| async move {
            let (store, blobs) = &*shared;
            let (digest, data) = &blobs[i];
            if read {
                let mut s = store
                    .read(digest, 0, data.len() as u64)
                    .await
                    .map_err(|e| e.to_string())?;
                while let Some(chunk) = s.next().await {
                    chunk.map_err(|e| e.to_string())?;
                }
            } else {
                store
                    .put(digest, data.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(0)
        })
        .await?;
        rates.push(total as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    // Out of berth's way: it pushes the same layers next.
    let (store, blobs) = &*shared;
    let digests: Vec<berth_oci::Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    store
        .delete_many(&digests)
        .await
        .map_err(|e| e.to_string())?;
    Ok((rates[0], rates[1]))
}

/// Native RADOS against berth on RGW, same throwaway Ceph, same run.
pub async fn rgw_against_rados(
    berth_bin: &str,
    auth: ClientAuth,
    w: &Workloads,
    rounds: usize,
) -> Res<()> {
    eprintln!("starting Ceph (mon, mgr, memstore OSD, radosgw)...");
    let ceph = Ceph::start().await;
    let (write, read) = rados_bench(&ceph, 5)?;
    eprintln!("  rados bench: write {write:.0} MB/s, seq read {read:.0} MB/s");
    let config = ceph.storage_toml("");
    let (s3_put, s3_get) = rgw_direct(&ceph, &w.layers).await?;
    eprintln!("  S3 to RGW without berth: PUT {s3_put:.0} MB/s, GET {s3_get:.0} MB/s");
    let berth = process::start_berth(berth_bin, "berth-rgw", Some(&config), auth).await?;
    let workloads = [
        Workload::PushMonolithic,
        Workload::PullBig,
        Workload::PushLayers,
        Workload::PullLayers,
    ];
    let mut results: BTreeMap<Workload, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for workload in workloads {
            let name = workload.name();
            let (v, _) = w
                .run(workload, &berth.ep.session(), round)
                .await
                .map_err(|e| format!("{name} on RGW: {e}"))?;
            eprintln!("  round {round} berth-rgw {name}: {v:.1}");
            results.entry(workload).or_default().push(v);
        }
    }
    println!("\nberth driven with {}.", auth.describe());
    println!("\n| on one throwaway Ceph 16 (memstore OSD) | MB/s |");
    println!("|---|---:|");
    println!("| rados bench write, 4 MiB objects, 16 in flight (native RADOS) | {write:.0} |");
    println!("| rados bench sequential read, 16 in flight (native RADOS) | {read:.0} |");
    println!("| S3 PUT of the 200 layers to RGW, 16 in flight, no berth | {s3_put:.0} |");
    println!("| S3 GET of the 200 layers from RGW, 16 in flight, no berth | {s3_get:.0} |");
    for workload in workloads {
        let v = median(results[&workload].clone());
        let name = workload.name();
        let (label, mbs) = if workload == Workload::PushLayers {
            (
                name.replace("(layers/s)", "(MB/s)"),
                v * 4.0 * MIB as f64 / 1e6,
            )
        } else {
            (name.to_owned(), v)
        };
        let label = label.replace("1 GiB", &format!("{} MiB", w.big_len() / MIB));
        println!("| berth on RGW: {label} | {mbs:.0} |");
    }
    Ok(())
}
