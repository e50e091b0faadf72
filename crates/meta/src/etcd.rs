//! [`Kv`] over an etcd v3 cluster, spoken through etcd's JSON gRPC gateway
//! with reqwest so that building berth needs no protoc. A value's version is
//! its etcd mod revision; every key lives under a configurable prefix.

mod cache;
mod client;
mod locks;
mod watch;
mod wire;

use std::collections::HashSet;
use std::fmt;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::kv::{Check, KeyRange, Kv, KvError, Op, Txn, Versioned};
use berth_net::TlsClient;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

pub use cache::{CacheStats, WatchCache};
use client::describe;
pub use watch::{EtcdWatch, WatchEvent};
use wire::{b64, prefix_end, unb64};

/// Settings of the etcd metadata backend (`[metadata] backend = "etcd"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members, such as `http://10.0.0.1:2379` or
    /// `https://10.0.0.1:2379`. Requests go to the member that answered
    /// last and fail over to the others, in this order, when it cannot be
    /// reached or has no leader.
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed the members' certificates, for
    /// `https://` endpoints; the system's CAs when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for members started with
    /// `--client-cert-auth`; requires `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Seconds one operation may take, failovers included, before it fails
    /// as unavailable (default 5). Without quorum etcd itself would hold a
    /// request for about 7 s.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Prepended to every key, so that several registries can share one
    /// etcd cluster (default `"berth/"`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The etcd user to authenticate as, when etcd has auth enabled.
    /// Requires `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of `username`. Prefer `password_file`; when neither is
    /// set, `BERTH_ETCD_PASSWORD` from the environment.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password of `username` (surrounding whitespace
    /// ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Serve reads from a node-local copy kept current by a watch
    /// ([`WatchCache`]), still linearizable (default true).
    #[serde(default = "default_watch_cache")]
    pub watch_cache: bool,
    /// The most memory that copy may hold, in MiB (default 512); past it,
    /// reads go to etcd.
    #[serde(default = "default_watch_cache_mib")]
    pub watch_cache_mib: u64,
}

fn default_timeout_secs() -> u64 {
    5
}

fn default_watch_cache() -> bool {
    true
}

fn default_watch_cache_mib() -> u64 {
    512
}

fn default_prefix() -> String {
    "berth/".to_owned()
}

impl EtcdConfig {
    /// These endpoints with every other setting at its default.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            timeout_secs: default_timeout_secs(),
            prefix: default_prefix(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            watch_cache: default_watch_cache(),
            watch_cache_mib: default_watch_cache_mib(),
        }
    }

    /// How connections to the members verify them and identify berth.
    pub fn tls(&self) -> TlsClient {
        TlsClient {
            ca_file: self.ca_file.clone(),
            identity: self.cert_file.clone().zip(self.key_file.clone()),
        }
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("timeout_secs", &self.timeout_secs)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("watch_cache", &self.watch_cache)
            .field("watch_cache_mib", &self.watch_cache_mib)
            .finish()
    }
}

/// An etcd-backed [`Kv`]. Cheap to clone; clones share connections.
///
/// Reads are linearizable and writes are committed by a quorum: when
/// `commit` returns `Ok(true)` the write survives the loss of any minority.
#[derive(Clone)]
pub struct EtcdKv {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without trailing slashes.
    endpoints: Vec<String>,
    /// The member that answered last, tried first next time: a dead member
    /// then costs one refused connection, not one per request.
    preferred: AtomicUsize,
    timeout: Duration,
    prefix: String,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// The gateway's path prefix, which moved between etcd versions; learned
    /// from the first member that answers `/version`.
    api: OnceCell<&'static str>,
}

impl fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdKv")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// etcd rejects a txn that writes one key twice ("duplicate key given in txn
/// request"), while in a [`Txn`] the later op wins: keep each key's last op.
fn last_op_per_key(ops: Vec<Op>) -> Vec<Op> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Op> = ops
        .into_iter()
        .rev()
        .filter(|op| {
            let key = match op {
                Op::Put(key, _) | Op::Delete(key) => key,
            };
            seen.insert(key.clone())
        })
        .collect();
    kept.reverse();
    kept
}

impl EtcdKv {
    /// Checks `config` and sets up the client. Contacts no member: an etcd
    /// that is down makes operations fail as unavailable, not startup.
    pub fn new(config: EtcdConfig) -> Result<EtcdKv, KvError> {
        let invalid = |why: String| KvError::Internal(format!("etcd configuration: {why}"));
        if config.endpoints.is_empty() {
            return Err(invalid("no endpoints".into()));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Err(invalid(format!(
                    "endpoint {endpoint:?} is not an http:// or https:// URL"
                )));
            }
            endpoints.push(endpoint.trim_end_matches('/').to_owned());
        }
        if config.timeout_secs == 0 {
            return Err(invalid("timeout_secs must be at least 1".into()));
        }
        if config.cert_file.is_some() != config.key_file.is_some() {
            return Err(invalid("cert_file and key_file go together".into()));
        }
        let tls = config.tls();
        let password = match (config.password, &config.password_file) {
            (Some(p), None) => Some(p),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("password_file {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "password and password_file exclude each other".into(),
                ))
            }
            (None, None) if config.username.is_some() => std::env::var("BERTH_ETCD_PASSWORD").ok(),
            (None, None) => None,
        };
        let credentials = match (config.username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => return Err(invalid("username and password go together".into())),
        };
        let timeout = Duration::from_secs(config.timeout_secs);
        let http = berth_net::client_builder(&tls, "metadata")
            .map_err(invalid)?
            // Short, so that an unreachable member leaves time to try others.
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| KvError::Internal(format!("etcd HTTP client: {}", describe(&e))))?;
        Ok(EtcdKv {
            inner: Arc::new(Inner {
                http,
                endpoints,
                preferred: AtomicUsize::new(0),
                timeout,
                prefix: config.prefix,
                credentials,
                token: Mutex::new(None),
                api: OnceCell::new(),
            }),
        })
    }

    /// Grants a lease of `ttl_secs` seconds and returns its ID. etcd raises
    /// very short TTLs to its minimum (about 1.5 s with default timings).
    pub async fn lease_grant(&self, ttl_secs: u64) -> Result<i64, KvError> {
        let ttl = i64::try_from(ttl_secs)
            .map_err(|_| KvError::Internal(format!("lease TTL {ttl_secs} s is too long")))?;
        let body = json!({ "TTL": ttl.to_string() });
        let r: wire::LeaseGrantResponse = self.call("/lease/grant", body, true, false).await?;
        if !r.error.is_empty() || r.id == 0 {
            return Err(KvError::Internal(format!(
                "etcd granted no lease: {}",
                r.error
            )));
        }
        Ok(r.id)
    }

    /// Renews lease `id` once. `Some(ttl)`: the seconds it now has left;
    /// `None`: it has expired (or never existed) and its keys are gone.
    pub async fn keepalive(&self, id: i64) -> Result<Option<u64>, KvError> {
        let body = json!({ "ID": id.to_string() });
        let r: wire::LeaseKeepAliveResponse =
            self.call("/lease/keepalive", body, true, true).await?;
        Ok(u64::try_from(r.ttl).ok().filter(|ttl| *ttl > 0))
    }

    /// Puts `key` attached to lease `lease`: etcd deletes it when the lease
    /// expires.
    pub async fn put_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(), KvError> {
        let body = json!({
            "key": b64(&self.full_key(key)),
            "value": b64(&value),
            "lease": lease.to_string(),
        });
        let _: wire::Empty = self.call("/kv/put", body, false, false).await?;
        Ok(())
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let prefix = self.inner.prefix.as_bytes();
        let mut full = Vec::with_capacity(prefix.len() + key.len());
        full.extend_from_slice(prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// A key as etcd sent it, back to the caller's spelling.
    fn caller_key(&self, encoded: &str) -> Result<String, KvError> {
        let full = unb64("key", encoded)?;
        let key = full
            .strip_prefix(self.inner.prefix.as_bytes())
            .ok_or_else(|| {
                KvError::Internal(format!(
                    "etcd returned a key outside {:?}",
                    self.inner.prefix
                ))
            })?;
        String::from_utf8(key.to_vec())
            .map_err(|_| KvError::Internal("etcd returned a key that is not UTF-8".into()))
    }
}

impl EtcdKv {
    /// One range read of the keys in `range`, with or without their values.
    async fn range(
        &self,
        range: KeyRange<'_>,
        keys_only: bool,
    ) -> Result<wire::RangeResponse, KvError> {
        // etcd reads a limit of 0 as "no limit".
        if range.limit == 0 {
            return Ok(wire::RangeResponse::default());
        }
        let first = self.full_key(range.prefix);
        let end = prefix_end(&first);
        let start = match range.lower_bound() {
            Bound::Excluded(after) => {
                // The smallest key after `after`.
                let mut start = self.full_key(after);
                start.push(0);
                start
            }
            _ => first,
        };
        // An `end` of [0] means "to the last key", so never compare with it.
        if end != [0] && start >= end {
            return Ok(wire::RangeResponse::default());
        }
        let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
        let body = json!({
            "key": b64(&start),
            "range_end": b64(&end),
            "limit": limit.to_string(),
            "keys_only": keys_only,
        });
        self.call("/kv/range", body, true, false).await
    }
}

fn versioned(kv: &wire::KeyValue) -> Result<Versioned, KvError> {
    let version = u64::try_from(kv.mod_revision)
        .ok()
        .filter(|v| *v != 0)
        .ok_or_else(|| KvError::Internal(format!("etcd sent mod revision {}", kv.mod_revision)))?;
    Ok(Versioned {
        value: unb64("value", &kv.value)?,
        version,
    })
}

#[async_trait]
impl Kv for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        let body = json!({ "key": b64(&self.full_key(key)) });
        let r: wire::RangeResponse = self.call("/kv/range", body, true, false).await?;
        r.kvs.first().map(versioned).transpose()
    }

    async fn scan_range(&self, range: KeyRange<'_>) -> Result<Vec<(String, Versioned)>, KvError> {
        let r = self.range(range, false).await?;
        r.kvs
            .iter()
            .map(|kv| Ok((self.caller_key(&kv.key)?, versioned(kv)?)))
            .collect()
    }

    async fn scan_range_keys(&self, range: KeyRange<'_>) -> Result<Vec<String>, KvError> {
        let r = self.range(range, true).await?;
        r.kvs.iter().map(|kv| self.caller_key(&kv.key)).collect()
    }

    async fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        if txn.checks.is_empty() && txn.ops.is_empty() {
            return Ok(true);
        }
        let mut compare = Vec::with_capacity(txn.checks.len());
        for check in &txn.checks {
            compare.push(match check {
                Check::Version(key, version) => {
                    // etcd compares a missing key as revision 0, and
                    // revisions are int64: such versions never match.
                    let Some(revision) = i64::try_from(*version).ok().filter(|r| *r > 0) else {
                        return Ok(false);
                    };
                    json!({
                        "key": b64(&self.full_key(key)),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": revision.to_string(),
                    })
                }
                // The gateway drops zero values only from answers: the 0 is
                // sent explicitly so the intent is plain on the wire.
                Check::Absent(key) => json!({
                    "key": b64(&self.full_key(key)),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": "0",
                }),
            });
        }
        let success: Vec<Value> = last_op_per_key(txn.ops)
            .into_iter()
            .map(|op| match op {
                Op::Put(key, value) => json!({ "request_put": {
                    "key": b64(&self.full_key(&key)),
                    "value": b64(&value),
                }}),
                Op::Delete(key) => json!({ "request_delete_range": {
                    "key": b64(&self.full_key(&key)),
                }}),
            })
            .collect();
        // A txn that only checks writes nothing, so it may be repeated.
        let retry_safe = success.is_empty();
        let body = json!({ "compare": compare, "success": success });
        let r: wire::TxnResponse = self.call("/kv/txn", body, retry_safe, false).await?;
        Ok(r.succeeded)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let body = json!({ "key": b64(&self.full_key(key)), "value": b64(&value) });
        let _: wire::Empty = self.call("/kv/put", body, false, false).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let body = json!({ "key": b64(&self.full_key(key)) });
        let _: wire::Empty = self.call("/kv/deleterange", body, false, false).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_ops_on_a_key_win() {
        let ops = vec![
            Op::Put("a".into(), b"1".to_vec()),
            Op::Put("b".into(), b"x".to_vec()),
            Op::Put("a".into(), b"2".to_vec()),
            Op::Delete("b".into()),
        ];
        assert_eq!(
            last_op_per_key(ops),
            vec![Op::Put("a".into(), b"2".to_vec()), Op::Delete("b".into())]
        );
    }

    #[test]
    fn config_defaults_and_checks() {
        let config: EtcdConfig =
            serde_json::from_str(r#"{"endpoints": ["http://127.0.0.1:2379/"]}"#).unwrap();
        assert_eq!(config.timeout_secs, 5);
        assert_eq!(config.prefix, "berth/");
        assert!(EtcdKv::new(config).is_ok());
        assert!(serde_json::from_str::<EtcdConfig>(r#"{"endpoints": [], "nope": 1}"#).is_err());
        assert!(EtcdKv::new(EtcdConfig::new(Vec::<String>::new())).is_err());
        assert!(EtcdKv::new(EtcdConfig::new(["https://etcd:2379"])).is_ok());
        assert!(EtcdKv::new(EtcdConfig::new(["etcd:2379"])).is_err());
        let mut no_key = EtcdConfig::new(["https://etcd:2379"]);
        no_key.cert_file = Some("client.crt".into());
        assert!(EtcdKv::new(no_key).is_err());
        let mut half = EtcdConfig::new(["http://etcd:2379"]);
        half.username = Some("root".into());
        assert!(EtcdKv::new(half.clone()).is_err());
        half.password = Some("secret".into());
        assert!(!format!("{half:?}").contains("secret"));
    }
}
