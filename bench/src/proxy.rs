//! `--proxy`: the proxy cache (docs/proxy-cache.md) against Distribution
//! in proxy mode (`proxy.remoteurl`), both in front of the same upstream (a
//! Distribution holding one image with a big layer), with the same herd:
//! `CLIENTS` clients ask for the cold layer at once. Reported: how many
//! times the upstream sent the layer, the herd's time to first byte and to
//! last byte, then a warm pull (the same herd again, from the cache).
//! Then the same herd spread over three nodes: berth's three nodes on one
//! etcd cluster and a shared blob directory against three Distribution
//! proxies (Distribution has no cluster of proxies: each is its own).
//! berth is driven with Bearer tokens, as docker does.

use crate::import::noise;
use crate::oci::{self, ClientAuth, Endpoint};
use crate::process::{self, DistOptions, Server};
use crate::token::Scope;
use crate::{Res, MIB, PASSWORD};
use futures_util::StreamExt;
use reqwest::Method;
use std::time::{Duration, Instant};

/// Clients asking for the layer at once.
const CLIENTS: usize = 20;
const REPO: &str = "big/app";

/// One herd's times, in seconds from the start, per client.
struct Herd {
    first_byte: Vec<f64>,
    last_byte: Vec<f64>,
}

impl Herd {
    fn stats(v: &[f64]) -> (f64, f64) {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[v.len() - 1])
    }
}

/// `CLIENTS` GETs of `path` at once, spread over `eps` in turn, each read
/// to the end and checked to be `len` bytes.
async fn herd(eps: &[&Endpoint], path: &str, repo: &str, len: usize) -> Res<Herd> {
    let start = Instant::now();
    let pulls = (0..CLIENTS).map(|i| {
        let ep = eps[i % eps.len()];
        let (ep, path, repo) = (ep.session(), path.to_owned(), repo.to_owned());
        tokio::spawn(async move {
            let c = oci::client();
            let req = ep.req(&c, Method::GET, &path, Scope::Pull(&repo)).await?;
            let r = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
            let r = oci::check(r, 200, "GET blob").await?;
            let mut stream = r.bytes_stream();
            let (mut n, mut first) = (0, None);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("GET {path}: {e}"))?;
                if first.is_none() && !chunk.is_empty() {
                    first = Some(start.elapsed().as_secs_f64());
                }
                n += chunk.len();
            }
            if n != len {
                return Err(format!("GET {path}: {n} bytes, expected {len}"));
            }
            Ok::<_, String>((first.unwrap_or_default(), start.elapsed().as_secs_f64()))
        })
    });
    let mut h = Herd {
        first_byte: Vec::new(),
        last_byte: Vec::new(),
    };
    for pull in futures_util::future::join_all(pulls).await {
        let (first, last) = pull.map_err(|e| e.to_string())??;
        h.first_byte.push(first);
        h.last_byte.push(last);
    }
    Ok(h)
}

/// How many times the upstream's access log shows a successful GET of
/// `path`.
fn upstream_gets(upstream: &Server, path: &str) -> usize {
    let log = std::fs::read_to_string(upstream.dir().join("access.log")).unwrap_or_default();
    let request = format!("\"GET {path} ");
    log.lines()
        .filter(|l| l.contains(&request) && (l.contains("\" 200 ") || l.contains("\" 206 ")))
        .count()
}

/// A management call on berth as admin, which must answer `want`.
async fn admin_call(
    server: &Server,
    method: Method,
    path: &str,
    body: serde_json::Value,
    want: u16,
) -> Res<()> {
    let r = oci::client()
        .request(method, format!("{}{path}", server.ep.base))
        .basic_auth("admin", Some(PASSWORD))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    oci::check(r, want, path).await.map(drop)
}

/// Makes `hub` on `berth` a proxy project of `upstream`.
async fn bind_hub(berth: &Server, upstream: &str) -> Res<()> {
    let project = serde_json::json!({"name": "hub"});
    admin_call(berth, Method::POST, "/api/v1/projects", project, 201).await?;
    let endpoint = serde_json::json!({"name": "up", "url": upstream, "kind": "distribution"});
    admin_call(
        berth,
        Method::POST,
        "/api/v1/replication/endpoints",
        endpoint,
        201,
    )
    .await?;
    let bind = serde_json::json!({"endpoint": "up"});
    admin_call(berth, Method::PUT, "/api/v1/projects/hub/proxy", bind, 200).await
}

/// Distribution in proxy mode in front of `upstream`, with the manifest
/// pulled once (its proxy fetches a blob only for a repository whose
/// manifest it has seen, as after a client's pull).
async fn distribution_proxy(registry: &str, upstream: &str) -> Res<Server> {
    let dist = process::start_distribution_with(
        registry,
        &DistOptions {
            proxy_of: Some(upstream.to_owned()),
            ..DistOptions::default()
        },
    )?;
    let r = oci::client()
        .get(format!("{}/v2/{REPO}/manifests/v1", dist.ep.base))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    oci::check(r, 200, "GET manifest through Distribution").await?;
    Ok(dist)
}

/// One row of the table: who, how many upstream GETs, the cold herd and
/// the warm one.
struct Row {
    name: &'static str,
    gets: usize,
    cold: Herd,
    warm: Herd,
}

/// Runs the comparison with a layer of `layer_mib` MiB; prints its table;
/// its JSON.
pub async fn run(bin: &str, registry: &str, layer_mib: usize) -> Res<serde_json::Value> {
    eprintln!(
        "--proxy: one image with a {layer_mib} MiB layer upstream, {CLIENTS} clients at once..."
    );
    let upstream = process::start_distribution_with(
        registry,
        &DistOptions {
            access_log: true,
            ..DistOptions::default()
        },
    )?;
    let layer = noise(77, layer_mib * MIB);
    let digest = oci::sha(&layer);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let up = upstream.ep.session();
    let c = oci::client();
    oci::upload_small(&up, &c, REPO, &config).await?;
    oci::upload_small(&up, &c, REPO, &layer).await?;
    let manifest = oci::manifest(&config, &[(digest.clone(), layer.len())]);
    oci::put_manifest(&up, &c, REPO, "v1", &manifest).await?;
    drop(layer);
    let upstream_path = format!("/v2/{REPO}/blobs/{digest}");
    let before = upstream_gets(&upstream, &upstream_path);

    // berth: a proxy project `hub` bound to the upstream.
    let berth = process::start_berth(bin, "berth", None, ClientAuth::Bearer).await?;
    bind_hub(&berth, &upstream.ep.base).await?;
    let berth_repo = format!("hub/{REPO}");
    let berth_path = format!("/v2/{berth_repo}/blobs/{digest}");
    let len = layer_mib * MIB;
    let mut rows = Vec::new();
    let cold = herd(&[&berth.ep], &berth_path, &berth_repo, len).await?;
    let gets = upstream_gets(&upstream, &upstream_path) - before;
    let warm = herd(&[&berth.ep], &berth_path, &berth_repo, len).await?;
    rows.push(Row {
        name: "berth (proxy project)",
        gets,
        cold,
        warm,
    });
    drop(berth);

    // Distribution in proxy mode in front of the same upstream.
    let before = upstream_gets(&upstream, &upstream_path);
    let dist = distribution_proxy(registry, &upstream.ep.base).await?;
    let cold = herd(&[&dist.ep], &upstream_path, REPO, len).await?;
    // Distribution stores a proxied blob after it has served it: give it
    // a moment, then the warm herd.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gets = upstream_gets(&upstream, &upstream_path) - before;
    let warm = herd(&[&dist.ep], &upstream_path, REPO, len).await?;
    rows.push(Row {
        name: "Distribution (proxy.remoteurl)",
        gets,
        cold,
        warm,
    });
    drop(dist);

    // Three nodes of each, the herd spread over them.
    eprintln!("--proxy: the same herd over three nodes of each...");
    let before = upstream_gets(&upstream, &upstream_path);
    let nodes = process::start_berth_nodes(bin, 3).await?;
    bind_hub(&nodes.servers[0], &upstream.ep.base).await?;
    let eps: Vec<&Endpoint> = nodes.servers.iter().map(|s| &s.ep).collect();
    let cold = herd(&eps, &berth_path, &berth_repo, len).await?;
    let gets = upstream_gets(&upstream, &upstream_path) - before;
    let warm = herd(&eps, &berth_path, &berth_repo, len).await?;
    rows.push(Row {
        name: "berth, 3 nodes (etcd, shared directory)",
        gets,
        cold,
        warm,
    });
    drop(nodes);

    let before = upstream_gets(&upstream, &upstream_path);
    let mut dists = Vec::new();
    for _ in 0..3 {
        dists.push(distribution_proxy(registry, &upstream.ep.base).await?);
    }
    let eps: Vec<&Endpoint> = dists.iter().map(|s| &s.ep).collect();
    let cold = herd(&eps, &upstream_path, REPO, len).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gets = upstream_gets(&upstream, &upstream_path) - before;
    let warm = herd(&eps, &upstream_path, REPO, len).await?;
    rows.push(Row {
        name: "Distribution ×3 (proxy.remoteurl)",
        gets,
        cold,
        warm,
    });
    drop(dists);

    println!("\nProxy cache: {CLIENTS} clients pull one cold {layer_mib} MiB layer at once, then again warm (seconds from the herd's start; median / slowest):\n");
    println!("| | upstream GETs of the layer | first byte | last byte | warm: last byte |");
    println!("|---|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for row in &rows {
        let (f, fmax) = Herd::stats(&row.cold.first_byte);
        let (l, lmax) = Herd::stats(&row.cold.last_byte);
        let (w, wmax) = Herd::stats(&row.warm.last_byte);
        println!(
            "| {} | {} | {f:.2} / {fmax:.2} | {l:.2} / {lmax:.2} | {w:.2} / {wmax:.2} |",
            row.name, row.gets
        );
        json.push(serde_json::json!({
            "server": row.name, "upstream_gets": row.gets,
            "first_byte_median": f, "first_byte_max": fmax,
            "last_byte_median": l, "last_byte_max": lmax,
            "warm_last_byte_median": w, "warm_last_byte_max": wmax,
        }));
    }
    let last = |i: usize| Herd::stats(&rows[i].cold.last_byte).0;
    println!(
        "\ncold herd, median last byte: Distribution / berth = {:.2}× on one node, {:.2}× on three",
        last(1) / last(0),
        last(3) / last(2)
    );
    let rows = json;
    Ok(serde_json::json!({"layer_mib": layer_mib, "clients": CLIENTS, "rows": rows}))
}
