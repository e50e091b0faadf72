//! A TCP relay in front of a server, for tests of what a client does when
//! the network misbehaves: it can cut the first connection that has carried
//! a number of bytes from the server, and it can slow what the server sends
//! to a rate. Aborted on drop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the relay misbehaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Close the first connection once it has carried this many bytes from
    /// the server.
    pub cut_after: Option<usize>,
    /// At most this many bytes a second from the server, per connection.
    pub bytes_per_sec: Option<u64>,
}

pub struct Relay {
    /// Where it listens (`127.0.0.1:port`).
    pub addr: String,
    cut: Arc<AtomicBool>,
    carried: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `target` (`host:port`) with `faults`.
    pub async fn start(target: &str, faults: Faults) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let carried = Arc::new(AtomicU64::new(0));
        let (target, flag, total) = (target.to_owned(), cut.clone(), carried.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, flag, total) = (target.clone(), flag.clone(), total.clone());
                tokio::spawn(relay(client, target, flag, total, faults));
            }
        });
        Relay {
            addr,
            cut,
            carried,
            task,
        }
    }

    /// Bytes passed on from the server so far, all connections together.
    pub fn carried(&self) -> u64 {
        self.carried.load(Ordering::SeqCst)
    }

    /// Whether it has cut a connection.
    pub fn cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    target: String,
    cut: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    faults: Faults,
) {
    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let piece = match faults.bytes_per_sec {
        // Ten pieces a second.
        Some(rate) => (rate / 10).max(1) as usize,
        None => 64 * 1024,
    };
    let mut buf = vec![0; piece];
    let mut carried = 0;
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        carried += n;
        if faults.cut_after.is_some_and(|limit| carried > limit)
            && !cut.swap(true, Ordering::SeqCst)
        {
            break;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        total.fetch_add(n as u64, Ordering::SeqCst);
        if faults.bytes_per_sec.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    up.abort();
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
