//! One upstream fetch of a blob, shared by every client that asks for it
//! meanwhile. The fetch writes each chunk to a spool file (so memory stays
//! bounded whatever the blob's size and however many clients wait) and,
//! at the same time, into an upload of the domain, which hashes it and
//! links the blob only when the whole matches its digest. A waiting client
//! reads the spool as it grows: bytes reach it as they arrive from the
//! upstream, not after the blob is stored.

use bytes::Bytes;
use futures_util::Stream;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// Bytes a reader takes from the spool at once.
const READ_CHUNK: usize = 256 * 1024;

/// How a fetch stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// This many bytes are in the spool.
    Fetching(u64),
    /// The blob is stored and linked: every byte is in the spool too.
    Stored,
    /// The fetch failed; readers past what the spool holds fail with this.
    Failed(String),
}

/// A blob being fetched on this node.
pub struct Flight {
    pub size: u64,
    spool: Mutex<tempfile::NamedTempFile>,
    path: PathBuf,
    /// Bytes in the spool (what readers may read while fetching, and after
    /// a failure).
    written: AtomicU64,
    progress: watch::Sender<Progress>,
}

impl Flight {
    pub fn new(size: u64) -> io::Result<Flight> {
        let spool = tempfile::NamedTempFile::new()?;
        let path = spool.path().to_owned();
        Ok(Flight {
            size,
            spool: Mutex::new(spool),
            path,
            written: AtomicU64::new(0),
            progress: watch::channel(Progress::Fetching(0)).0,
        })
    }

    /// Appends a chunk the upstream sent (at `at`, the bytes so far), then
    /// tells the readers.
    pub fn append(&self, at: u64, chunk: &[u8]) -> io::Result<()> {
        let mut spool = self
            .spool
            .lock()
            .map_err(|_| io::Error::other("spool poisoned"))?;
        spool.as_file_mut().seek(SeekFrom::Start(at))?;
        spool.as_file_mut().write_all(chunk)?;
        drop(spool);
        let written = at + chunk.len() as u64;
        self.written.store(written, Ordering::SeqCst);
        self.progress.send_replace(Progress::Fetching(written));
        Ok(())
    }

    pub fn finish(&self, outcome: Result<(), String>) {
        self.progress.send_replace(match outcome {
            Ok(()) => Progress::Stored,
            Err(why) => Progress::Failed(why),
        });
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until the fetch ends; its outcome.
    pub async fn finished(&self) -> Result<(), String> {
        let mut rx = self.progress.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                Progress::Stored => return Ok(()),
                Progress::Failed(why) => return Err(why),
                Progress::Fetching(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err("the fetch went away".into());
            }
        }
    }

    /// Bytes in the spool now.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// `len` bytes of the spool from `at` (which it must hold).
    pub fn read_spool(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(&self.path)?;
        let mut buf = vec![0; len];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The blob from its first byte, as the spool fills. The stream ends
    /// with an error if the fetch fails before it has every byte (a client
    /// then sees a cut body, never a wrong one it could keep).
    pub fn reader(self: &std::sync::Arc<Self>) -> impl Stream<Item = io::Result<Bytes>> + Send {
        self.reader_from(0)
    }

    /// The blob from byte `from` on, as the spool fills.
    pub fn reader_from(
        self: &std::sync::Arc<Self>,
        from: u64,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send {
        let flight = self.clone();
        let rx = self.progress.subscribe();
        futures_util::stream::unfold(
            (flight, rx, from, None::<std::fs::File>),
            |(flight, mut rx, at, file)| async move {
                if at >= flight.size {
                    return None;
                }
                loop {
                    let state = rx.borrow_and_update().clone();
                    let available = match &state {
                        Progress::Stored => flight.size,
                        _ => flight.written.load(Ordering::SeqCst),
                    };
                    if let (Progress::Failed(why), true) = (&state, available <= at) {
                        // What the spool has was read: then the error,
                        // which ends the stream.
                        let e = io::Error::other(format!("upstream fetch failed: {why}"));
                        return Some((Err(e), (flight.clone(), rx, flight.size, file)));
                    }
                    if available > at {
                        let want = (available - at).min(READ_CHUNK as u64) as usize;
                        let mut file = match file {
                            Some(f) => f,
                            None => match std::fs::File::open(&flight.path) {
                                Ok(f) => f,
                                Err(e) => return Some((Err(e), (flight, rx, u64::MAX, None))),
                            },
                        };
                        let mut buf = vec![0; want];
                        let read = file
                            .seek(SeekFrom::Start(at))
                            .and_then(|_| file.read_exact(&mut buf));
                        return match read {
                            Ok(()) => {
                                let next = at + want as u64;
                                Some((Ok(Bytes::from(buf)), (flight, rx, next, Some(file))))
                            }
                            Err(e) => Some((Err(e), (flight, rx, u64::MAX, None))),
                        };
                    }
                    if rx.changed().await.is_err() {
                        let e = io::Error::other("the upstream fetch went away");
                        return Some((Err(e), (flight.clone(), rx, u64::MAX, file)));
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;

    async fn collect(s: impl Stream<Item = io::Result<Bytes>>) -> (Vec<u8>, Option<String>) {
        let mut s = Box::pin(s);
        let mut got = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
        (got, None)
    }

    #[tokio::test]
    async fn readers_get_bytes_as_they_arrive_and_late_ones_from_the_start() {
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let f = Arc::new(Flight::new(body.len() as u64).unwrap());
        let early = tokio::spawn(collect(f.reader()));
        f.append(0, &body[..1000]).unwrap();
        // A reader that joins after the first chunk starts at byte 0.
        let late = tokio::spawn(collect(f.reader()));
        f.append(1000, &body[1000..]).unwrap();
        f.finish(Ok(()));
        for r in [early, late] {
            let (got, err) = r.await.unwrap();
            assert_eq!(err, None);
            assert!(got == body);
        }
        assert_eq!(f.finished().await, Ok(()));
    }

    #[tokio::test]
    async fn a_failed_fetch_cuts_every_reader() {
        let f = Arc::new(Flight::new(10).unwrap());
        let r = tokio::spawn(collect(f.reader()));
        f.append(0, b"12345").unwrap();
        f.finish(Err("upstream closed".into()));
        // A reader that comes after the failure reads the same.
        let late = tokio::spawn(collect(f.reader()));
        for r in [r, late] {
            let (got, err) = r.await.unwrap();
            assert_eq!(got, b"12345");
            assert!(err.unwrap().contains("upstream closed"));
        }
        assert_eq!(f.finished().await, Err("upstream closed".into()));
    }
}
