//! berth against the CNCF Distribution registry (Debian's `docker-registry`),
//! side by side in one run on one machine: both servers are started here on
//! loopback, driven with the same load from this process, alternating
//! between them, and compared as ratios. See `bench/run` and
//! docs/benchmarks.md.
//!
//! Each measurement starts once the machine is idle; each number is the
//! median of the rounds (5 unless `--rounds`). After the comparison, a third
//! server, berth in cluster mode (a real three-member etcd cluster and a
//! real Garage S3 server, both started here as in the tests), runs the push
//! and manifest workloads on its own.
//!
//! berth is driven as docker, containerd, podman and skopeo drive it: with
//! Bearer tokens from its token service (`--basic`: with Basic credentials
//! on every request instead); Distribution runs without auth.
//!
//! `berth-bench --rgw [--quick]` instead measures Ceph: native RADOS
//! (`rados bench`) against berth on RGW, on the tests' throwaway Ceph.
//!
//! - [`process`]: the servers (berth, Distribution, the cluster), their
//!   ports and peak memory;
//! - [`oci`]: the registry client (requests, blobs, listings) and
//!   [`token`] its Bearer token cache;
//! - [`workloads`]: what is measured;
//! - [`stats`]: how (concurrent loops, medians, waiting for an idle
//!   machine, SHA-256 speed);
//! - [`rgw`]: the `--rgw` comparison;
//! - [`import`]: `--import`, the time `berth import` takes;
//! - [`replication`]: `--replication`, replication's throughput against
//!   `skopeo sync`;
//! - [`proxy`]: `--proxy`, the proxy cache against Distribution's, under a
//!   herd of clients asking for one cold layer.

mod import;
mod oci;
mod process;
mod proxy;
mod replication;
mod rgw;
mod stats;
mod token;
mod workloads;

use clap::Parser;
use oci::ClientAuth;
use process::Server;
use stats::{median, settle, sha256_speed_mb};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use workloads::{Measure, Workload, Workloads};

/// The password of berth's `admin`, set when the bench starts it.
const PASSWORD: &str = "bench-admin-password";
const MIB: usize = 1024 * 1024;

type Res<T> = Result<T, String>;

/// berth against the CNCF Distribution registry, side by side on loopback.
#[derive(Parser)]
#[command(name = "berth-bench")]
struct Args {
    /// The berth binary.
    #[arg(long, default_value = "target/release/berth")]
    berth: String,
    /// The Distribution binary (Debian's `docker-registry`).
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    registry: String,
    /// Rounds; each number is their median [default: 5, 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// A 256 MiB blob instead of 1 GiB, 1,000 tags and repositories
    /// instead of 10,000, shorter loops.
    #[arg(long)]
    quick: bool,
    /// Where the data directories go (also etcd's and Garage's): the
    /// system's temporary directory by default; `/dev/shm` takes the disk
    /// out of the comparison.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Writes the results there as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only the workloads whose name contains TEXT (and the pushes their
    /// pulls need).
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Without the cluster column (etcd + Garage + berth).
    #[arg(long)]
    no_cluster: bool,
    /// Native RADOS against berth on Ceph RGW instead.
    #[arg(long)]
    rgw: bool,
    /// Drives berth with Basic credentials on every request instead of
    /// Bearer tokens from its token service.
    #[arg(long)]
    basic: bool,
    /// Also times `berth import` of a Distribution tree (1,000 small
    /// images; 8 of a 64 MiB layer): in place, copying, a second run.
    #[arg(long)]
    import: bool,
    /// Also measures replication: Distribution → berth (pull policy),
    /// berth → berth (push policy) and `skopeo sync` Distribution → berth,
    /// with 200 images of a 4 MiB layer (50 with --quick).
    #[arg(long)]
    replication: bool,
    /// Also measures the proxy cache against Distribution in proxy mode:
    /// 20 clients pulling one cold 256 MiB layer at once (64 MiB with
    /// --quick), then warm.
    #[arg(long)]
    proxy: bool,
}

fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.dir {
        // Every temporary directory: the servers' data, etcd's and Garage's.
        // Set before the runtime starts any thread.
        std::env::set_var("TMPDIR", dir);
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))
        .and_then(|rt| rt.block_on(run(args)));
    if let Err(e) = result {
        eprintln!("berth-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Res<()> {
    let quick = args.quick;
    let rounds = args.rounds.unwrap_or(if quick { 1 } else { 5 });
    let auth = if args.basic {
        ClientAuth::Basic
    } else {
        ClientAuth::Bearer
    };

    let workloads = Workload::selected(args.only.as_deref());
    if args.rgw {
        eprintln!("preparing blobs...");
        let w = Workloads::new(quick);
        return rgw::rgw_against_rados(&args.berth, auth, &w, rounds).await;
    }
    let extras = args.import || args.replication || args.proxy;
    // `--only` matching no workload with --import or --replication: those
    // alone.
    let mut doc = if workloads.is_empty() && extras {
        serde_json::json!({"rounds": rounds, "quick": quick})
    } else {
        compare(&args, &workloads, auth, rounds).await?
    };
    if args.import {
        doc["import"] = import::run(&args.berth, &args.registry).await?;
    }
    if args.replication {
        let images = if quick { 50 } else { 200 };
        doc["replication"] = replication::run(&args.berth, &args.registry, images).await?;
    }
    if args.proxy {
        let mib = if quick { 64 } else { 256 };
        doc["proxy"] = proxy::run(&args.berth, &args.registry, mib).await?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap_or_default())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The side-by-side comparison of `workloads`: prints its table; its JSON.
async fn compare(
    args: &Args,
    workloads: &[Workload],
    auth: ClientAuth,
    rounds: usize,
) -> Res<serde_json::Value> {
    let quick = args.quick;
    eprintln!("preparing blobs...");
    let w = Workloads::new(quick);
    let berth = process::start_berth(&args.berth, "berth", None, auth).await?;
    let dist = process::start_distribution(&args.registry)?;
    eprintln!("berth is driven with {}", auth.describe());
    if workloads.iter().any(|k| k.lists()) {
        eprintln!("populating tags and repositories...");
        for s in [&berth, &dist] {
            let t = Instant::now();
            w.populate(&s.ep.session()).await?;
            eprintln!("  {}: {:.1} s", s.name, t.elapsed().as_secs_f64());
        }
    }

    // Columns: 0 berth, 1 distribution, 2 berth in cluster mode, 3
    // Distribution on the cluster's Garage.
    let mut results: BTreeMap<Workload, [Vec<Measure>; 4]> = BTreeMap::new();
    for round in 0..rounds {
        for &workload in workloads {
            // Alternate which server goes first.
            let order: [(usize, &Server); 2] = if round % 2 == 0 {
                [(0, &berth), (1, &dist)]
            } else {
                [(1, &dist), (0, &berth)]
            };
            for (i, s) in order {
                let m = measure(&w, workload, s, round).await?;
                results.entry(workload).or_default()[i].push(m);
            }
        }
    }
    // berth in cluster mode runs after the comparison, on its own. Run
    // between the two, it always came just before berth in even rounds;
    // there berth's pull of 1 GiB measured 3.1 GB/s, against 4.8 GB/s in
    // the next round, with the machine idle before both.
    let cluster = if args.no_cluster {
        None
    } else {
        eprintln!("starting etcd, Garage and berth in cluster mode...");
        Some(process::start_cluster(&args.berth, &args.registry, auth).await?)
    };
    if let Some(c) = &cluster {
        for round in 0..rounds {
            for &workload in workloads.iter().filter(|k| k.in_cluster()) {
                // Alternate which goes first, as above.
                let order: [(usize, &Server); 2] = if round % 2 == 0 {
                    [(2, &c.server), (3, &c.distribution)]
                } else {
                    [(3, &c.distribution), (2, &c.server)]
                };
                for (i, s) in order {
                    let m = measure(&w, workload, s, round).await?;
                    results.entry(workload).or_default()[i].push(m);
                }
            }
        }
    }

    let sha_speed = sha256_speed_mb();
    let mut rows = Vec::new();
    println!(
        "\nberth driven with {}; Distribution with no auth.",
        auth.describe()
    );
    println!(
        "\n| workload | berth ({}) | distribution | berth / distribution | berth cluster (etcd + Garage) | distribution on Garage | cluster / distribution on Garage | cluster / berth |",
        auth.label()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for &workload in workloads {
        let name = workload.name();
        let r = &results[&workload];
        let value =
            |k: usize| (!r[k].is_empty()).then(|| median(r[k].iter().map(|m| m.0).collect()));
        let p99 = |k: usize| {
            let v: Vec<f64> = r[k].iter().filter_map(|m| m.1).collect();
            (!v.is_empty()).then(|| median(v))
        };
        let fmt = |k: usize| match (value(k), p99(k)) {
            (Some(v), Some(p)) => format!("{v:.0} (p99 {p:.2} ms)"),
            (Some(v), None) => format!("{v:.1}"),
            (None, _) => "—".to_owned(),
        };
        let (b, d, c) = (value(0).unwrap_or(0.0), value(1).unwrap_or(0.0), value(2));
        let ds3 = value(3);
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => format!("{:.2}×", x / y),
            _ => "—".into(),
        };
        println!(
            "| {name} | {} | {} | {:.2}× | {} | {} | {} | {} |",
            fmt(0),
            fmt(1),
            b / d,
            fmt(2),
            fmt(3),
            ratio(c, ds3),
            ratio(c, Some(b))
        );
        rows.push(serde_json::json!({
            "workload": name,
            "berth": b,
            "distribution": d,
            "ratio": b / d,
            "berth_p99_ms": p99(0),
            "distribution_p99_ms": p99(1),
            "cluster": c,
            "cluster_ratio": c.map(|c| c / d),
            "cluster_p99_ms": p99(2),
            "distribution_garage": ds3,
            "cluster_ratio_garage": c.zip(ds3).map(|(c, d)| c / d),
            "distribution_garage_p99_ms": p99(3),
        }));
    }
    let (rb, rd) = (berth.peak_rss_mib(), dist.peak_rss_mib());
    let (rc, rds3) = match &cluster {
        Some(c) => (
            Some(c.server.peak_rss_mib()),
            Some(c.distribution.peak_rss_mib()),
        ),
        None => (None, None),
    };
    let mib = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.1}"));
    println!(
        "| peak resident memory (MiB, lower is better) | {rb:.1} | {rd:.1} | {:.2}× | {} | {} | {} | |",
        rb / rd,
        mib(rc),
        mib(rds3),
        rc.zip(rds3)
            .map_or_else(|| "—".into(), |(c, d)| format!("{:.2}×", c / d))
    );
    let mono = results
        .get(&Workload::PushMonolithic)
        .map(|r| median(r[0].iter().map(|m| m.0).collect()));
    print!(
        "\nSHA-256 on this machine (openssl speed -evp sha256, 1 MiB blocks): {sha_speed:.0} MB/s"
    );
    match mono {
        Some(mono) => println!(
            "; berth's single-stream monolithic push reaches {:.0}% of it.",
            100.0 * mono / sha_speed
        ),
        None => println!("."),
    }
    Ok(serde_json::json!({
        "rounds": rounds,
        "quick": quick,
        "berth_auth": auth.label(),
        "rows": rows,
        "peak_rss_mib": {"berth": rb, "distribution": rd, "cluster": rc, "distribution_garage": rds3},
        "sha256_mb_s": sha_speed,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    }))
}

/// One measurement of `workload` on `s`, once the machine is idle, in a
/// client session of its own (as one `docker push` or `docker pull`: no
/// tokens from earlier workloads).
async fn measure(w: &Workloads, workload: Workload, s: &Server, round: usize) -> Res<Measure> {
    settle().await;
    let ep = s.ep.session();
    let name = workload.name();
    let m = w
        .run(workload, &ep, round)
        .await
        .map_err(|e| format!("{name} on {}: {e}", s.name))?;
    let tokens = match ep.tokens_fetched() {
        0 => String::new(),
        1 => " [1 token]".to_owned(),
        n => format!(" [{n} tokens]"),
    };
    eprintln!(
        "  round {round} {:<14} {name}: {:.1}{}{tokens}",
        s.name,
        m.0,
        m.1.map(|p| format!(" (p99 {p:.2} ms)")).unwrap_or_default()
    );
    Ok(m)
}
