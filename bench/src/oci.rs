//! The registry client of the bench: where requests go and how they
//! authenticate ([`Endpoint`]), the blobs pushed ([`Blob`]), the few
//! requests of the OCI distribution API the workloads make, and the
//! counting of listings.

use crate::token::{Realm, Scope, Tokens};
use crate::{Res, MIB};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Method;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// How berth is driven.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// As docker, containerd, podman and skopeo: a token from berth's
    /// token service per repository, sent as `Authorization: Bearer`.
    Bearer,
    /// Basic credentials on every request.
    Basic,
}

impl ClientAuth {
    /// For the table's header and results.json.
    pub fn label(self) -> &'static str {
        match self {
            ClientAuth::Bearer => "Bearer",
            ClientAuth::Basic => "Basic",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ClientAuth::Bearer => {
                "Bearer tokens from its token service (one per repository and workload, as docker does)"
            }
            ClientAuth::Basic => "Basic credentials on every request",
        }
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Basic(HeaderValue),
    Bearer(Arc<Tokens>),
}

/// Where requests go and how they authenticate; cheap to clone into tasks
/// (clones share their tokens).
#[derive(Clone)]
pub struct Endpoint {
    pub base: String,
    auth: Auth,
}

impl Endpoint {
    /// A registry without auth (Distribution).
    pub fn anonymous(base: &str) -> Endpoint {
        Endpoint {
            base: base.to_owned(),
            auth: Auth::None,
        }
    }

    /// berth, as `user`. For Bearer, berth's challenge is read first (an
    /// unauthenticated `GET /v2/`), to learn the token service's realm.
    pub async fn berth(base: &str, user: &str, password: &str, auth: ClientAuth) -> Res<Endpoint> {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let basic = HeaderValue::from_str(&basic).map_err(|e| e.to_string())?;
        let auth = match auth {
            ClientAuth::Basic => Auth::Basic(basic),
            ClientAuth::Bearer => {
                let realm = Realm::discover(&client(), base, basic).await?;
                Auth::Bearer(Arc::new(Tokens::new(Arc::new(realm))))
            }
        };
        Ok(Endpoint {
            base: base.to_owned(),
            auth,
        })
    }

    /// The same endpoint with no tokens yet, as a new client process (one
    /// `docker push`) starts: each workload runs in a session of its own.
    pub fn session(&self) -> Endpoint {
        let auth = match &self.auth {
            Auth::Bearer(t) => Auth::Bearer(Arc::new(Tokens::new(t.realm()))),
            other => other.clone(),
        };
        Endpoint {
            base: self.base.clone(),
            auth,
        }
    }

    /// How many tokens this session fetched.
    pub fn tokens_fetched(&self) -> usize {
        match &self.auth {
            Auth::Bearer(t) => t.fetched(),
            _ => 0,
        }
    }

    /// A request to `path` (on this endpoint, or an absolute URL), with
    /// the credentials `scope` needs: a cached token, or one fetched now.
    pub async fn req(
        &self,
        c: &reqwest::Client,
        method: Method,
        path: &str,
        scope: Scope<'_>,
    ) -> Res<reqwest::RequestBuilder> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let r = c.request(method, url);
        Ok(match &self.auth {
            Auth::None => r,
            Auth::Basic(a) => r.header(AUTHORIZATION, a.clone()),
            Auth::Bearer(t) => r.header(AUTHORIZATION, t.header(c, scope).await?),
        })
    }

    /// The absolute form of a `Location` or `Link` target.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        }
    }
}

pub fn client() -> reqwest::Client {
    berth_net::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

/// `r` if its status is `want`, else an error with the body.
pub async fn check(r: reqwest::Response, want: u16, what: &str) -> Res<reqwest::Response> {
    if r.status().as_u16() == want {
        Ok(r)
    } else {
        let s = r.status();
        Err(format!(
            "{what}: {s} {}",
            r.text().await.unwrap_or_default()
        ))
    }
}

async fn send(b: reqwest::RequestBuilder) -> Res<reqwest::Response> {
    b.send().await.map_err(|e| e.to_string())
}

fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// A blob of `len` bytes as shared pieces (no copy per request).
#[derive(Clone)]
pub struct Blob {
    pub pieces: Vec<Bytes>,
    pub len: usize,
    pub digest: String,
}

impl Blob {
    pub fn new(seed: u64, len: usize) -> Blob {
        // A random 4 MiB block, repeated, with the seed in front: distinct
        // digests, cheap to make.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let block: Vec<u8> = (0..4 * MIB)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let block = Bytes::from(block);
        let mut pieces = vec![Bytes::from(seed.to_le_bytes().to_vec())];
        let mut left = len - 8;
        while left > 0 {
            let n = left.min(block.len());
            pieces.push(block.slice(..n));
            left -= n;
        }
        let mut h = Sha256::new();
        for p in &pieces {
            h.update(p);
        }
        Blob {
            pieces,
            len,
            digest: format!("sha256:{:x}", h.finalize()),
        }
    }

    fn body(&self) -> reqwest::Body {
        stream_body(self.pieces.clone())
    }

    /// The bytes from `start`, `len` of them, as pieces.
    fn range(&self, start: usize, len: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let (mut pos, end) = (0usize, start + len);
        for p in &self.pieces {
            let (a, b) = (pos, pos + p.len());
            if b > start && a < end {
                out.push(p.slice(start.max(a) - a..end.min(b) - a));
            }
            pos = b;
        }
        out
    }
}

fn stream_body(pieces: Vec<Bytes>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        pieces.into_iter().map(Ok::<Bytes, std::io::Error>),
    ))
}

/// The absolute `Location` of a response.
fn location(s: &Endpoint, r: &reqwest::Response) -> Res<String> {
    let loc = r
        .headers()
        .get("location")
        .ok_or("no Location")?
        .to_str()
        .map_err(|e| e.to_string())?;
    Ok(s.absolute(loc))
}

/// Opens an upload session (`POST`); where to continue it.
async fn open_upload(s: &Endpoint, c: &reqwest::Client, repo: &str) -> Res<String> {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let r = send(s.req(c, Method::POST, &path, Scope::Push(repo)).await?).await?;
    location(s, &check(r, 202, "POST").await?)
}

/// `POST` then one streamed `PUT` with the whole blob.
pub async fn push_monolithic(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    blob: &Blob,
) -> Res<()> {
    let loc = open_upload(s, c, repo).await?;
    let last = Some((blob.body(), blob.len));
    close_upload(s, c, repo, &loc, &blob.digest, last).await
}

/// Ends the upload at `loc` (`PUT ?digest=`), with `last`, the bytes not
/// sent yet and how many, if any.
async fn close_upload(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    loc: &str,
    digest: &str,
    last: Option<(reqwest::Body, usize)>,
) -> Res<()> {
    let url = with_digest(loc, digest);
    let mut put = s.req(c, Method::PUT, &url, Scope::Push(repo)).await?;
    if let Some((body, len)) = last {
        put = put
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len)
            .body(body);
    }
    check(send(put).await?, 201, "PUT").await.map(|_| ())
}

/// `POST`, `PATCH`es of `chunk` bytes, then `PUT ?digest=` (Docker's way
/// with one chunk).
pub async fn push_chunked(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    blob: &Blob,
    chunk: usize,
) -> Res<()> {
    let mut loc = open_upload(s, c, repo).await?;
    let mut start = 0;
    while start < blob.len {
        let n = chunk.min(blob.len - start);
        let patch = s
            .req(c, Method::PATCH, &loc, Scope::Push(repo))
            .await?
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", start, start + n - 1))
            .header("Content-Length", n)
            .body(stream_body(blob.range(start, n)));
        loc = location(s, &check(send(patch).await?, 202, "PATCH").await?)?;
        start += n;
    }
    close_upload(s, c, repo, &loc, &blob.digest, None).await
}

/// `GET` of a blob, read to the end; its length.
pub async fn pull(s: &Endpoint, c: &reqwest::Client, repo: &str, digest: &str) -> Res<usize> {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let r = send(s.req(c, Method::GET, &path, Scope::Pull(repo)).await?).await?;
    let r = check(r, 200, "GET blob").await?;
    let mut stream = r.bytes_stream();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.map_err(|e| e.to_string())?.len();
    }
    Ok(n)
}

pub async fn put_manifest(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    reference: &str,
    body: &[u8],
) -> Res<()> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let put = s
        .req(c, Method::PUT, &path, Scope::Push(repo))
        .await?
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_vec());
    check(send(put).await?, 201, "PUT manifest")
        .await
        .map(|_| ())
}

/// A config blob and an image manifest naming it and `layers`.
pub fn manifest(config: &[u8], layers: &[(String, usize)]) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": layers.iter().map(|(d, n)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// `POST` then `PUT` of a small blob.
pub async fn upload_small(s: &Endpoint, c: &reqwest::Client, repo: &str, data: &[u8]) -> Res<()> {
    let loc = open_upload(s, c, repo).await?;
    let last = Some((data.to_vec().into(), data.len()));
    close_upload(s, c, repo, &loc, &sha(data), last).await
}

/// Mounts blob `digest` of `from` into `repo` (a `201`, no upload).
pub async fn mount(
    s: &Endpoint,
    c: &reqwest::Client,
    repo: &str,
    from: &str,
    digest: &str,
) -> Res<()> {
    let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
    let post = s
        .req(c, Method::POST, &path, Scope::Mount { to: repo, from })
        .await?;
    check(send(post).await?, 201, "mount").await.map(|_| ())
}

/// One page of a listing: its body and the `Link` to the next page.
pub async fn list_page(
    s: &Endpoint,
    c: &reqwest::Client,
    url: &str,
    scope: Scope<'_>,
    what: &str,
) -> Res<(Bytes, Option<String>)> {
    let r = send(s.req(c, Method::GET, url, scope).await?).await?;
    let r = check(r, 200, what).await?;
    let next = r
        .headers()
        .get("link")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.split(['<', '>']).nth(1))
        .map(|next| s.absolute(next));
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    Ok((body, next))
}

/// How many names the JSON listing `body` holds under `field`. Each name
/// is checked to be a JSON string but neither copied nor collected: the
/// load generator shares the CPU with the server it measures, so its own
/// cost is kept small (and the same for both registries). A `Vec<Cow<str>>`
/// looked borrowed but was not (serde borrows a `Cow` only as a field of
/// its own): 10,000 allocations per tags list, most of the generator's CPU.
pub fn listed(body: &[u8], field: &str) -> Res<usize> {
    #[derive(serde::Deserialize)]
    struct Listing {
        #[serde(default)]
        tags: Option<NameCount>,
        #[serde(default)]
        repositories: Option<NameCount>,
    }
    let l: Listing = serde_json::from_slice(body).map_err(|e| format!("listing: {e}"))?;
    let names = if field == "tags" {
        l.tags
    } else {
        l.repositories
    };
    names
        .map(|n| n.0)
        .ok_or_else(|| format!("listing has no {field:?}"))
}

/// The length of a JSON array of strings.
struct NameCount(usize);

impl<'de> serde::Deserialize<'de> for NameCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = NameCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of names")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NameCount, A::Error> {
                let mut n = 0;
                // Names hold no characters JSON escapes, so each borrows.
                while seq.next_element::<&'de str>()?.is_some() {
                    n += 1;
                }
                Ok(NameCount(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}
