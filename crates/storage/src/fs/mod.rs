//! The filesystem [`BlobStore`]: owns every file under its root directory,
//! committed blobs and uploads in progress alike. Several processes (nodes)
//! may share the root over CephFS or NFS; correctness rests on the directory
//! alone, never on in-process state.
//!
//! ```text
//! <root>/
//! ├── blobs/
//! │   └── sha256/
//! │       └── ab/
//! │           └── ab12…ef        committed blob, named by its hex digest
//! ├── uploads/
//! │   └── <id>                   bytes of an upload in progress
//! └── tmp/
//!     └── <uuid>                 a `put` being written, renamed when complete
//! ```
//!
//! With [`BlobLayout::Distribution`], committed blobs live at
//! `<root>/docker/registry/v2/blobs/sha256/ab/ab12…ef/data` instead, where
//! a CNCF Distribution registry with `rootdirectory = <root>` keeps them;
//! `uploads/` and `tmp/` stay, on the same filesystem, so commits are
//! still renames.
//!
//! A blob appears only by `rename(2)` of a complete, fsynced file, so a
//! reader on any node sees all of it or nothing. Files left in `tmp/` by a
//! process that crashed mid-`put` are garbage; nothing reads them. Once
//! in `blobs/`, a file is never written or truncated in place, which is
//! what lets pulls map it ([`read`]).

pub(crate) mod read;

use crate::layout::BlobLayout;
use async_trait::async_trait;
use berth_core::blob::check_upload_id;
use berth_core::{BlobStore, ByteStream, StoreError, UploadWriter};
use berth_oci::Digest;
use bytes::Bytes;
use read::{open_range, read_stream, ReadMode};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Unit of reads, and the buffer of upload writes: large enough that
/// syscalls are cheap next to the bytes they move, small enough to keep many
/// concurrent transfers in bounded memory.
const CHUNK: usize = 256 * 1024;

/// Chunks queued between an upload's request and its writer thread: enough
/// to keep the disk busy while the network delivers the next ones.
const WRITE_QUEUE: usize = 4;

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    read_mode: ReadMode,
    layout: BlobLayout,
}

impl FsBlobStore {
    /// Opens the store at `root` in berth's layout, creating its
    /// directories as needed.
    pub fn open(root: PathBuf) -> io::Result<Self> {
        Self::open_with_layout(root, BlobLayout::Berth)
    }

    /// Opens the store at `root` with committed blobs in `layout`.
    pub fn open_with_layout(root: PathBuf, layout: BlobLayout) -> io::Result<Self> {
        for dir in [layout.blobs_dir(), "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let read_mode = ReadMode::for_root(&root);
        Ok(FsBlobStore {
            root,
            read_mode,
            layout,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> BlobLayout {
        self.layout
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(self.layout.blob_path(digest))
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        check_upload_id(id)?;
        Ok(self.root.join("uploads").join(id))
    }
}

/// Runs blocking filesystem work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(format!("blocking task failed: {e}")))?
}

/// Makes a directory's entries (a rename into it, a new subdirectory)
/// durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some network and FUSE filesystems refuse fsync on a directory;
        // their renames are durable on the server already.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Creates the fan-out directory of a blob path, syncing its parent when the
/// directory is new so the blob's path survives a crash, not only its bytes.
fn ensure_parent(path: &Path) -> io::Result<&Path> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("blob path without parent"))?;
    if parent.is_dir() {
        return Ok(parent);
    }
    // In Distribution's layout each blob has a directory of its own, so
    // two levels may be new: every new one's entry must be made durable.
    let mut missing = Vec::new();
    let mut dir = parent;
    while !dir.is_dir() {
        missing.push(dir);
        dir = match dir.parent() {
            Some(up) => up,
            None => break,
        };
    }
    std::fs::create_dir_all(parent)?;
    for new in missing.iter().rev() {
        if let Some(up) = new.parent() {
            sync_dir(up)?;
        }
    }
    Ok(parent)
}

/// Renames the complete file `from` to the blob path `to`, creating its
/// directory and making the rename durable. In Distribution's layout a
/// delete of the same digest removes the blob's directory, which may
/// happen between creating it and the rename: then it is made again.
fn rename_into(from: &Path, to: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        let parent = ensure_parent(to)?;
        match std::fs::rename(from, to) {
            Ok(()) => return sync_dir(parent),
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 && from.exists() => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes a blob file and, where each blob has a directory of its own,
/// that directory when it is empty (a concurrent commit into it keeps it,
/// or makes it again: see [`rename_into`]).
fn remove_blob(path: &Path, dir_per_blob: bool) -> io::Result<()> {
    remove_if_present(path)?;
    if dir_per_blob {
        if let Some(dir) = path.parent() {
            // Not empty, or gone already: either way nothing to do.
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn put_blocking(tmp_dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    // A unique name: other nodes may be putting the same digest right now.
    let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        rename_into(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn commit_blocking(upload: &Path, blob: &Path, size: u64) -> Result<(), StoreError> {
    if blob.is_file() {
        // Content-addressed: the bytes there are the bytes of this upload.
        return Ok(remove_if_present(upload)?);
    }
    let file = OpenOptions::new().write(true).open(upload)?;
    let len = file.metadata()?.len();
    if len < size {
        // The bytes the caller recorded are gone: as lost as a missing upload.
        return Err(StoreError::NotFound);
    }
    if len > size {
        file.set_len(size)?;
    }
    file.sync_all()?;
    drop(file);
    // Another node may commit the same digest concurrently; rename replaces
    // atomically and both files hold the same bytes.
    Ok(rename_into(upload, blob)?)
}

/// Opens an upload for writing at `offset`, cutting what lies past it.
fn open_upload(path: &Path, offset: u64) -> Result<File, StoreError> {
    let mut file = if offset == 0 {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?
    } else {
        OpenOptions::new().write(true).open(path)?
    };
    let len = file.metadata()?.len();
    if len < offset {
        return Err(StoreError::NotFound);
    }
    if len > offset {
        file.set_len(offset)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Body of an upload's writer thread. `abort` is set when the writer is
/// dropped without `finish`: the request died, its progress will not be
/// recorded, so queued bytes are dropped rather than written after a
/// successor may already have truncated the file.
fn write_loop(file: File, mut rx: mpsc::Receiver<Bytes>, abort: Arc<AtomicBool>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(CHUNK, file);
    while let Some(chunk) = rx.blocking_recv() {
        if abort.load(Ordering::Acquire) {
            break;
        }
        out.write_all(&chunk)?;
    }
    if abort.load(Ordering::Acquire) {
        let _ = out.into_parts();
        return Ok(());
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_data()
}

struct FsUploadWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    abort: Arc<AtomicBool>,
    /// The writer thread's failure, kept to answer every later call.
    failed: Option<String>,
}

impl FsUploadWriter {
    /// Starts the writer thread on `file`, positioned where writes go.
    fn spawn(file: File) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let thread_abort = abort.clone();
        let thread = tokio::task::spawn_blocking(move || write_loop(file, rx, thread_abort));
        FsUploadWriter {
            tx: Some(tx),
            thread: Some(thread),
            abort,
            failed: None,
        }
    }

    /// Waits for the writer thread and returns its outcome.
    async fn join(&mut self) -> Result<(), StoreError> {
        if let Some(msg) = &self.failed {
            return Err(StoreError::Io(msg.clone()));
        }
        let Some(thread) = self.thread.take() else {
            return Err(StoreError::Io("upload writer already closed".into()));
        };
        let outcome = match thread.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("upload writer thread failed: {e}"),
        };
        self.failed = Some(outcome.clone());
        Err(StoreError::Io(outcome))
    }
}

#[async_trait]
impl UploadWriter for FsUploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(msg) = &self.failed {
            return Err(StoreError::Io(msg.clone()));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return Err(StoreError::Io("upload writer already closed".into()));
        };
        if tx.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The thread hung up, which it does only on failure.
        self.tx = None;
        match self.join().await {
            Ok(()) => Err(StoreError::Io("upload writer stopped early".into())),
            Err(e) => Err(e),
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        // Closing the channel tells the thread to flush and sync.
        self.tx = None;
        self.join().await
    }
}

impl Drop for FsUploadWriter {
    fn drop(&mut self) {
        // Runs before the fields drop, so the thread sees the flag by the
        // time the closed channel wakes it.
        if self.thread.is_some() {
            self.abort.store(true, Ordering::Release);
        }
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        let path = self.blob_path(digest);
        let file = blocking(move || open_range(&path, offset, len)).await?;
        Ok(read_stream(self.read_mode, file, offset, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        // The fan-out directory stays: removing it could race with another
        // node's commit into it, and there are only 256 of them. A
        // Distribution layout's directory per blob goes with the blob.
        let path = self.blob_path(digest);
        let dir_per_blob = self.layout.dir_per_blob();
        Ok(blocking(move || Ok(remove_blob(&path, dir_per_blob)?)).await?)
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        let tmp_dir = self.root.join("tmp");
        blocking(move || {
            if path.is_file() {
                return Ok(());
            }
            Ok(put_blocking(&tmp_dir, &path, &data)?)
        })
        .await
    }

    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StoreError> {
        let path = self.upload_path(id)?;
        let file = blocking(move || open_upload(&path, offset)).await?;
        Ok(Box::new(FsUploadWriter::spawn(file)))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let upload = self.upload_path(id)?;
        let blob = self.blob_path(digest);
        blocking(move || commit_blocking(&upload, &blob, size)).await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        let path = self.upload_path(id)?;
        blocking(move || Ok(remove_if_present(&path)?)).await
    }

    async fn stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut ids = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                // An upload committed or removed since the listing is gone:
                // not stale, and not an error.
                let modified = match entry.metadata().and_then(|m| m.modified()) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let age = modified.elapsed().unwrap_or_default();
                if age > older_than {
                    if let Some(id) = entry.file_name().to_str() {
                        ids.push(id.to_owned());
                    }
                }
            }
            Ok(ids)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file the thread cannot write to: every write fails with EBADF.
    fn read_only_file() -> File {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        File::open(tmp.path()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn thread_failure_surfaces_on_a_later_write() {
        let mut w = FsUploadWriter::spawn(read_only_file());
        // Chunks above the buffer size go straight to the file and fail.
        let big = Bytes::from(vec![7u8; 2 * CHUNK]);
        let mut failed = None;
        for _ in 0..(WRITE_QUEUE + 3) {
            if let Err(e) = w.write(big.clone()).await {
                failed = Some(e);
                break;
            }
        }
        assert!(matches!(failed, Some(StoreError::Io(_))), "{failed:?}");
        assert!(w.write(big).await.is_err(), "writes after a failure");
        assert!(
            Box::new(w).finish().await.is_err(),
            "finish after a failure"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn thread_failure_surfaces_on_finish() {
        let mut w = FsUploadWriter::spawn(read_only_file());
        // Small enough to sit in the buffer: the failure comes at the flush.
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        assert!(matches!(Box::new(w).finish().await, Err(StoreError::Io(_))));
    }
}
