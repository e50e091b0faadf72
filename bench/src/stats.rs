//! How things are measured: concurrent request loops, medians, waiting for
//! an idle machine, and the machine's SHA-256 speed.

use crate::Res;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `per_task` on `tasks` concurrent workers for `secs`; requests per
/// second and the 99th percentile latency in milliseconds.
pub async fn hammer<F, Fut>(tasks: usize, secs: f64, per_task: F) -> Res<(f64, f64)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let f = Arc::new(per_task);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                f().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(0.0);
    Ok((all.len() as f64 / elapsed, p99))
}

/// Runs `job(shared, i)` for every `i` below `count` on `tasks` concurrent
/// workers, each taking the next `i` as it finishes one; the sum of what
/// the jobs return.
pub async fn share_out<T, F, Fut>(tasks: usize, count: usize, shared: Arc<T>, job: F) -> Res<usize>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<usize>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (job, next, shared) = (job.clone(), next.clone(), shared.clone());
        handles.push(tokio::spawn(async move {
            let mut sum = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    return Ok::<_, String>(sum);
                }
                sum += job(shared.clone(), i).await?;
            }
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.map_err(|e| e.to_string())??;
    }
    Ok(total)
}

/// The busy and total CPU time of the whole machine so far, in jiffies
/// (the first line of /proc/stat).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Some((total - idle, total))
}

/// Waits, up to 15 s, until the machine is idle (under 10% busy over 200
/// ms) before a measurement starts, so that what one workload leaves
/// running (a server freeing memory, flushing, compacting) does not land
/// on the next server's measurement.
pub async fn settle() {
    let give_up = Instant::now() + Duration::from_secs(15);
    let Some(mut last) = cpu_jiffies() else {
        return;
    };
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(now) = cpu_jiffies() else {
            return;
        };
        let (busy, total) = (now.0 - last.0, now.1 - last.1);
        if total > 0 && busy * 10 < total {
            return;
        }
        last = now;
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One core's SHA-256 speed in MB/s (`openssl speed`, 1 MiB blocks).
pub fn sha256_speed_mb() -> f64 {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2",
        ])
        .stderr(Stdio::null())
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("sha256"))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|v| v.trim_end_matches('k').parse::<f64>().ok())
        .map(|kb| kb * 1000.0 / 1e6)
        .next_back()
        .unwrap_or(0.0)
}
