//! An outbound client of the OCI Distribution API (spec v1.1) and Docker
//! Registry v2, for berth's replication and pull-through cache: one
//! [`Client`] per remote registry, talking to it as docker and containerd
//! do.
//!
//! # Layout
//!
//! - [`endpoint`]: where the registry is, credentials, TLS, timeouts; the
//!   HTTP client (built through `berth_net`).
//! - `auth`: Basic and Bearer token authentication, the token cache, and
//!   the rule of where credentials may be sent.
//! - `transport`: one request: authorization, the retry after a 401,
//!   redirects, errors.
//! - `header`: parsers of `WWW-Authenticate`, `Link`, ranges.
//! - `listing` (ping, catalog, tags), `manifest`, `blob` (HEAD, GET, mount),
//!   `upload` (chunked and monolithic blob PUT), `referrers` (API and tag
//!   schema fallback): the operations, as methods of [`Client`].
//!
//! Calls go down that list, never up. The client keeps no state but the
//! authentication scheme it learned and its tokens; it is cheap to clone
//! and safe to share between tasks. It never retries on its own (beyond
//! the one retry authentication needs): errors say whether a retry may
//! help ([`ClientError::is_retryable`]) and the caller decides.

pub mod endpoint;
mod error;

mod auth;
mod blob;
mod header;
mod listing;
mod manifest;
mod referrers;
mod transport;
mod upload;

pub use auth::AuthKind;
pub use blob::{BlobStream, Mount};
pub use endpoint::{Credentials, Endpoint, TlsVerify};
pub use error::ClientError;
pub use listing::Ping;
pub use manifest::{Manifest, ManifestMeta, MANIFEST_ACCEPT};
pub use referrers::referrers_tag;

use reqwest::Url;
use std::sync::Arc;

/// A client of one registry. Clones share the connection pool and the
/// token cache.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The registry's base URL (`scheme://host[:port]/`).
    base: Url,
    auth: auth::Authenticator,
    chunk_size: usize,
    page_size: Option<u32>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `endpoint`. Fails on an unusable URL or TLS setting
    /// (an unreadable CA file); makes no request.
    pub fn new(endpoint: &Endpoint) -> Result<Client, ClientError> {
        let base = endpoint.base_url()?;
        let http = endpoint.http_client()?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                auth: auth::Authenticator::new(base.clone(), endpoint.credentials.clone()),
                base,
                chunk_size: endpoint.chunk_size.clamp(1, endpoint::MAX_CHUNK_SIZE),
                page_size: endpoint.page_size,
            }),
        })
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// The URL of the API path `path` (which starts with `/v2/`). Paths are
    /// made of repository names, tags and digests, whose grammars admit
    /// only characters that need no escaping in a path.
    fn api(&self, path: &str) -> Url {
        let mut url = self.inner.base.clone();
        url.set_path(path);
        url
    }
}
