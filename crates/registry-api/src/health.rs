//! `/healthz`: the process is alive. `/readyz`: the metadata store and the
//! blob store answer now; 503 otherwise, so a load balancer takes the node
//! out while its etcd or storage is unreachable.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_http::AppState;
use std::time::Duration;

/// A readiness probe must answer quickly even when a backend hangs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let check = tokio::time::timeout(PROBE_TIMEOUT, state.registry.check_ready()).await;
    match check {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}", e.code.message()),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: backend timed out",
        )
            .into_response(),
    }
}
