//! Serving connections, over plain TCP or TLS, with the limits that keep a
//! slow or hostile client from holding the server: a deadline for each
//! request head, an idle timeout between requests, a progress timeout on
//! request bodies, a cap on open connections, and a shutdown that gives
//! in-flight requests a grace period and then closes what is left.
//!
//! hyper's own `header_read_timeout` is not used: it starts whenever the
//! connection waits for a head, so it also ends every idle keep-alive
//! connection after the same short time. Each connection instead has a
//! watchdog over a [`Tracker`] fed by the socket (bytes moved) and the
//! service (requests open, from their head until their response body is
//! sent or dropped).

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The limits of [`serve`]. Documented, with the reasons for their
/// defaults, in docs/configuration.md (`[server]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A new connection, and a connection that has begun sending its next
    /// request, must complete the request's head (and a TLS handshake)
    /// within this.
    pub header_read_timeout: Duration,
    /// A connection with no request open and no bytes moving is closed
    /// after this. Also bounds how long a response may stall on a client
    /// that stopped reading.
    pub idle_timeout: Duration,
    /// A request body that brings no bytes for this long fails; an upload
    /// it was writing gives up its claim.
    pub body_timeout: Duration,
    /// A request body must also bring at least this many bytes per second,
    /// averaged over each `body_timeout`, or fail: a byte trickled just
    /// inside `body_timeout` would otherwise hold a connection for ever.
    pub body_min_rate: u64,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// After a shutdown signal, in-flight requests have this long; then
    /// every connection still open is closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(60),
            body_min_rate: 1024,
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The proxies (load balancers) whose `X-Forwarded-For` names the client.
/// Handlers see the client's address as the request's `ConnectInfo`, so
/// throttling and the audit log count clients, not the proxy. A header
/// from any other peer is ignored: a client cannot pick its own address.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<[ipnet::IpNet]>);

impl TrustedProxies {
    pub fn new(ranges: Vec<ipnet::IpNet>) -> Self {
        TrustedProxies(ranges.into())
    }

    fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: when `peer` is trusted, the last address
    /// in `X-Forwarded-For` that is not itself a trusted proxy (each proxy
    /// appends the address it received from, so the entries left of that
    /// one were written by the client and prove nothing).
    pub fn client_of(&self, peer: SocketAddr, headers: &axum::http::HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
                // Unparseable: nothing left of it can be trusted either.
                return peer;
            };
            if !self.trusts(ip) {
                return SocketAddr::new(canonical(ip), 0);
            }
        }
        peer
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes, then drains as [`Limits::shutdown_grace`] says.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    proxies: TrustedProxies,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, usually: wait for some to
                    // close instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            acceptor: acceptor.clone(),
            limits,
            peer,
            proxies: proxies.clone(),
            stop: stop_rx.clone(),
        };
        connections.spawn(async move {
            connection.run(tcp).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace period over: closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

struct Connection {
    app: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    peer: SocketAddr,
    proxies: TrustedProxies,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream) {
        let tracker = Arc::new(Tracker::new());
        let io = Tracked {
            inner: tcp,
            tracker: tracker.clone(),
        };
        match self.acceptor.clone() {
            None => self.serve_io(io, tracker).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(io);
                match tokio::time::timeout(self.limits.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => self.serve_io(stream, tracker).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<I>(self, io: I, tracker: Arc<Tracker>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            limits,
            peer,
            proxies,
            mut stop,
            ..
        } = self;
        let service_tracker = tracker.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let open = Phase::request(&service_tracker);
            let mut req = req.map(|body| {
                axum::body::Body::new(ProgressBody::new(
                    body,
                    limits.body_timeout,
                    limits.body_min_rate,
                ))
            });
            let client = proxies.client_of(peer, req.headers());
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(client));
            let app = app.clone();
            async move {
                let handling = Phase::handling(&open.tracker);
                let resp = app.oneshot(req).await?;
                drop(handling);
                // The request stays open until its response body is sent.
                Ok::<_, std::convert::Infallible>(
                    resp.map(|body| axum::body::Body::new(Guarded { body, open })),
                )
            }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            let deadline = tracker.deadline(&limits);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(deadline), if !closing => {
                    if Instant::now() < tracker.deadline(&limits) {
                        continue;
                    }
                    // No handler runs on it: nothing is lost by closing at
                    // once. (A graceful close would wait for the half-sent
                    // head or the stalled response that timed out.)
                    tracing::debug!(%peer, "closing a slow or idle connection");
                    return;
                }
                // After a shutdown signal requests in flight finish, and
                // `serve` drops what is left after the grace period.
                changed = stop.changed(), if !closing => {
                    if changed.is_err() || *stop.borrow() {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// What a connection's watchdog reads: when bytes last moved, how many
/// requests are open, and since when a request head has been arriving.
struct Tracker {
    start: Instant,
    /// Milliseconds after `start`.
    last_activity: AtomicU64,
    /// Milliseconds after `start` plus one; 0 while no head is arriving.
    head_since: AtomicU64,
    /// When bytes were last written, milliseconds after `start`.
    last_write: AtomicU64,
    /// Requests from their head until their response body is done.
    open: AtomicUsize,
    /// Requests whose handler still runs.
    handling: AtomicUsize,
}

impl Tracker {
    fn new() -> Self {
        Tracker {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            // A new connection owes its first head at once.
            head_since: AtomicU64::new(1),
            last_write: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn moved(&self, read: bool) {
        let now = self.now_ms();
        self.last_activity.store(now, Ordering::Relaxed);
        if !read {
            self.last_write.store(now, Ordering::Relaxed);
        }
        if read && self.open.load(Ordering::Acquire) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// When the connection is to be closed unless something happens.
    fn deadline(&self, limits: &Limits) -> Instant {
        let at = |ms: u64, limit: Duration| self.start + Duration::from_millis(ms) + limit;
        if self.handling.load(Ordering::Acquire) > 0 {
            // A handler runs: it is never cut off (its request body has its
            // own timeout and rate). Look again later.
            return Instant::now() + limits.idle_timeout;
        }
        if self.open.load(Ordering::Acquire) > 0 {
            // Responses are being sent: a client that stopped reading them
            // (or holds an HTTP/2 window at 0) stalls the writes.
            return at(self.last_write.load(Ordering::Relaxed), limits.idle_timeout);
        }
        let idle = at(
            self.last_activity.load(Ordering::Relaxed),
            limits.idle_timeout,
        );
        match self.head_since.load(Ordering::Acquire) {
            0 => idle,
            since => idle.min(at(since - 1, limits.header_read_timeout)),
        }
    }
}

/// A stretch of one request's life, counted in its connection's tracker
/// while it lasts: `count` goes up when it begins and down when it ends,
/// and `stamp` takes the time it ended.
struct Phase {
    tracker: Arc<Tracker>,
    count: fn(&Tracker) -> &AtomicUsize,
    stamp: fn(&Tracker) -> &AtomicU64,
}

impl Phase {
    fn begin(
        tracker: &Arc<Tracker>,
        count: fn(&Tracker) -> &AtomicUsize,
        stamp: fn(&Tracker) -> &AtomicU64,
    ) -> Phase {
        count(tracker).fetch_add(1, Ordering::AcqRel);
        Phase {
            tracker: tracker.clone(),
            count,
            stamp,
        }
    }

    /// A request from its head until its response body is sent or
    /// dropped; then the connection is idle from that moment.
    fn request(tracker: &Arc<Tracker>) -> Phase {
        let open = Phase::begin(tracker, |t| &t.open, |t| &t.last_activity);
        tracker.head_since.store(0, Ordering::Release);
        open
    }

    /// A request's handler, from the head until it returns a response;
    /// sending the response starts then, and its stall clock with it.
    fn handling(tracker: &Arc<Tracker>) -> Phase {
        Phase::begin(tracker, |t| &t.handling, |t| &t.last_write)
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let tracker = &self.tracker;
        (self.stamp)(tracker).store(tracker.now_ms(), Ordering::Relaxed);
        (self.count)(tracker).fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request open until it is done.
struct Guarded {
    body: axum::body::Body,
    #[allow(dead_code)]
    open: Phase,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails when no bytes arrive for `timeout`, or when
/// fewer than `min_rate` bytes a second arrive over a `timeout` window.
struct ProgressBody<B> {
    inner: B,
    timeout: Duration,
    last: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes each window must bring.
    window_min: u64,
    window_start: Instant,
    window_bytes: u64,
}

impl<B> ProgressBody<B> {
    fn new(inner: B, timeout: Duration, min_rate: u64) -> Self {
        let now = Instant::now();
        ProgressBody {
            inner,
            timeout,
            last: now,
            timer: None,
            window_min: min_rate.saturating_mul(timeout.as_secs().max(1)),
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Counts `bytes` arrived now; an error when the window that just
    /// ended brought too few.
    fn arrived(&mut self, bytes: u64) -> Result<(), BodyStalled> {
        let now = Instant::now();
        self.last = now;
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        if now.duration_since(self.window_start) >= self.timeout {
            if self.window_bytes < self.window_min {
                return Err(BodyStalled::TooSlow(self.timeout, self.window_bytes));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }
}

/// The error of a body that stopped arriving, or crawls.
#[derive(Debug)]
enum BodyStalled {
    Silent(Duration),
    TooSlow(Duration, u64),
}

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyStalled::Silent(d) => write!(f, "no request body bytes for {} s", d.as_secs()),
            BodyStalled::TooSlow(d, n) => {
                write!(f, "request body too slow: {n} bytes in {} s", d.as_secs())
            }
        }
    }
}

impl std::error::Error for BodyStalled {}

impl<B> http_body::Body for ProgressBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // The timer is re-armed lazily, from `last`, only when it
                // fires: no timer update per frame.
                let bytes = frame.data_ref().map_or(0, |d| d.len() as u64);
                match this.arrived(bytes) {
                    Ok(()) => Poll::Ready(Some(Ok(frame))),
                    Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                }
            }
            Poll::Ready(other) => Poll::Ready(other.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.last + this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(Box::new(BodyStalled::Silent(this.timeout)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that tells its [`Tracker`] when bytes move.
struct Tracked<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.moved(true);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.tracker.moved(false);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.tracker.moved(false);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_and_one_that_flows_does_not() {
        let (tx, body) = http_body_util_channel();
        let mut body = ProgressBody::new(body, Duration::from_secs(10), 0);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                let _ = tx.send(Bytes::from_static(b"x")).await;
            }
            // Then silence, with the sender kept alive.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let mut got = 0;
        loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => {
                    assert!(e.to_string().contains("no request body bytes"), "{e}");
                    break;
                }
                None => panic!("the body ended instead of timing out"),
            }
        }
        assert_eq!(got, 5, "40 s of bytes 8 s apart all arrived");
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let proxies = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let proxy: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let outsider: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(proxies.client_of(proxy, &h), proxy, "no header");
        h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        let client = |p, h: &axum::http::HeaderMap| proxies.client_of(p, h).ip().to_string();
        assert_eq!(client(proxy, &h), "198.51.100.7");
        assert_eq!(client(outsider, &h), "192.0.2.1", "untrusted peer");
        // A client's own entry, left of what the proxies wrote, is ignored.
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.9.9.9".parse().unwrap(),
        );
        assert_eq!(client(proxy, &h), "198.51.100.7");
        h.append("x-forwarded-for", "::ffff:198.51.100.8".parse().unwrap());
        assert_eq!(client(proxy, &h), "198.51.100.8");
        h.insert("x-forwarded-for", "garbage, 10.0.0.1".parse().unwrap());
        assert_eq!(client(proxy, &h), "10.1.2.3");
        assert_eq!(
            TrustedProxies::default().client_of(proxy, &h),
            proxy,
            "nobody is trusted by default"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickled_inside_the_timeout_fails_for_its_rate() {
        let (tx, body) = http_body_util_channel();
        // 10 s windows of at least 100 bytes a second.
        let mut body = ProgressBody::new(body, Duration::from_secs(10), 100);
        tokio::spawn(async move {
            // A byte every 9 s: never silent for 10 s.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                let _ = tx.send(Bytes::from_static(b"x")).await;
            }
        });
        let mut got = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e.to_string(),
                None => panic!("the body ended instead of failing"),
            }
        };
        assert!(error.contains("too slow"), "{error}");
        assert!(got <= 2, "{got} bytes were taken before the rate failed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_a_good_rate_passes_its_windows() {
        let (tx, body) = http_body_util_channel();
        let mut body = ProgressBody::new(body, Duration::from_secs(10), 100);
        tokio::spawn(async move {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tx.send(Bytes::from(vec![0u8; 200])).await;
            }
        });
        for _ in 0..30 {
            assert!(body.frame().await.is_some_and(|f| f.is_ok()));
        }
    }

    #[test]
    fn the_watchdog_deadline_follows_heads_idleness_and_open_requests() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(100),
            ..Limits::default()
        };
        let t = Arc::new(Tracker::new());
        // A new connection owes a head within the header timeout.
        assert!(t.deadline(&limits) <= t.start + Duration::from_secs(5));
        let open = Phase::request(&t);
        let handling = Phase::handling(&t);
        // A handler runs: never cut off, however long nothing is written.
        t.last_write.store(0, Ordering::Relaxed);
        assert!(t.deadline(&limits) >= Instant::now() + Duration::from_secs(99));
        drop(handling);
        // Its response is sent: the last write sets the deadline, so a
        // client that stops reading is let go.
        t.last_write.store(0, Ordering::Relaxed);
        assert!(t.deadline(&limits) <= t.start + Duration::from_secs(100));
        drop(open);
        // Between requests: the idle timeout.
        assert!(t.deadline(&limits) >= t.start + Duration::from_secs(99));
        // A byte of the next head: the header timeout again.
        t.moved(true);
        assert!(t.deadline(&limits) <= Instant::now() + Duration::from_secs(5));
    }

    type ChannelBody = http_body_util::StreamBody<
        futures_util::stream::BoxStream<
            'static,
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >,
    >;

    /// A body fed by a channel, for the timeout test.
    fn http_body_util_channel() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
        use futures_util::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok(http_body::Frame::data(b)), rx))
        })
        .boxed();
        (tx, http_body_util::StreamBody::new(stream))
    }
}
