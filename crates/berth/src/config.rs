//! The configuration file (TOML). Every key is documented in
//! docs/configuration.md; unknown keys are rejected so that a typo never
//! silently falls back to a default. Flags and `BERTH_*` variables override.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for embedded metadata and, by default, blobs.
    #[serde(default = "default_data")]
    pub data_dir: PathBuf,
    /// Public URL of the registry (e.g. behind a TLS proxy); used in
    /// `Location` headers. Relative locations when unset.
    #[serde(default)]
    pub external_url: Option<String>,
    /// How the other nodes of a cluster reach this one (they read its
    /// proxy-cache fetches as they arrive). Default: `listen`'s address,
    /// unless that is 0.0.0.0 or [::]; then none, and the other nodes wait
    /// for a fetch's blob to be stored instead.
    #[serde(default)]
    pub advertise_url: Option<String>,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub metadata: MetadataConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Terminate TLS in berth itself (HTTP/1.1 and HTTP/2).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Log in users from an LDAP directory (see docs/configuration.md).
    #[serde(default)]
    pub ldap: Option<berth_auth::ldap::LdapConfig>,
    #[serde(default)]
    pub gc: GcConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub uploads: UploadsConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
}

/// `[server]`: how long slow and idle clients are held, and how many.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Bytes per second a request body must average over each body_timeout.
    pub body_min_rate: u64,
    pub max_connections: usize,
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Load balancers whose `X-Forwarded-For` names the client (CIDR).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let d = berth_http::server::Limits::default();
        ServerConfig {
            header_read_timeout: d.header_read_timeout,
            idle_timeout: d.idle_timeout,
            body_timeout: d.body_timeout,
            body_min_rate: d.body_min_rate,
            max_connections: d.max_connections,
            shutdown_grace: d.shutdown_grace,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerConfig {
    pub fn limits(&self) -> berth_http::server::Limits {
        berth_http::server::Limits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            body_min_rate: self.body_min_rate,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
        }
    }

    pub fn proxies(&self) -> berth_http::server::TrustedProxies {
        berth_http::server::TrustedProxies::new(self.trusted_proxies.clone())
    }
}

/// `[uploads]`: bounds on open upload sessions (0: no bound).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    pub max_per_repository: usize,
    pub max_per_account: usize,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        let d = berth_core::registry::UploadLimits::default();
        UploadsConfig {
            max_per_repository: d.per_repository,
            max_per_account: d.per_account,
        }
    }
}

impl UploadsConfig {
    pub fn limits(&self) -> berth_core::registry::UploadLimits {
        berth_core::registry::UploadLimits {
            per_repository: self.max_per_repository,
            per_account: self.max_per_account,
        }
    }
}

/// `[gc]`: online garbage collection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// Nothing younger than this is collected: a blob uploaded just before
    /// a run survives until its manifest is pushed. "0s" is allowed.
    #[serde(default = "default_grace", deserialize_with = "duration")]
    pub grace_period: Duration,
    /// How often a collection runs (one node runs it; "0s" turns the
    /// schedule off, leaving `POST /api/v1/gc` and `berth gc`).
    #[serde(default = "default_gc_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Upload sessions idle this long are removed with their bytes.
    #[serde(default = "default_upload_expiry", deserialize_with = "duration")]
    pub upload_expiry: Duration,
    /// How often every project's tag retention rules are applied ("0s":
    /// only on demand).
    #[serde(default = "default_gc_interval", deserialize_with = "duration")]
    pub retention_interval: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            grace_period: default_grace(),
            interval: default_gc_interval(),
            upload_expiry: default_upload_expiry(),
            retention_interval: default_gc_interval(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(3600)
}

fn default_gc_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_upload_expiry() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `[replication]`: copying to and from other registries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// The 32-byte key (raw, or 64 hex digits) that seals endpoint secrets.
    /// Unset on the embedded backend: `<data_dir>/replication.key`, made
    /// on first start (mode 0600). Required on etcd for endpoints with
    /// secrets: every node must have the same key.
    pub secret_key_file: Option<PathBuf>,
    /// Tasks at once on this node, all executions together.
    pub workers: usize,
    /// How often each node looks for pending tasks.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// The longest one attempt of a task may take.
    #[serde(deserialize_with = "duration")]
    pub task_timeout: Duration,
    /// Attempts of a task before it fails (with exponential backoff).
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each.
    #[serde(deserialize_with = "duration")]
    pub retry_backoff: Duration,
    /// Finished executions kept per policy.
    pub keep_executions: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            secret_key_file: None,
            workers: 4,
            poll_interval: Duration::from_secs(1),
            task_timeout: Duration::from_secs(3600),
            attempts: 3,
            retry_backoff: Duration::from_secs(2),
            keep_executions: 50,
        }
    }
}

/// `[proxy]`: proxy-cache projects (docs/proxy-cache.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// How long a tag's manifest is served without asking the upstream
    /// (a HEAD) whether it moved.
    #[serde(deserialize_with = "duration")]
    pub manifest_ttl: Duration,
    /// Transparent mirrors: a registry's host (as containerd's `ns=`
    /// names it; `docker.io` also for Docker's registry-mirrors) to the
    /// proxy project that serves it.
    pub mirrors: std::collections::HashMap<String, String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            manifest_ttl: Duration::from_secs(60),
            mirrors: std::collections::HashMap::new(),
        }
    }
}

/// "90s", "15m", "1h", "7d", or a combination such as "1h30m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {text:?}: use a number with s, m, h or d, such as \"1h\"");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (`berth cert self-signed` makes one).
    pub cert_file: PathBuf,
    /// PEM private key of the certificate.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether a system administrator pushing into a missing project
    /// creates it (private).
    #[serde(default = "yes")]
    pub admin_creates_projects: bool,
    /// Lifetime of issued tokens, in seconds.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// The `service` of the token challenge and the tokens' audience.
    #[serde(default = "default_service")]
    pub service: String,
    /// Clock difference between nodes tolerated when checking a token's
    /// validity period, in seconds.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_creates_projects: true,
            token_ttl_secs: default_token_ttl(),
            service: default_service(),
            clock_skew_secs: default_clock_skew(),
        }
    }
}

fn default_clock_skew() -> u64 {
    berth_auth::token::DEFAULT_LEEWAY_SECS
}

fn yes() -> bool {
    true
}

fn default_token_ttl() -> u64 {
    300
}

fn default_service() -> String {
    "berth".to_owned()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "lowercase")]
pub enum StorageConfig {
    /// Blobs on a local or shared POSIX filesystem.
    Filesystem {
        /// Defaults to `<data_dir>/blobs`.
        #[serde(default)]
        path: Option<PathBuf>,
        /// Where committed blobs live under `path`: berth's own layout, or
        /// CNCF Distribution's (`path` is then a Distribution's
        /// `rootdirectory`, served where it lies; see `berth import`).
        #[serde(default)]
        layout: berth_storage::BlobLayout,
    },
    /// Blobs in an S3-compatible object store (Ceph RGW, Garage, MinIO, AWS).
    S3(berth_storage::S3Config),
    #[default]
    #[serde(skip)]
    Default,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "lowercase")]
pub enum MetadataConfig {
    /// redb in one file.
    Embedded {
        /// Defaults to `<data_dir>/meta.redb`.
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// An etcd cluster shared by every node.
    Etcd(berth_meta::EtcdConfig),
    #[default]
    #[serde(skip)]
    Default,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000))
}

fn default_data() -> PathBuf {
    PathBuf::from("./berth-data")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            data_dir: default_data(),
            external_url: None,
            advertise_url: None,
            storage: StorageConfig::Default,
            metadata: MetadataConfig::Default,
            auth: AuthConfig::default(),
            tls: None,
            ldap: None,
            gc: GcConfig::default(),
            server: ServerConfig::default(),
            uploads: UploadsConfig::default(),
            replication: ReplicationConfig::default(),
            proxy: ProxyConfig::default(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        for (name, value) in [
            ("header_read_timeout", s.header_read_timeout),
            ("idle_timeout", s.idle_timeout),
            ("body_timeout", s.body_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("[server] {name} must be more than 0s"));
            }
        }
        if s.max_connections == 0 {
            return Err("[server] max_connections must be at least 1".into());
        }
        let r = &self.replication;
        if r.workers == 0 || r.attempts == 0 || r.poll_interval.is_zero() {
            return Err(
                "[replication] workers, attempts and poll_interval must be more than 0".into(),
            );
        }
        for (name, url) in [
            ("external_url", &self.external_url),
            ("advertise_url", &self.advertise_url),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "{name} must start with http:// or https://, got {url:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn blob_path(&self) -> PathBuf {
        match &self.storage {
            StorageConfig::Filesystem { path: Some(p), .. } => p.clone(),
            _ => self.data_dir.join("blobs"),
        }
    }

    /// `[storage] layout`: where committed blobs live in the store.
    pub fn blob_layout(&self) -> berth_storage::BlobLayout {
        match &self.storage {
            StorageConfig::Filesystem { layout, .. } => *layout,
            StorageConfig::S3(s3) => s3.layout,
            StorageConfig::Default => berth_storage::BlobLayout::Berth,
        }
    }

    pub fn metadata_path(&self) -> PathBuf {
        match &self.metadata {
            MetadataConfig::Embedded { path: Some(p) } => p.clone(),
            _ => self.data_dir.join("meta.redb"),
        }
    }

    /// `external_url` without a trailing slash, or "" for relative URLs.
    pub fn base_url(&self) -> String {
        self.external_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_server_or_uploads_section_keeps_the_other_defaults() {
        let c = Config::parse(
            "[server]\nidle_timeout = \"5m\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n[uploads]\nmax_per_account = 3\n",
        )
        .unwrap();
        let d = berth_http::server::Limits::default();
        let limits = c.server.limits();
        assert_eq!(limits.idle_timeout, Duration::from_secs(300));
        assert_eq!(limits.header_read_timeout, d.header_read_timeout);
        assert_eq!(limits.max_connections, d.max_connections);
        assert_eq!(c.server.trusted_proxies.len(), 1);
        assert_eq!(c.uploads.limits().per_account, 3);
        assert_eq!(
            c.uploads.limits().per_repository,
            berth_core::registry::UploadLimits::default().per_repository
        );
        assert!(Config::parse("[server]\nidle = \"5m\"\n").is_err());
        assert!(Config::parse("[uploads]\nmax = 1\n").is_err());
    }

    #[test]
    fn empty_config_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.blob_path(), PathBuf::from("./berth-data/blobs"));
        assert_eq!(c.metadata_path(), PathBuf::from("./berth-data/meta.redb"));
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            r#"
            listen = "0.0.0.0:8080"
            data_dir = "/var/lib/berth"
            external_url = "https://registry.example.com/"
            [storage]
            backend = "filesystem"
            path = "/mnt/cephfs/berth"
            [metadata]
            backend = "embedded"
            [auth]
            admin_creates_projects = false
            token_ttl_secs = 600
            service = "registry.example.com"
            "#,
        )
        .unwrap();
        assert_eq!(c.blob_path(), PathBuf::from("/mnt/cephfs/berth"));
        assert_eq!(c.metadata_path(), PathBuf::from("/var/lib/berth/meta.redb"));
        assert_eq!(c.base_url(), "https://registry.example.com");
        assert!(!c.auth.admin_creates_projects);
        assert_eq!(c.auth.token_ttl_secs, 600);
    }

    #[test]
    fn ldap_section() {
        let c = Config::parse(
            r#"
            [ldap]
            url = "ldaps://ldap.example.com"
            bind_dn = "cn=berth,dc=example,dc=com"
            bind_password = "x"
            base_dn = "ou=people,dc=example,dc=com"
            [[ldap.group_roles]]
            group = "devs"
            project = "team"
            role = "developer"
            "#,
        )
        .unwrap();
        let ldap = c.ldap.unwrap();
        assert_eq!(ldap.group_role_grants().len(), 1);
        assert!(
            Config::parse("[ldap]\nurl = \"ldap://x\"\nbase_dn = \"dc=x\"\nbogus = 1").is_err()
        );
    }

    #[test]
    fn cluster_config_in_the_documented_shape() {
        let c = Config::parse(
            r#"
            [metadata]
            backend = "etcd"
            endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]

            [storage]
            backend = "s3"
            endpoint = "http://rgw.example:7480"
            bucket = "berth"
            region = "us-east-1"
            access_key_id = "AK"
            secret_access_key = "SK"
            path_style = true
            "#,
        )
        .unwrap();
        assert!(matches!(&c.metadata, MetadataConfig::Etcd(e) if e.endpoints.len() == 3));
        assert!(matches!(&c.storage, StorageConfig::S3(s) if s.bucket == "berth"));
        assert!(Config::parse("[metadata]\nbackend = \"etcd\"\nendpoints = []\ntypo = 1").is_err());
    }

    #[test]
    fn shipped_example_configs_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/berth.toml");
        let text = std::fs::read_to_string(dir).unwrap();
        Config::parse(&text).unwrap();
    }

    #[test]
    fn storage_layout_is_berths_unless_distribution_is_asked_for() {
        use berth_storage::BlobLayout;
        assert_eq!(Config::parse("").unwrap().blob_layout(), BlobLayout::Berth);
        let c = Config::parse(
            "[storage]\nbackend = \"filesystem\"\npath = \"/var/lib/registry\"\nlayout = \"distribution\"",
        )
        .unwrap();
        assert_eq!(c.blob_layout(), BlobLayout::Distribution);
        assert_eq!(c.blob_path(), PathBuf::from("/var/lib/registry"));
        let c = Config::parse("[storage]\nbackend = \"filesystem\"").unwrap();
        assert_eq!(c.blob_layout(), BlobLayout::Berth);
        let c = Config::parse(
            "[storage]\nbackend = \"s3\"\nendpoint = \"http://s3:9000\"\nbucket = \"registry\"\nlayout = \"distribution\"",
        )
        .unwrap();
        assert_eq!(c.blob_layout(), BlobLayout::Distribution);
        assert!(Config::parse("[storage]\nbackend = \"filesystem\"\nlayout = \"harbor\"").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Config::parse("listn = \"x\"").is_err());
        assert!(Config::parse("[storage]\nbackend = \"filesystem\"\npth = \"/x\"").is_err());
        assert!(Config::parse("[storage]\nbackend = \"floppy\"").is_err());
        assert!(Config::parse("external_url = \"registry.example.com\"").is_err());
        assert!(Config::parse("advertise_url = \"10.0.0.2:5000\"").is_err());
    }
}
