//! berth's HTTP layer. Handlers parse a request into a typed endpoint, call
//! the registry domain once, and turn the result (or a [`error::ApiError`])
//! into a response. No domain logic lives here.
//!
//! Layout: `v2::route` turns `/v2/...` paths into an `Endpoint`; `v2::*`
//! handle each endpoint family; `error` renders OCI error bodies; `mgmt` is
//! the management API under `/api/v1`; `ui` the web UI at `/` and `/ui/`.

pub mod auth;
pub mod error;
pub mod guard;
pub mod health;
pub mod mgmt;
pub mod server;
pub mod tls;
pub mod token;
pub mod ui;
pub mod v2;

use axum::routing::get;
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

pub fn router(state: AppState) -> Router {
    let v2 = Router::new()
        .route("/v2", axum::routing::any(v2::dispatch))
        .route("/v2/", axum::routing::any(v2::dispatch))
        .route("/v2/{*rest}", axum::routing::any(v2::dispatch))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/service/token", get(token::get).post(token::post))
        .merge(v2)
        .merge(mgmt::router(state.clone()))
        .merge(ui::router())
        .with_state(state)
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
