//! `berth import`: takes over a CNCF Distribution (or Harbor) registry's
//! storage. The application is built from the configuration as `berth
//! serve` builds it ([`App::build`]), so the metadata lands where the
//! server will read it; the domain's importer ([`berth_core::import`])
//! reads the Distribution tree, here on a filesystem or in a bucket, and
//! the projects it fills are created in the auth directory.

use crate::app::App;
use crate::config::{Config, StorageConfig};
use async_trait::async_trait;
use berth_auth::directory::DirectoryError;
use berth_auth::Directory;
use berth_core::import::{ImportOptions, ImportReport, Importer, Projects, Tree};
use berth_storage::tree::{FsTree, S3Tree};
use berth_storage::BlobLayout;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `berth import` was asked to do.
#[derive(Clone, Debug)]
pub struct ImportArgs {
    /// The Distribution's storage: its `rootdirectory` on a filesystem, or
    /// `s3://<bucket>[/<rootdirectory>]` reached with `[storage]`'s S3
    /// endpoint and credentials. `None`: the configured storage itself.
    pub from: Option<String>,
    pub verify: bool,
    /// Projects the import creates are public (else private).
    pub public: bool,
    pub jobs: usize,
}

/// Where the Distribution tree is, and whether it is berth's own blob
/// store (then its blobs are adopted in place).
struct Source {
    tree: Box<dyn Tree>,
    in_place: bool,
    describe: String,
}

/// Runs the import, printing progress to standard error and the report to
/// standard output. `Err` when the import could not run, or when anything
/// failed (rather than being skipped for what the source holds): a rerun
/// continues where it stopped.
pub async fn import(config: &Config, args: &ImportArgs) -> Result<ImportReport, String> {
    let source = source(config, args.from.as_deref())?;
    let admin_password = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let app = App::build(config, admin_password.as_deref())
        .await
        .map_err(|e| {
            if e.starts_with("opening metadata") {
                format!(
                    "{e}\n(an embedded data directory must not be in use: stop berth serve first)"
                )
            } else {
                e
            }
        })?;
    if let Some(generated) = &app.generated_admin_password {
        println!("created user admin with password: {generated}");
        println!("(set BERTH_ADMIN_PASSWORD before the first start to choose it)");
    }
    eprintln!(
        "importing {} ({})",
        source.describe,
        if source.in_place {
            "in place: blobs are adopted where they lie, none copied"
        } else {
            "copying: blobs are streamed into berth's storage and verified"
        }
    );
    let projects = DirectoryProjects {
        directory: &app.state.auth.directory,
        public: args.public,
    };
    let options = ImportOptions {
        verify: args.verify,
        in_place: source.in_place,
        jobs: args.jobs.max(1),
    };
    let registry = &app.state.registry;
    let importer = Importer::new(registry, source.tree.as_ref(), &projects, options);
    let progress = importer.progress();
    // On a terminal one line is rewritten in place; into a file or a pipe
    // a line a second at most, only when something moved.
    let tty = std::io::stderr().is_terminal();
    let shown = tokio::spawn(async move {
        let mut last = String::new();
        let every = if tty { 250 } else { 1000 };
        let mut tick = tokio::time::interval(Duration::from_millis(every));
        loop {
            tick.tick().await;
            let line = if progress.repositories.total() == 0 {
                "listing the repositories".to_owned()
            } else {
                progress.line()
            };
            if line != last {
                if tty {
                    eprint!("\r\x1b[Kimport: {line}");
                } else {
                    eprintln!("import: {line}");
                }
                last = line;
            }
        }
    });
    let ran = importer.run().await;
    shown.abort();
    let report = ran.map_err(|e| format!("import of {}: {e}", source.describe))?;
    if tty {
        eprint!("\r\x1b[K");
    }
    eprintln!("import: {}", importer.progress().line());
    print!("{report}");
    if !report.failures.is_empty() {
        return Err(format!(
            "{} failures (see above): run berth import again to finish",
            report.failures.len()
        ));
    }
    if report.nothing_new() {
        println!("nothing new: everything importable was in berth already");
    }
    Ok(report)
}

/// The tree `from` names, or the configured storage.
fn source(config: &Config, from: Option<&str>) -> Result<Source, String> {
    let layout = config.blob_layout();
    let Some(from) = from else {
        if layout != BlobLayout::Distribution {
            return Err(
                "no --from given, and [storage] layout is not \"distribution\": \
                 give the Distribution's storage with --from (to copy it), or configure \
                 berth on it with layout = \"distribution\" (to import it in place)"
                    .into(),
            );
        }
        return Ok(match &config.storage {
            StorageConfig::S3(s3) => Source {
                tree: Box::new(S3Tree::new(s3).map_err(|e| format!("[storage] s3: {e}"))?),
                in_place: true,
                describe: format!("s3://{}/{}", s3.bucket, s3.prefix.trim_matches('/')),
            },
            _ => fs_source(&config.blob_path(), true)?,
        });
    };
    if let Some(rest) = from.strip_prefix("s3://") {
        let StorageConfig::S3(storage) = &config.storage else {
            return Err(format!(
                "--from {from}: an S3 source is reached with the endpoint and credentials \
                 of [storage] backend = \"s3\", and this configuration has none"
            ));
        };
        let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "--from {from}: want s3://<bucket>[/<rootdirectory>]"
            ));
        }
        let mut tree_config = storage.clone();
        tree_config.bucket = bucket.to_owned();
        tree_config.prefix = root.to_owned();
        let in_place = layout == BlobLayout::Distribution
            && storage.bucket == bucket
            && storage.prefix.trim_matches('/') == root.trim_matches('/');
        return Ok(Source {
            tree: Box::new(S3Tree::new(&tree_config).map_err(|e| format!("--from {from}: {e}"))?),
            in_place,
            describe: from.to_owned(),
        });
    }
    let path = PathBuf::from(from);
    let same_place =
        !matches!(config.storage, StorageConfig::S3(_)) && same_dir(&path, &config.blob_path());
    if same_place && layout != BlobLayout::Distribution {
        eprintln!(
            "note: {from} is berth's own blob directory, in berth's layout: the blobs will be \
             copied beside Distribution's (set layout = \"distribution\" to adopt them in place)"
        );
    }
    fs_source(&path, same_place && layout == BlobLayout::Distribution)
}

fn fs_source(root: &Path, in_place: bool) -> Result<Source, String> {
    let tree = FsTree::open(root).map_err(|e| e.to_string())?;
    Ok(Source {
        tree: Box::new(tree),
        in_place,
        describe: root.display().to_string(),
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Projects in the auth directory, created when missing.
struct DirectoryProjects<'a> {
    directory: &'a Directory,
    public: bool,
}

#[async_trait]
impl Projects for DirectoryProjects<'_> {
    async fn ensure(&self, project: &str) -> Result<bool, String> {
        let exists = self
            .directory
            .project(project)
            .await
            .map_err(|e| e.to_string())?;
        if exists.is_some() {
            return Ok(false);
        }
        match self.directory.create_project(project, self.public).await {
            Ok(_) => {
                tracing::debug!(project, public = self.public, "project created by import");
                Ok(true)
            }
            Err(DirectoryError::Exists(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}
