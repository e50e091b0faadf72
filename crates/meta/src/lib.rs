//! Metadata backends for the Kv port: redb (embedded). etcd comes later.

mod redb_kv;

pub use redb_kv::RedbKv;
