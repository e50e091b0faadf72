//! Metadata backends for the Kv port: redb (embedded, one node) and etcd
//! (a cluster shared by many registry nodes).

mod etcd;
mod redb_kv;

pub use etcd::{CacheStats, EtcdConfig, EtcdKv, EtcdWatch, WatchCache, WatchEvent};
pub use redb_kv::RedbKv;
