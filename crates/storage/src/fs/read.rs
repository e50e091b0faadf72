//! The pull path of the filesystem store. A blob streams in chunks, each
//! fetched by a short blocking task, with one chunk of read-ahead. On a
//! local filesystem a chunk is a mapping of the blob file: the socket write
//! reads the page cache directly, one copy per byte fewer than reading into
//! a buffer first (the largest cost of a pull in `perf`). On any other
//! filesystem a chunk is read into a pooled buffer.

use berth_core::{ByteStream, StoreError};
use bytes::Bytes;
use memmap2::{Advice, MmapOptions};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use tokio::task::JoinHandle;

/// How a store fetches the chunks of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// Each chunk maps the file; only where [`ReadMode::for_root`] allows.
    Mapped,
    /// Each chunk is read into a pooled buffer.
    Buffered,
}

/// Filesystems that live on this host (statfs `f_type`): tmpfs, ext2/3/4,
/// XFS, Btrfs, ZFS, F2FS, bcachefs, overlayfs.
const LOCAL_FILESYSTEMS: [u64; 8] = [
    0x0102_1994,
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x2FC1_2FC1,
    0xF2F5_2010,
    0xCA45_1A4E,
    0x794C_7630,
];

impl ReadMode {
    /// Mapped on a local filesystem, buffered anywhere else. On a network
    /// or FUSE filesystem (NFS, CephFS, SMB) another host may remove a blob
    /// while it is mapped here, and a later page fault would raise SIGBUS
    /// instead of failing one read.
    pub(crate) fn for_root(root: &Path) -> ReadMode {
        match rustix::fs::statfs(root) {
            Ok(fs) if LOCAL_FILESYSTEMS.contains(&(fs.f_type as u64 & 0xFFFF_FFFF)) => {
                ReadMode::Mapped
            }
            _ => ReadMode::Buffered,
        }
    }

    /// Bytes per chunk: a mapping costs a system call pair and page-table
    /// work, so mapped chunks are larger; a buffer is memory held, so
    /// buffered chunks are smaller.
    fn chunk(self) -> u64 {
        match self {
            ReadMode::Mapped => 2 * 1024 * 1024,
            ReadMode::Buffered => READ_CHUNK as u64,
        }
    }
}

/// Unit of buffered reads: fewer, larger blocking tasks per blob; with one
/// chunk of read-ahead, a pull holds two of them at most.
const READ_CHUNK: usize = 1024 * 1024;

/// Mappings start at a multiple of this, which is a multiple of every page
/// size Linux uses (4, 16 and 64 KiB).
const MAP_ALIGN: u64 = 64 * 1024;

/// Opens a blob and checks that `offset..offset + len` lies inside it, so
/// the stream never ends short of what the caller announced; the file is
/// positioned at `offset`.
pub(crate) fn open_range(path: &Path, offset: u64, len: u64) -> Result<File, StoreError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(StoreError::Io(format!(
            "range {offset}+{len} outside blob of {size} bytes"
        )));
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Read buffers kept for reuse at most: 32 MiB, two per pull for 16
/// concurrent pulls.
const POOLED_READ_BUFFERS: usize = 32;

/// Pull buffers, reused: allocating and freeing a 1 MiB buffer per chunk
/// left glibc's per-thread arenas holding freed ones, and the server's
/// peak memory grew with each burst of concurrent pulls (measured in the
/// benchmark: 115 MiB after 16 concurrent pulls).
static READ_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// A pull buffer that goes back to [`READ_BUFFERS`] when the last `Bytes`
/// sharing it is dropped.
struct PooledBuffer(Vec<u8>);

impl PooledBuffer {
    fn take() -> Self {
        let reused = READ_BUFFERS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(READ_CHUNK));
        buf.clear();
        PooledBuffer(buf)
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if self.0.capacity() != READ_CHUNK {
            return;
        }
        let mut pool = READ_BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_READ_BUFFERS {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

/// Reads the next `want` bytes at the file's position into a pooled
/// buffer that is not zeroed first.
fn read_buffered(file: &mut File, want: usize) -> io::Result<Bytes> {
    let mut buf = PooledBuffer::take();
    let n = file.take(want as u64).read_to_end(&mut buf.0)?;
    if n != want {
        return Err(short_blob());
    }
    Ok(Bytes::from_owner(buf))
}

/// Maps `want` bytes of `file` from `pos`, made resident before the
/// mapping reaches the async side: a page fault there would hold a runtime
/// thread while the disk answers. Populating reports an I/O error as an
/// error, where a fault on the mapping would raise SIGBUS.
fn map_chunk(file: &File, pos: u64, want: usize) -> io::Result<Bytes> {
    let start = pos - pos % MAP_ALIGN;
    let skip = (pos - start) as usize;
    // SAFETY: the mapped bytes must not change or vanish while mapped.
    // A committed blob file is never written or truncated in place: it is
    // written whole under `tmp/` or `uploads/`, renamed into `blobs/`, and
    // afterwards only unlinked or replaced by another rename, which leave
    // this inode and its bytes as they are until the mapping is dropped.
    // `open_range` checked that the range lies inside the file, and mapping
    // is used only on local filesystems (`ReadMode::for_root`), where no
    // other host can remove the file's pages underneath.
    #[allow(unsafe_code)]
    let map = unsafe {
        MmapOptions::new()
            .offset(start)
            .len(skip + want)
            .map(file)?
    };
    match map.advise(Advice::PopulateRead) {
        Ok(()) => Ok(Bytes::from_owner(map).slice(skip..)),
        // Kernels before 5.14 do not know MADV_POPULATE_READ.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            drop(map);
            read_at(file, pos, want)
        }
        Err(e) => Err(e),
    }
}

/// A positional read of `want` bytes, for kernels that cannot populate a
/// mapping.
fn read_at(file: &File, pos: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = vec![0; want];
    file.read_exact_at(&mut buf, pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            short_blob()
        } else {
            e
        }
    })?;
    Ok(Bytes::from(buf))
}

fn short_blob() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than recorded")
}

type ChunkRead = JoinHandle<(File, io::Result<Bytes>)>;

/// Fetches the `want` bytes at `pos` on a short blocking task. Buffered
/// reads go from the file's position, which is `pos`: chunks are fetched in
/// order, one at a time.
fn fetch(mode: ReadMode, mut file: File, pos: u64, want: u64) -> ChunkRead {
    tokio::task::spawn_blocking(move || {
        let r = match mode {
            ReadMode::Mapped => map_chunk(&file, pos, want as usize),
            ReadMode::Buffered => read_buffered(&mut file, want as usize),
        };
        (file, r)
    })
}

struct ReadState {
    mode: ReadMode,
    /// The fetch of the next chunk, already under way.
    next: Option<ChunkRead>,
    /// Where the chunk after it starts.
    pos: u64,
    /// Bytes not yet asked of the file.
    unread: u64,
}

impl ReadState {
    /// Starts fetching the next chunk, if any bytes are left.
    fn fetch_next(&mut self, file: File) {
        if self.unread == 0 {
            return;
        }
        let want = self.unread.min(self.mode.chunk());
        self.next = Some(fetch(self.mode, file, self.pos, want));
        self.pos += want;
        self.unread -= want;
    }
}

/// Streams `len` bytes of `file` from `offset`, where `open_range` left it
/// positioned. A slow client holds no thread while it drains a chunk; the
/// next chunk is fetched while the current one is sent.
pub(crate) fn read_stream(mode: ReadMode, file: File, offset: u64, len: u64) -> ByteStream {
    let mut state = ReadState {
        mode,
        next: None,
        pos: offset,
        unread: len,
    };
    state.fetch_next(file);
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        let fetched = st.next.take()?.await;
        match fetched {
            Ok((file, Ok(chunk))) => {
                st.fetch_next(file);
                Some((Ok(chunk), st))
            }
            // After an error nothing more is read, which ends the stream.
            Ok((_, Err(e))) => Some((Err(e), st)),
            Err(e) => Some((Err(io::Error::other(e)), st)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    async fn collect(mut s: ByteStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Three and a half mapped chunks of bytes that differ from their
    /// neighbours, so a chunk taken from the wrong place shows.
    fn blob() -> (tempfile::NamedTempFile, Vec<u8>) {
        let len = (ReadMode::Mapped.chunk() * 7 / 2) as usize + 13;
        let data: Vec<u8> = (0..len as u64)
            .map(|i| (i * 131 + i / 4093) as u8)
            .collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        (f, data)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn both_modes_stream_any_range_exactly() {
        let (f, data) = blob();
        let total = data.len() as u64;
        let ranges = [
            (0, total),
            (1, total - 1),
            (MAP_ALIGN - 1, 3 * MAP_ALIGN + 5),
            (ReadMode::Mapped.chunk() + 7, ReadMode::Mapped.chunk()),
            (total - 1, 1),
            (total, 0),
            (12_345, 0),
        ];
        for mode in [ReadMode::Mapped, ReadMode::Buffered] {
            for (offset, len) in ranges {
                let file = open_range(f.path(), offset, len).unwrap();
                let got = collect(read_stream(mode, file, offset, len)).await.unwrap();
                let want = &data[offset as usize..(offset + len) as usize];
                assert!(got == want, "{mode:?} {offset}+{len}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_blob_cut_short_after_opening_fails_the_stream() {
        // Not something the store does, but a damaged disk or an operator
        // might: the stream must end in an error, neither short nor with a
        // SIGBUS.
        let (f, data) = blob();
        let total = data.len() as u64;
        for mode in [ReadMode::Mapped, ReadMode::Buffered] {
            let copy = tempfile::NamedTempFile::new().unwrap();
            std::fs::copy(f.path(), copy.path()).unwrap();
            let file = open_range(copy.path(), 0, total).unwrap();
            copy.as_file().set_len(total / 3).unwrap();
            let got = collect(read_stream(mode, file, 0, total)).await;
            assert!(got.is_err(), "{mode:?}");
        }
    }

    #[test]
    fn a_tmpfs_root_is_mapped() {
        // /dev/shm is tmpfs on every Linux with glibc's shm_open.
        assert_eq!(ReadMode::for_root(Path::new("/dev/shm")), ReadMode::Mapped);
        assert_eq!(ReadMode::for_root(Path::new("/proc")), ReadMode::Buffered);
    }
}
