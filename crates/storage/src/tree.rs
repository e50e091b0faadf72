//! Readers of a CNCF Distribution storage tree (the
//! [`berth_core::import::Tree`] port), where Distribution's storage drivers
//! keep it: [`FsTree`] under a filesystem driver's `rootdirectory`,
//! [`S3Tree`] under an S3 driver's `rootdirectory` in a bucket. Both read
//! only; nothing is ever written to the tree through them.

use crate::fs::blocking;
use crate::fs::read::{open_range, read_stream, ReadMode};
use crate::layout::DISTRIBUTION_TREE;
use crate::s3::{S3Client, S3Config};
use async_trait::async_trait;
use berth_core::import::{FileRead, Tree};
use berth_core::{ByteStream, StoreError};
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};

/// A Distribution tree on a filesystem: `<root>/docker/registry/v2/`.
#[derive(Debug, Clone)]
pub struct FsTree {
    tree: PathBuf,
}

impl FsTree {
    /// The tree of the Distribution whose `rootdirectory` is `root`; an
    /// error when `root` holds none.
    pub fn open(root: &Path) -> io::Result<FsTree> {
        let tree = root.join(DISTRIBUTION_TREE);
        if !tree.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} holds no Distribution storage ({} is not a directory)",
                    root.display(),
                    tree.display()
                ),
            ));
        }
        Ok(FsTree { tree })
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.tree.join(relative)
    }
}

/// Entries of `dir`, none when it does not exist.
fn entries(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Every file under `dir`, relative to `base` (`/`-separated).
fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in entries(dir)? {
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(base, &path, out)?;
        } else if kind.is_file() {
            if let Some(rel) = path.strip_prefix(base).ok().and_then(Path::to_str) {
                out.push(rel.to_owned());
            }
        }
    }
    Ok(())
}

fn file_size(path: &Path) -> io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Tree for FsTree {
    async fn dirs(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path(dir);
        blocking(move || {
            let mut names = Vec::new();
            for entry in entries(&path)? {
                if entry.file_type()?.is_dir() {
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn files(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path(dir);
        blocking(move || {
            let mut out = Vec::new();
            walk(&path, &path, &mut out)?;
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(path);
        blocking(move || Ok(file_size(&path)?)).await
    }

    async fn read(&self, path: &str, max: u64) -> Result<FileRead, StoreError> {
        let path = self.path(path);
        blocking(move || {
            Ok(match file_size(&path)? {
                None => FileRead::Absent,
                Some(n) if n > max => FileRead::TooLarge(n),
                Some(_) => match std::fs::read(&path) {
                    Ok(data) if data.len() as u64 > max => FileRead::TooLarge(data.len() as u64),
                    Ok(data) => FileRead::Bytes(Bytes::from(data)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => FileRead::Absent,
                    Err(e) => return Err(e.into()),
                },
            })
        })
        .await
    }

    async fn stream(&self, path: &str, len: u64) -> Result<ByteStream, StoreError> {
        let path = self.path(path);
        let file = blocking(move || open_range(&path, 0, len)).await?;
        // Read into buffers, never mapped: the tree is not berth's, and a
        // file another process cuts short under a mapping is a SIGBUS.
        Ok(read_stream(ReadMode::Buffered, file, 0, len))
    }
}

/// A Distribution tree in a bucket: the keys under
/// `<rootdirectory>/docker/registry/v2/`.
#[derive(Debug, Clone)]
pub struct S3Tree {
    client: S3Client,
    /// `<rootdirectory>/docker/registry/v2/`, without a leading `/`.
    prefix: String,
}

impl S3Tree {
    /// The tree of the Distribution whose S3 driver has this bucket and
    /// `rootdirectory` (`config.prefix`), reached with `config`'s endpoint
    /// and credentials. Nothing is sent until the first read.
    pub fn new(config: &S3Config) -> io::Result<S3Tree> {
        let client = S3Client::new(config)?;
        Ok(S3Tree {
            client,
            prefix: format!("{}{DISTRIBUTION_TREE}", config.key_prefix()),
        })
    }

    fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }
}

/// The names of `listed` below `base`, relative to it and sorted; `name`
/// trims each, or drops it (`None`).
fn relative(base: &str, listed: &[String], name: impl Fn(&str) -> Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = listed
        .iter()
        .filter_map(|l| name(l.strip_prefix(base)?))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[async_trait]
impl Tree for S3Tree {
    async fn dirs(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let base = self.key(dir);
        let prefixes = self.client.list_dirs(&base).await?;
        Ok(relative(&base, &prefixes, |p| {
            let name = p.trim_end_matches('/');
            (!name.is_empty()).then_some(name)
        }))
    }

    async fn files(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let base = self.key(dir);
        let keys = self.client.list_keys(&base).await?;
        Ok(relative(&base, &keys, |k| Some(k)))
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        self.client.head_object(&self.key(path)).await
    }

    async fn read(&self, path: &str, max: u64) -> Result<FileRead, StoreError> {
        Ok(match self.client.get_small(&self.key(path), max).await? {
            None => FileRead::Absent,
            Some(Err(size)) => FileRead::TooLarge(size),
            Some(Ok(data)) => FileRead::Bytes(data),
        })
    }

    async fn stream(&self, path: &str, len: u64) -> Result<ByteStream, StoreError> {
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        self.client.get_range(&self.key(path), 0, len).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn reads_a_distribution_tree_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FsTree::open(dir.path()).is_err(), "no tree there");
        let tree_dir = dir.path().join(DISTRIBUTION_TREE);
        let link = tree_dir.join("repositories/a/b/_layers/sha256/00/link");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::fs::write(&link, "x").unwrap();
        std::fs::create_dir_all(tree_dir.join("repositories/a/b/_manifests")).unwrap();
        std::fs::write(tree_dir.join("repositories/a/big"), vec![7u8; 100]).unwrap();
        let tree = FsTree::open(dir.path()).unwrap();

        assert_eq!(tree.dirs("repositories/").await.unwrap(), ["a"]);
        assert_eq!(
            tree.dirs("repositories/a/b/").await.unwrap(),
            ["_layers", "_manifests"]
        );
        assert!(tree.dirs("repositories/none/").await.unwrap().is_empty());
        assert_eq!(
            tree.files("repositories/a/b/_layers/").await.unwrap(),
            ["sha256/00/link"]
        );
        assert!(tree.files("nowhere/").await.unwrap().is_empty());
        assert_eq!(tree.size("repositories/a/big").await.unwrap(), Some(100));
        assert_eq!(tree.size("repositories/a").await.unwrap(), None);
        assert_eq!(
            tree.read("repositories/a/big", 99).await.unwrap(),
            FileRead::TooLarge(100)
        );
        assert_eq!(
            tree.read("repositories/a/missing", 99).await.unwrap(),
            FileRead::Absent
        );
        let FileRead::Bytes(data) = tree.read("repositories/a/big", 100).await.unwrap() else {
            panic!("not read");
        };
        assert_eq!(data.len(), 100);
        let stream = tree.stream("repositories/a/big", 100).await.unwrap();
        let chunks: Vec<Bytes> = futures_util::TryStreamExt::try_collect(stream)
            .await
            .unwrap();
        assert_eq!(chunks.concat(), vec![7u8; 100]);
    }
}
