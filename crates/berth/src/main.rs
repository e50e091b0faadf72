//! The `berth` binary: the command line. Serving, `fsck`, `import` and
//! `cluster status` are the berth library's (see `lib.rs`: the configuration and the
//! wiring); the `user`, `project`, `robot` and `gc` commands are clients of
//! a running server's management API (see `cli`).

mod cert;
mod cli;

use berth::{cluster, App, Config};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Take over a CNCF Distribution (or Harbor) registry's storage: build
    /// berth's metadata for its repositories, manifests, tags and blobs.
    /// Stop the old registry (or make it read-only) first. Rerun it after
    /// a crash; a second run changes nothing. See docs/migration.md.
    Import(ImportCommand),
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
    /// Replicate to and from other registries on a running server:
    /// endpoints, policies, runs and executions.
    Replication {
        #[command(flatten)]
        conn: cli::Connection,
        #[command(subcommand)]
        command: cli::ReplicationCommand,
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
    /// How the other nodes of a cluster reach this one (overrides
    /// `advertise_url`).
    #[arg(long, env = "BERTH_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, env = "BERTH_DATA")]
    data: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ImportCommand {
    /// Configuration file of the berth that will serve the import (its
    /// metadata and blob storage).
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, env = "BERTH_DATA")]
    data: Option<PathBuf>,
    /// The Distribution's storage: its `rootdirectory` (a directory), or
    /// `s3://<bucket>[/<rootdirectory>]` reached with the endpoint and
    /// credentials of `[storage]`. Default: the configured storage itself,
    /// which needs `layout = "distribution"`; its blobs are adopted in
    /// place (no byte copied). Blobs from anywhere else are copied.
    #[arg(long)]
    from: Option<String>,
    /// Re-hash every blob adopted in place (copied blobs are always
    /// verified); without it, existence and sizes are checked.
    #[arg(long)]
    verify: bool,
    /// Create missing projects public (default: private).
    #[arg(long)]
    public: bool,
    /// Blobs and manifests handled at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
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
        Command::Replication { conn, command } => cli::replication(conn, command),
        Command::Import(args) => import(args),
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
            loaded
                .and_then(|c| multi_thread_runtime()?.block_on(berth::fsck(&c, !no_verify, repair)))
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn multi_thread_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
}

/// The configuration at `path` (the defaults without one), with `data`
/// for its data directory if given.
fn config_with(path: Option<&Path>, data: Option<PathBuf>) -> Result<Config, String> {
    let mut config = match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(data) = data {
        config.data_dir = data;
    }
    Ok(config)
}

fn import(cmd: ImportCommand) -> Result<(), String> {
    let config = config_with(cmd.config.as_deref(), cmd.data)?;
    let args = berth::ImportArgs {
        from: cmd.from,
        verify: cmd.verify,
        public: cmd.public,
        jobs: cmd.jobs,
    };
    multi_thread_runtime()?
        .block_on(berth::import(&config, &args))
        .map(drop)
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = config_with(args.config.as_deref(), args.data)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(url) = args.advertise_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--advertise-url must start with http:// or https://, got {url:?}"
            ));
        }
        config.advertise_url = Some(url);
    }
    multi_thread_runtime()?.block_on(run(config))
}

async fn run(config: Config) -> Result<(), String> {
    let admin_password = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let app = App::build(&config, admin_password.as_deref()).await?;
    if let Some(generated) = &app.generated_admin_password {
        // Shown once, on the first start; only its argon2id hash is kept.
        println!("created user admin with password: {generated}");
        println!("(set BERTH_ADMIN_PASSWORD before the first start to choose it)");
    }
    let listener = app.bind().await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let background = app.start_background(addr);
    // Tests and scripts read this line to learn the port of `--listen 127.0.0.1:0`.
    println!(
        "berth listening on {}://{addr} (data in {})",
        app.scheme(),
        config.data_dir.display()
    );
    tracing::info!(%addr, data = %config.data_dir.display(), "berth serving");
    let served = app.serve(listener, shutdown_signal()).await;
    background.stop();
    served?;
    tracing::info!("berth stopped");
    Ok(())
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
