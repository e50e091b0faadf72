//! Cluster membership: each node of an etcd-backed cluster keeps a record
//! `node:<id>` alive under an etcd lease, so the list of live nodes is always
//! current (a killed node disappears when its lease expires). And `berth
//! cluster status`, which shows the nodes, etcd's health and storage's.

use crate::config::{Config, MetadataConfig, StorageConfig};
use berth_core::nodes::{CacheReport, NodeRecord};
use berth_meta::EtcdKv;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A node is listed this long after it stops renewing.
const LEASE_TTL_SECS: u64 = 10;
const RENEW_EVERY: Duration = Duration::from_secs(3);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This machine's name, for humans reading who ran what.
pub(crate) fn node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// The node's record is written again, with its cache's state, every this
/// many renewals.
const REPORT_EVERY: u32 = 10;

fn cache_report(cache: Option<&berth_meta::WatchCache>) -> Option<CacheReport> {
    cache.map(|c| {
        let s = c.stats();
        CacheReport {
            serving: s.serving,
            entries: s.entries as u64,
            bytes: s.bytes as u64,
            max_bytes: c.max_bytes() as u64,
        }
    })
}

/// Keeps this node's record alive until the task is aborted,
/// re-registering after etcd outages; reports `cache` in it every
/// [`REPORT_EVERY`] renewals.
pub(crate) fn register(
    etcd: EtcdKv,
    cache: Option<berth_meta::WatchCache>,
    listen: String,
    external_url: String,
    advertise_url: String,
) -> tokio::task::JoinHandle<()> {
    let id = format!("{}-{}", node_name(), &berth_auth::secret::generate()[..6]);
    let mut record = NodeRecord {
        id: id.clone(),
        listen,
        external_url,
        advertise_url,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: now(),
        metadata_cache: cache_report(cache.as_ref()),
    };
    tokio::spawn(async move {
        let key = berth_core::keys::node(&id);
        loop {
            let lease = match etcd.lease_grant(LEASE_TTL_SECS).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register the node in etcd; retrying");
                    tokio::time::sleep(RENEW_EVERY).await;
                    continue;
                }
            };
            let value = serde_json::to_vec(&record).unwrap_or_default();
            if let Err(e) = etcd.put_with_lease(&key, value, lease).await {
                tracing::warn!(error = %e, "cannot register the node in etcd; retrying");
                tokio::time::sleep(RENEW_EVERY).await;
                continue;
            }
            tracing::info!(node = %id, "registered in the cluster");
            let mut renewals = 0u32;
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match etcd.keepalive(lease).await {
                    Ok(Some(_)) => {}
                    // Expired (etcd was unreachable too long): register anew.
                    Ok(None) => break,
                    Err(e) => tracing::warn!(error = %e, "node lease renewal failed"),
                }
                renewals += 1;
                if cache.is_some() && renewals.is_multiple_of(REPORT_EVERY) {
                    record.metadata_cache = cache_report(cache.as_ref());
                    let value = serde_json::to_vec(&record).unwrap_or_default();
                    if let Err(e) = etcd.put_with_lease(&key, value, lease).await {
                        tracing::warn!(error = %e, "cannot update the node's record");
                    }
                }
            }
        }
    })
}

/// `berth cluster status`: prints the live nodes, each etcd member's health
/// and the blob storage's; fails when anything is unhealthy.
pub async fn status(config: &Config) -> Result<(), String> {
    let mut healthy = true;
    match &config.metadata {
        MetadataConfig::Etcd(etcd_config) => {
            let http = berth_net::client_builder(&etcd_config.tls(), "metadata")?
                .timeout(Duration::from_secs(3))
                .build()
                .map_err(|e| e.to_string())?;
            println!("etcd members:");
            for endpoint in &etcd_config.endpoints {
                let url = format!("{}/health", endpoint.trim_end_matches('/'));
                let state = match http.get(&url).send().await {
                    Ok(r) => match r.json::<serde_json::Value>().await {
                        Ok(v) if v["health"] == "true" => "healthy".to_owned(),
                        Ok(v) => format!("unhealthy ({v})"),
                        Err(e) => format!("unhealthy ({e})"),
                    },
                    Err(e) => format!("unreachable ({e})"),
                };
                healthy &= state == "healthy";
                println!("  {endpoint:<40} {state}");
            }
            let etcd = EtcdKv::new(etcd_config.clone()).map_err(|e| e.to_string())?;
            println!("nodes:");
            match berth_core::nodes::list(&etcd).await {
                Ok(nodes) if nodes.is_empty() => {
                    healthy = false;
                    println!("  (none registered)");
                }
                Ok(nodes) => {
                    for n in nodes {
                        let peer = if n.advertise_url.is_empty() {
                            "-"
                        } else {
                            &n.advertise_url
                        };
                        let cache = match &n.metadata_cache {
                            None => "off".to_owned(),
                            Some(c) if !c.serving => "not serving (reads go to etcd)".to_owned(),
                            Some(c) => format!(
                                "{} entries, {:.1} of {} MiB",
                                c.entries,
                                c.bytes as f64 / f64::from(1 << 20),
                                c.max_bytes >> 20
                            ),
                        };
                        println!(
                            "  {:<28} listen {:<22} advertise {:<28} up {}s  v{}  cache: {cache}",
                            n.id,
                            n.listen,
                            peer,
                            now().saturating_sub(n.started),
                            n.version
                        );
                    }
                }
                Err(e) => {
                    healthy = false;
                    println!("  cannot list nodes: {e}");
                }
            }
        }
        _ => println!(
            "metadata: embedded ({}); a single node, not a cluster",
            config.metadata_path().display()
        ),
    }
    let store: Arc<dyn berth_core::BlobStore> = match &config.storage {
        StorageConfig::S3(s3) => {
            Arc::new(berth_storage::S3BlobStore::new(s3).map_err(|e| e.to_string())?)
        }
        _ => Arc::new(
            berth_storage::FsBlobStore::open_with_layout(config.blob_path(), config.blob_layout())
                .map_err(|e| e.to_string())?,
        ),
    };
    let probe = berth_oci::Digest::sha256_of(b"berth cluster status probe");
    let storage = match tokio::time::timeout(Duration::from_secs(10), store.stat(&probe)).await {
        Ok(Ok(_)) => "healthy".to_owned(),
        Ok(Err(e)) => format!("unhealthy ({e})"),
        Err(_) => "unreachable (timed out)".to_owned(),
    };
    healthy &= storage == "healthy";
    let kind = match &config.storage {
        StorageConfig::S3(_) => "s3",
        _ => "filesystem",
    };
    println!("storage ({kind}): {storage}");
    if healthy {
        Ok(())
    } else {
        Err("the cluster is not healthy".into())
    }
}
