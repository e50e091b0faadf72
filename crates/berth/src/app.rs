//! The application a configuration describes, built in one place for the
//! binary and for in-process tests.

use crate::backends::Backends;
use crate::cluster;
use crate::config::Config;
use berth_auth::audit::AuditLog;
use berth_auth::token::TokenService;
use berth_auth::Directory;
use berth_core::events::Dispatcher;
use berth_core::registry::gc::Collector;
use berth_core::{Kv, Registry};
use berth_http::auth::Auth;
use berth_http::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// berth built from a validated [`Config`]: the state every handler
/// reaches, the router over it, and what a serving node runs beside it.
///
/// ```text
/// let app = App::build(&config, admin_password).await?;
/// let listener = app.bind().await?;
/// let background = app.start_background(listener.local_addr()?);
/// app.serve(listener, shutdown).await?;
/// background.stop();
/// ```
pub struct App {
    /// The registry, the auth checks, the audit log and the collector.
    pub state: AppState,
    /// The `admin` user's password when this start created the user
    /// without one being given: generated, and to be shown once (only its
    /// argon2id hash is kept).
    pub generated_admin_password: Option<String>,
    kv: Arc<dyn Kv>,
    /// Cluster-wide locks (etcd leases, or in memory on one node).
    locks: Arc<dyn berth_core::Locks>,
    /// Set on etcd metadata: the node registers itself there.
    etcd: Option<berth_meta::EtcdKv>,
    /// The watched copy of etcd's metadata that reads come from, if any.
    cache: Option<berth_meta::WatchCache>,
    /// Set on S3 storage: abandoned multipart uploads are swept.
    s3: Option<Arc<berth_storage::S3BlobStore>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: Config,
}

impl App {
    /// Opens the backends `config` names (creating `data_dir`), and builds
    /// the registry, the user directory (with LDAP when configured), the
    /// token service and the audit log over them. The `admin` user is
    /// created on the first start, with `admin_password` or else a
    /// generated one ([`App::generated_admin_password`]). Starts nothing
    /// but the audit log's writer: see [`App::start_background`].
    pub async fn build(config: &Config, admin_password: Option<&str>) -> Result<App, String> {
        // Everything that can fail comes before the admin user is created:
        // a generated password must not be lost to a failed start.
        let tls = match &config.tls {
            Some(t) => Some(berth_http::tls::server_config(&t.cert_file, &t.key_file)?),
            None => None,
        };
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
        let Backends {
            kv,
            blobs,
            etcd,
            cache,
            s3,
        } = Backends::open(config, true)?;
        let registry = Registry::new(kv.clone(), blobs)
            .for_grace_period(config.gc.grace_period.as_secs())
            .with_upload_limits(config.uploads.limits());
        let locks: Arc<dyn berth_core::Locks> = match &etcd {
            Some(etcd) => Arc::new(etcd.clone()),
            None => Arc::new(berth_core::LocalLocks::default()),
        };
        let gc = Arc::new(Collector::new(
            registry.clone(),
            locks.clone(),
            cluster::node_name(),
            config.gc.grace_period.as_secs(),
            config.gc.upload_expiry.as_secs(),
        ));
        let mut directory = Directory::new(kv.clone());
        if let Some(ldap) = &config.ldap {
            let grants = ldap.group_role_grants();
            let external = berth_auth::ldap::LdapDirectory::new(ldap.clone())
                .map_err(|e| format!("[ldap]: {e}"))?;
            directory = directory.with_external(Arc::new(external), grants);
        }
        let generated_admin_password = directory
            .ensure_admin(admin_password)
            .await
            .map_err(|e| format!("creating the admin user: {e}"))?;
        let mut tokens = TokenService::new(
            kv.clone(),
            "berth",
            config.auth.service.clone(),
            config.auth.token_ttl_secs,
        );
        tokens.leeway_secs = config.auth.clock_skew_secs;
        let realm = config
            .external_url
            .as_ref()
            .map(|_| format!("{}/service/token", config.base_url()));
        let mut auth = Auth::new(directory, tokens, realm, config.auth.admin_creates_projects);
        if tls.is_some() {
            auth.scheme = "https";
        }
        let replication = Arc::new(replication(config, &kv, &registry, &locks, etcd.is_some())?);
        let proxy = Arc::new(berth_proxy::Proxy::new(
            kv.clone(),
            registry.clone(),
            replication.clone(),
            locks.clone(),
            format!("{}-{}", cluster::node_name(), std::process::id()),
            berth_proxy::Settings {
                manifest_ttl: config.proxy.manifest_ttl,
                mirrors: config.proxy.mirrors.clone(),
                ..berth_proxy::Settings::default()
            },
        ));
        let state = AppState {
            registry,
            auth: Arc::new(auth),
            audit: AuditLog::start(kv.clone()),
            base_url: config.base_url().into(),
            gc,
            replication,
            proxy,
        };
        Ok(App {
            state,
            generated_admin_password,
            kv,
            locks,
            etcd,
            cache,
            s3,
            tls,
            config: config.clone(),
        })
    }

    /// The metadata store itself, for records no API writes (tests seed a
    /// cluster node's record with it).
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// Every surface on one router: the registry (`/v2`, tokens, health),
    /// the management API and, when built with it, the web UI.
    pub fn router(&self) -> axum::Router {
        let state = self.state.clone();
        let app =
            berth_registry_api::routes(state.clone()).merge(berth_mgmt::router(state.clone()));
        #[cfg(feature = "ui")]
        let app = app.merge(berth_ui::router());
        app.with_state(state)
            .layer(axum::middleware::from_fn(one_reader))
    }

    /// A listener on the configured `listen` address (port 0: any free one).
    pub async fn bind(&self) -> Result<TcpListener, String> {
        let listen = self.config.listen;
        TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listening on {listen}: {e}"))
    }

    /// "https" when berth terminates TLS itself, else "http".
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Starts what a serving node runs beside its requests (once per
    /// application): the scheduled garbage collection and retention, the
    /// sweep of abandoned S3 multipart uploads, and, on etcd, this node's
    /// membership record naming `addr`, the address it listens on.
    pub fn start_background(&self, addr: SocketAddr) -> Background {
        let mut tasks = Vec::new();
        if let Some(store) = self.s3.clone() {
            tasks.push(abort_abandoned_multipart_uploads(store));
        }
        let gc = &self.config.gc;
        if !gc.interval.is_zero() {
            tasks.push(self.state.gc.clone().schedule(gc.interval));
        }
        if !gc.retention_interval.is_zero() {
            tasks.push(
                self.state
                    .gc
                    .clone()
                    .schedule_retention(gc.retention_interval),
            );
        }
        // The outbox of committed changes, drained on one node at a time.
        let outbox = Dispatcher::new(
            self.state.registry.clone(),
            self.locks.clone(),
            cluster::node_name(),
        );
        // Replication: push policies with event triggers follow the outbox;
        // every node runs task workers and the cron scheduler.
        let replication = self.state.replication.clone();
        let outbox = outbox.subscribe(Arc::new(berth_replication::EventTrigger(
            replication.clone(),
        )));
        tasks.extend(replication.start());
        tasks.push(outbox.run(OUTBOX_INTERVAL));
        if let Some(etcd) = self.etcd.clone() {
            let advertise = self.advertise_url(addr);
            match berth_net::client_builder(&berth_net::TlsClient::default(), "peer").and_then(
                |b| {
                    b.connect_timeout(PEER_CONNECT_TIMEOUT)
                        .read_timeout(PEER_READ_TIMEOUT)
                        .build()
                        .map_err(|e| e.to_string())
                },
            ) {
                Ok(client) => self.state.proxy.enable_peers(berth_proxy::Peers {
                    url: advertise.clone(),
                    client,
                }),
                Err(e) => tracing::warn!(error = %e, "no client for the other nodes"),
            }
            tasks.push(cluster::register(
                etcd,
                self.cache.clone(),
                addr.to_string(),
                self.config.base_url(),
                advertise.unwrap_or_default(),
            ));
        }
        Background { tasks }
    }

    /// How the other nodes of the cluster reach this one: `advertise_url`,
    /// else the address it listens on unless that is unspecified.
    fn advertise_url(&self, addr: SocketAddr) -> Option<String> {
        match &self.config.advertise_url {
            Some(url) => Some(url.trim_end_matches('/').to_owned()),
            None if addr.ip().is_unspecified() => None,
            None => Some(format!("{}://{addr}", self.scheme())),
        }
    }

    /// Serves the router on `listener` (over TLS when configured, with the
    /// `[server]` limits and trusted proxies) until `shutdown` completes,
    /// lets in-flight requests finish, and writes out their audit events.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let served = berth_http::server::serve(
            listener,
            self.router(),
            self.tls.clone(),
            self.config.server.limits(),
            self.config.server.proxies(),
            shutdown,
        )
        .await;
        // The requests have finished; their audit events must not be lost.
        self.state.audit.flush().await;
        served.map_err(|e| format!("serving: {e}"))
    }
}

impl App {
    /// Binds the configured address and serves on a task of its own (no
    /// background tasks): for tests and tools that drive the application
    /// in-process and stop it with [`Serving::stop`].
    pub async fn spawn(self) -> Result<Serving, String> {
        let listener = self.bind().await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(Serving { addr, stop, task })
    }
}

/// The replication service `config` describes. The key that seals endpoint
/// secrets comes from `[replication] secret_key_file`; on the embedded
/// backend, without one, from `<data_dir>/replication.key`, made once. On
/// etcd there is no default (each node would make its own): without a
/// configured key, endpoints with secrets are refused.
fn replication(
    config: &Config,
    kv: &Arc<dyn Kv>,
    registry: &Registry,
    locks: &Arc<dyn berth_core::Locks>,
    clustered: bool,
) -> Result<berth_replication::Replication, String> {
    use berth_replication::SecretKey;
    let r = &config.replication;
    let key = match (&r.secret_key_file, clustered) {
        (Some(path), _) => Some(SecretKey::read(path).map_err(|e| format!("[replication]: {e}"))?),
        (None, false) => Some(
            SecretKey::read_or_create(&config.data_dir.join("replication.key"))
                .map_err(|e| format!("[replication]: {e}"))?,
        ),
        (None, true) => None,
    };
    let settings = berth_replication::Settings {
        workers: r.workers,
        poll_interval: r.poll_interval,
        task_timeout: r.task_timeout,
        attempts: r.attempts,
        backoff: r.retry_backoff,
        keep_executions: r.keep_executions,
        work_dir: config.data_dir.clone(),
    };
    // Host and process: nodes in containers may share a host name, and a
    // task's record says which process runs it.
    let node = format!("{}-{}", cluster::node_name(), std::process::id());
    Ok(berth_replication::Replication::new(
        kv.clone(),
        registry.clone(),
        locks.clone(),
        node,
        key,
        settings,
    ))
}

/// Each request is one reader of the metadata (`berth_core::kv::read_scope`):
/// on etcd's watch cache its reads ask etcd's revision once, not each.
async fn one_reader(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    berth_core::kv::read_scope(next.run(request)).await
}

/// An application serving on a task of its own: [`App::spawn`].
pub struct Serving {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

impl Serving {
    /// Stops accepting, lets in-flight requests finish; what serving
    /// returned.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| format!("serving: {e}"))?
    }
}

/// The background tasks [`App::start_background`] started; stopped by
/// [`Background::stop`] or when dropped.
#[must_use = "dropping the handle stops the background tasks"]
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How often the outbox of committed changes is drained: the delay
/// between a push and the replication it triggers.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(1);

/// How long a node waits to connect to another (reading its proxy fetch)
/// and for each of its reads, before it falls back to waiting for the
/// stored blob.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A multipart upload older than this was abandoned by a node that died
/// mid-commit; S3 keeps (and bills) its parts until it is aborted.
const MULTIPART_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Every hour, aborts the bucket's abandoned multipart uploads. Any node may
/// do it: aborting twice is harmless.
fn abort_abandoned_multipart_uploads(store: Arc<berth_storage::S3BlobStore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.abort_stale_multipart(MULTIPART_MAX_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(aborted = n, "aborted abandoned multipart uploads"),
                Err(e) => tracing::warn!(error = %e, "sweeping abandoned multipart uploads failed"),
            }
        }
    })
}
