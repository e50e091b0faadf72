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
    /// Answer the first this many connections' first request (an HTTP/1.1
    /// request, read whole) with `503 SlowDown`, as S3 does when it sheds
    /// load, and close them; the server never sees those requests.
    pub slow_down_first: usize,
}

/// The body of a slowed-down request's answer.
const SLOW_DOWN: &str =
    "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>";

pub struct Relay {
    /// Where it listens (`127.0.0.1:port`).
    pub addr: String,
    cut: Arc<AtomicBool>,
    carried: Arc<AtomicU64>,
    slowed: Arc<AtomicU64>,
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
        let slowed = Arc::new(AtomicU64::new(0));
        let (target, flag, total) = (target.to_owned(), cut.clone(), carried.clone());
        let refused = slowed.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if (refused.load(Ordering::SeqCst) as usize) < faults.slow_down_first {
                    refused.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(slow_down(client));
                    continue;
                }
                let (target, flag, total) = (target.clone(), flag.clone(), total.clone());
                tokio::spawn(relay(client, target, flag, total, faults));
            }
        });
        Relay {
            addr,
            cut,
            carried,
            slowed,
            task,
        }
    }

    /// Requests answered `503 SlowDown` so far.
    pub fn slowed_down(&self) -> u64 {
        self.slowed.load(Ordering::SeqCst)
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

/// Reads one HTTP/1.1 request (its head, then `Content-Length` bytes of
/// body) and answers it `503 SlowDown`.
async fn slow_down(mut client: tokio::net::TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = got.len() - head_end;
    while body < length {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body += n,
        }
    }
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{SLOW_DOWN}",
        SLOW_DOWN.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
