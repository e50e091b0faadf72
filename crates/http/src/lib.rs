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

use auth::{credentials, AuthFailure, Caller, Credentials};
use axum::http::HeaderMap;
use berth_auth::audit::AuditLog;
use berth_core::Registry;
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
    /// Replication to and from other registries: endpoints, policies,
    /// executions.
    pub replication: Arc<berth_replication::Replication>,
    /// Proxy-cache projects: which projects pull through an upstream, and
    /// the fetches that fill them.
    pub proxy: Arc<berth_proxy::Proxy>,
}

impl AppState {
    /// Who is calling, as [`auth::Auth::caller`] decides, with wrong Basic
    /// credentials recorded in the audit log as a failed login.
    pub async fn caller(&self, headers: &HeaderMap, address: &str) -> Result<Caller, AuthFailure> {
        let result = self.auth.caller(headers, address).await;
        if let Err(AuthFailure::Unauthenticated(_)) = &result {
            if let Credentials::Basic(user, _) = credentials(headers) {
                self.audit.record(&user, "login_failed", &user, address);
            }
        }
        result
    }
}
