//! `--import`: how long `berth import` takes over a Distribution storage
//! tree (docs/migration.md), in place (`layout = "distribution"` on the same
//! root), a second time in place (nothing new), and copying (`--from`).
//! Two sets: 1,000 small images (where manifests and links dominate) and 8
//! images of a 64 MiB layer (where bytes dominate).

use crate::oci::{self, Endpoint};
use crate::process::{self, Server};
use crate::{Res, MIB, PASSWORD};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Deterministic noise: `len` bytes from `seed` (the blob suite's).
pub use berth_core::blob_suite::noise;

/// Pushes `count` images (a config and one layer of `layer_len` bytes
/// each, tagged `v<i>`, in `<prefix>/r<i % repos>`), `jobs` at a time, with
/// the bench's client. The bytes pushed.
pub async fn push_images(
    ep: &Endpoint,
    prefix: &str,
    repos: usize,
    count: usize,
    layer_len: usize,
    seed: u64,
    jobs: usize,
) -> Res<u64> {
    let c = oci::client();
    let c = &c;
    let results: Vec<Res<u64>> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let repo = format!("{prefix}/r{}", i % repos);
            let config =
                serde_json::json!({"architecture": "amd64", "os": "linux", "n": i, "seed": seed})
                    .to_string()
                    .into_bytes();
            let layer = noise(seed + i as u64, layer_len);
            oci::upload_small(ep, c, &repo, &config).await?;
            oci::upload_small(ep, c, &repo, &layer).await?;
            let manifest = oci::manifest(&config, &[(oci::sha(&layer), layer.len())]);
            oci::put_manifest(ep, c, &repo, &format!("v{i}"), &manifest).await?;
            Ok((config.len() + layer.len() + manifest.len()) as u64)
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    results.into_iter().sum()
}

/// One set's times, in seconds.
struct Times {
    in_place: f64,
    rerun: f64,
    copying: f64,
}

/// `berth import ARGS`, which must succeed; its duration in seconds.
fn timed_import(bin: &str, args: &[&str]) -> Res<f64> {
    let started = Instant::now();
    let mut import = Command::new(bin);
    import
        .arg("import")
        .args(args)
        .env("BERTH_ADMIN_PASSWORD", PASSWORD)
        .env("BERTH_LOG", "warn");
    process::stdout_of(&mut import, &format!("berth import {args:?}"))?;
    let took = started.elapsed().as_secs_f64();
    eprintln!("  berth import {args:?}: {took:.2} s");
    Ok(took)
}

/// Fills a Distribution with `fill`, stops it, and times the three imports
/// of its root.
async fn measure_set<F, Fut>(bin: &str, registry: &str, what: &str, fill: F) -> Res<(Times, u64)>
where
    F: FnOnce(Endpoint) -> Fut,
    Fut: std::future::Future<Output = Res<u64>>,
{
    let mut dist = process::start_distribution(registry)?;
    let t = Instant::now();
    let bytes = fill(dist.ep.session()).await?;
    eprintln!(
        "  filled Distribution with {what} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    dist.stop();
    let times = import_times(bin, &dist)?;
    Ok((times, bytes))
}

fn import_times(bin: &str, dist: &Server) -> Res<Times> {
    let root = dist.distribution_root();
    let dir = dist.dir();
    let in_place_data = dir.join("in-place-data");
    let config = dir.join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[storage]\nbackend = \"filesystem\"\npath = \"{}\"\nlayout = \"distribution\"\n",
            in_place_data.display(),
            root.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let config = path_str(&config)?;
    let in_place = timed_import(bin, &["--config", config])?;
    let rerun = timed_import(bin, &["--config", config])?;
    let copy_data = dir.join("copy-data");
    let copying = timed_import(
        bin,
        &["--data", path_str(&copy_data)?, "--from", path_str(&root)?],
    )?;
    Ok(Times {
        in_place,
        rerun,
        copying,
    })
}

fn path_str(p: &Path) -> Res<&str> {
    p.to_str()
        .ok_or_else(|| format!("{}: not UTF-8", p.display()))
}

const SMALL: usize = 1000;
const BIG: usize = 8;
const BIG_LEN: usize = 64 * MIB;

/// Runs the measurement, prints its table; its JSON.
pub async fn run(bin: &str, registry: &str) -> Res<serde_json::Value> {
    eprintln!("--import: {SMALL} small images...");
    let (small, _) = measure_set(bin, registry, "1,000 small images", |ep| async move {
        push_images(&ep, "load", 10, SMALL, 4096, 1000, 8).await
    })
    .await?;
    eprintln!("--import: {BIG} images of a 64 MiB layer...");
    let (big, big_bytes) = measure_set(bin, registry, "8 images of 64 MiB", |ep| async move {
        push_images(&ep, "big", 1, BIG, BIG_LEN, 77, 2).await
    })
    .await?;
    let per_1000 = |s: f64| s * 1000.0 / SMALL as f64;
    let mb_s = |s: f64| big_bytes as f64 / 1e6 / s;
    let filesystem = filesystem_of(&std::env::temp_dir());
    println!("\n`berth import` of a Distribution filesystem tree (on {filesystem}):");
    println!("\n| set | in place | copying (`--from`) | second run in place |");
    println!("|---|---:|---:|---:|");
    println!(
        "| 1,000 images, 4 KiB layer (s per 1,000 manifests) | {:.2} | {:.2} | {:.2} |",
        per_1000(small.in_place),
        per_1000(small.copying),
        per_1000(small.rerun)
    );
    println!(
        "| {BIG} images, 64 MiB layer ({:.0} MB; MB/s, seconds) | {:.0} ({:.2} s) | {:.0} ({:.2} s) | {:.0} ({:.2} s) |",
        big_bytes as f64 / 1e6,
        mb_s(big.in_place),
        big.in_place,
        mb_s(big.copying),
        big.copying,
        mb_s(big.rerun),
        big.rerun
    );
    println!(
        "\nIn place no byte is copied (existence and sizes are checked, not digests): its MB/s is the tree's size over the time taken."
    );
    Ok(serde_json::json!({
        "filesystem": filesystem,
        "small": {
            "manifests": SMALL,
            "seconds_per_1000_manifests": {
                "in_place": per_1000(small.in_place),
                "copying": per_1000(small.copying),
                "rerun_in_place": per_1000(small.rerun),
            },
        },
        "large": {
            "manifests": BIG,
            "bytes": big_bytes,
            "mb_s": {
                "in_place": mb_s(big.in_place),
                "copying": mb_s(big.copying),
                "rerun_in_place": mb_s(big.rerun),
            },
            "seconds": {
                "in_place": big.in_place,
                "copying": big.copying,
                "rerun_in_place": big.rerun,
            },
        },
    }))
}

/// The type of the filesystem `path` is on (`df --output=fstype`).
fn filesystem_of(path: &Path) -> String {
    Command::new("df")
        .arg("--output=fstype")
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}
