//! `berth fsck`: whether metadata and blobs agree.

use crate::backends::Backends;
use crate::config::{Config, MetadataConfig};
use berth_core::Registry;

/// Checks (and with `repair` fixes) the metadata and blobs of a data
/// directory or of the backends of a configuration, printing every problem
/// and a summary; fails when there are problems.
pub async fn fsck(config: &Config, verify: bool, repair: bool) -> Result<(), String> {
    if !matches!(config.metadata, MetadataConfig::Etcd(_)) && !config.metadata_path().exists() {
        return Err(format!(
            "no registry metadata at {}",
            config.metadata_path().display()
        ));
    }
    let backends = Backends::open(config, false).map_err(|e| {
        format!("{e}\n(an embedded data directory must not be in use: stop berth serve first)")
    })?;
    let registry = Registry::new(backends.kv, backends.blobs);
    let report = registry
        .fsck(verify, repair)
        .await
        .map_err(|e| format!("fsck: {e}"))?;
    for problem in &report.problems {
        println!("PROBLEM {problem}");
    }
    println!(
        "checked {} blobs ({} bytes re-hashed), {} blob links, {} manifests, {} tags, {} referrer entries: {} problems{}",
        report.blobs_checked,
        report.bytes_verified,
        report.links_checked,
        report.manifests_checked,
        report.tags_checked,
        report.referrers_checked,
        report.problems.len(),
        if repair { format!(", {} repaired", report.repaired) } else { String::new() },
    );
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} problems found", report.problems.len()))
    }
}
