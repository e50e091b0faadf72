//! What berth's HTTP surfaces share: the state every handler reaches
//! ([`AppState`]), who is calling ([`auth`]), the OCI error response
//! ([`error`]), and serving connections over TCP or TLS with the limits
//! that keep slow clients from holding the server ([`server`], [`tls`]).
//!
//! The surfaces stand beside each other on top of this crate:
//! `berth-registry-api` (`/v2`, `/service/token`, health), `berth-mgmt`
//! (`/api/v1`) and `berth-ui` (the web UI, which acts through the
//! management API's handlers). The binary merges their routers.

pub mod auth;
pub mod error;
pub mod server;
pub mod time;
pub mod tls;

use axum::Router;
use berth_auth::audit::AuditLog;
use berth_core::Registry;
use std::future::Future;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub auth: Arc<auth::Auth>,
    pub audit: AuditLog,
    /// Prefix for `Location` headers (`external_url`); relative when empty.
    pub base_url: Arc<str>,
    /// Garbage collection, on demand and scheduled.
    pub gc: Arc<berth_core::registry::gc::Collector>,
}

/// Serves `app` on `listener` with the default [`server::Limits`] until
/// `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::Limits::default();
    let proxies = server::TrustedProxies::default();
    server::serve(listener, app, None, limits, proxies, shutdown).await
}
