//! The `berth` binary: command line, configuration and wiring. Everything
//! else lives in the library crates (oci, core, storage, meta, api). The
//! `user`, `project` and `robot` commands are clients of a running server's
//! management API (see `cli`).

mod cert;
mod cli;
mod cluster;
mod config;

use berth_core::Registry;
use berth_http::AppState;
use clap::{Parser, Subcommand};
use config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A highly available private container image registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(ServeArgs),
    /// Certificates for serving TLS.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Cluster tools.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage users of a running server.
    User {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::UserCommand,
    },
    /// Manage projects of a running server.
    Project {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::ProjectCommand,
    },
    /// Check that metadata and blobs agree (every blob's digest, every
    /// reference); exits non-zero when anything is wrong.
    Fsck {
        /// Data directory of an embedded registry (stop `berth serve` first).
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        data: Option<PathBuf>,
        /// Configuration file: checks the backends it names (etcd, S3), which
        /// may be in use.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Remove dangling entries (links, manifests, tags, referrer entries
        /// naming what does not exist).
        #[arg(long)]
        repair: bool,
        /// Skip re-hashing every blob (sizes are still checked).
        #[arg(long)]
        no_verify: bool,
    },
    /// Collect garbage on a running server now (or --dry-run, --history).
    Gc {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(flatten)]
        args: cli::GcArgs,
    },
    /// Manage robot accounts of a running server.
    Robot {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::RobotCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long, env = "BERTH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, env = "BERTH_DATA")]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Write a private CA and an ECDSA P-256 server certificate signed by it
    /// for the given names, and print how to make clients trust it.
    SelfSigned {
        /// DNS name clients use (repeatable).
        #[arg(long, required = true)]
        domain: Vec<String>,
        /// IP address clients use (repeatable).
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        /// Directory for ca.crt, cert.pem and key.pem.
        #[arg(long, default_value = "./berth-data/tls")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Show the live nodes, etcd's health and the blob storage's; exits
    /// non-zero when anything is unhealthy.
    Status {
        #[arg(long, env = "BERTH_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate a configuration file, then print the result.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

/// `berth config check ... | head` closes stdout before berth is done
/// printing. Rust ignores SIGPIPE, so `println!` then panics; exit quietly
/// instead, as a Unix tool killed by SIGPIPE would (status 141).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map_or("", String::as_str);
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Cert {
            command: CertCommand::SelfSigned { domain, ip, out },
        } => cert::self_signed(&domain, &ip, &out),
        Command::Cluster {
            command: ClusterCommand::Status { config },
        } => Config::load(&config).and_then(|c| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let status = runtime.block_on(cluster::status(&c));
            // A storage probe stuck in a hung file system (a CephFS with no
            // MDS) timed out above; do not wait for its thread on the way out.
            runtime.shutdown_background();
            status
        }),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => Config::load(&config).map(|c| println!("configuration OK: {c:#?}")),
        Command::User { conn, command } => cli::user(conn, command),
        Command::Project { conn, command } => cli::project(conn, command),
        Command::Robot { conn, command } => cli::robot(conn, command),
        Command::Gc { conn, args } => cli::gc(conn, args),
        Command::Fsck {
            data,
            config,
            repair,
            no_verify,
        } => {
            let loaded = match (config, data) {
                (Some(path), _) => Config::load(&path),
                (None, Some(dir)) => Ok(Config {
                    data_dir: dir,
                    ..Config::default()
                }),
                (None, None) => Err("give --data or --config".into()),
            };
            loaded.and_then(|c| fsck(c, !no_verify, repair))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// This machine's name, for humans reading who ran what.
fn node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
    let backends = open_backends(&config)?;
    if let Some(store) = backends.s3.clone() {
        abort_abandoned_multipart_uploads(store);
    }
    let (kv, blobs, etcd_membership) = (backends.kv, backends.blobs, backends.etcd);
    let registry = Registry::new(kv.clone(), blobs)
        .for_grace_period(config.gc.grace_period.as_secs())
        .with_upload_limits(config.uploads.limits());
    let locks: Arc<dyn berth_core::Locks> = match &etcd_membership {
        Some(etcd) => Arc::new(etcd.clone()),
        None => Arc::new(berth_core::LocalLocks::default()),
    };
    let gc = Arc::new(berth_core::registry::gc::Collector::new(
        registry.clone(),
        locks,
        node_name(),
        config.gc.grace_period.as_secs(),
        config.gc.upload_expiry.as_secs(),
    ));
    if !config.gc.interval.is_zero() {
        gc.clone().schedule(config.gc.interval);
    }
    if !config.gc.retention_interval.is_zero() {
        gc.clone().schedule_retention(config.gc.retention_interval);
    }
    let mut directory = berth_auth::Directory::new(kv.clone());
    if let Some(ldap) = &config.ldap {
        let grants = ldap.group_role_grants();
        let external = berth_auth::ldap::LdapDirectory::new(ldap.clone())
            .map_err(|e| format!("[ldap]: {e}"))?;
        directory = directory.with_external(Arc::new(external), grants);
    }
    let admin_password = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    match directory.ensure_admin(admin_password.as_deref()).await {
        Ok(Some(generated)) => {
            // Shown once, on the first start; only its argon2id hash is kept.
            println!("created user admin with password: {generated}");
            println!("(set BERTH_ADMIN_PASSWORD before the first start to choose it)");
        }
        Ok(None) => {}
        Err(e) => return Err(format!("creating the admin user: {e}")),
    }
    let mut tokens = berth_auth::token::TokenService::new(
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
    let mut auth =
        berth_http::auth::Auth::new(directory, tokens, realm, config.auth.admin_creates_projects);
    if config.tls.is_some() {
        auth.scheme = "https";
    }
    let audit = berth_auth::audit::AuditLog::start(kv);
    let state = AppState {
        registry,
        auth: Arc::new(auth),
        audit: audit.clone(),
        base_url: config.base_url().into(),
        gc,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some(etcd) = etcd_membership {
        cluster::register(etcd, addr.to_string(), config.base_url());
    }
    let tls = match &config.tls {
        Some(t) => Some(berth_http::tls::server_config(&t.cert_file, &t.key_file)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to learn the port of `--listen 127.0.0.1:0`.
    println!(
        "berth listening on {scheme}://{addr} (data in {})",
        config.data_dir.display()
    );
    tracing::info!(%addr, data = %config.data_dir.display(), "berth serving");
    let served = berth_http::server::serve(
        listener,
        router(state),
        tls,
        config.server.limits(),
        config.server.proxies(),
        shutdown_signal(),
    )
    .await;
    // The requests have finished; their audit events must not be lost.
    audit.flush().await;
    served.map_err(|e| format!("serving: {e}"))?;
    tracing::info!("berth stopped");
    Ok(())
}

/// The metadata and blob backends a configuration names.
struct Backends {
    kv: Arc<dyn berth_core::Kv>,
    blobs: Arc<dyn berth_core::BlobStore>,
    /// Set on etcd, for membership and locks.
    etcd: Option<berth_meta::EtcdKv>,
    /// Set on S3, for the multipart sweep.
    s3: Option<Arc<berth_storage::S3BlobStore>>,
}

fn open_backends(config: &Config) -> Result<Backends, String> {
    let mut s3 = None;
    let blobs: Arc<dyn berth_core::BlobStore> = match &config.storage {
        config::StorageConfig::S3(s3_config) => {
            let store = Arc::new(
                berth_storage::S3BlobStore::new(s3_config)
                    .map_err(|e| format!("[storage] s3: {e}"))?,
            );
            s3 = Some(store.clone());
            store
        }
        _ => Arc::new(
            berth_storage::FsBlobStore::open(config.blob_path()).map_err(|e| {
                format!(
                    "opening blob storage at {}: {e}",
                    config.blob_path().display()
                )
            })?,
        ),
    };
    // In a cluster, the node registers itself once it knows its address.
    let mut etcd_membership = None;
    let kv: Arc<dyn berth_core::Kv> = match &config.metadata {
        config::MetadataConfig::Etcd(etcd) => {
            let etcd = berth_meta::EtcdKv::new(etcd.clone())
                .map_err(|e| format!("[metadata] etcd: {e}"))?;
            etcd_membership = Some(etcd.clone());
            Arc::new(etcd)
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
        s3,
    })
}

/// `berth fsck`: checks (and with `repair` fixes) the metadata and blobs of
/// a data directory or of the backends of a configuration.
fn fsck(config: Config, verify: bool, repair: bool) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    if !matches!(config.metadata, config::MetadataConfig::Etcd(_))
        && !config.metadata_path().exists()
    {
        return Err(format!(
            "no registry metadata at {}",
            config.metadata_path().display()
        ));
    }
    runtime.block_on(async {
        let backends = open_backends(&config).map_err(|e| {
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
    })
}

/// A multipart upload older than this was abandoned by a node that died
/// mid-commit; S3 keeps (and bills) its parts until it is aborted.
const MULTIPART_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Every hour, aborts the bucket's abandoned multipart uploads. Any node may
/// do it: aborting twice is harmless.
fn abort_abandoned_multipart_uploads(store: Arc<berth_storage::S3BlobStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.abort_stale_multipart(MULTIPART_MAX_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(aborted = n, "aborted abandoned multipart uploads"),
                Err(e) => tracing::warn!(error = %e, "sweeping abandoned multipart uploads failed"),
            }
        }
    });
}

/// Every surface on one router: the registry (`/v2`, tokens, health), the
/// management API and, when built with it, the web UI.
fn router(state: AppState) -> axum::Router {
    let app = berth_registry_api::routes(state.clone()).merge(berth_mgmt::router(state.clone()));
    #[cfg(feature = "ui")]
    let app = app.merge(berth_ui::router());
    app.with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
