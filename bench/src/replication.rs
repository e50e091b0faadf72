//! `--replication`: replication throughput (docs/replication.md), driven
//! with berth's own CLI as an administrator would: (a) a pull policy from a
//! Distribution holding N images into berth, (b) a push policy from that
//! berth to a second berth (token auth), and (c) the same copy as (a) made
//! with `skopeo sync --src docker --dest docker` into a fresh berth.

use crate::import::push_images;
use crate::oci::{self, ClientAuth};
use crate::process::{self, Server};
use crate::{Res, MIB, PASSWORD};
use std::process::Command;
use std::time::Instant;

/// Repositories the images are spread over (`rep/r0` ...).
const REPOS: usize = 10;
/// Tasks of one execution at once (the policies' `concurrency`).
const CONCURRENCY: &str = "4";
const LAYER: usize = 4 * MIB;

/// `berth replication ARGS` against `server`, as `admin`; must succeed.
fn cli(bin: &str, server: &Server, args: &[&str], env: &[(&str, &str)]) -> Res<String> {
    let mut cmd = Command::new(bin);
    cmd.arg("replication")
        .args(["--url", &server.ep.base])
        .args(args)
        .env("BERTH_PASSWORD", PASSWORD)
        .envs(env.iter().copied());
    process::stdout_of(&mut cmd, &format!("berth replication {args:?}"))
}

/// Adds endpoint `name` (`url`, a registry of `kind`) on berth `server`;
/// `login` is the username and secret it takes, if any.
fn add_endpoint(
    bin: &str,
    server: &Server,
    name: &str,
    url: &str,
    kind: &str,
    login: Option<(&str, &str)>,
) -> Res<()> {
    let mut args = vec![
        "endpoints",
        "add",
        name,
        "--endpoint-url",
        url,
        "--kind",
        kind,
    ];
    let mut env = Vec::new();
    if let Some((username, secret)) = login {
        args.extend(["--endpoint-username", username]);
        env.push(("BERTH_ENDPOINT_SECRET", secret));
    }
    cli(bin, server, &args, &env).map(drop)
}

/// Adds policy `name` on berth `server`, copying every `rep/**`
/// repository in `direction` with `endpoint`, [`CONCURRENCY`] tasks at once.
fn add_policy(bin: &str, server: &Server, name: &str, direction: &str, endpoint: &str) -> Res<()> {
    let args = [
        "policies",
        "add",
        name,
        "--direction",
        direction,
        "--endpoint",
        endpoint,
        "--repository",
        "rep/**",
        "--concurrency",
        CONCURRENCY,
    ];
    cli(bin, server, &args, &[]).map(drop)
}

/// Creates project `name` on berth `server` (an existing one is fine).
async fn create_project(server: &Server, name: &str) -> Res<()> {
    let r = oci::client()
        .post(format!("{}/api/v1/projects", server.ep.base))
        .basic_auth("admin", Some(PASSWORD))
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .map_err(|e| format!("POST /api/v1/projects: {e}"))?;
    match r.status().as_u16() {
        201 | 409 => Ok(()),
        s => Err(format!(
            "POST /api/v1/projects: {s} {}",
            r.text().await.unwrap_or_default()
        )),
    }
}

/// `berth replication run POLICY --wait` on `server`, timed.
fn timed_run(bin: &str, server: &Server, policy: &str) -> Res<f64> {
    let t = Instant::now();
    let out = cli(bin, server, &["run", policy, "--wait"], &[])?;
    let took = t.elapsed().as_secs_f64();
    eprintln!("  {policy}: {took:.1} s: {}", out.trim());
    Ok(took)
}

/// One copy: how many artifacts and bytes, in how long.
struct Copy {
    label: &'static str,
    secs: f64,
}

/// Runs the measurement with `images` images, prints its table; its JSON.
pub async fn run(bin: &str, registry: &str, images: usize) -> Res<serde_json::Value> {
    eprintln!("--replication: {images} images of a 4 MiB layer in Distribution...");
    let dist = process::start_distribution(registry)?;
    let t = Instant::now();
    let bytes = push_images(&dist.ep.session(), "rep", REPOS, images, LAYER, 5000, 8).await?;
    eprintln!("  filled in {:.1} s", t.elapsed().as_secs_f64());

    // (a) Distribution → berth, a pull policy.
    let berth = process::start_berth(bin, "berth", None, ClientAuth::Bearer).await?;
    create_project(&berth, "rep").await?;
    add_endpoint(bin, &berth, "dist", &dist.ep.base, "distribution", None)?;
    add_policy(bin, &berth, "from-dist", "pull", "dist")?;
    let pull = timed_run(bin, &berth, "from-dist")?;

    // (b) berth → berth, a push policy; the destination answers with
    // Bearer challenges, as berth does.
    let dest = process::start_berth(bin, "berth-dest", None, ClientAuth::Bearer).await?;
    create_project(&dest, "rep").await?;
    let login = Some(("admin", PASSWORD));
    add_endpoint(bin, &berth, "dest", &dest.ep.base, "berth", login)?;
    add_policy(bin, &berth, "to-dest", "push", "dest")?;
    let push = timed_run(bin, &berth, "to-dest")?;
    drop(dest);

    // (c) skopeo sync, Distribution → a fresh berth, one repository at a
    // time (skopeo sync takes one source repository with --src docker).
    let fresh = process::start_berth(bin, "berth-skopeo", None, ClientAuth::Bearer).await?;
    create_project(&fresh, "rep").await?;
    let src_host = dist.ep.base.trim_start_matches("http://").to_owned();
    let dest_host = fresh.ep.base.trim_start_matches("http://").to_owned();
    let creds = format!("admin:{PASSWORD}");
    let t = Instant::now();
    for r in 0..REPOS.min(images) {
        let src = format!("{src_host}/rep/r{r}");
        let dst = format!("{dest_host}/rep");
        let mut sync = Command::new("skopeo");
        sync.args([
            "sync",
            "--src",
            "docker",
            "--dest",
            "docker",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &src,
            &dst,
        ]);
        process::stdout_of(&mut sync, &format!("skopeo sync {src} {dst}"))?;
    }
    let skopeo = t.elapsed().as_secs_f64();
    eprintln!("  skopeo sync: {skopeo:.1} s");

    let copies = [
        Copy {
            label: "Distribution → berth, pull policy",
            secs: pull,
        },
        Copy {
            label: "berth → berth, push policy (token auth)",
            secs: push,
        },
        Copy {
            label: "Distribution → berth, `skopeo sync`",
            secs: skopeo,
        },
    ];
    println!(
        "\nReplication of {images} images (config + one 4 MiB layer, {:.0} MB) over {REPOS} repositories; policies with concurrency {CONCURRENCY}:",
        bytes as f64 / 1e6
    );
    println!("\n| copy | seconds | artifacts/s | MB/s |");
    println!("|---|---:|---:|---:|");
    let mut rows = Vec::new();
    for c in &copies {
        let (a, m) = (images as f64 / c.secs, bytes as f64 / 1e6 / c.secs);
        println!("| {} | {:.1} | {a:.1} | {m:.0} |", c.label, c.secs);
        rows.push(serde_json::json!({
            "copy": c.label, "seconds": c.secs, "artifacts_s": a, "mb_s": m,
        }));
    }
    let ratio = skopeo / pull;
    println!(
        "\nberth replication (pull) / skopeo sync, throughput: {ratio:.2}× (berth → berth / skopeo: {:.2}×)",
        skopeo / push
    );
    Ok(serde_json::json!({
        "images": images,
        "bytes": bytes,
        "concurrency": CONCURRENCY.parse::<u32>().unwrap_or(0),
        "rows": rows,
        "ratio_pull_over_skopeo": ratio,
        "ratio_push_over_skopeo": skopeo / push,
    }))
}
