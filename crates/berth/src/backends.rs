//! The metadata and blob backends a configuration names.

use crate::config::{Config, MetadataConfig, StorageConfig};
use berth_core::{BlobStore, Kv};
use std::sync::Arc;

pub(crate) struct Backends {
    pub kv: Arc<dyn Kv>,
    pub blobs: Arc<dyn BlobStore>,
    /// Set on etcd, for membership and locks.
    pub etcd: Option<berth_meta::EtcdKv>,
    /// Set on etcd when reads come from a watched copy.
    pub cache: Option<berth_meta::WatchCache>,
    /// Set on S3, for the multipart sweep.
    pub s3: Option<Arc<berth_storage::S3BlobStore>>,
}

impl Backends {
    /// The backends of `config`. `serving`: for a node that serves
    /// requests, whose etcd reads then come from a watched copy
    /// (`[metadata] watch_cache`); one-shot commands read etcd.
    pub fn open(config: &Config, serving: bool) -> Result<Backends, String> {
        let mut s3 = None;
        let blobs: Arc<dyn BlobStore> = match &config.storage {
            StorageConfig::S3(s3_config) => {
                let store = Arc::new(
                    berth_storage::S3BlobStore::new(s3_config)
                        .map_err(|e| format!("[storage] s3: {e}"))?,
                );
                s3 = Some(store.clone());
                store
            }
            _ => Arc::new(
                berth_storage::FsBlobStore::open_with_layout(
                    config.blob_path(),
                    config.blob_layout(),
                )
                .map_err(|e| {
                    format!(
                        "opening blob storage at {}: {e}",
                        config.blob_path().display()
                    )
                })?,
            ),
        };
        // In a cluster, the node registers itself once it knows its address.
        let mut etcd_membership = None;
        let mut cache = None;
        let kv: Arc<dyn Kv> = match &config.metadata {
            MetadataConfig::Etcd(etcd_config) => {
                let etcd = berth_meta::EtcdKv::new(etcd_config.clone())
                    .map_err(|e| format!("[metadata] etcd: {e}"))?;
                etcd_membership = Some(etcd.clone());
                if serving && etcd_config.watch_cache {
                    let max =
                        usize::try_from(etcd_config.watch_cache_mib << 20).unwrap_or(usize::MAX);
                    let copy = berth_meta::WatchCache::start(etcd, max);
                    cache = Some(copy.clone());
                    Arc::new(copy)
                } else {
                    Arc::new(etcd)
                }
            }
            _ => Arc::new(
                berth_meta::RedbKv::open(&config.metadata_path()).map_err(|e| {
                    format!(
                        "opening metadata at {}: {e}",
                        config.metadata_path().display()
                    )
                })?,
            ),
        };
        Ok(Backends {
            kv,
            blobs,
            etcd: etcd_membership,
            cache,
            s3,
        })
    }
}
