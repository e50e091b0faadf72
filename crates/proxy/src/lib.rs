//! Proxy-cache projects, Harbor's model: a project bound to an upstream
//! registry (a replication endpoint) serves what its clients pull from
//! there, keeps it, and serves it from then on.
//!
//! - `hub/library/alpine:3` in the proxy project `hub` is
//!   `library/alpine:3` upstream (Docker Hub endpoints also put one-segment
//!   names under `library/`).
//! - A manifest by tag is kept fresh with a HEAD to the upstream (which
//!   Docker Hub does not count as a pull) at most every
//!   [`Settings::manifest_ttl`]; by digest it never changes. When the
//!   upstream is down or refuses, what is cached is served; when nothing
//!   is, the upstream's answer reaches the client as the OCI error it
//!   expects.
//! - A blob is fetched once for the whole cluster: a cluster lock per
//!   digest ([`Locks`], a lease on etcd) lets one node fetch it; on that
//!   node every client asking meanwhile reads the same fetch as it arrives
//!   ([`flight`]); the other nodes read that fetch from the fetching
//!   node as it arrives (its [`Peers`] URL, named in the lock) into a
//!   flight of their own, for their clients, and link the blob once it is
//!   stored. When the fetching node dies, another takes the lock over and
//!   goes on from the bytes it already has. The fetch resumes with a
//!   `Range` request when the upstream breaks off. The blob is hashed on
//!   its way into the store and becomes visible only whole and matching
//!   its digest.
//! - Pushes and deletes are the registry's business: a push to a proxy
//!   project is refused by the HTTP layer, which asks [`Proxy::binding`].

pub mod flight;

use berth_core::keys;
use berth_core::kv::{Kv, Txn};
use berth_core::lock::Locks;
use berth_core::registry::ManifestContent;
use berth_core::{CoreError, Registry};
use berth_oci::{Digest, ErrorCode, Reference, RepoName};
use berth_registry_client::{Client, ClientError};
use berth_replication::{EndpointKind, Replication};
use bytes::Bytes;
use flight::Flight;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tags whose freshness this node remembers; the oldest half is dropped
/// past it.
const MAX_FRESH: usize = 100_000;

/// Proxy projects read at most (a page of the `Kv` scan).
const MAX_BINDINGS: usize = 10_000;

/// How long an upstream client (and the tokens it holds) is reused
/// before the endpoint is read again (a changed secret is seen then).
const CLIENT_TTL: Duration = Duration::from_secs(30);

/// How often a client waiting for another node's fetch looks again.
const REMOTE_POLL: Duration = Duration::from_millis(200);

/// Upstream attempts of one blob (the first and the resumes).
const FETCH_ATTEMPTS: u32 = 4;

/// Bytes of a spool replayed into the store at once (a takeover).
const REPLAY_CHUNK: u64 = 1 << 20;

/// Who holds a blob's cluster lock: the fetching node, the repository it
/// fetches for, and where the other nodes read the fetch as it arrives.
#[derive(Serialize, Deserialize)]
struct Holder {
    node: String,
    repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
}

/// How the nodes of a cluster read each other's fetches: this node's URL
/// for them (none when they cannot reach it: they then wait for the
/// stored blob) and the client it reads theirs with.
pub struct Peers {
    pub url: Option<String>,
    pub client: reqwest::Client,
}

/// A blob arriving on this node, for another node: its size and its bytes
/// from the offset asked for.
pub type PeerRead = (
    u64,
    std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
);

/// A project's upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub project: String,
    /// The replication endpoint the project pulls through.
    pub endpoint: String,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a tag's manifest is served without asking the upstream.
    pub manifest_ttl: Duration,
    /// How long this node trusts its list of bindings before reading it
    /// again (a change made on this node is seen at once).
    pub bindings_ttl: Duration,
    /// Transparent mirrors: the registry a client names (containerd's
    /// `ns=` query parameter, `docker.io` for Docker's registry-mirrors,
    /// which send none) to the proxy project that serves it.
    pub mirrors: HashMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            manifest_ttl: Duration::from_secs(60),
            bindings_ttl: Duration::from_secs(5),
            mirrors: HashMap::new(),
        }
    }
}

/// What a blob request of a proxy project gets.
pub enum BlobAnswer {
    /// The blob is in the repository now: serve it as any other.
    Stored,
    /// It is arriving from the upstream: its size and its bytes as they
    /// come.
    Streaming {
        size: u64,
        body: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    },
}

pub struct Proxy {
    kv: Arc<dyn Kv>,
    registry: Registry,
    replication: Arc<Replication>,
    locks: Arc<dyn Locks>,
    node: String,
    settings: Settings,
    /// Every binding by project, and when it was read.
    bindings: Mutex<Option<(Instant, Bindings)>>,
    fresh: Mutex<HashMap<(String, String), Instant>>,
    /// The fetches running on this node, with the repository each is for.
    flights: Mutex<HashMap<Digest, (RepoName, Arc<Flight>)>>,
    clients: Mutex<HashMap<String, CachedClient>>,
    /// Set on the nodes of a cluster ([`Proxy::enable_peers`]).
    peers: std::sync::OnceLock<Peers>,
    peer_secret: tokio::sync::OnceCell<String>,
}

type Bindings = Arc<HashMap<String, Binding>>;

/// An upstream client kept for [`CLIENT_TTL`], with its endpoint's kind.
struct CachedClient {
    made: Instant,
    client: Client,
    kind: EndpointKind,
}

/// The upstream's answer as the OCI error a client of berth expects;
/// `unknown` (`MANIFEST_UNKNOWN` or `BLOB_UNKNOWN`) when it has no such thing.
fn upstream_error(e: &ClientError, unknown: ErrorCode) -> CoreError {
    if e.is_not_found() {
        return not_upstream(unknown);
    }
    match e.status() {
        Some(429) => CoreError::with_detail(
            ErrorCode::TooManyRequests,
            "the upstream registry is rate limiting",
        ),
        Some(401 | 403) => CoreError::with_detail(
            ErrorCode::Denied,
            format!("the upstream registry refused berth's credentials: {e}"),
        ),
        _ => CoreError::unavailable(format!("the upstream registry did not answer: {e}")),
    }
}

/// `unknown` (`MANIFEST_UNKNOWN` or `BLOB_UNKNOWN`): the upstream does not
/// have it.
fn not_upstream(unknown: ErrorCode) -> CoreError {
    let what = if unknown == ErrorCode::BlobUnknown {
        "blob"
    } else {
        "manifest"
    };
    CoreError::with_detail(unknown, format!("the upstream has no such {what}"))
}

/// The size of `digest` in the upstream repository `remote` (a HEAD);
/// `BLOB_UNKNOWN` when that repository does not have it.
async fn upstream_blob_size(
    client: &Client,
    remote: &RepoName,
    digest: &Digest,
) -> Result<u64, CoreError> {
    match client.blob_head(remote, digest).await {
        Ok(Some(size)) => Ok(size),
        Ok(None) => Err(not_upstream(ErrorCode::BlobUnknown)),
        Err(e) => Err(upstream_error(&e, ErrorCode::BlobUnknown)),
    }
}

/// The upstream's name of `repo` of a proxy project: without the project
/// (`hub/library/alpine` is `library/alpine`), and with Docker Hub's
/// `library/` before a one-segment name (`hub/alpine` is `library/alpine`).
fn upstream_name(kind: EndpointKind, repo: &RepoName) -> String {
    let rest = repo
        .as_str()
        .split_once('/')
        .map_or(repo.as_str(), |(_, rest)| rest);
    if kind == EndpointKind::DockerHub && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_owned()
    }
}

impl Proxy {
    pub fn new(
        kv: Arc<dyn Kv>,
        registry: Registry,
        replication: Arc<Replication>,
        locks: Arc<dyn Locks>,
        node: impl Into<String>,
        settings: Settings,
    ) -> Proxy {
        Proxy {
            kv,
            registry,
            replication,
            locks,
            node: node.into(),
            settings,
            bindings: Mutex::new(None),
            fresh: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            peers: std::sync::OnceLock::new(),
            peer_secret: tokio::sync::OnceCell::new(),
        }
    }

    /// Lets this node read the fetches of the cluster's other nodes and
    /// name its own URL for them (once; later calls are ignored).
    pub fn enable_peers(&self, peers: Peers) {
        let _ = self.peers.set(peers);
    }

    // Bindings.

    async fn all_bindings(&self) -> Result<Bindings, CoreError> {
        if let Ok(cached) = self.bindings.lock() {
            if let Some((at, map)) = &*cached {
                if at.elapsed() < self.settings.bindings_ttl {
                    return Ok(map.clone());
                }
            }
        }
        let list = self.kv.scan(keys::PROXY_PREFIX, None, MAX_BINDINGS).await?;
        let map: HashMap<String, Binding> = list
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Binding>(&v.value).ok())
            .map(|b| (b.project.clone(), b))
            .collect();
        let map = Arc::new(map);
        if let Ok(mut cached) = self.bindings.lock() {
            *cached = Some((Instant::now(), map.clone()));
        }
        Ok(map)
    }

    fn forget_bindings(&self) {
        if let Ok(mut cached) = self.bindings.lock() {
            *cached = None;
        }
    }

    /// The binding of `project`, if it is a proxy project.
    pub async fn binding(&self, project: &str) -> Result<Option<Binding>, CoreError> {
        Ok(self.all_bindings().await?.get(project).cloned())
    }

    /// Every proxy project's binding, by project.
    pub async fn bindings(&self) -> Result<Vec<Binding>, CoreError> {
        let mut list: Vec<Binding> = self.all_bindings().await?.values().cloned().collect();
        list.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(list)
    }

    /// Binds `project` to `endpoint` (which must exist), or changes it.
    pub async fn bind(&self, project: &str, endpoint: &str) -> Result<Binding, CoreError> {
        self.replication
            .endpoint(endpoint)
            .await
            .map_err(|e| CoreError::with_detail(ErrorCode::NameUnknown, e.message))?;
        let binding = Binding {
            project: project.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        let value = serde_json::to_vec(&binding).map_err(|e| CoreError::internal(e.to_string()))?;
        let txn = Txn::new().put(keys::proxy(project), value);
        self.kv.commit(txn).await?;
        self.forget_bindings();
        Ok(binding)
    }

    /// Makes `project` an ordinary project again (what it cached stays).
    pub async fn unbind(&self, project: &str) -> Result<bool, CoreError> {
        let key = keys::proxy(project);
        let existed = self.kv.get(&key).await?.is_some();
        self.kv.commit(Txn::new().delete(key)).await?;
        self.forget_bindings();
        Ok(existed)
    }

    /// The proxy project that mirrors `registry` (a client's `ns`, or
    /// `docker.io`), if one is configured.
    pub fn mirror_project(&self, registry: &str) -> Option<&str> {
        self.settings.mirrors.get(registry).map(String::as_str)
    }

    // The upstream.

    /// The upstream client of `binding` and the upstream name of `repo`.
    async fn upstream(
        &self,
        binding: &Binding,
        repo: &RepoName,
    ) -> Result<(Client, RepoName), CoreError> {
        let cached = self.clients.lock().ok().and_then(|c| {
            c.get(&binding.endpoint)
                .filter(|c| c.made.elapsed() < CLIENT_TTL)
                .map(|c| (c.client.clone(), c.kind))
        });
        let (client, kind) = match cached {
            Some(c) => c,
            None => {
                let (endpoint, client) = self
                    .replication
                    .connect(&binding.endpoint)
                    .await
                    .map_err(|e| CoreError::unavailable(e.message))?;
                if let Ok(mut c) = self.clients.lock() {
                    let cached = CachedClient {
                        made: Instant::now(),
                        client: client.clone(),
                        kind: endpoint.kind,
                    };
                    c.insert(binding.endpoint.clone(), cached);
                }
                (client, endpoint.kind)
            }
        };
        let remote = upstream_name(kind, repo);
        let remote = RepoName::parse(&remote).ok_or_else(|| {
            CoreError::with_detail(
                ErrorCode::NameInvalid,
                format!("{repo} names no repository upstream"),
            )
        })?;
        Ok((client, remote))
    }

    // Manifests.

    fn is_fresh(&self, repo: &RepoName, tag: &str) -> bool {
        self.fresh.lock().is_ok_and(|f| {
            f.get(&(repo.to_string(), tag.to_owned()))
                .is_some_and(|at| at.elapsed() < self.settings.manifest_ttl)
        })
    }

    fn mark_fresh(&self, repo: &RepoName, tag: &str) {
        if let Ok(mut f) = self.fresh.lock() {
            if f.len() >= MAX_FRESH {
                let ttl = self.settings.manifest_ttl;
                f.retain(|_, at| at.elapsed() < ttl);
                if f.len() >= MAX_FRESH {
                    f.clear();
                }
            }
            f.insert((repo.to_string(), tag.to_owned()), Instant::now());
        }
    }

    /// A manifest of a proxy project: cached and fresh, or confirmed or
    /// fetched upstream, or cached when the upstream cannot say.
    pub async fn manifest(
        &self,
        binding: &Binding,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestContent, CoreError> {
        let cached = match self.registry.manifest_get(repo, reference).await {
            Ok(m) => Some(m),
            Err(e) if e.code == ErrorCode::ManifestUnknown => None,
            Err(e) => return Err(e),
        };
        let tag = match reference {
            Reference::Digest(_) => None,
            Reference::Tag(t) => Some(t.as_str().to_owned()),
        };
        if let (None, Some(m)) = (&tag, &cached) {
            // A digest names one manifest forever.
            return Ok(m.clone());
        }
        if let (Some(m), Some(tag)) = (&cached, &tag) {
            if self.is_fresh(repo, tag) {
                return Ok(m.clone());
            }
        }
        let (client, remote) = match self.upstream(binding, repo).await {
            Ok(u) => u,
            Err(e) => return cached.ok_or(e),
        };
        if let (Some(m), Some(tag)) = (&cached, &tag) {
            match client.manifest_head(&remote, reference).await {
                Ok(Some(meta)) if meta.digest == m.digest => {
                    self.mark_fresh(repo, tag);
                    return Ok(m.clone());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%repo, %tag, error = %e, "upstream unavailable; serving the cached manifest");
                    return Ok(m.clone());
                }
            }
        }
        let fetched = match client.manifest_get(&remote, reference).await {
            Ok(f) => f,
            Err(e) => {
                return match cached {
                    Some(m) if !e.is_not_found() => {
                        tracing::warn!(%repo, error = %e, "upstream unavailable; serving the cached manifest");
                        Ok(m)
                    }
                    _ => Err(upstream_error(&e, ErrorCode::ManifestUnknown)),
                }
            }
        };
        let put = self
            .registry
            .manifest_cache(
                repo,
                reference,
                Some(&fetched.media_type),
                fetched.bytes.clone(),
            )
            .await?;
        if let Some(tag) = &tag {
            self.mark_fresh(repo, tag);
        }
        Ok(ManifestContent {
            digest: put.digest,
            media_type: fetched.media_type,
            body: fetched.bytes,
        })
    }

    // Blobs.

    /// The size of a blob of a proxy project that is not stored yet, as the
    /// upstream tells (a HEAD is answered without fetching).
    pub async fn blob_size(
        &self,
        binding: &Binding,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<u64, CoreError> {
        if let Some(f) = self.flight_of(repo, digest) {
            return Ok(f.size);
        }
        let (client, remote) = self.upstream(binding, repo).await?;
        upstream_blob_size(&client, &remote, digest).await
    }

    /// The fetch of `digest` running on this node for `repo`. One for
    /// another repository is joined only once the upstream says `repo` has
    /// the blob too.
    fn flight_of(&self, repo: &RepoName, digest: &Digest) -> Option<Arc<Flight>> {
        let flights = self.flights.lock().ok()?;
        let (origin, flight) = flights.get(digest)?;
        (origin == repo).then(|| flight.clone())
    }

    /// A blob of a proxy project that is not in `repo`: linked from the
    /// store when berth has it already (once the upstream confirms the
    /// repository has it), or fetched once and streamed as it arrives.
    pub async fn blob(
        self: &Arc<Self>,
        binding: &Binding,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobAnswer, CoreError> {
        if let Some(f) = self.flight_of(repo, digest) {
            return Ok(BlobAnswer::Streaming {
                size: f.size,
                body: Box::pin(f.reader()),
            });
        }
        let (client, remote) = self.upstream(binding, repo).await?;
        // Only what the upstream repository has is served: a digest stored
        // for another project is not readable here by naming it.
        let size = upstream_blob_size(&client, &remote, digest).await?;
        if let Some(stored) = self.registry.blob_recorded_size(digest).await? {
            if stored == size {
                self.registry.blob_link_in_place(repo, digest, size).await?;
                return Ok(BlobAnswer::Stored);
            }
        }
        // Past the project's quota: DENIED now, before a byte is sent,
        // rather than a body cut when the store refuses it.
        self.registry
            .check_quota(repo, Some(digest), size, None)
            .await?;
        let flight = {
            let mut flights = self
                .flights
                .lock()
                .map_err(|_| CoreError::internal("flight table poisoned"))?;
            if let Some((_, f)) = flights.get(digest) {
                f.clone()
            } else {
                let f =
                    Arc::new(Flight::new(size).map_err(|e| {
                        CoreError::internal(format!("a spool file for {digest}: {e}"))
                    })?);
                flights.insert(digest.clone(), (repo.clone(), f.clone()));
                let (this, f2) = (self.clone(), f.clone());
                let (repo, digest, remote) = (repo.clone(), digest.clone(), remote.clone());
                tokio::spawn(async move {
                    let outcome = this.fetch(&f2, client, &remote, &repo, &digest).await;
                    if let Err(why) = &outcome {
                        tracing::warn!(%repo, %digest, error = %why, "proxy fetch failed");
                    }
                    f2.finish(outcome);
                    if let Ok(mut flights) = this.flights.lock() {
                        flights.remove(&digest);
                    }
                });
                f
            }
        };
        Ok(BlobAnswer::Streaming {
            size,
            body: Box::pin(flight.reader()),
        })
    }

    /// Fetches a blob into `flight` and the store, under the cluster lock
    /// of its digest. While another node holds the lock, reads that node's
    /// fetch into `flight` as it arrives and links the blob once stored;
    /// if that node dies, takes the lock over and goes on from what
    /// `flight` holds.
    async fn fetch(
        &self,
        flight: &Flight,
        client: Client,
        remote: &RepoName,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), String> {
        let lock_name = format!("proxy-blob:{digest}");
        let holder = Holder {
            node: self.node.clone(),
            repo: repo.to_string(),
            peer: self.peers.get().and_then(|p| p.url.clone()),
        };
        let holder = serde_json::to_string(&holder).map_err(|e| e.to_string())?;
        let guard = loop {
            match self.locks.try_lock(&lock_name, &holder).await {
                Ok(Some(guard)) => break guard,
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            // Another node is fetching it: take its blob when it is stored.
            if let Some(size) = self
                .registry
                .blob_recorded_size(digest)
                .await
                .map_err(|e| e.to_string())?
            {
                self.registry
                    .blob_link_in_place(repo, digest, size)
                    .await
                    .map_err(|e| e.to_string())?;
                return self.spool_stored(flight, digest).await;
            }
            // Meanwhile its bytes, as they arrive there.
            if !self.relay(flight, &lock_name, digest).await {
                tokio::time::sleep(REMOTE_POLL).await;
            }
        };
        // Stored meanwhile (by a holder that just finished)?
        if let Ok(Some(size)) = self.registry.blob_recorded_size(digest).await {
            if size == flight.size {
                self.registry
                    .blob_link_in_place(repo, digest, size)
                    .await
                    .map_err(|e| e.to_string())?;
                return self.spool_stored(flight, digest).await;
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let upload = {
            let registry = self.registry.clone();
            let (repo, digest, size) = (repo.clone(), digest.clone(), flight.size);
            let body = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
            tokio::spawn(async move {
                registry
                    .upload_monolithic(&repo, &digest, Some(size), body)
                    .await
            })
        };
        // What the spool has (read from a node that died) goes into the
        // store first; the upstream is asked for the rest.
        let mut at = flight.written();
        let mut replayed = 0;
        while replayed < at {
            let len = (at - replayed).min(REPLAY_CHUNK);
            let chunk = flight
                .read_spool(replayed, len as usize)
                .map_err(|e| format!("reading the spool of {digest}: {e}"))?;
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                break;
            }
            replayed += len;
        }
        let mut attempts = 0;
        let mut last_error = String::new();
        while at < flight.size && attempts < FETCH_ATTEMPTS {
            attempts += 1;
            let mut stream = match client.blob_get(remote, digest, at).await {
                Ok(s) => s,
                Err(e) => {
                    last_error = e.to_string();
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                    continue;
                }
            };
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        if !guard.is_held() {
                            let _ = tx.send(Err(io::Error::other("lock lost"))).await;
                            return Err("the fetch lost its cluster lock".into());
                        }
                        flight
                            .append(at, &bytes)
                            .map_err(|e| format!("spooling {digest}: {e}"))?;
                        at += bytes.len() as u64;
                        if tx.send(Ok(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        break;
                    }
                }
            }
        }
        if at < flight.size {
            let _ = tx
                .send(Err(io::Error::other("the upstream broke off")))
                .await;
            drop(tx);
            let _ = upload.await;
            return Err(format!(
                "the upstream sent {at} of {} bytes: {last_error}",
                flight.size
            ));
        }
        drop(tx);
        match upload.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads the fetch of the node holding `lock_name` into `flight`, from
    /// what `flight` holds on, until it ends or breaks off; whether any
    /// byte came. Nothing comes when this node is not in a cluster, the
    /// holder names no URL, or its fetch has ended.
    async fn relay(&self, flight: &Flight, lock_name: &str, digest: &Digest) -> bool {
        let Some(peers) = self.peers.get() else {
            return false;
        };
        let from = flight.written();
        if from >= flight.size {
            return false;
        }
        let holder = match self.locks.holder(lock_name).await {
            Ok(Some(h)) => serde_json::from_str::<Holder>(&h).ok(),
            _ => None,
        };
        let Some(url) = holder
            .and_then(|h| h.peer)
            .filter(|u| Some(u) != peers.url.as_ref())
        else {
            return false;
        };
        let Ok(secret) = self.peer_secret(true).await else {
            return false;
        };
        let answer = peers
            .client
            .get(format!(
                "{}/internal/v1/proxy/fetches/{digest}?from={from}",
                url.trim_end_matches('/')
            ))
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Berth-Peer {secret}"),
            )
            .send()
            .await;
        let mut body = match answer {
            Ok(r) if r.status() == reqwest::StatusCode::OK => r.bytes_stream(),
            Ok(r) => {
                tracing::debug!(%digest, %url, status = %r.status(), "no fetch to read on the peer");
                return false;
            }
            Err(e) => {
                tracing::warn!(%digest, %url, error = %e, "cannot read the peer's fetch");
                return false;
            }
        };
        let mut at = from;
        while let Some(Ok(chunk)) = body.next().await {
            let take = chunk.len().min((flight.size - at) as usize);
            if flight.append(at, &chunk[..take]).is_err() {
                break;
            }
            at += take as u64;
            if at >= flight.size {
                break;
            }
        }
        at > from
    }

    /// The secret the nodes of the cluster read each other's fetches
    /// with; made (once, for the cluster) when `create` and there is none.
    async fn peer_secret(&self, create: bool) -> Result<String, CoreError> {
        if let Some(s) = self.peer_secret.get() {
            return Ok(s.clone());
        }
        let secret = loop {
            if let Some(v) = self.kv.get(keys::PEER_SECRET).await? {
                break String::from_utf8(v.value)
                    .map_err(|_| CoreError::internal("the peer secret is not text"))?;
            }
            if !create {
                return Err(CoreError::new(ErrorCode::Unauthorized));
            }
            let mut bytes = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
            let fresh = berth_oci::digest::hex(&bytes);
            let txn = Txn::new()
                .if_unchanged(keys::PEER_SECRET, None)
                .put(keys::PEER_SECRET, fresh.clone().into_bytes());
            if self.kv.commit(txn).await? {
                break fresh;
            }
        };
        Ok(self
            .peer_secret
            .get_or_init(|| async { secret })
            .await
            .clone())
    }

    /// The fetch of `digest` running on this node, for another node of
    /// the cluster (which `secret` proves it is): its size and its bytes
    /// from `from` on, as they arrive. `None` when no fetch of it runs
    /// here.
    pub async fn peer_read(
        &self,
        digest: &Digest,
        from: u64,
        secret: &str,
    ) -> Result<Option<PeerRead>, CoreError> {
        let ours = self.peer_secret(false).await?;
        if !same_secret(ours.as_bytes(), secret.as_bytes()) {
            return Err(CoreError::new(ErrorCode::Unauthorized));
        }
        let flight = self
            .flights
            .lock()
            .ok()
            .and_then(|f| f.get(digest).map(|(_, f)| f.clone()));
        Ok(flight
            .filter(|f| from <= f.size)
            .map(|f| -> PeerRead { (f.size, Box::pin(f.reader_from(from))) }))
    }

    /// Fills `flight`'s spool from the store (another node fetched the
    /// blob) past what it holds: the clients waiting here read it from
    /// there.
    async fn spool_stored(&self, flight: &Flight, digest: &Digest) -> Result<(), String> {
        let mut at = flight.written();
        if at >= flight.size {
            return Ok(());
        }
        let mut stream = self
            .registry
            .blob_read(digest, at, flight.size - at)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            flight.append(at, &chunk).map_err(|e| e.to_string())?;
            at += chunk.len() as u64;
        }
        Ok(())
    }
}

/// `a == b`, in time that does not tell where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"abc", b"abc"));
        for other in [&b"abd"[..], b"ab", b"abcd", b""] {
            assert!(!same_secret(b"abc", other), "{other:?}");
        }
    }

    #[test]
    fn upstream_names_drop_the_project_and_follow_docker_hub() {
        let name = |s: &str| RepoName::parse(s).unwrap();
        for (kind, repo, upstream) in [
            (
                EndpointKind::Distribution,
                "hub/library/alpine",
                "library/alpine",
            ),
            (EndpointKind::Distribution, "hub/tools/app/x", "tools/app/x"),
            (EndpointKind::Distribution, "hub/alpine", "alpine"),
            (EndpointKind::DockerHub, "hub/alpine", "library/alpine"),
            (
                EndpointKind::DockerHub,
                "hub/library/alpine",
                "library/alpine",
            ),
            (
                EndpointKind::DockerHub,
                "hub/bitnami/redis",
                "bitnami/redis",
            ),
        ] {
            assert_eq!(
                upstream_name(kind, &name(repo)),
                upstream,
                "{kind:?} {repo}"
            );
        }
    }
}
