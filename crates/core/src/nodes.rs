//! Cluster membership records: each node of an etcd-backed cluster keeps
//! `node:<id>` alive under an etcd lease (the binary's `cluster` module
//! writes it), so the list read here is always the live nodes. An embedded
//! registry has none.

use crate::keys;
use crate::kv::{Kv, KvError};
use crate::registry::Registry;
use serde::{Deserialize, Serialize};

/// What a node says of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub listen: String,
    #[serde(default)]
    pub external_url: String,
    /// How the other nodes reach this one ("" when they cannot).
    #[serde(default)]
    pub advertise_url: String,
    pub version: String,
    /// Unix seconds.
    pub started: u64,
    /// The node's copy of the metadata (etcd's watch cache), as of its
    /// last report; `None` when it keeps none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_cache: Option<CacheReport>,
}

/// What a node's metadata copy holds, for `berth cluster status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Serving reads now (else loading, rebuilding, or past its bound).
    pub serving: bool,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
}

/// Every node registered in `kv` now (records that do not parse are
/// skipped: a newer node may write more).
pub async fn list(kv: &dyn Kv) -> Result<Vec<NodeRecord>, KvError> {
    let records = kv.scan(keys::NODE_PREFIX, None, 1000).await?;
    Ok(records
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v.value).ok())
        .collect())
}

impl Registry {
    /// The live nodes of this registry's cluster; none when embedded.
    pub async fn cluster_nodes(&self) -> Result<Vec<NodeRecord>, crate::CoreError> {
        Ok(list(self.kv().as_ref()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryKv;

    #[tokio::test]
    async fn nodes_are_listed_from_their_records() {
        let kv = MemoryKv::new();
        let node = NodeRecord {
            id: "a-1".into(),
            listen: "10.0.0.1:5000".into(),
            external_url: String::new(),
            advertise_url: String::new(),
            version: "0.1.0".into(),
            started: 7,
            metadata_cache: None,
        };
        kv.put(&keys::node("a-1"), serde_json::to_vec(&node).unwrap())
            .await
            .unwrap();
        kv.put(&keys::node("garbage"), b"{".to_vec()).await.unwrap();
        assert_eq!(list(&kv).await.unwrap(), vec![node]);
    }
}
